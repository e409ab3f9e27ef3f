//! The shared throttle gate. Graph throttles per tenant and application (reference §7), so one
//! 429/503 slows every worker: the worker that was throttled closes the gate until
//! `Retry-After` (or an exponential backoff when the server gave none), and every worker waits
//! at the gate before each request.
//!
//! Invariants: the gate only ever moves later while closed (a shorter Retry-After never
//! shortens a longer one); `consecutive` counts throttling answers since the last request that
//! got through, and drives the backoff when there is no Retry-After. The mutex is a leaf lock
//! and is never held while sleeping. Clones share one gate (the queue's `UploadContext` and
//! the limiter's `LimitedRemote` hold the same one).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::clock::{Clock, Interrupt};

#[derive(Debug, Default)]
struct GateState {
    until: Option<Instant>,
    consecutive: u32,
}

/// The gate every worker passes before a request.
#[derive(Debug, Default, Clone)]
pub struct Throttle {
    state: Arc<Mutex<GateState>>,
}

impl Throttle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a throttling answer; returns how many there have been in a row (≥ 1), for the
    /// caller's backoff when the server sent no Retry-After.
    pub fn note_throttled(&self) -> u32 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.consecutive = s.consecutive.saturating_add(1);
        s.consecutive
    }

    /// A request got through: the next throttling starts its backoff from the beginning.
    pub fn note_success(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .consecutive = 0;
    }

    /// Close the gate for `d` from now (never shortening a later closing).
    pub fn close_for(&self, clock: &dyn Clock, d: Duration) {
        let until = clock.now() + d;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.until.is_none_or(|cur| cur < until) {
            s.until = Some(until);
        }
    }

    /// The instant the gate opens, if it is closed now.
    pub fn closed_until(&self, clock: &dyn Clock) -> Option<Instant> {
        let until = self.state.lock().unwrap_or_else(|e| e.into_inner()).until?;
        (until > clock.now()).then_some(until)
    }

    /// Wall-clock time the gate opens, for `.status`; `None` when open.
    pub fn closed_until_wall(&self, clock: &dyn Clock) -> Option<SystemTime> {
        let now = clock.now();
        let until = self.closed_until(clock)?;
        Some(clock.wall() + until.saturating_duration_since(now))
    }

    /// Wait until the gate is open. Returns `false` if `interrupt` cut the wait short.
    pub fn wait(&self, clock: &dyn Clock, interrupt: &Interrupt) -> bool {
        while let Some(until) = self.closed_until(clock) {
            let d = until.saturating_duration_since(clock.now());
            if !clock.sleep(d, interrupt) {
                return false;
            }
        }
        !interrupt.is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::clock::ManualClock;

    #[test]
    fn gate_waits_and_only_extends() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let gate = Throttle::new();
        let intr = Interrupt::new();
        assert!(gate.wait(&clock, &intr));
        assert!(clock.sleeps().is_empty());
        assert_eq!(gate.closed_until_wall(&clock), None);

        gate.close_for(&clock, Duration::from_secs(41));
        gate.close_for(&clock, Duration::from_secs(5)); // shorter: ignored
        assert_eq!(
            gate.closed_until_wall(&clock),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(41))
        );
        assert!(gate.wait(&clock, &intr));
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(41)]);
        assert_eq!(gate.closed_until(&clock), None);
    }

    #[test]
    fn interrupted_wait_returns_false() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let gate = Throttle::new();
        let intr = Interrupt::new();
        gate.close_for(&clock, Duration::from_secs(300));
        intr.trigger();
        assert!(!gate.wait(&clock, &intr));
        assert!(clock.sleeps().is_empty());
    }

    #[test]
    fn consecutive_count_resets_on_success() {
        let gate = Throttle::new();
        assert_eq!(gate.note_throttled(), 1);
        assert_eq!(gate.note_throttled(), 2);
        gate.note_success();
        assert_eq!(gate.note_throttled(), 1);
    }
}
