//! The browser's clocks.

use std::cell::Cell;

use replisync::{Clock, Now};
use web_sys::{Performance, Window};

/// The clocks of one page: `Date.now()` for wall time and `performance.now()` (the
/// page's own monotonic clock, counted from when it was created) for monotonic time.
///
/// ```no_run
/// use replisync::Clock;
/// use replisync_web::BrowserClock;
///
/// let clock = BrowserClock::new(&web_sys::window().unwrap());
/// let (a, b) = (clock.now(), clock.now());
/// assert!(b.mono_ms >= a.mono_ms);
/// ```
#[derive(Debug)]
pub struct BrowserClock {
    performance: Option<Performance>,
    last_mono: Cell<u64>,
}

impl BrowserClock {
    /// The clocks of `window` (without `performance`, monotonic time is wall time held
    /// from going back).
    pub fn new(window: &Window) -> Self {
        BrowserClock {
            performance: window.performance(),
            last_mono: Cell::new(0),
        }
    }
}

impl Clock for BrowserClock {
    fn now(&self) -> Now {
        let wall = js_sys::Date::now();
        let mono = match &self.performance {
            Some(p) => p.now(),
            None => wall,
        };
        let mono = (mono.max(0.0) as u64).max(self.last_mono.get());
        self.last_mono.set(mono);
        Now::new(wall.max(0.0) as u64, mono)
    }
}
