//! The hybrid logical clock that issues `updated_at`: [`Hlc`] and [`ClockError`] (both
//! also at the crate root) and the default drift bound, [`DEFAULT_MAX_DRIFT_MS`].

use core::fmt;

use crate::{SourceId, Writer};

/// The default bound on how far ahead of the local wall clock a remote time may be
/// ([`Hlc::default`], [`Config`](crate::Config)'s `max_drift_ms`).
pub const DEFAULT_MAX_DRIFT_MS: u64 = 500;

/// A hybrid logical clock: issues the `updated_at` of this replica's stamps.
///
/// The time it issues is the local wall time, except that it never goes backwards
/// (a wall clock stepped back by NTP does not make later writes look older) and never
/// falls behind a remote time this replica has observed, so a write made after seeing
/// another write carries a time at least as late. A remote time more than `max_drift`
/// ahead of the local wall clock is rejected with [`ClockError::AheadOfLocal`] and does
/// not move the clock: one peer with a wrong clock cannot drag every replica into the
/// future.
///
/// Times are milliseconds since the Unix epoch; two writes within one millisecond may
/// share a time (their versions or sources order them).
///
/// ```
/// use replisync::{ClockError, Hlc};
///
/// let mut hlc = Hlc::new(500);
/// assert_eq!(hlc.now(1_000), 1_000);
/// assert_eq!(hlc.now(900), 1_000, "a wall clock stepped back does not move time back");
///
/// hlc.observe(1_400, 1_000).unwrap(); // 400 ms ahead: within the drift bound
/// assert_eq!(hlc.now(1_001), 1_400);
///
/// assert!(matches!(hlc.observe(9_999, 1_001), Err(ClockError::AheadOfLocal { .. })));
/// assert_eq!(hlc.now(1_002), 1_400, "a rejected time does not move the clock");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hlc {
    last_ms: u64,
    max_drift_ms: u64,
}

impl Default for Hlc {
    fn default() -> Self {
        Hlc::new(DEFAULT_MAX_DRIFT_MS)
    }
}

impl Hlc {
    /// A clock that rejects remote times more than `max_drift_ms` ahead of local wall time.
    pub const fn new(max_drift_ms: u64) -> Self {
        Hlc {
            last_ms: 0,
            max_drift_ms,
        }
    }

    /// The drift bound, in milliseconds.
    pub const fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// The latest time this clock has issued or observed.
    pub const fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// Issues a time for an event happening at local wall time `wall_ms`.
    pub fn now(&mut self, wall_ms: u64) -> u64 {
        self.last_ms = self.last_ms.max(wall_ms);
        self.last_ms
    }

    /// Takes in a time seen on a remote message or stamp, at local wall time `wall_ms`.
    ///
    /// # Errors
    ///
    /// [`ClockError::AheadOfLocal`] when `remote_ms` is more than the drift bound ahead of
    /// `wall_ms`; the clock is left as it was.
    pub fn observe(&mut self, remote_ms: u64, wall_ms: u64) -> Result<(), ClockError> {
        if remote_ms > wall_ms.saturating_add(self.max_drift_ms) {
            return Err(ClockError::AheadOfLocal {
                remote_ms,
                local_ms: wall_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        self.last_ms = self.last_ms.max(remote_ms);
        Ok(())
    }

    /// Moves the clock up to `ms` without a drift check: for times read back from this
    /// replica's own persisted state.
    pub fn restore(&mut self, ms: u64) {
        self.last_ms = self.last_ms.max(ms);
    }

    /// A [`Writer`] that mints stamps for `source` at local wall time `wall_ms`.
    pub fn writer(&mut self, source: SourceId, wall_ms: u64) -> Writer<'_> {
        Writer::new(self, source, wall_ms)
    }
}

/// A remote time the [`Hlc`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockError {
    /// A remote time was further ahead of the local wall clock than the drift bound
    /// allows. Either the peer's clock or this machine's is wrong; check NTP on both, or
    /// raise the bound if the peers' clocks are known to disagree by that much.
    AheadOfLocal {
        /// The remote time, ms since the epoch.
        remote_ms: u64,
        /// The local wall time it was compared with.
        local_ms: u64,
        /// The bound it exceeded.
        max_drift_ms: u64,
    },
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::AheadOfLocal {
                remote_ms,
                local_ms,
                max_drift_ms,
            } => write!(
                f,
                "remote time {remote_ms} ms is {} ms ahead of the local clock ({local_ms} ms), \
                 more than the allowed drift of {max_drift_ms} ms; check both machines' clocks",
                remote_ms - local_ms
            ),
        }
    }
}

impl std::error::Error for ClockError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards_when_the_wall_clock_does() {
        let mut hlc = Hlc::default();
        let mut last = 0;
        for wall in [10, 20, 5, 5, 30, 1, 31] {
            let t = hlc.now(wall);
            assert!(t >= last, "time went back from {last} to {t}");
            assert!(t >= wall);
            last = t;
        }
        assert_eq!(last, 31);
    }

    #[test]
    fn never_behind_an_observed_time() {
        let mut hlc = Hlc::default();
        hlc.observe(1_450, 1_000).unwrap();
        assert_eq!(hlc.now(1_000), 1_450);
        assert_eq!(hlc.now(2_000), 2_000);
    }

    #[test]
    fn drift_bound_is_inclusive_and_configurable() {
        let mut hlc = Hlc::new(100);
        assert!(hlc.observe(1_100, 1_000).is_ok());
        let err = hlc.observe(1_101, 1_000).unwrap_err();
        assert_eq!(
            err,
            ClockError::AheadOfLocal {
                remote_ms: 1_101,
                local_ms: 1_000,
                max_drift_ms: 100
            }
        );
        assert!(err.to_string().contains("101 ms ahead"));
        assert_eq!(hlc.last_ms(), 1_100);
    }

    #[test]
    fn skewed_peers_converge_on_the_later_time() {
        // Replica b's wall clock runs 300 ms behind a's.
        let (mut a, mut b) = (Hlc::default(), Hlc::default());
        let ta = a.now(10_300);
        b.observe(ta, 10_000).unwrap();
        let tb = b.now(10_001);
        assert!(tb >= ta, "b's write after seeing a's must not look older");
    }

    #[test]
    fn times_far_behind_are_accepted() {
        let mut hlc = Hlc::default();
        hlc.now(50_000);
        assert!(hlc.observe(1, 50_000).is_ok());
        assert_eq!(hlc.last_ms(), 50_000);
    }
}
