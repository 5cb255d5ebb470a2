//! The native driver's side of a lease authority, and the in-process one.

use std::collections::HashMap;
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
/// its own channel, at once, and when it grants the lease to a replica while another
/// was the last holder, it tells that one [`AuthorityAnswer::Lost`] on its link (so a
/// holder whose clock stopped while it slept hears it lost the lease, as the
/// [`Authority`] contract requires).
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
/// assert_eq!(at_a.answers().try_recv(), Ok(AuthorityAnswer::Lost { term: 1 }), "a is told");
/// ```
pub struct MutexAuthority {
    shared: Arc<Mutex<Shared>>,
    clock: Arc<dyn Clock + Send + Sync>,
    tx: Sender<AuthorityAnswer>,
    rx: Receiver<AuthorityAnswer>,
}

/// What the links share: the arbiter, and each replica's link (its answer channel,
/// learnt from its requests) to tell it of a loss.
#[derive(Default)]
struct Shared {
    arbiter: LeaseArbiter,
    links: HashMap<SourceId, Sender<AuthorityAnswer>>,
}

impl Clone for MutexAuthority {
    /// Another replica's link to the same grant.
    fn clone(&self) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        MutexAuthority {
            shared: Arc::clone(&self.shared),
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
            shared: Arc::default(),
            clock: Arc::new(clock),
            tx,
            rx,
        }
    }

    /// The current holder and its term, if its grant has not run out.
    pub fn holder(&self) -> Option<(SourceId, u64)> {
        let now = self.clock.now().mono_ms;
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .arbiter
            .holder(now)
    }
}

impl Authority for MutexAuthority {
    fn handle(&mut self, holder: SourceId, request: AuthorityRequest) {
        let now = self.clock.now().mono_ms;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.links.insert(holder, self.tx.clone());
        let decision = shared.arbiter.decide(now, holder, &request);
        if let Some((ended, term)) = decision.ended {
            // A link whose replica is gone has no receiver left: nothing to tell.
            if let Some(link) = shared.links.get(&ended) {
                let _ = link.send(AuthorityAnswer::Lost { term });
            }
        }
        if let Some(answer) = decision.answer {
            // The receiver lives in `self`: the send cannot fail.
            let _ = self.tx.send(answer);
        }
    }

    fn answers(&self) -> Receiver<AuthorityAnswer> {
        self.rx.clone()
    }
}
