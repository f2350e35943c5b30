//! Time as a value: the core never reads a clock.
//!
//! Every input to a machine carries the current [`Instant`]; deadlines come back out as
//! [`Instant`]s. The core uses one timeline for two purposes: deadlines (it only ever adds
//! durations and compares) and the `date` field of the headers it writes (it formats the instant
//! as a UTC date, reading the timeline's origin as the Unix epoch). An adapter therefore reads the
//! wall clock once, then advances it with a monotonic clock, so that deadlines never jump when the
//! system clock is adjusted while dates stay right:
//!
//! ```
//! use jupyter_handshake::Instant;
//! // 2024-01-02T03:04:05.678901Z, as microseconds since the Unix epoch.
//! let start = Instant::from_micros(1_704_164_645_678_901);
//! assert_eq!(start.to_iso8601().as_str(), "2024-01-02T03:04:05.678901Z");
//! let later = start + core::time::Duration::from_millis(1500);
//! assert_eq!(later.saturating_duration_since(start).as_millis(), 1500);
//! ```

use core::fmt;
use core::ops::Add;
use core::time::Duration;

/// A point on the caller's timeline, in microseconds.
///
/// Adapters anchor the timeline at the Unix epoch (wall clock read once) and advance it
/// monotonically; tests use any virtual clock they like. Arithmetic saturates instead of
/// overflowing, so a hostile or careless value can never panic a machine.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The instant `micros` microseconds after the timeline's origin.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the timeline's origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + duration`, saturating at the end of the timeline.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// Formats the instant as a Jupyter header date: ISO 8601, UTC, six fraction digits and a
    /// `Z`, which jupyter_client parses back into a `datetime` (`protocol.md` W13). Years past
    /// 9999 are written as 9999-12-31T23:59:59.999999Z.
    pub fn to_iso8601(self) -> IsoDate {
        const MAX: u64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
        let micros = self.0.min(MAX);
        let secs = micros / 1_000_000;
        let frac = micros % 1_000_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = [0u8; 27];
        let fields: [(u64, usize); 7] = [
            (year, 4),
            (month, 2),
            (day, 2),
            (rem / 3600, 2),
            (rem % 3600 / 60, 2),
            (rem % 60, 2),
            (frac, 6),
        ];
        let separators = [b'-', b'-', b'T', b':', b':', b'.', b'Z'];
        let mut at = 0;
        for ((value, width), sep) in fields.into_iter().zip(separators) {
            write_digits(&mut out[at..at + width], value);
            at += width;
            out[at] = sep;
            at += 1;
        }
        IsoDate(out)
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        self.saturating_add(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({}µs)", self.0)
    }
}

/// A formatted header date (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), kept on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IsoDate([u8; 27]);

impl IsoDate {
    /// The date as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        core::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

impl fmt::Debug for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn write_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// `civil_from_days`, restricted to non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_leap_days_and_the_far_future() {
        assert_eq!(
            Instant::from_micros(0).to_iso8601().as_str(),
            "1970-01-01T00:00:00.000000Z"
        );
        // 2000-02-29T23:59:59.000001Z
        assert_eq!(
            Instant::from_micros(951_868_799_000_001)
                .to_iso8601()
                .as_str(),
            "2000-02-29T23:59:59.000001Z"
        );
        // 2100-03-01 (2100 is not a leap year)
        assert_eq!(
            Instant::from_micros(4_107_542_400_000_000)
                .to_iso8601()
                .as_str(),
            "2100-03-01T00:00:00.000000Z"
        );
        assert_eq!(
            Instant::from_micros(u64::MAX).to_iso8601().as_str(),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn arithmetic_saturates() {
        let end = Instant::from_micros(u64::MAX - 1);
        assert_eq!(
            end + Duration::from_secs(10),
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(end + Duration::MAX, Instant::from_micros(u64::MAX));
        assert_eq!(
            Instant::from_micros(5).saturating_duration_since(Instant::from_micros(9)),
            Duration::ZERO
        );
    }
}
