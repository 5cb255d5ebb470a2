//! The replica's side of the lease authority conversation: the requests to send, the
//! asks still remembered, and the grant held.

use std::collections::VecDeque;

use crate::authority::AuthorityRequest;

/// How many recent asks are remembered to time their answers; an answer to an older
/// one counts as unasked.
const ASKS_KEPT: usize = 16;

/// One request sent, remembered to time its answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask {
    pub(super) term: u64,
    pub(super) renew: bool,
    /// When it was asked (local monotonic ms).
    pub(super) at_ms: u64,
}

/// The conversation with the authority.
#[derive(Debug, Default)]
pub(super) struct AuthorityLink {
    next_ask: u64,
    asks: VecDeque<(u64, Ask)>,
    outbox: VecDeque<AuthorityRequest>,
    /// The grant held: its term, and until when (local monotonic ms, a margin before
    /// the authority may grant it to anyone else; `u64::MAX` until lost).
    grant: Option<(u64, u64)>,
    /// The highest term this replica gave up or was told it lost: a grant of it or of
    /// an older term, arriving late or duplicated, is stale and never led.
    spent: u64,
    /// The highest term asked for: a grant of an older term, arriving late or
    /// replayed, is one this replica has moved past.
    asked_term: u64,
    /// The first ask that may speak against the grant held: answers to asks before the
    /// grant began (a delayed refusal of an earlier ask) are about an earlier state of
    /// the authority and do not depose the holder.
    live_from_ask: u64,
}

impl AuthorityLink {
    /// Asks for `term`.
    pub(super) fn acquire(&mut self, term: u64, duration_ms: u64, now_ms: u64) {
        self.asked_term = self.asked_term.max(term);
        let ask = self.remember(term, false, now_ms);
        self.outbox.push_back(AuthorityRequest::Acquire {
            ask,
            term,
            duration_ms,
        });
    }

    /// Asks to extend the timed grant of `term`; a grant held until lost needs none.
    pub(super) fn renew(&mut self, term: u64, duration_ms: u64, now_ms: u64) {
        if self.until(term) == Some(u64::MAX) {
            return;
        }
        let ask = self.remember(term, true, now_ms);
        self.outbox.push_back(AuthorityRequest::Renew {
            ask,
            term,
            duration_ms,
        });
    }

    /// Gives up the grant of `term` (if it is the one held, forgets it); the term is
    /// spent for this replica.
    pub(super) fn release(&mut self, term: u64) {
        if self.grant.is_some_and(|(t, _)| t == term) {
            self.grant = None;
        }
        self.spend(term);
        self.outbox.push_back(AuthorityRequest::Release { term });
    }

    /// Hands back a grant of `term` this replica cannot lead (one above
    /// [`MAX_TERM`](crate::stamp::MAX_TERM)) without counting it as spent: it says nothing of
    /// the terms this replica may still be granted.
    pub(super) fn hand_back(&mut self, term: u64) {
        self.outbox.push_back(AuthorityRequest::Release { term });
    }

    /// `term` can never be led here again: it was given up, lost, or cannot be written.
    pub(super) fn spend(&mut self, term: u64) {
        self.spent = self.spent.max(term);
    }

    /// Whether a grant of `term` is stale: a term this replica gave up or lost, or one
    /// older than a term it has asked for since.
    pub(super) fn is_stale(&self, term: u64) -> bool {
        term <= self.spent || term < self.asked_term
    }

    /// Whether an answer to `ask` may speak against the grant held: it answers an ask
    /// made since the grant began (an answer to no ask always may).
    pub(super) fn is_current(&self, ask: Option<u64>) -> bool {
        ask.is_none_or(|a| a >= self.live_from_ask)
    }

    /// Gives up whatever grant is held.
    pub(super) fn release_held(&mut self) {
        if let Some((term, _)) = self.grant {
            self.release(term);
        }
    }

    /// Holds `term` until `until_ms`, or longer if a grant already runs longer (each
    /// grant is a lower bound on how long the authority keeps it).
    ///
    /// A grant of a new term (not the one held) begins here: answers to asks made
    /// before `ask`, the one it answers (or every ask so far, for an unasked grant),
    /// no longer speak against it.
    pub(super) fn hold(&mut self, term: u64, until_ms: u64, ask: Option<u64>) {
        let until = match self.grant {
            Some((t, u)) if t == term => u.max(until_ms),
            _ => {
                self.live_from_ask = ask.map_or(self.next_ask, |a| a.saturating_add(1));
                until_ms
            }
        };
        self.grant = Some((term, until));
    }

    /// Forgets the grant of `term`, which the authority says is gone: the term is
    /// spent.
    pub(super) fn lost(&mut self, term: u64) {
        if self.grant.is_some_and(|(t, _)| t == term) {
            self.grant = None;
        }
        self.spend(term);
    }

    /// Until when `term` is held (local monotonic ms), if it is.
    pub(super) fn until(&self, term: u64) -> Option<u64> {
        self.grant.filter(|(t, _)| *t == term).map(|(_, u)| u)
    }

    /// After a sleep: the asks made before it are forgotten, since the monotonic clock
    /// that would time their answers may have stopped while the authority's ran on.
    pub(super) fn forget_asks(&mut self) {
        self.asks.clear();
    }

    /// The request `ask`, if it is remembered.
    pub(super) fn asked(&self, ask: u64) -> Option<Ask> {
        self.asks.iter().find(|(a, _)| *a == ask).map(|(_, x)| *x)
    }

    /// The next request to send.
    pub(super) fn poll(&mut self) -> Option<AuthorityRequest> {
        self.outbox.pop_front()
    }

    fn remember(&mut self, term: u64, renew: bool, at_ms: u64) -> u64 {
        let ask = self.next_ask;
        self.next_ask = self.next_ask.wrapping_add(1);
        if self.asks.len() >= ASKS_KEPT {
            self.asks.pop_front();
        }
        self.asks.push_back((ask, Ask { term, renew, at_ms }));
        ask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_numbered_remembered_and_forgotten_when_old() {
        let mut link = AuthorityLink::default();
        link.acquire(3, 100, 10);
        assert_eq!(
            link.poll(),
            Some(AuthorityRequest::Acquire {
                ask: 0,
                term: 3,
                duration_ms: 100
            })
        );
        assert!(link
            .asked(0)
            .is_some_and(|a| a.term == 3 && !a.renew && a.at_ms == 10));
        for i in 0..ASKS_KEPT as u64 {
            link.renew(3, 100, 20 + i);
        }
        assert!(link.asked(0).is_none(), "the oldest is forgotten");
        assert!(link.asked(ASKS_KEPT as u64).is_some_and(|a| a.renew));
    }

    #[test]
    fn grants_only_lengthen_and_untimed_grants_need_no_renewal() {
        let mut link = AuthorityLink::default();
        link.hold(2, 500, Some(0));
        link.hold(2, 400, Some(1));
        assert_eq!(
            link.until(2),
            Some(500),
            "an earlier grant's end never shortens it"
        );
        assert_eq!(link.until(1), None);
        link.lost(1);
        assert_eq!(link.until(2), Some(500));
        link.hold(3, u64::MAX, None);
        link.renew(3, 100, 0);
        assert_eq!(link.poll(), None, "held until lost: nothing to renew");
        link.release_held();
        assert_eq!(link.poll(), Some(AuthorityRequest::Release { term: 3 }));
        assert_eq!(link.until(3), None);
    }
}
