//! The core's timeline: Unix-epoch microseconds, read from the wall clock once and advanced
//! monotonically, so header dates are right and deadlines never jump with the system clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jupyter_handshake::Instant;

/// One driver's clock: [`now`](Self::now) for the core's inputs, [`until`](Self::until) for
/// the sleep to its next deadline.
///
/// ```
/// use jupyter_handshake_tokio::Clock;
/// use std::time::Duration;
///
/// let clock = Clock::new();
/// let deadline = clock.now() + Duration::from_secs(10);
/// assert!(clock.until(deadline) <= Duration::from_secs(10));
/// assert_eq!(clock.until(clock.now()), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    started: std::time::Instant,
}

impl Clock {
    /// A clock starting at the current wall-clock time (a clock set before 1970 reads as the
    /// epoch; only header dates would suffer).
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            origin: Instant::from_micros(0) + since_epoch,
            started: std::time::Instant::now(),
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        self.origin + self.started.elapsed()
    }

    /// How long until `deadline`, rounded up to the next millisecond (tokio's timer resolution)
    /// so a sleep never ends just before it; zero if it has passed.
    pub fn until(&self, deadline: Instant) -> Duration {
        let left = deadline.saturating_duration_since(self.now());
        let millis = left.as_micros().div_ceil(1000);
        Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
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
    fn until_saturates_and_rounds_up() {
        let clock = Clock::new();
        let now = clock.now();
        assert_eq!(clock.until(Instant::from_micros(0)), Duration::ZERO);
        let later = clock.until(now + Duration::from_micros(60_000_001));
        assert!(later <= Duration::from_millis(60_001));
        assert!(clock.now() >= now);
    }
}
