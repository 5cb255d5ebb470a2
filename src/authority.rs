//! Lease authorities: the conversation between a replica and the arbiter that makes the
//! lease exclusive, and the sans-IO arbiters that decide it: [`LeaseArbiter`] for a
//! timed authority, [`LockArbiter`] for a lock (`flock`, Web Locks) with a term
//! recorded beside it.

use crate::SourceId;

mod lock;

pub use lock::{LockAction, LockArbiter, LockFact, LockOutput};

/// What a replica asks of its lease authority (leader mode, after
/// [`Replica::with_authority`](crate::Replica::with_authority)), from
/// [`Replica::poll_authority`](crate::Replica::poll_authority).
///
/// Gossip alone cannot make a lease exclusive (a lost renewal looks exactly like a dead
/// leader). With an authority (the Web Locks API in browsers, `flock` on files, an
/// atomic script on a multi-host engine, a mutex in-process), a replica leads only
/// while the authority grants it the term, so at most one replica leads at any time.
///
/// The authority's adapter carries each request out (at once, after a round trip, or
/// much later) and hands back an [`AuthorityAnswer`] through
/// [`Replica::handle_authority`](crate::Replica::handle_authority). Requests and
/// answers may be delayed, lost or duplicated: the `ask` number ties an answer to its
/// request, and the replica times a grant from when it asked.
///
/// What an adapter must guarantee:
/// - each term is granted to one replica only, and terms only grow (a lock-like
///   authority keeps the highest term granted beside the lock: in the lock file, in
///   storage);
/// - a timed grant is never given to another replica before it ran out, by the
///   authority's clock, from when it was granted;
/// - a grant that is gone is reported with [`AuthorityAnswer::Lost`] as soon as the
///   adapter learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthorityRequest {
    /// Grant `term` to this replica alone, for `duration_ms` from now (a timed
    /// authority) or until released or lost (a lock). The authority refuses a term not
    /// newer than every term it granted before, unless this replica holds the grant
    /// already: a holder may move its grant to a newer term.
    Acquire {
        /// Ties the answer to this request.
        ask: u64,
        /// The term asked for.
        term: u64,
        /// How long a timed grant lasts, from when the authority grants it.
        duration_ms: u64,
    },
    /// Extend this replica's grant of `term` for `duration_ms` from now. A lock-like
    /// authority, whose grants last until [`AuthorityAnswer::Lost`], is never asked.
    Renew {
        /// Ties the answer to this request.
        ask: u64,
        /// The term held.
        term: u64,
        /// How long the grant lasts, from when the authority extends it.
        duration_ms: u64,
    },
    /// This replica gives up `term`; no answer is expected.
    Release {
        /// The term given up.
        term: u64,
    },
}

/// What a lease authority answers, given to
/// [`Replica::handle_authority`](crate::Replica::handle_authority).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthorityAnswer {
    /// `term` is granted to this replica.
    ///
    /// With `valid_ms: Some(d)` the grant lasts `d` ms from when request `ask` was
    /// made: the replica times it on its own monotonic clock from its own ask, so an
    /// answer that arrives late can only shorten it. With `valid_ms: None` it lasts
    /// until the adapter reports [`AuthorityAnswer::Lost`] (a lock held by a live
    /// process: `flock`, Web Locks).
    ///
    /// A grant of no ask this replica remembers (`ask: None`, say: Web Locks granting a
    /// queued request once the holder's tab died) lets the replica lead at once when
    /// it is untimed; a timed one makes it ask again at once, since it cannot tell how
    /// much of the grant is left.
    Granted {
        /// The request answered, if any.
        ask: Option<u64>,
        /// The term granted.
        term: u64,
        /// How long the grant lasts from the ask; `None` until lost.
        valid_ms: Option<u64>,
    },
    /// The claim or renewal is refused.
    Refused {
        /// The request answered, if any.
        ask: Option<u64>,
        /// The highest term the authority has granted (held now, or spent): the replica
        /// never asks for it again, and asks for a newer term once the grant is free.
        term: u64,
        /// The replica holding an unexpired grant, if one does.
        holder: Option<SourceId>,
    },
    /// This replica no longer holds `term`: the lock was lost, the key expired or was
    /// taken. The replica stops leading at once.
    ///
    /// An adapter must report this as soon as it learns it: the replica does not ask
    /// the authority before every input, so a holder whose clock stopped while it
    /// slept (and whose wall clock was set back, hiding the sleep) relies on it.
    Lost {
        /// The term lost.
        term: u64,
    },
}

/// What [`LeaseArbiter::decide`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The answer for the replica that asked (`None` for a release).
    pub answer: Option<AuthorityAnswer>,
    /// The replica whose grant this decision ended, and the term it held: it must be
    /// told with [`AuthorityAnswer::Lost`].
    pub ended: Option<(SourceId, u64)>,
}

/// The decision of a timed compare-and-set lease authority, with no I/O: who holds
/// which term until when. [`MutexAuthority`](crate::MutexAuthority) shares one behind a
/// mutex; a simulator or a transport can reuse it.
///
/// ```
/// use replisync::authority::{AuthorityAnswer, AuthorityRequest, LeaseArbiter};
/// use replisync::SourceId;
///
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let mut arbiter = LeaseArbiter::default();
/// let ask = |term| AuthorityRequest::Acquire { ask: 7, term, duration_ms: 3_000 };
///
/// assert!(matches!(arbiter.answer(0, a, &ask(1)), Some(AuthorityAnswer::Granted { term: 1, .. })));
/// assert_eq!(
///     arbiter.answer(10, b, &ask(2)),
///     Some(AuthorityAnswer::Refused { ask: Some(7), term: 1, holder: Some(a) })
/// );
/// // Once a's grant runs out unrenewed, b gets a newer term.
/// assert!(matches!(arbiter.answer(3_000, b, &ask(2)), Some(AuthorityAnswer::Granted { term: 2, .. })));
/// assert_eq!(arbiter.holder(3_000), Some((b, 2)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseArbiter {
    holder: Option<SourceId>,
    term: u64,
    expires_at_ms: u64,
}

impl LeaseArbiter {
    /// An arbiter that has granted every term up to `term` already (none held).
    pub fn spent(term: u64) -> Self {
        LeaseArbiter {
            holder: None,
            term,
            expires_at_ms: 0,
        }
    }

    /// The holder of an unexpired grant at `now_ms` (the arbiter's own clock), and its
    /// term.
    pub fn holder(&self, now_ms: u64) -> Option<(SourceId, u64)> {
        match self.holder {
            Some(h) if now_ms < self.expires_at_ms => Some((h, self.term)),
            _ => None,
        }
    }

    /// The highest term granted so far.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Decides `request` from `from` at `now_ms`; `None` for a release (no answer).
    /// Grants are timed: each lasts its `duration_ms` from `now_ms`.
    ///
    /// An adapter that can reach every replica should use [`LeaseArbiter::decide`],
    /// which also says whose grant the decision ended.
    pub fn answer(
        &mut self,
        now_ms: u64,
        from: SourceId,
        request: &AuthorityRequest,
    ) -> Option<AuthorityAnswer> {
        self.decide(now_ms, from, request).answer
    }

    /// Decides `request` from `from` at `now_ms`, like [`LeaseArbiter::answer`], and
    /// says whose grant the decision ended: when it grants the lease to `from` while
    /// another replica was the last holder (its grant ran out, or it never released
    /// it), that replica and its term are in [`Decision::ended`], and the adapter must
    /// send it [`AuthorityAnswer::Lost`] (the contract of every adapter).
    ///
    /// ```
    /// use replisync::authority::{AuthorityAnswer, AuthorityRequest, LeaseArbiter};
    /// use replisync::SourceId;
    ///
    /// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
    /// let mut arbiter = LeaseArbiter::default();
    /// let ask = |term| AuthorityRequest::Acquire { ask: 0, term, duration_ms: 100 };
    /// assert_eq!(arbiter.decide(0, a, &ask(1)).ended, None);
    /// // a's grant runs out unrenewed: b takes term 2, and a must hear it lost term 1.
    /// let decision = arbiter.decide(100, b, &ask(2));
    /// assert!(matches!(decision.answer, Some(AuthorityAnswer::Granted { term: 2, .. })));
    /// assert_eq!(decision.ended, Some((a, 1)));
    /// ```
    pub fn decide(&mut self, now_ms: u64, from: SourceId, request: &AuthorityRequest) -> Decision {
        let before = self.holder.map(|h| (h, self.term));
        let answer = self.decide_answer(now_ms, from, request);
        let granted = matches!(answer, Some(AuthorityAnswer::Granted { .. }));
        let ended = before.filter(|(h, _)| granted && *h != from);
        Decision { answer, ended }
    }

    fn decide_answer(
        &mut self,
        now_ms: u64,
        from: SourceId,
        request: &AuthorityRequest,
    ) -> Option<AuthorityAnswer> {
        let held_by_from = self.holder(now_ms).is_some_and(|(h, _)| h == from);
        match *request {
            AuthorityRequest::Acquire {
                ask,
                term,
                duration_ms,
            } => {
                let free = self.holder(now_ms).is_none();
                let moves_on = held_by_from && term >= self.term;
                if moves_on || (free && term > self.term) {
                    self.grant(from, term, now_ms, duration_ms);
                    Some(AuthorityAnswer::Granted {
                        ask: Some(ask),
                        term,
                        valid_ms: Some(duration_ms),
                    })
                } else {
                    Some(self.refusal(ask, now_ms))
                }
            }
            AuthorityRequest::Renew {
                ask,
                term,
                duration_ms,
            } => {
                if held_by_from && term == self.term {
                    self.grant(from, term, now_ms, duration_ms);
                    Some(AuthorityAnswer::Granted {
                        ask: Some(ask),
                        term,
                        valid_ms: Some(duration_ms),
                    })
                } else {
                    Some(self.refusal(ask, now_ms))
                }
            }
            AuthorityRequest::Release { term } => {
                if self.holder == Some(from) && self.term == term {
                    self.holder = None;
                }
                None
            }
        }
    }

    fn grant(&mut self, holder: SourceId, term: u64, now_ms: u64, duration_ms: u64) {
        self.holder = Some(holder);
        self.term = term;
        self.expires_at_ms = now_ms.saturating_add(duration_ms);
    }

    fn refusal(&self, ask: u64, now_ms: u64) -> AuthorityAnswer {
        AuthorityAnswer::Refused {
            ask: Some(ask),
            term: self.term,
            holder: self.holder(now_ms).map(|(h, _)| h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SourceId = SourceId::from_u128(1);
    const B: SourceId = SourceId::from_u128(2);

    fn acquire(term: u64, duration_ms: u64) -> AuthorityRequest {
        AuthorityRequest::Acquire {
            ask: 0,
            term,
            duration_ms,
        }
    }

    fn renew(term: u64, duration_ms: u64) -> AuthorityRequest {
        AuthorityRequest::Renew {
            ask: 0,
            term,
            duration_ms,
        }
    }

    fn granted(answer: Option<AuthorityAnswer>) -> bool {
        matches!(answer, Some(AuthorityAnswer::Granted { .. }))
    }

    #[test]
    fn terms_only_grow() {
        let mut arb = LeaseArbiter::default();
        assert!(granted(arb.answer(0, A, &acquire(5, 100))));
        assert_eq!(
            arb.answer(0, A, &AuthorityRequest::Release { term: 5 }),
            None
        );
        assert_eq!(
            arb.answer(0, B, &acquire(5, 100)),
            Some(AuthorityAnswer::Refused {
                ask: Some(0),
                term: 5,
                holder: None
            }),
            "a term is granted once, and the refusal names it"
        );
        assert!(!granted(arb.answer(0, B, &acquire(4, 100))));
        assert!(granted(arb.answer(0, B, &acquire(6, 100))));
        assert_eq!(arb.holder(0), Some((B, 6)));
    }

    #[test]
    fn a_holder_moves_to_a_newer_term_and_only_the_holder_renews_or_releases() {
        let mut arb = LeaseArbiter::default();
        assert!(granted(arb.answer(0, A, &acquire(1, 100))));
        assert!(granted(arb.answer(10, A, &acquire(3, 100))), "moves on");
        assert_eq!(arb.holder(10), Some((A, 3)));
        assert!(!granted(arb.answer(10, A, &renew(1, 100))), "the old term");
        assert!(
            !granted(arb.answer(10, B, &renew(3, 100))),
            "not the holder"
        );
        arb.answer(10, B, &AuthorityRequest::Release { term: 3 });
        arb.answer(10, A, &AuthorityRequest::Release { term: 1 });
        assert_eq!(
            arb.holder(10),
            Some((A, 3)),
            "releases by others do nothing"
        );
        assert!(granted(arb.answer(60, A, &renew(3, 100))));
        assert_eq!(arb.holder(159), Some((A, 3)));
        assert_eq!(arb.holder(160), None);
        assert!(
            !granted(arb.answer(160, A, &renew(3, 100))),
            "an expired grant cannot be renewed"
        );
        assert_eq!(
            arb.answer(160, B, &acquire(3, 100)),
            Some(AuthorityAnswer::Refused {
                ask: Some(0),
                term: 3,
                holder: None
            })
        );
        assert!(granted(arb.answer(160, B, &acquire(4, 100))));
    }

    #[test]
    fn a_spent_arbiter_refuses_old_terms() {
        let mut arb = LeaseArbiter::spent(9);
        assert_eq!(arb.term(), 9);
        assert!(!granted(arb.answer(0, A, &acquire(9, 100))));
        assert!(granted(arb.answer(0, A, &acquire(10, 100))));
    }
}
