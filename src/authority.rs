//! Lease authorities: compare-and-set arbiters that make the lease exclusive.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{Clock, SourceId};

/// A compare-and-set arbiter of the lease, offered by a transport: the Web Locks API in
/// browsers, `flock` on files, an atomic script on a multi-host engine, a mutex
/// in-process.
///
/// Gossip alone cannot make a lease exclusive (a lost renewal looks exactly like a dead
/// leader). With an authority, a replica becomes leader only when the authority grants
/// it the term, so at most one replica holds the lease at any time. Without one,
/// leadership is *eventually single and always fenced*: two claimants may overlap
/// briefly, the greater record wins, and the other steps down with
/// [`LeadershipLoss::Superseded`](crate::LeadershipLoss::Superseded).
///
/// The authority keeps its own time: a grant expires `duration_ms` after the last
/// acquire or renew, by the authority's clock. The holder stops acting at its renew
/// deadline, which is shorter, so holder and successor never overlap.
///
/// Calls are synchronous; an authority that must wait (a network round trip) answers
/// from its last known state and refreshes in the background.
pub trait LeaseAuthority: Send {
    /// Grants `term` to `holder` if no one else holds an unexpired grant and `term` is
    /// newer than any granted before (or `holder` already holds `term`).
    ///
    /// # Errors
    ///
    /// [`Refused`] with the highest term the authority has granted, so that the
    /// claimant never asks again for a term already spent (by a replica that crashed
    /// before anyone heard of its claim, say) and asks for a newer one once the grant
    /// is free.
    fn try_acquire(&mut self, holder: SourceId, term: u64, duration_ms: u64)
        -> Result<(), Refused>;
    /// Extends `holder`'s grant of `term`; `false` if it no longer holds it.
    fn renew(&mut self, holder: SourceId, term: u64, duration_ms: u64) -> bool;
    /// Gives up `holder`'s grant of `term` (no effect if it does not hold it).
    fn release(&mut self, holder: SourceId, term: u64);
    /// How long `holder`'s grant of `term` has left, in ms, as the authority knows now;
    /// `None` when it holds no unexpired grant of `term`.
    ///
    /// The holder asks before every input it acts on, and schedules a check for when
    /// the grant is about to run out: a holder whose monotonic clock stopped while it
    /// slept (and whose wall clock was set back, hiding the sleep) still stops acting
    /// before the authority can grant the lease to anyone else.
    fn remaining_ms(&self, holder: SourceId, term: u64) -> Option<u64>;
}

/// A lease authority's refusal of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Refused {
    /// The highest term the authority has granted (held now, or spent).
    pub term: u64,
    /// The replica holding an unexpired grant, if one does.
    pub holder: Option<SourceId>,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.holder {
            Some(h) => write!(f, "the lease is held by {h} in term {}", self.term),
            None => write!(
                f,
                "term {} was granted already; claim a newer term",
                self.term
            ),
        }
    }
}

impl std::error::Error for Refused {}

/// The in-process authority: a grant behind a mutex, shared by clones, timed by the
/// clock it is given.
///
/// ```
/// use replisync::{LeaseAuthority, ManualClock, MutexAuthority, SourceId};
///
/// let clock = ManualClock::new(0, 0);
/// let mut at_a = MutexAuthority::new(clock.clone());
/// let mut at_b = at_a.clone();
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
///
/// assert!(at_a.try_acquire(a, 1, 3_000).is_ok());
/// let refused = at_b.try_acquire(b, 2, 3_000).unwrap_err();
/// assert_eq!((refused.holder, refused.term), (Some(a), 1), "held");
/// clock.advance(3_000);
/// assert!(at_b.try_acquire(b, 2, 3_000).is_ok(), "expired");
/// assert!(!at_a.renew(a, 1, 3_000));
/// ```
#[derive(Clone)]
pub struct MutexAuthority {
    inner: Arc<Mutex<AuthorityState>>,
    clock: Arc<dyn Clock + Send + Sync>,
}

#[derive(Default)]
struct AuthorityState {
    holder: Option<SourceId>,
    term: u64,
    expires_at_ms: u64,
}

impl core::fmt::Debug for MutexAuthority {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MutexAuthority")
            .field("holder", &state.holder)
            .field("term", &state.term)
            .field("expires_at_ms", &state.expires_at_ms)
            .finish()
    }
}

impl MutexAuthority {
    /// An authority timed by `clock` (its monotonic time).
    pub fn new(clock: impl Clock + Send + Sync + 'static) -> Self {
        MutexAuthority {
            inner: Arc::default(),
            clock: Arc::new(clock),
        }
    }

    /// The current holder and term, if the grant has not expired.
    pub fn holder(&self) -> Option<(SourceId, u64)> {
        let now = self.clock.now().mono_ms;
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match state.holder {
            Some(h) if now < state.expires_at_ms => Some((h, state.term)),
            _ => None,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut AuthorityState, u64) -> T) -> T {
        let now = self.clock.now().mono_ms;
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state, now)
    }
}

impl LeaseAuthority for MutexAuthority {
    fn try_acquire(
        &mut self,
        holder: SourceId,
        term: u64,
        duration_ms: u64,
    ) -> Result<(), Refused> {
        self.with(|s, now| {
            let mine = s.holder == Some(holder) && s.term == term;
            let free = s.holder.is_none() || now >= s.expires_at_ms;
            if mine || (free && term > s.term) {
                s.holder = Some(holder);
                s.term = term;
                s.expires_at_ms = now.saturating_add(duration_ms);
                Ok(())
            } else {
                Err(Refused {
                    term: s.term,
                    holder: s.holder.filter(|_| !free),
                })
            }
        })
    }

    fn renew(&mut self, holder: SourceId, term: u64, duration_ms: u64) -> bool {
        self.with(|s, now| {
            if s.holder == Some(holder) && s.term == term && now < s.expires_at_ms {
                s.expires_at_ms = now.saturating_add(duration_ms);
                true
            } else {
                false
            }
        })
    }

    fn remaining_ms(&self, holder: SourceId, term: u64) -> Option<u64> {
        self.with(|s, now| {
            (s.holder == Some(holder) && s.term == term && now < s.expires_at_ms)
                .then(|| s.expires_at_ms - now)
        })
    }

    fn release(&mut self, holder: SourceId, term: u64) {
        self.with(|s, _| {
            if s.holder == Some(holder) && s.term == term {
                s.holder = None;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    const A: SourceId = SourceId::from_u128(1);
    const B: SourceId = SourceId::from_u128(2);

    #[test]
    fn terms_only_grow() {
        let clock = ManualClock::new(0, 0);
        let mut auth = MutexAuthority::new(clock.clone());
        assert!(auth.try_acquire(A, 5, 100).is_ok());
        auth.release(A, 5);
        assert_eq!(
            auth.try_acquire(B, 5, 100),
            Err(Refused {
                term: 5,
                holder: None
            }),
            "a term is granted once, and the refusal names it"
        );
        assert!(auth.try_acquire(B, 4, 100).is_err());
        assert!(auth.try_acquire(B, 6, 100).is_ok());
        assert_eq!(auth.holder(), Some((B, 6)));
    }

    #[test]
    fn release_by_a_non_holder_does_nothing() {
        let clock = ManualClock::new(0, 0);
        let mut auth = MutexAuthority::new(clock.clone());
        assert!(auth.try_acquire(A, 1, 100).is_ok());
        auth.release(B, 1);
        auth.release(A, 0);
        assert_eq!(auth.holder(), Some((A, 1)));
        assert_eq!(auth.remaining_ms(A, 1), Some(100));
        assert_eq!(auth.remaining_ms(B, 1), None);
        clock.advance(50);
        assert!(auth.renew(A, 1, 100));
        clock.advance(99);
        assert_eq!(auth.holder(), Some((A, 1)));
        clock.advance(1);
        assert_eq!(auth.holder(), None);
        assert!(!auth.renew(A, 1, 100), "an expired grant cannot be renewed");
    }
}
