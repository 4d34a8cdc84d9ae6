//! The server's one source of time: the wall clock (message times, token expiry) and the
//! monotonic clock (sign-in budgets, rate limits), both read through [`Clock`] so a test can
//! stop them and move them forward instead of sleeping.
//!
//! A [`Clock::manual`] clock stands still until [`Clock::advance`] moves it; wall time and
//! monotonic time move together. Timers that wait inside Tokio (heartbeats, deadlines, the
//! presence window) still run on Tokio's time: they are about the network, which a test cannot
//! pause.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::protocol::Millis;

/// The current time, real or set by a test. Cloning shares the clock.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<Manual>>);

#[derive(Debug)]
struct Manual {
    wall_at_start: Millis,
    instant_at_start: Instant,
    /// How far the test has moved the clock, in microseconds.
    advanced_us: AtomicU64,
}

impl Clock {
    /// The system's clocks.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that starts at the real time and then only moves by [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock(Some(Arc::new(Manual {
            wall_at_start: system_ms(),
            instant_at_start: Instant::now(),
            advanced_us: AtomicU64::new(0),
        })))
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.0 {
            m.advanced_us
                .fetch_add(by.as_micros() as u64, Ordering::AcqRel);
        }
    }

    /// Wall time in ms since the Unix epoch.
    pub fn now_ms(&self) -> Millis {
        match &self.0 {
            None => system_ms(),
            Some(m) => m.wall_at_start + (m.advanced() / 1000) as Millis,
        }
    }

    /// Monotonic time, for measuring waits.
    pub fn instant(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(m) => m.instant_at_start + Duration::from_micros(m.advanced()),
        }
    }
}

impl Manual {
    fn advanced(&self) -> u64 {
        self.advanced_us.load(Ordering::Acquire)
    }
}

fn system_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_both_times_move_together() {
        let clock = Clock::manual();
        let (wall, mono) = (clock.now_ms(), clock.instant());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now_ms(), wall);
        assert_eq!(clock.instant(), mono);
        clock.clone().advance(Duration::from_secs(90));
        assert_eq!(clock.now_ms(), wall + 90_000);
        assert_eq!(clock.instant() - mono, Duration::from_secs(90));
    }

    #[test]
    fn the_system_clock_moves_by_itself() {
        let clock = Clock::system();
        let mono = clock.instant();
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.instant() > mono);
        assert!((clock.now_ms() - system_ms()).abs() < 1000);
    }
}
