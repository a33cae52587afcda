//! Injectable wall clock, so tests can move time instead of sleeping through it.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub fn system() -> Clock {
    Arc::new(Timestamp::now)
}

/// A clock that stands still until moved; the returned handle moves it.
pub fn manual(start: Timestamp) -> (Clock, ManualClock) {
    let now = Arc::new(Mutex::new(start));
    let read = now.clone();
    (Arc::new(move || *read.lock().unwrap()), ManualClock(now))
}

#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().unwrap();
        *now = now.checked_add(by).expect("clock in range");
    }
}
