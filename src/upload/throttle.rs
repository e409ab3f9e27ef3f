//! The shared throttle gate. Graph throttles per tenant and application (reference §7), so one
//! 429/503 slows every worker: the worker that was throttled closes the gate until
//! `Retry-After` (or an exponential backoff when the server gave none), and every worker waits
//! at the gate before each request.
//!
//! Invariants: the gate only ever moves later while closed (a shorter Retry-After never
//! shortens a longer one); `consecutive` counts throttling episodes since the last request
//! that got through — answers arriving within [`EPISODE`] of the previous one answer requests
//! that were in flight together and count once — and drives the backoff when there is no
//! Retry-After (sixteen 429s of one burst must not mean a backoff of 2^15 s). The mutex is a
//! leaf lock and is never held while sleeping. Clones share one gate (the queue's
//! `UploadContext`, the mount's `Pacer` and its `LimitedRemote` hold the same one).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::clock::{Clock, Interrupt};

/// Throttling answers this close to the previous one are the same episode (real time: they
/// answer requests that were in flight together).
pub const EPISODE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct GateState {
    until: Option<Instant>,
    consecutive: u32,
    /// When the latest throttling answer was noted.
    last_note: Option<Instant>,
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

    /// Record a throttling answer; returns how many episodes there have been in a row (≥ 1),
    /// for the caller's backoff when the server sent no Retry-After.
    pub fn note_throttled(&self) -> u32 {
        self.note_throttled_at(Instant::now())
    }

    fn note_throttled_at(&self, now: Instant) -> u32 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let same = s
            .last_note
            .is_some_and(|t| now.saturating_duration_since(t) < EPISODE);
        s.last_note = Some(now);
        if !same || s.consecutive == 0 {
            s.consecutive = s.consecutive.saturating_add(1);
        }
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
    fn consecutive_episodes_count_and_reset_on_success() {
        let gate = Throttle::new();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(gate.note_throttled_at(ms(0)), 1);
        // Answers to requests in flight together: one episode.
        assert_eq!(gate.note_throttled_at(ms(20)), 1);
        assert_eq!(gate.note_throttled_at(ms(40)), 1);
        assert_eq!(gate.note_throttled_at(ms(2000)), 2);
        gate.note_success();
        assert_eq!(gate.note_throttled_at(ms(2010)), 1);
    }
}
