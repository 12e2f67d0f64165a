//! Latest-value cells for live views: a collector thread publishes a copy
//! of what it has accumulated every [`PERIOD`], and readers take the latest
//! copy without stopping or slowing the collector.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often collectors publish.
pub const PERIOD: Duration = Duration::from_millis(500);

/// The cell; clones share it.
#[derive(Debug)]
pub struct Published<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Published<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T: Clone> Published<T> {
    /// Replaces the value.
    pub fn publish(&self, value: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    /// A copy of the latest value, if any was published.
    pub fn latest(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A clock that says when the next publication is due.
#[derive(Debug)]
pub struct Every {
    next: Instant,
    period: Duration,
}

impl Every {
    /// Due first after `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            next: Instant::now() + period,
            period,
        }
    }

    /// Whether a period has passed since it was last due.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.period;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_value_and_period() {
        let p: Published<u32> = Published::default();
        assert_eq!(p.latest(), None);
        p.clone().publish(3);
        assert_eq!(p.latest(), Some(3));
        let mut e = Every::new(Duration::from_millis(20));
        assert!(!e.due());
        std::thread::sleep(Duration::from_millis(25));
        assert!(e.due());
        assert!(!e.due());
    }
}
