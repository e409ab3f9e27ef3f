//! The send-rate controller of the mount-wide limiter (`limiter.rs`): when the next request
//! may leave, learnt from the service's answers alone. Pure: it is told the time and what
//! each answer said, and owns no lock, thread or clock, so its convergence is tested against
//! a simulated budget (`pacer/sim.rs`) in virtual time.
//!
//! SharePoint meters every request of an app against a budget whose refill rate it does not
//! tell (field reference entries 5–7): throttled requests count too, `RateLimit-*` headers come
//! late or never, and `Retry-After` may be absent. So the controller works like TCP congestion
//! control on a *send rate* (requests a second), pacing requests evenly rather than bounding
//! how many are in flight:
//! - **Unpaced until the first throttling.** A mount that is never throttled never waits for
//!   a slot; only at first (and after an idle time) it starts with [`SLOW_START_FIRST`]
//!   requests in flight, half a request more per success (×1.5 a round trip: milliseconds
//!   on a fast link), so that the first throttling answers a few requests, not a burst of
//!   every worker's.
//! - **Multiplicative decrease from a measurement.** The first 429/503 of an episode sets the
//!   rate to [`BETA`] × the rate at which requests *got through* since the previous episode
//!   (or since the demand began): between two refusals the service admitted exactly what its
//!   budget refilled, so that count over that time is the best estimate of the budget there
//!   is. The estimate is kept between half the current rate and the current rate (a decrease
//!   never more than halves, never raises). Answers to requests sent before the decrease
//!   belong to the same episode and change nothing (one signal, not sixteen).
//! - **Additive increase, gently.** Every success while pacing holds requests back adds
//!   [`INCREASE`] request/s, i.e. about 1 % of the rate a second at any rate, more the longer
//!   nothing is refused (twice that after [`ACCELERATE`], ...: an underestimate is left in
//!   seconds); idle or demand-limited time adds nothing (an allowance not used is not a
//!   measurement).
//! - **Pauses.** A `Retry-After` closes the shared gate for everybody (the limiter does
//!   that). Without one, the gate closes for the time the refused requests' cost takes to
//!   refill at the new rate, doubled for every further episode without a success in between
//!   (capped at [`PAUSE_CAP`]): that is the app-blocked case, where a storm would be wrong.
//!   After two such episodes in a row only one request is in flight at a time (a probe).
//! - **Headers as a bonus.** `RateLimit-Limit` is the budget per one-minute window,
//!   `-Remaining` what is left of it and `-Reset` the seconds until the window resets. With
//!   the requests this mount sent in the window, `(Limit − Remaining) / sent` is the average
//!   cost of a request (resource units; other users of the app make it look higher, which is
//!   the right direction), so `Limit / 60 / cost` is the rate the budget sustains: the
//!   controller runs at [`HEADER_SHARE`] of it and does not probe above it while the
//!   knowledge lasts ([`CEILING_MEMORY`]); `Remaining / cost / Reset` caps the rate until the
//!   window resets when the window was spent early.
//! - **Blocked.** When nothing but 503 answers came for [`BLOCKED_AFTER`] (and at least
//!   [`BLOCKED_MIN_ANSWERS`] of them), [`RateControl::blocked_since`] says so, for `.status`
//!   (entry 8: an app that keeps exceeding its limits is blocked, every request 503).
//!
//! Invariants: the rate, when set, is at least [`MIN_RATE`]; `next_slot` never moves back;
//! only answers to requests sent after the latest decrease start an episode.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::remote::RateLimitHint;

/// A decrease sets the rate to this share of the measured admitted rate.
pub const BETA: f64 = 0.9;
/// Requests/s added per success while pacing binds: about 1 % a second at any rate.
pub const INCREASE: f64 = 0.01;
/// Without throttling for this long, the increase is twice [`INCREASE`] (three times after
/// twice as long, ...).
const ACCELERATE: Duration = Duration::from_secs(20);
/// The lowest rate: one request every ten seconds.
pub const MIN_RATE: f64 = 0.1;
/// The shortest window an admitted rate is measured over: shorter ones (a throttling right
/// after the previous one, or right after the start) measure nothing; the current rate is
/// taken instead.
const EST_MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest: what the budget admitted recently, not while the mount ran slower long ago.
const EST_MAX_WINDOW: Duration = Duration::from_secs(20);
/// A gap in sending this long starts a new measurement window (the demand stopped).
const IDLE_GAP: Duration = Duration::from_secs(5);
/// Pacing counts as binding for this long after a request had to wait for its slot.
const BINDING: Duration = Duration::from_secs(2);
/// Longest pause after a throttling answer without `Retry-After`.
pub const PAUSE_CAP: Duration = Duration::from_secs(60);
/// Shortest pause after a throttling answer without `Retry-After`.
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// Without throttling for this long (and no header knowledge), pacing stops.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The share of the header-derived sustainable rate used.
pub const HEADER_SHARE: f64 = 0.98;
/// How long the header-derived rate is kept without new headers.
pub const CEILING_MEMORY: Duration = Duration::from_secs(180);
/// Requests of ours in a window before the headers' average cost is trusted.
const MIN_SAMPLE: usize = 10;
/// How long send times are kept (a budget window and a margin).
const SEND_LOG: Duration = Duration::from_secs(65);
/// Nothing but 503s for this long means the app may be blocked (entry 8).
pub const BLOCKED_AFTER: Duration = Duration::from_secs(60);
/// ... and at least this many of them.
pub const BLOCKED_MIN_ANSWERS: u32 = 3;

/// Requests in flight at first (slow start), growing by [`SLOW_START_STEP`] a success.
pub const SLOW_START_FIRST: f64 = 2.0;
/// Each success in slow start allows this many more in flight: ×1.5 a round trip.
const SLOW_START_STEP: f64 = 0.5;
/// Slow start ends here (more than any mount has threads).
const SLOW_START_END: f64 = 64.0;
/// Weight of a new sample in the smoothed response time.
const RTT_WEIGHT: f64 = 0.125;

/// The length of the budget window the `RateLimit-*` headers describe.
const HEADER_WINDOW: f64 = 60.0;

/// What an answer said, as far as pacing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The service took the request (whatever it answered: a 404 was admitted too).
    Admitted,
    /// 429/503 (or another throttling answer), with its `Retry-After` if any.
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer (connection error): says nothing about the budget.
    Unanswered,
}

#[derive(Debug, Clone, Copy)]
struct Ceiling {
    rate: f64,
    seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    since: Instant,
    answers: u32,
}

/// The controller (module documentation).
#[derive(Debug, Default)]
pub struct RateControl {
    /// Requests a second; `None`: unpaced.
    rate: Option<f64>,
    /// The earliest the next request may leave.
    next_slot: Option<Instant>,
    last_send: Option<Instant>,
    /// Start of the current measurement window.
    window_start: Option<Instant>,
    /// Send times of the admitted requests of the last [`SEND_LOG`].
    oks: VecDeque<Instant>,
    /// When the latest decrease happened; answers to earlier sends belong to its episode.
    decreased_at: Option<Instant>,
    /// Episodes since the latest success (sent after a decrease).
    episodes_in_row: u32,
    /// Throttling answers in the current episode.
    episode_refusals: u32,
    /// When a request last had to wait for its slot.
    waited_at: Option<Instant>,
    /// Send times of the last [`SEND_LOG`].
    sends: VecDeque<Instant>,
    /// The sustainable rate the `RateLimit-*` headers gave.
    ceiling: Option<Ceiling>,
    /// A lower rate until the current budget window resets (it was spent early).
    window_cap: Option<(f64, Instant)>,
    /// 503 answers since the latest success.
    failing: Option<Failing>,
    /// Slow start: how many requests may be in flight while nothing is known (`None`: ended,
    /// by the first throttling or by reaching [`SLOW_START_END`]).
    slow_start: Option<f64>,
    /// Smoothed response time of admitted requests (seconds).
    srtt: f64,
}

impl RateControl {
    pub fn new() -> RateControl {
        RateControl {
            slow_start: Some(SLOW_START_FIRST),
            ..RateControl::default()
        }
    }

    /// The rate requests are paced at `now`; `None`: unpaced.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let mut r = self.rate?;
        if let Some(c) = self.ceiling.filter(|c| now < c.seen + CEILING_MEMORY) {
            r = r.min(c.rate);
        }
        if let Some((cap, _)) = self.window_cap.filter(|(_, until)| now < *until) {
            r = r.min(cap);
        }
        Some(r.max(MIN_RATE))
    }

    /// How many requests may be in flight: `Some(1)` while probing after episodes without a
    /// success; the slow-start allowance while unpaced and nothing is known yet; otherwise no
    /// limit of its own.
    pub fn concurrency(&self) -> Option<usize> {
        if self.episodes_in_row >= 2 {
            return Some(1);
        }
        self.slow_start.map(|w| w.floor() as usize)
    }

    /// When the 503-only streak began, once it has lasted [`BLOCKED_AFTER`].
    pub fn blocked_since(&self, now: Instant) -> Option<Instant> {
        self.failing
            .filter(|f| {
                f.answers >= BLOCKED_MIN_ANSWERS
                    && now.saturating_duration_since(f.since) >= BLOCKED_AFTER
            })
            .map(|f| f.since)
    }

    /// Take the slot of a request that may wait up to `horizon` for it: `Ok(at)` (record it
    /// as sent at `at`, which is `now` or later), or `Err(at)`, the instant its slot comes.
    pub fn reserve(&mut self, now: Instant, horizon: Duration) -> Result<Instant, Instant> {
        self.forget_if_stale(now);
        let rate = self.rate(now);
        let slot = match (rate, self.next_slot) {
            (Some(_), Some(s)) if s > now => s,
            _ => now,
        };
        if slot > now {
            self.waited_at = Some(now);
            if slot > now + horizon {
                return Err(slot);
            }
        }
        if self
            .last_send
            .is_none_or(|t| slot.saturating_duration_since(t) >= IDLE_GAP)
        {
            self.window_start = Some(slot);
            if self.rate.is_none() && self.last_send.is_some() {
                // Unpaced after an idle time: the budget may have changed; start slowly.
                self.slow_start = Some(SLOW_START_FIRST);
            }
        }
        self.last_send = Some(slot);
        self.next_slot = rate.map(|r| slot + Duration::from_secs_f64(1.0 / r));
        self.sends.push_back(slot);
        while self
            .sends
            .front()
            .is_some_and(|t| slot.saturating_duration_since(*t) > SEND_LOG)
        {
            self.sends.pop_front();
        }
        Ok(slot)
    }

    /// Stop pacing after a long time without throttling and without header knowledge.
    fn forget_if_stale(&mut self, now: Instant) {
        let stale = self
            .decreased_at
            .is_some_and(|d| now.saturating_duration_since(d) >= FORGET_AFTER);
        let known = self.ceiling.is_some_and(|c| now < c.seen + CEILING_MEMORY);
        if self.rate.is_some() && stale && !known && self.episodes_in_row == 0 {
            self.rate = None;
            self.next_slot = None;
        }
    }

    /// A request sent at `sent_at` was answered `now`. Returns how long the shared gate must
    /// stay closed from now (a `Retry-After`, or a pause), if at all.
    pub fn on_answer(
        &mut self,
        sent_at: Instant,
        now: Instant,
        outcome: Outcome,
        hint: Option<RateLimitHint>,
    ) -> Option<Duration> {
        let after_decrease = self.decreased_at.is_none_or(|d| sent_at >= d);
        let mut close = None;
        match outcome {
            Outcome::Unanswered => {}
            Outcome::Admitted => {
                self.failing = None;
                let rtt = now.saturating_duration_since(sent_at).as_secs_f64();
                self.srtt = if self.srtt == 0.0 {
                    rtt
                } else {
                    self.srtt + RTT_WEIGHT * (rtt - self.srtt)
                };
                if let Some(w) = self.slow_start {
                    let w = w + SLOW_START_STEP;
                    self.slow_start = (w < SLOW_START_END).then_some(w);
                }
                self.oks.push_back(sent_at);
                while self
                    .oks
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > SEND_LOG)
                {
                    self.oks.pop_front();
                }
                if after_decrease {
                    self.episodes_in_row = 0;
                }
                let binding = self
                    .waited_at
                    .is_some_and(|w| now.saturating_duration_since(w) < BINDING);
                if let (Some(r), true) = (self.rate, binding) {
                    let top = self
                        .ceiling
                        .filter(|c| now < c.seen + CEILING_MEMORY)
                        .map_or(f64::INFINITY, |c| c.rate);
                    // Probing speeds up the longer nothing was refused (1 % a second at
                    // first, 2 % after ACCELERATE, ...): an underestimate is left in seconds,
                    // not minutes.
                    let calm = self
                        .decreased_at
                        .map_or(0.0, |d| now.saturating_duration_since(d).as_secs_f64());
                    let step = INCREASE * (1.0 + calm / ACCELERATE.as_secs_f64());
                    self.rate = Some((r + step).min(top.max(r)));
                }
            }
            Outcome::Throttled {
                status,
                retry_after,
            } => {
                if status == 503 {
                    let f = self.failing.get_or_insert(Failing {
                        since: now,
                        answers: 0,
                    });
                    f.answers += 1;
                } else {
                    self.failing = None;
                }
                self.slow_start = None;
                if after_decrease {
                    self.episodes_in_row += 1;
                    self.episode_refusals = 1;
                    if self.episodes_in_row == 1 {
                        self.decrease(sent_at, now);
                    }
                    // The knowledge that led here was wrong or is stale.
                    self.ceiling = None;
                    self.window_cap = None;
                    self.decreased_at = Some(now);
                    self.window_start = Some(now);
                } else {
                    self.episode_refusals += 1;
                }
                close = Some(match retry_after {
                    Some(d) => d,
                    None => self.pause(now),
                });
            }
        }
        if let Some(h) = hint {
            self.learn(now, h, matches!(outcome, Outcome::Admitted));
        }
        close
    }

    /// The first throttling of an episode: rate = BETA × the admitted rate measured since
    /// the previous episode (at most the last [`EST_MAX_WINDOW`] of it), kept within
    /// [current / 2, current]; a window shorter than [`EST_MIN_WINDOW`] measures nothing and
    /// the current rate stands for it.
    fn decrease(&mut self, sent_at: Instant, now: Instant) {
        let current = self.rate(now).unwrap_or_else(|| {
            // Unpaced so far: what was sent in the last second before the refusal.
            let second = sent_at.checked_sub(EST_MIN_WINDOW).unwrap_or(sent_at);
            self.sends
                .iter()
                .filter(|t| **t >= second && **t <= sent_at)
                .count() as f64
        });
        let current = current.max(MIN_RATE);
        let start = self.window_start.unwrap_or(sent_at);
        let from = sent_at
            .checked_sub(EST_MAX_WINDOW)
            .map_or(start, |recent| recent.max(start));
        let window = sent_at.saturating_duration_since(from);
        // Unpaced (the first throttling): what came before the demand began dilutes the
        // measurement, and an underestimate costs minutes at a gentle increase while an
        // overestimate costs one more episode: the rate sent stands for it.
        let admitted = if window < EST_MIN_WINDOW || self.rate.is_none() {
            current
        } else {
            let ok = self
                .oks
                .iter()
                .filter(|t| **t >= from && **t < sent_at)
                .count();
            ok as f64 / window.as_secs_f64()
        };
        let new = BETA * admitted.clamp(current / 2.0, current);
        self.rate = Some(new.max(MIN_RATE));
    }

    /// The gate's pause after a throttling answer without `Retry-After`: the refused
    /// requests' cost refilled at the current rate, doubled per episode in a row, and at
    /// least a response time, so that the answers to requests still in flight (refused too,
    /// and costing too) are all in before anything new leaves.
    fn pause(&self, now: Instant) -> Duration {
        let rate = self.rate(now).unwrap_or(1.0);
        let refill = f64::from(1 + self.episode_refusals) / rate;
        let doublings = self.episodes_in_row.saturating_sub(1).min(16);
        let secs = (refill * f64::from(1u32 << doublings)).max(self.srtt);
        Duration::from_secs_f64(secs.min(PAUSE_CAP.as_secs_f64())).max(MIN_PAUSE)
    }

    /// The `RateLimit-*` headers of an answer (module documentation).
    fn learn(&mut self, now: Instant, h: RateLimitHint, admitted: bool) {
        if h.limit == 0 {
            return;
        }
        let reset = h.reset.as_secs_f64().clamp(1.0, HEADER_WINDOW);
        let window_from = now
            .checked_sub(Duration::from_secs_f64(HEADER_WINDOW - reset))
            .unwrap_or(now);
        let sent = self.sends.iter().filter(|t| **t >= window_from).count();
        let used = h.limit.saturating_sub(h.remaining) as f64;
        if sent < MIN_SAMPLE || used <= 0.0 {
            return;
        }
        let cost = used / sent as f64;
        let sustainable = (h.limit as f64 / HEADER_WINDOW / cost * HEADER_SHARE).max(MIN_RATE);
        self.ceiling = Some(Ceiling {
            rate: sustainable,
            seen: now,
        });
        let left = h.remaining as f64 / cost / reset * HEADER_SHARE;
        self.window_cap = (left < sustainable)
            .then(|| (left.max(MIN_RATE), now + Duration::from_secs_f64(reset)));
        self.rate = Some(match self.rate {
            Some(r) if !admitted => r.min(sustainable),
            _ => sustainable,
        });
    }
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled(retry_after: Option<u64>) -> Outcome {
        Outcome::Throttled {
            status: 429,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn unpaced_until_throttled_then_the_admitted_rate_sets_the_pace() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = RateControl::new();
        // 40 requests in 2 s, back to back: never held.
        for i in 0..40 {
            assert_eq!(c.reserve(ms(i * 50), Duration::ZERO), Ok(ms(i * 50)));
            c.on_answer(ms(i * 50), ms(i * 50 + 10), Outcome::Admitted, None);
        }
        assert_eq!(c.rate(ms(2000)), None);
        // Refused: 40 got through in 2 s, 20 a second; BETA of that.
        let close = c.on_answer(ms(1990), ms(2000), throttled(Some(3)), None);
        assert_eq!(close, Some(Duration::from_secs(3)));
        let r = c.rate(ms(2000)).unwrap();
        assert!((r - 18.0).abs() < 1e-9, "{r}");
        // Answers to requests sent before the decrease: the same episode.
        c.on_answer(ms(1995), ms(2001), throttled(Some(3)), None);
        assert!((c.rate(ms(2001)).unwrap() - 18.0).abs() < 1e-9);
        // Paced: one slot every 1/18 s; a background request waits for its slot.
        let first = c.reserve(ms(5000), Duration::ZERO).unwrap();
        assert_eq!(first, ms(5000));
        let next = c.reserve(ms(5000), Duration::ZERO).unwrap_err();
        assert!((next - ms(5000)).as_secs_f64() - 1.0 / 18.0 < 1e-6);
        // An interactive one may take it (within its horizon), the one after waits longer.
        assert_eq!(c.reserve(ms(5000), Duration::from_secs(1)), Ok(next));
        // Successes while paced add INCREASE each (a little more 3 s after the decrease).
        c.on_answer(first, ms(5050), Outcome::Admitted, None);
        let step = INCREASE * (1.0 + 3.05 / ACCELERATE.as_secs_f64());
        assert!((c.rate(ms(5050)).unwrap() - (18.0 + step)).abs() < 1e-9);
    }

    #[test]
    fn a_decrease_never_more_than_halves_and_idle_time_is_not_measured() {
        let t0 = Instant::now();
        let s = |n: f64| t0 + Duration::from_secs_f64(n);
        let mut c = RateControl::new();
        for i in 0..40 {
            let at = s(i as f64 * 0.05);
            c.reserve(at, Duration::ZERO).unwrap();
            c.on_answer(at, at, Outcome::Admitted, None);
        }
        c.on_answer(s(1.99), s(2.0), throttled(Some(1)), None);
        assert!((c.rate(s(2.0)).unwrap() - 18.0).abs() < 1e-9);
        // Five requests get through in ten seconds, then a refusal: 0.5 a second measured,
        // but a decrease never more than halves.
        for i in 0..5 {
            let at = s(3.0 + 2.0 * i as f64);
            c.reserve(at, Duration::ZERO).unwrap();
            c.on_answer(at, at, Outcome::Admitted, None);
        }
        c.reserve(s(12.0), Duration::ZERO).unwrap();
        c.on_answer(s(12.0), s(12.1), throttled(Some(1)), None);
        assert!((c.rate(s(12.1)).unwrap() - BETA * 9.0).abs() < 1e-9);
        // After an idle time, a refusal of the first request measures nothing: the current
        // rate stands for it.
        c.reserve(s(150.0), Duration::ZERO).unwrap();
        c.on_answer(s(150.0), s(150.1), Outcome::Admitted, None);
        c.reserve(s(200.0), Duration::ZERO).unwrap();
        c.on_answer(s(200.0), s(200.1), throttled(None), None);
        let r = c.rate(s(200.1)).unwrap();
        assert!((r - BETA * BETA * 9.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn without_retry_after_pauses_double_and_probes_go_one_at_a_time() {
        let t0 = Instant::now();
        let s = |n: f64| t0 + Duration::from_secs_f64(n);
        let mut c = RateControl::new();
        for i in 0..20 {
            let at = s(i as f64 * 0.05);
            c.reserve(at, Duration::ZERO).unwrap();
            c.on_answer(at, at, Outcome::Admitted, None);
        }
        let blocked = Outcome::Throttled {
            status: 503,
            retry_after: None,
        };
        let mut t = 1.0;
        let mut pauses = Vec::new();
        while t < 200.0 {
            let sent = c.reserve(s(t), Duration::from_secs(1000)).unwrap();
            let d = c.on_answer(sent, sent, blocked, None).unwrap();
            pauses.push(d);
            t = (sent + d).duration_since(t0).as_secs_f64();
        }
        // One decrease for the whole streak, doubling pauses, one request at a time, and a
        // bounded number of requests: not a storm.
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(*pauses.last().unwrap(), PAUSE_CAP);
        assert!(pauses.len() < 20, "{} requests in 200 s", pauses.len());
        assert_eq!(c.concurrency(), Some(1));
        assert!(c.rate(s(t)).unwrap() > 1.0, "the rate is not ground down");
        // Blocked: only 503s for a minute.
        let since = c.blocked_since(s(t)).unwrap();
        assert_eq!(since, s(1.0));
        assert_eq!(c.blocked_since(s(30.0)), None, "not yet a minute");
        // The first success ends it.
        let sent = c.reserve(s(t), Duration::from_secs(1000)).unwrap();
        c.on_answer(sent, sent, Outcome::Admitted, None);
        assert_eq!(c.blocked_since(s(t + 1.0)), None);
        assert_eq!(c.concurrency(), None);
    }

    #[test]
    fn headers_give_the_sustainable_rate_and_a_cap_until_the_window_resets() {
        let t0 = Instant::now();
        let s = |n: f64| t0 + Duration::from_secs_f64(n);
        let mut c = RateControl::new();
        // 100 requests over the last 40 s of a window; the service says 1,000 of 1,200
        // units are used, 20 s before the reset: 10 units a request (others' use included).
        for i in 0..100 {
            let at = s(i as f64 * 0.4);
            c.reserve(at, Duration::ZERO).unwrap();
        }
        let hint = RateLimitHint {
            limit: 1200,
            remaining: 200,
            reset: Duration::from_secs(20),
        };
        c.on_answer(s(39.6), s(40.0), Outcome::Admitted, Some(hint));
        // 1,200 units a minute at 10 a request: 2 requests/s; HEADER_SHARE of it...
        let sustainable = 2.0 * HEADER_SHARE;
        // ...but the 200 units left are 20 requests in 20 s: 1/s until the reset.
        let left = 1.0 * HEADER_SHARE;
        assert!((c.rate(s(40.0)).unwrap() - left).abs() < 1e-9);
        assert!((c.rate(s(59.0)).unwrap() - left).abs() < 1e-9);
        assert!((c.rate(s(61.0)).unwrap() - sustainable).abs() < 1e-9);
        // Successes do not probe above what the headers said.
        c.waited_at = Some(s(61.0));
        for _ in 0..100 {
            c.on_answer(s(61.0), s(61.5), Outcome::Admitted, None);
        }
        assert!((c.rate(s(62.0)).unwrap() - sustainable).abs() < 1e-9);
        // The knowledge fades: then the additive increase resumes.
        assert!(c.rate(s(61.0) + CEILING_MEMORY).unwrap() >= sustainable);
    }
}
