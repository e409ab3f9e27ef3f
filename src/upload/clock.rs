//! The clock seam of the upload queue: what time it is and how to wait, so that backoff,
//! throttling and rate smoothing are tested without sleeping.
//!
//! Every wait goes through [`Clock::sleep`] with an [`Interrupt`]: a worker's interrupt is
//! triggered when its job is cancelled or the queue shuts down, so no sleep (a 60 s backoff, a
//! 315 s Retry-After) ever delays a cancel or a shutdown. [`SystemClock`] waits on the
//! interrupt's condition variable; [`ManualClock`] never blocks: a sleep advances its time at
//! once and is recorded, which makes backoff sequences assertable. Invariant: `now()` never goes
//! backwards, and `wall()` moves by exactly as much as `now()` on a `ManualClock`.
//! The interrupt's mutex is a leaf lock: nothing else is locked while it is held.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Time and waiting, as seen by the queue.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for deadlines and rates.
    fn now(&self) -> Instant;
    /// Wall-clock time, for what `.status` shows.
    fn wall(&self) -> SystemTime;
    /// Wait for `d`, or until `interrupt` is triggered. Returns `true` when the whole duration
    /// passed, `false` when the wait was interrupted (or the interrupt was already set).
    fn sleep(&self, d: Duration, interrupt: &Interrupt) -> bool;
}

/// A one-shot wake-up signal (cancel or shutdown) that sleeps observe. Cheap to clone; all
/// clones share the state.
#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the signal and wake every sleeper. Idempotent.
    pub fn trigger(&self) {
        let (flag, cond) = &*self.inner;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cond.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block for up to `d` in real time; `true` when the time passed without a trigger.
    fn wait_real(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let (flag, cond) = &*self.inner;
        let mut set = flag.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *set {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            set = cond
                .wait_timeout(set, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interrupt({})", self.is_set())
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&self, d: Duration, interrupt: &Interrupt) -> bool {
        interrupt.wait_real(d)
    }
}

/// A test clock: time moves only by [`ManualClock::advance`] or by sleeping, and a sleep
/// returns at once after advancing the time. Every sleep is recorded.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    wall_start: SystemTime,
    state: Mutex<ManualState>,
}

#[derive(Debug, Default)]
struct ManualState {
    elapsed: Duration,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// A clock whose wall time starts at `wall_start`.
    pub fn new(wall_start: SystemTime) -> Self {
        ManualClock {
            start: Instant::now(),
            wall_start,
            state: Mutex::new(ManualState::default()),
        }
    }

    pub fn advance(&self, d: Duration) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).elapsed += d;
    }

    /// Every completed sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sleeps
            .clone()
    }

    fn elapsed(&self) -> Duration {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).elapsed
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }
    fn wall(&self) -> SystemTime {
        self.wall_start + self.elapsed()
    }
    fn sleep(&self, d: Duration, interrupt: &Interrupt) -> bool {
        if interrupt.is_set() {
            return false;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.elapsed += d;
        state.sleeps.push(d);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_sleep_advances_and_records() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::new(wall);
        let t0 = clock.now();
        let intr = Interrupt::new();
        assert!(clock.sleep(Duration::from_secs(5), &intr));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now() - t0, Duration::from_secs(6));
        assert_eq!(clock.wall(), wall + Duration::from_secs(6));
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(5)]);
        intr.trigger();
        assert!(!clock.sleep(Duration::from_secs(5), &intr));
        assert_eq!(clock.sleeps().len(), 1);
    }

    #[test]
    fn system_sleep_wakes_on_interrupt() {
        let intr = Interrupt::new();
        let other = intr.clone();
        let t0 = Instant::now();
        let h = std::thread::spawn(move || SystemClock.sleep(Duration::from_secs(30), &other));
        std::thread::sleep(Duration::from_millis(20));
        intr.trigger();
        assert!(!h.join().unwrap());
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(SystemClock.sleep(Duration::from_millis(1), &Interrupt::new()));
    }
}
