//! The timer table: every deadline a replica waits for, by kind, in one place.
//!
//! Each deadline is kept by the part of the replica it belongs to (the outbox's flush
//! and heartbeat, the sync answer, the peers' expiry and sync checks, the lease);
//! [`Replica::timers`] reads them all into a [`Timers`] table, and
//! [`Replica::poll_timeout`] asks that table for the earliest.

use super::Replica;
use crate::bundle::{Bundle, Request};

/// What a replica waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// The next heartbeat is due.
    Heartbeat,
    /// The coalesced delta goes out (and the store is written).
    Flush,
    /// A full state answers a sync request.
    SyncAnswer,
    /// The quietest peer is taken to have left.
    PeerExpiry,
    /// A peer's missing deltas or disagreeing digest call for a sync request.
    SyncCheck,
    /// The lease needs attention: a renewal, the renew deadline, the authority's grant
    /// running out, or a follower's next chance to claim.
    Lease,
}

impl Timer {
    /// Every kind of timer, in table order.
    const ALL: [Timer; 6] = [
        Timer::Heartbeat,
        Timer::Flush,
        Timer::SyncAnswer,
        Timer::PeerExpiry,
        Timer::SyncCheck,
        Timer::Lease,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines (local monotonic ms) by [`Timer`]; a timer without one is not running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Timers {
    at: [Option<u64>; Timer::ALL.len()],
}

impl Timers {
    /// Sets (or, with `None`, stops) `timer`.
    pub(super) fn set(&mut self, timer: Timer, at: Option<u64>) {
        self.at[timer.index()] = at;
    }

    /// When `timer` fires, if it runs.
    pub(super) fn get(&self, timer: Timer) -> Option<u64> {
        self.at[timer.index()]
    }

    /// The earliest deadline and its timer; the first in table order on a tie.
    pub(super) fn next_timer(&self) -> Option<(Timer, u64)> {
        Timer::ALL
            .into_iter()
            .filter_map(|timer| self.get(timer).map(|at| (timer, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<u64> {
        self.next_timer().map(|(_, at)| at)
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Every deadline, read from the part of the replica that keeps it: the one place
    /// [`Replica::poll_timeout`] asks.
    pub(super) fn timers(&self) -> Timers {
        let mut timers = Timers::default();
        timers.set(Timer::Heartbeat, Some(self.outbox.heartbeat_at()));
        timers.set(Timer::Flush, self.outbox.flush_at());
        timers.set(Timer::SyncAnswer, self.answers.due());
        timers.set(
            Timer::PeerExpiry,
            self.peers.next_expiry(self.config.peer_timeout_ms),
        );
        timers.set(
            Timer::SyncCheck,
            self.peers.next_sync_check(self.config.sync_retry_ms),
        );
        timers.set(Timer::Lease, self.lease_deadline());
        timers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_running_timer_is_next() {
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None, "nothing runs");
        timers.set(Timer::Heartbeat, Some(500));
        timers.set(Timer::Lease, Some(120));
        timers.set(Timer::Flush, Some(300));
        assert_eq!(timers.next_timer(), Some((Timer::Lease, 120)));
        timers.set(Timer::Lease, None);
        assert_eq!(timers.next_timer(), Some((Timer::Flush, 300)));
        assert_eq!(timers.get(Timer::SyncAnswer), None);
    }

    #[test]
    fn a_tie_goes_to_the_first_in_table_order() {
        let mut timers = Timers::default();
        timers.set(Timer::SyncCheck, Some(7));
        timers.set(Timer::Flush, Some(7));
        assert_eq!(timers.next_timer(), Some((Timer::Flush, 7)));
    }
}
