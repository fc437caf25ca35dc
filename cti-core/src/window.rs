//! Time windows of the rankings and the clock that drives them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch: the store's unit of time.
pub type Micros = i64;

const SECOND: Micros = 1_000_000;
const HOUR: Micros = 3600 * SECOND;
const DAY: Micros = 24 * HOUR;

/// A ranking window. A claim made at `t` counts in a window of length `L` at
/// time `now` while `now - t < L`: it leaves exactly `L` after it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Hour = 0,
    Day = 1,
    Week = 2,
    Month = 3,
    Year = 4,
    All = 5,
}

impl Window {
    pub const EVERY: [Window; 6] = [
        Window::Hour,
        Window::Day,
        Window::Week,
        Window::Month,
        Window::Year,
        Window::All,
    ];

    /// The windows that expire claims (all but `All`).
    pub const SLIDING: [Window; 5] = [
        Window::Hour,
        Window::Day,
        Window::Week,
        Window::Month,
        Window::Year,
    ];

    pub fn length(self) -> Option<Micros> {
        match self {
            Window::Hour => Some(HOUR),
            Window::Day => Some(DAY),
            Window::Week => Some(7 * DAY),
            Window::Month => Some(30 * DAY),
            Window::Year => Some(365 * DAY),
            Window::All => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
            Window::Year => "year",
            Window::All => "all",
        }
    }

    pub fn parse(name: &str) -> Option<Window> {
        Window::EVERY.into_iter().find(|w| w.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Window> {
        Window::EVERY.get(i).copied()
    }
}

/// Where the store reads the time. Production uses [`SystemClock`]; tests
/// drive windows across their edges with [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Micros;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        since.as_micros() as Micros
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Micros) -> Self {
        ManualClock(AtomicI64::new(start))
    }
    pub fn set(&self, t: Micros) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Micros) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> Micros {
        (**self).now()
    }
}

/// RFC 3339 UTC text for a store time, to the microsecond.
pub fn rfc3339(t: Micros) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(t.max(0) as u64);
    humantime::format_rfc3339_micros(at).to_string()
}

/// `[seconds, nanoseconds]`, as the ipv4.games compatibility endpoints give time.
pub fn sec_nsec(t: Micros) -> (i64, i64) {
    (t.div_euclid(SECOND), t.rem_euclid(SECOND) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Window::EVERY {
            assert_eq!(Window::parse(w.name()), Some(w));
            assert_eq!(Window::from_index(w.index()), Some(w));
        }
        assert_eq!(Window::parse("fortnight"), None);
        assert_eq!(Window::Month.length(), Some(30 * DAY));
        assert_eq!(Window::Year.length(), Some(365 * DAY));
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(sec_nsec(1_500_000), (1, 500_000_000));
    }
}
