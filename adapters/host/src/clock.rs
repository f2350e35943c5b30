//! The drivers' clock: the core's [`Instant`] timeline, anchored once at the wall clock and
//! advanced monotonically.
//!
//! The core reads its timeline as microseconds since the Unix epoch (it writes header dates from
//! it) and only ever adds durations to it and compares (deadlines). [`Clock`] therefore reads
//! [`SystemTime::now`] once, when it is created, and from then on adds the time elapsed on a
//! [`std::time::Instant`]: dates are right, and deadlines never jump when the system clock is
//! adjusted.
//!
//! ```
//! use jupyter_handshake_host::Clock;
//! use std::time::Duration;
//!
//! let clock = Clock::new();
//! let deadline = clock.now() + Duration::from_secs(10);
//! assert!(clock.until(deadline) <= Duration::from_secs(10));
//! assert_eq!(clock.until(clock.now()), Duration::ZERO);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jupyter_handshake::Instant;

/// The core's timeline for one driver: Unix-epoch microseconds, advanced monotonically.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    started: std::time::Instant,
}

impl Clock {
    /// A clock whose [`now`](Self::now) starts at the current wall-clock time.
    ///
    /// A wall clock set before 1970 reads as the epoch itself; only header dates would suffer.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            origin: Instant::from_micros(0) + since_epoch,
            started: std::time::Instant::now(),
        }
    }

    /// The current instant: the wall-clock time at [`Clock::new`] plus the monotonic time elapsed
    /// since.
    pub fn now(&self) -> Instant {
        self.origin + self.started.elapsed()
    }

    /// How long until `deadline`; zero if it has passed.
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(self.now())
    }

    /// How long since `earlier` (an instant of this clock); zero if it is in the future.
    pub fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_wall_clock_and_never_goes_back() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let clock = Clock::new();
        let a = clock.now();
        // Within a minute of the wall clock (no timing assertion beyond "same era").
        assert!(a.as_micros().abs_diff(wall) < 60_000_000);
        let b = clock.now();
        assert!(b >= a);
        assert!(a.to_iso8601().as_str().ends_with('Z'));
    }

    #[test]
    fn until_and_since_saturate() {
        let clock = Clock::new();
        let now = clock.now();
        let past = Instant::from_micros(now.as_micros() - 5_000_000);
        assert_eq!(clock.until(past), Duration::ZERO);
        assert!(clock.since(past) >= Duration::from_secs(5));
        assert_eq!(clock.since(now + Duration::from_secs(60)), Duration::ZERO);
        assert!(clock.until(now + Duration::from_secs(60)) <= Duration::from_secs(60));
        assert_eq!(clock.until(Instant::from_micros(0)), Duration::ZERO);
    }
}
