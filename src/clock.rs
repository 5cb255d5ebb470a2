//! Time sources: wall time for stamps, monotonic time for durations.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// One reading of a [`Clock`]: the time every sans-IO call takes as `now`.
///
/// `wall_ms` (milliseconds since the Unix epoch) feeds the [`Hlc`](crate::Hlc) and so
/// the `updated_at` of stamps; it may jump. `mono_ms` (milliseconds since an arbitrary
/// start, never going back) measures every duration: lease expiry, renew deadlines,
/// flush intervals, peer timeouts. The two are never compared with each other, and a
/// replica never compares its monotonic time with another machine's.
///
/// ```
/// use replisync::Now;
///
/// let now = Now::new(1_700_000_000_000, 42);
/// assert_eq!(now.after(8).mono_ms, 50);
/// assert_eq!(now.after(8).wall_ms, 1_700_000_000_008);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash, Serialize, Deserialize)]
pub struct Now {
    /// Milliseconds since the Unix epoch, as the local wall clock says.
    pub wall_ms: u64,
    /// Milliseconds on the local monotonic clock.
    pub mono_ms: u64,
}

impl Now {
    /// A reading from its two parts.
    pub const fn new(wall_ms: u64, mono_ms: u64) -> Self {
        Now { wall_ms, mono_ms }
    }

    /// The reading `ms` milliseconds later on both clocks.
    pub const fn after(self, ms: u64) -> Self {
        Now {
            wall_ms: self.wall_ms.saturating_add(ms),
            mono_ms: self.mono_ms.saturating_add(ms),
        }
    }
}

/// A source of [`Now`] readings. Drivers read it; the sans-IO core never does.
pub trait Clock {
    /// The current wall and monotonic time.
    fn now(&self) -> Now;
}

/// The operating system's clocks: `SystemTime` for wall time, `Instant` for monotonic
/// time (counted from the moment the clock was created). Native targets only; the
/// browser driver reads `Date.now()` and `performance.now()` instead.
///
/// ```
/// use replisync::{Clock, SystemClock};
///
/// let clock = SystemClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b.mono_ms >= a.mono_ms);
/// assert!(a.wall_ms > 1_600_000_000_000);
/// ```
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    start: std::time::Instant,
}

#[cfg(not(target_arch = "wasm32"))]
impl SystemClock {
    /// A clock whose monotonic time starts at zero now.
    pub fn new() -> Self {
        SystemClock {
            start: std::time::Instant::now(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            // A wall clock set before 1970 reads as the epoch; the HLC keeps stamps monotonic.
            .unwrap_or(0);
        Now {
            wall_ms,
            mono_ms: self.start.elapsed().as_millis() as u64,
        }
    }
}

/// A clock that tests move by hand. Clones share one time.
///
/// Its wall clock can be jumped, skewed and made to drift independently of its
/// monotonic clock, and the machine can "sleep" (wall time passes, monotonic time
/// stops), as laptops do.
///
/// ```
/// use replisync::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000_000, 0);
/// clock.advance(10);
/// assert_eq!(clock.now().mono_ms, 10);
/// assert_eq!(clock.now().wall_ms, 1_000_010);
///
/// clock.jump_wall(-5_000); // an NTP correction backwards
/// assert_eq!(clock.now().wall_ms, 995_010);
/// assert_eq!(clock.now().mono_ms, 10);
///
/// clock.sleep(60_000); // suspended: only wall time moves
/// assert_eq!(clock.now().mono_ms, 10);
/// assert_eq!(clock.now().wall_ms, 1_055_010);
///
/// clock.set_drift_ppm(100_000); // wall runs 10% fast
/// clock.advance(1_000);
/// assert_eq!(clock.now().wall_ms, 1_056_110);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualInner>>,
}

#[derive(Debug, Default)]
struct ManualInner {
    wall_ms: i128,
    mono_ms: u64,
    drift_ppm: i64,
    /// Sub-millisecond remainder of drift, in millionths of a millisecond.
    drift_rem: i128,
}

impl ManualClock {
    /// A clock reading `wall_ms` and `mono_ms`, with no drift.
    pub fn new(wall_ms: u64, mono_ms: u64) -> Self {
        ManualClock {
            inner: Arc::new(Mutex::new(ManualInner {
                wall_ms: wall_ms as i128,
                mono_ms,
                drift_ppm: 0,
                drift_rem: 0,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ManualInner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Lets `ms` milliseconds pass: monotonic time by exactly `ms`, wall time by `ms`
    /// corrected for the drift.
    pub fn advance(&self, ms: u64) {
        self.with(|c| {
            c.mono_ms = c.mono_ms.saturating_add(ms);
            let scaled = ms as i128 * (1_000_000 + c.drift_ppm as i128) + c.drift_rem;
            c.wall_ms += scaled.div_euclid(1_000_000);
            c.drift_rem = scaled.rem_euclid(1_000_000);
        })
    }

    /// Moves the wall clock by `delta_ms` (either way) without moving monotonic time.
    pub fn jump_wall(&self, delta_ms: i64) {
        self.with(|c| c.wall_ms += delta_ms as i128)
    }

    /// Makes the wall clock run `ppm` millionths fast (negative: slow) from now on.
    pub fn set_drift_ppm(&self, ppm: i64) {
        self.with(|c| c.drift_ppm = ppm.max(-1_000_000))
    }

    /// Suspends the machine for `ms`: wall time passes, monotonic time stands still.
    pub fn sleep(&self, ms: u64) {
        self.with(|c| c.wall_ms += ms as i128)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        self.with(|c| Now {
            wall_ms: c.wall_ms.clamp(0, u64::MAX as i128) as u64,
            mono_ms: c.mono_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_time() {
        let a = ManualClock::new(0, 0);
        let b = a.clone();
        a.advance(5);
        assert_eq!(b.now(), Now::new(5, 5));
    }

    #[test]
    fn slow_drift_accumulates_fractions() {
        let c = ManualClock::new(0, 0);
        c.set_drift_ppm(-500_000); // half speed
        for _ in 0..10 {
            c.advance(1);
        }
        assert_eq!(c.now(), Now::new(5, 10));
    }

    #[test]
    fn wall_never_reads_below_zero() {
        let c = ManualClock::new(10, 0);
        c.jump_wall(-100);
        assert_eq!(c.now().wall_ms, 0);
    }
}
