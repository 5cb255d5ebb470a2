//! Sleep detection: noticing that the machine slept (or the page was frozen) between
//! two inputs, and what a replica does on waking.

use super::Replica;
use crate::bundle::{Bundle, Request};
use crate::wire::Body;
use crate::{Event, Now};

/// Watches the time between inputs for a sleep: the wall clock running ahead of the
/// monotonic one (which stops while the machine sleeps, on some platforms), or an input
/// arriving well after the deadline the replica asked to be woken at.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SleepWatch {
    /// The time of the last input.
    last_now: Option<Now>,
    /// The deadline last returned by `poll_timeout` (local monotonic ms).
    expected_by: Option<u64>,
}

impl SleepWatch {
    /// Observes the time of an input: the gap, in ms, when it shows a sleep longer
    /// than `tolerance_ms` since the last input.
    pub(super) fn observe(&mut self, now: Now, tolerance_ms: u64) -> Option<u64> {
        let gap = self.last_now.map(|last| {
            let mono_gap = now.mono_ms.saturating_sub(last.mono_ms);
            let wall_gap = now.wall_ms.saturating_sub(last.wall_ms);
            let wall_ahead = wall_gap.saturating_sub(mono_gap);
            let late = self
                .expected_by
                .map_or(0, |due| now.mono_ms.saturating_sub(due));
            wall_ahead.max(late)
        });
        self.last_now = Some(now);
        gap.filter(|gap| *gap > tolerance_ms)
    }

    /// The replica expects its next input by `deadline` (its next timeout).
    pub(super) fn expect_by(&mut self, deadline: Option<u64>) {
        self.expected_by = deadline;
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// After a sleep of `gap_ms` (0 when the environment said so, rather than the
    /// clocks): report it, re-validate the lease, ask for a sync, and heartbeat now.
    pub(super) fn woke(&mut self, gap_ms: u64, now: Now) {
        self.stats.sleeps += 1;
        if gap_ms > 0 {
            self.events.push_back(Event::SleepDetected { gap_ms });
        }
        tracing::debug!(source = %self.me, gap_ms, "woke; re-validating");
        self.lease_woke(now);
        self.stats.syncs_requested += 1;
        let to = self.other_leader();
        self.send(Body::SyncRequest { to }, now);
        self.outbox.set_heartbeat_at(now.mono_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: u64 = 1_000;

    #[test]
    fn the_first_input_shows_no_sleep() {
        let mut watch = SleepWatch::default();
        assert_eq!(watch.observe(Now::new(50_000, 0), TOLERANCE), None);
    }

    #[test]
    fn a_wall_clock_running_ahead_of_the_monotonic_one_is_a_sleep() {
        let mut watch = SleepWatch::default();
        watch.observe(Now::new(10_000, 100), TOLERANCE);
        // Both clocks moved 500 ms: no sleep.
        assert_eq!(watch.observe(Now::new(10_500, 600), TOLERANCE), None);
        // The wall clock moved 5 s, the monotonic one 100 ms: it slept ~4.9 s.
        assert_eq!(watch.observe(Now::new(15_500, 700), TOLERANCE), Some(4_900));
        // Within the tolerance: not a sleep.
        assert_eq!(watch.observe(Now::new(16_600, 800), TOLERANCE), None);
    }

    #[test]
    fn an_input_long_after_the_expected_deadline_is_a_sleep() {
        let mut watch = SleepWatch::default();
        watch.observe(Now::new(10_000, 100), TOLERANCE);
        watch.expect_by(Some(200));
        assert_eq!(
            watch.observe(Now::new(13_000, 3_100), TOLERANCE),
            Some(2_900)
        );
        watch.expect_by(Some(3_200));
        assert_eq!(
            watch.observe(Now::new(13_900, 4_000), TOLERANCE),
            None,
            "800 ms late is within the tolerance"
        );
        watch.expect_by(None);
        assert_eq!(watch.observe(Now::new(60_000, 50_100), TOLERANCE), None);
    }

    #[test]
    fn clocks_going_back_show_no_sleep() {
        let mut watch = SleepWatch::default();
        watch.observe(Now::new(10_000, 5_000), TOLERANCE);
        assert_eq!(watch.observe(Now::new(2_000, 4_000), TOLERANCE), None);
    }
}
