//! The native driver's side of a lease authority, and the in-process one.

use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender};

use crate::authority::{AuthorityAnswer, AuthorityRequest, LeaseArbiter};
use crate::{Clock, SourceId};

/// A lease authority as the native [`Driver`](crate::Driver) talks to it: it carries
/// out the replica's [requests](AuthorityRequest) and sends the
/// [answers](AuthorityAnswer) on a channel the driver waits on, at once, after a round
/// trip, or much later (a lock granted once its holder died).
///
/// An adapter must also send [`AuthorityAnswer::Lost`] as soon as it learns that the
/// grant is gone: the replica does not ask before every input.
pub trait Authority: Send {
    /// Carries out `request` of the replica `holder`.
    fn handle(&mut self, holder: SourceId, request: AuthorityRequest);
    /// The answers, in the order the authority gave them. The driver takes this once,
    /// when it is spawned.
    fn answers(&self) -> Receiver<AuthorityAnswer>;
}

/// The in-process authority: one [`LeaseArbiter`] behind a mutex, shared by clones and
/// timed by the clock it is given. Each clone is one replica's link: it answers on
/// its own channel, at once.
///
/// ```
/// use replisync::authority::{AuthorityAnswer, AuthorityRequest};
/// use replisync::{Authority, ManualClock, MutexAuthority, SourceId};
///
/// let clock = ManualClock::new(0, 0);
/// let mut at_a = MutexAuthority::new(clock.clone());
/// let mut at_b = at_a.clone();
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let acquire = |term| AuthorityRequest::Acquire { ask: 1, term, duration_ms: 3_000 };
///
/// at_a.handle(a, acquire(1));
/// assert!(matches!(at_a.answers().recv(), Ok(AuthorityAnswer::Granted { term: 1, .. })));
/// at_b.handle(b, acquire(2));
/// assert!(matches!(at_b.answers().recv(), Ok(AuthorityAnswer::Refused { holder: Some(h), .. }) if h == a));
/// clock.advance(3_000);
/// at_b.handle(b, acquire(2));
/// assert!(matches!(at_b.answers().recv(), Ok(AuthorityAnswer::Granted { term: 2, .. })), "expired");
/// assert_eq!(at_b.holder(), Some((b, 2)));
/// ```
pub struct MutexAuthority {
    arbiter: Arc<Mutex<LeaseArbiter>>,
    clock: Arc<dyn Clock + Send + Sync>,
    tx: Sender<AuthorityAnswer>,
    rx: Receiver<AuthorityAnswer>,
}

impl Clone for MutexAuthority {
    /// Another replica's link to the same grant.
    fn clone(&self) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        MutexAuthority {
            arbiter: Arc::clone(&self.arbiter),
            clock: Arc::clone(&self.clock),
            tx,
            rx,
        }
    }
}

impl core::fmt::Debug for MutexAuthority {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MutexAuthority")
            .field("holder", &self.holder())
            .finish_non_exhaustive()
    }
}

impl MutexAuthority {
    /// An authority timed by `clock` (its monotonic time).
    pub fn new(clock: impl Clock + Send + Sync + 'static) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        MutexAuthority {
            arbiter: Arc::default(),
            clock: Arc::new(clock),
            tx,
            rx,
        }
    }

    /// The current holder and its term, if its grant has not run out.
    pub fn holder(&self) -> Option<(SourceId, u64)> {
        let now = self.clock.now().mono_ms;
        self.arbiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .holder(now)
    }
}

impl Authority for MutexAuthority {
    fn handle(&mut self, holder: SourceId, request: AuthorityRequest) {
        let now = self.clock.now().mono_ms;
        let answer = self
            .arbiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(now, holder, &request);
        if let Some(answer) = answer {
            // The receiver lives in `self`: the send cannot fail.
            let _ = self.tx.send(answer);
        }
    }

    fn answers(&self) -> Receiver<AuthorityAnswer> {
        self.rx.clone()
    }
}
