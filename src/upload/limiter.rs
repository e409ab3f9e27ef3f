//! The mount-wide request limiter: how many upload requests may be in flight at once, across
//! both lanes (`queue.rs`), following what the service says.
//!
//! SharePoint meters per app and per user, throttled requests count too, and a 429/503 means
//! "too much, from all of you" (reference §7). So the limit is one number for the whole upload
//! queue, adapted by AIMD:
//! - **Multiplicative decrease**: a 429/503 halves the limit (never below 1), at most once per
//!   throttling episode (a burst of 429s answering requests that were already in flight is
//!   one signal, not sixteen), and closes the shared gate (`throttle.rs`) for `Retry-After`:
//!   no request is *sent* inside that window; those already in flight finish.
//! - **Additive increase**: each request that gets through adds `1/limit`, so the limit grows
//!   by about one per round of `limit` successes, up to `max` (= `workers` +
//!   `small_file_workers`: more permits than threads would be meaningless).
//! - **Slowing before the budget is gone**: when the latest answer carried `RateLimit-Limit` /
//!   `-Remaining` / `-Reset` (SharePoint sends them once 80 % is used), requests are spaced
//!   `Reset / (Limit − Remaining)` apart: the rate at which a budget of `Limit` refills when
//!   `Limit − Remaining` of it came back in `Reset`, stretched by up to 2× as Remaining nears 0
//!   (Reset is whole seconds, so that rate is an estimate). Sending at about the refill rate
//!   keeps Remaining from reaching 0, so the 429s (which still count against the budget) do
//!   not come at all. Answers without the headers halve the spacing, one answer at a time,
//!   rather than lifting it at once (which would let every waiting worker go together).
//! - **Fairness between lanes**: while a big-lane request waits, a small-lane request may not
//!   take the last free permit, so a stream of small files never starves a large upload when
//!   the limit is low. (The reverse cannot happen: the big lane has `workers` threads only.)
//!
//! The limiter sits in [`LimitedRemote`], a `Remote` wrapper the queue puts around the remote
//! it is given: every request of a worker or of the folder loop takes a permit for its
//! duration. Which lane a thread belongs to is a thread-local set by the queue's worker loop
//! ([`set_big_lane`]). The filesystem's own requests (listings, reads) do not pass here: they
//! are synchronous on FUSE threads and few.
//!
//! Locks: `Limiter::state` is a leaf lock, never held while sleeping or calling out; the gate
//! (`Throttle`) is checked under it but takes only its own leaf lock.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::clock::{Clock, Interrupt};
use super::throttle::Throttle;
use crate::remote::{
    ByteRange, Conflict, DeltaRound, FragmentOutcome, RateLimitHint, Remote, RemoteError,
    RemoteItem, UploadSession,
};

thread_local! {
    static BIG_LANE: Cell<bool> = const { Cell::new(true) };
}

/// Mark the calling thread as a big-lane (`true`) or small-lane worker.
pub fn set_big_lane(big: bool) {
    BIG_LANE.with(|c| c.set(big));
}

fn on_big_lane() -> bool {
    BIG_LANE.with(|c| c.get())
}

/// How long a polling waiter sleeps between looks at the limit (a permit is also signalled).
const POLL: Duration = Duration::from_millis(50);

/// Below this the spacing is lifted altogether.
const MIN_GAP: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    big_waiting: usize,
    /// No throttling after this halves the limit again (one episode = one decrease).
    hold_until: Option<Instant>,
    /// Spacing from the latest `RateLimit-*` headers; zero when there were none.
    gap: Duration,
    /// The earliest the next request may be sent under that spacing.
    next_send: Option<Instant>,
}

/// The mount-wide AIMD limiter (module documentation).
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

/// A permit: one request in flight. Released on drop.
pub struct Permit<'a> {
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.limiter.freed.notify_all();
    }
}

impl Limiter {
    /// A limiter allowing up to `max` (≥ 1) requests in flight; it starts at `max`.
    pub fn new(max: usize) -> Limiter {
        let max = max.max(1);
        Limiter {
            max,
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                big_waiting: 0,
                hold_until: None,
                gap: Duration::ZERO,
                next_send: None,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current limit (whole permits, ≥ 1).
    pub fn limit(&self) -> usize {
        (self.lock().limit.floor() as usize).max(1)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Wait for a permit: the gate open, a free permit (the last one kept for a waiting big
    /// request when `big` is false), and the `RateLimit` spacing passed. `None` if
    /// `interrupt` cut the wait short.
    pub fn acquire(
        &self,
        clock: &dyn Clock,
        gate: &Throttle,
        interrupt: &Interrupt,
        big: bool,
    ) -> Option<Permit<'_>> {
        let mut waiting_big = false;
        let mut s = self.lock();
        let result = loop {
            if interrupt.is_set() {
                break None;
            }
            if gate.closed_until(clock).is_some() {
                drop(s);
                let open = gate.wait(clock, interrupt);
                s = self.lock();
                if !open {
                    break None;
                }
                continue;
            }
            let limit = (s.limit.floor() as usize).max(1);
            let free = limit.saturating_sub(s.in_flight);
            let reserved = usize::from(!big && s.big_waiting > 0);
            if free <= reserved {
                if big && !waiting_big {
                    waiting_big = true;
                    s.big_waiting += 1;
                }
                s = self
                    .freed
                    .wait_timeout(s, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let now = clock.now();
            if let Some(at) = s.next_send.filter(|at| *at > now) {
                // Reserve the slot `at`, then sleep to it outside the lock.
                s.next_send = Some(at + s.gap);
                s.in_flight += 1;
                drop(s);
                let slept = clock.sleep(at.saturating_duration_since(now), interrupt);
                s = self.lock();
                if !slept {
                    s.in_flight = s.in_flight.saturating_sub(1);
                    break None;
                }
                break Some(());
            }
            if !s.gap.is_zero() {
                s.next_send = Some(now + s.gap);
            }
            s.in_flight += 1;
            break Some(());
        };
        if waiting_big {
            s.big_waiting = s.big_waiting.saturating_sub(1);
        }
        drop(s);
        if result.is_none() {
            self.freed.notify_all();
        }
        result.map(|()| Permit { limiter: self })
    }

    /// A request got through: additive increase.
    pub fn on_success(&self) {
        let mut s = self.lock();
        s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
    }

    /// A 429/503: halve the limit once per episode and close the gate for `retry_after`
    /// (when the server gave none, the worker closes it for a backoff of its own).
    pub fn on_throttled(&self, clock: &dyn Clock, gate: &Throttle, retry_after: Option<Duration>) {
        let now = clock.now();
        {
            let mut s = self.lock();
            if s.hold_until.is_none_or(|t| now >= t) {
                s.limit = (s.limit / 2.0).max(1.0);
                let episode = retry_after
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_secs(1));
                s.hold_until = Some(now + episode);
            }
        }
        if let Some(d) = retry_after {
            gate.close_for(clock, d);
        }
    }

    /// The latest answer's `RateLimit-*` headers (or their absence): set the spacing.
    pub fn on_rate_limit(&self, hint: Option<RateLimitHint>) {
        let mut s = self.lock();
        s.gap = match hint {
            Some(h) => pacing_gap(h),
            // Lift the spacing gradually: dropping it at once would release every waiting
            // worker together into a budget that has only just left the 80 % mark.
            None if s.gap > MIN_GAP => s.gap / 2,
            None => Duration::ZERO,
        };
        if s.gap.is_zero() {
            s.next_send = None;
        }
    }
}

/// The spacing of requests that keeps a nearly spent budget from running out (module
/// documentation): `reset / (limit − remaining)`, or `reset / limit` when nothing came back
/// yet. Zero when the headers say the budget is far from spent (< 80 % used). Pure.
pub fn pacing_gap(h: RateLimitHint) -> Duration {
    if h.limit == 0 || h.remaining.saturating_mul(5) > h.limit {
        return Duration::ZERO;
    }
    let used = h.limit.saturating_sub(h.remaining).max(1);
    // `used` ≤ limit < 2^32 in practice; saturate rather than overflow.
    let refill = h.reset / u32::try_from(used).unwrap_or(u32::MAX);
    // Reset is in whole seconds (rounded up), so the refill rate it gives is only an estimate:
    // the closer Remaining is to 0, the further below it we stay, up to half of it at 0.
    let fifth = (h.limit as f64 / 5.0).max(1.0);
    let short = (fifth - h.remaining as f64).max(0.0) / fifth;
    refill.mul_f64(1.0 + short)
}

/// The remote the upload queue uses: every request takes a permit of the [`Limiter`] for its
/// duration and tells it how it went (module documentation).
pub struct LimitedRemote {
    inner: Arc<dyn Remote>,
    limiter: Arc<Limiter>,
    gate: Throttle,
    clock: Arc<dyn Clock>,
    /// Triggered at shutdown: waits for a permit end.
    stop: Interrupt,
}

impl LimitedRemote {
    pub fn new(
        inner: Arc<dyn Remote>,
        limiter: Arc<Limiter>,
        gate: Throttle,
        clock: Arc<dyn Clock>,
        stop: Interrupt,
    ) -> LimitedRemote {
        LimitedRemote {
            inner,
            limiter,
            gate,
            clock,
            stop,
        }
    }

    /// Close the gate for what is left of a Retry-After another thread's answer carried
    /// (`Remote::retry_after_until`, recorded before that thread has even read the body):
    /// answers to requests sent together arrive together, and without this the others would
    /// send their next requests before the throttled thread had closed the gate.
    fn follow_retry_after(&self) {
        if let Some(until) = self.inner.retry_after_until() {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                self.gate.close_for(&*self.clock, left);
            }
        }
    }

    fn call<T>(
        &self,
        f: impl FnOnce(&dyn Remote) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        self.follow_retry_after();
        let Some(permit) =
            self.limiter
                .acquire(&*self.clock, &self.gate, &self.stop, on_big_lane())
        else {
            return Err(RemoteError::Transport(
                "the upload queue is shutting down".into(),
            ));
        };
        let result = f(&*self.inner);
        self.follow_retry_after();
        match &result {
            Err(RemoteError::Throttled { retry_after, .. }) => {
                self.limiter
                    .on_throttled(&*self.clock, &self.gate, *retry_after);
            }
            Err(RemoteError::Transport(_)) => {}
            _ => self.limiter.on_success(),
        }
        self.limiter.on_rate_limit(self.inner.rate_limit());
        drop(permit);
        result
    }
}

impl Remote for LimitedRemote {
    fn sign_in_needed(&self) -> Option<String> {
        self.inner.sign_in_needed()
    }
    fn auth_pauses(&self) -> bool {
        self.inner.auth_pauses()
    }
    fn enriches_files(&self) -> bool {
        self.inner.enriches_files()
    }
    fn rate_limit(&self) -> Option<RateLimitHint> {
        self.inner.rate_limit()
    }
    fn retry_after_until(&self) -> Option<Instant> {
        self.inner.retry_after_until()
    }
    fn stat(&self, path: &str) -> Result<Option<RemoteItem>, RemoteError> {
        self.call(|r| r.stat(path))
    }
    fn list(&self, path: &str) -> Result<Vec<RemoteItem>, RemoteError> {
        self.call(|r| r.list(path))
    }
    fn mkdir(&self, path: &str) -> Result<RemoteItem, RemoteError> {
        self.call(|r| r.mkdir(path))
    }
    fn create_upload_session(
        &self,
        path: &str,
        size: u64,
        mtime: SystemTime,
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<UploadSession, RemoteError> {
        self.call(|r| r.create_upload_session(path, size, mtime, conflict, if_match))
    }
    fn upload_fragment(
        &self,
        session: &UploadSession,
        offset: u64,
        total: u64,
        data: &[u8],
    ) -> Result<FragmentOutcome, RemoteError> {
        self.call(|r| r.upload_fragment(session, offset, total, data))
    }
    fn upload_status(&self, session: &UploadSession) -> Result<Vec<ByteRange>, RemoteError> {
        self.call(|r| r.upload_status(session))
    }
    fn cancel_upload(&self, session: &UploadSession) -> Result<(), RemoteError> {
        self.call(|r| r.cancel_upload(session))
    }
    fn upload_small(
        &self,
        path: &str,
        data: &[u8],
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<RemoteItem, RemoteError> {
        self.call(|r| r.upload_small(path, data, conflict, if_match))
    }
    fn delete(&self, path: &str) -> Result<(), RemoteError> {
        self.call(|r| r.delete(path))
    }
    fn rename(&self, from: &str, to: &str) -> Result<RemoteItem, RemoteError> {
        self.call(|r| r.rename(from, to))
    }
    fn set_mtime(&self, path: &str, mtime: SystemTime) -> Result<RemoteItem, RemoteError> {
        self.call(|r| r.set_mtime(path, mtime))
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RemoteError> {
        self.call(|r| r.read_range(path, offset, len))
    }
    fn delta(&self, token: Option<&str>) -> Result<DeltaRound, RemoteError> {
        self.call(|r| r.delta(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::clock::{ManualClock, SystemClock};

    fn hint(limit: u64, remaining: u64, reset: u64) -> RateLimitHint {
        RateLimitHint {
            limit,
            remaining,
            reset: Duration::from_secs(reset),
        }
    }

    #[test]
    fn aimd_halves_once_per_episode_and_grows_back() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let gate = Throttle::new();
        let l = Limiter::new(16);
        assert_eq!(l.limit(), 16);
        let ra = Some(Duration::from_secs(2));
        // Sixteen 429s answering requests in flight together: one decrease.
        for _ in 0..16 {
            l.on_throttled(&clock, &gate, ra);
        }
        assert_eq!(l.limit(), 8);
        assert!(
            gate.closed_until(&clock).is_some(),
            "Retry-After closes the gate"
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(gate.closed_until(&clock), None);
        // A new episode halves again; never below 1.
        for _ in 0..10 {
            l.on_throttled(&clock, &gate, None);
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(l.limit(), 1);
        // Additive increase: about one per `limit` successes, capped at max.
        l.on_success();
        assert_eq!(l.limit(), 2);
        // 2 + 1/2 + 1/2.5 = 2.9, then 3.24.
        for _ in 0..2 {
            l.on_success();
        }
        assert_eq!(l.limit(), 2);
        l.on_success();
        assert_eq!(l.limit(), 3);
        for _ in 0..1000 {
            l.on_success();
        }
        assert_eq!(l.limit(), 16);
    }

    #[test]
    fn pacing_follows_the_refill_rate() {
        // Far from spent: no spacing.
        assert_eq!(pacing_gap(hint(20, 10, 1)), Duration::ZERO);
        // 16 of 20 used, full again in 1 s: 16 per second.
        assert_eq!(
            pacing_gap(hint(20, 4, 1)),
            Duration::from_millis(62) + Duration::from_micros(500)
        );
        // 18 used: 18 per second, stretched by half of the way to empty (x 1.5).
        let g = pacing_gap(hint(20, 2, 1)).as_secs_f64();
        assert!((g - 1.0 / 12.0).abs() < 1e-6, "{g}");
        // Empty: the whole budget back in 2 s, 10 per second, halved.
        assert_eq!(pacing_gap(hint(20, 0, 2)), Duration::from_millis(200));
        assert_eq!(pacing_gap(hint(0, 0, 2)), Duration::ZERO);
    }

    #[test]
    fn permits_bound_in_flight_and_spacing_delays() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let gate = Throttle::new();
        let intr = Interrupt::new();
        let l = Limiter::new(2);
        let a = l.acquire(&clock, &gate, &intr, true).unwrap();
        let b = l.acquire(&clock, &gate, &intr, true).unwrap();
        assert_eq!(l.in_flight(), 2);
        drop(a);
        drop(b);
        l.on_rate_limit(Some(hint(20, 0, 1)));
        let a = l.acquire(&clock, &gate, &intr, true).unwrap();
        drop(a);
        let b = l.acquire(&clock, &gate, &intr, true).unwrap();
        drop(b);
        assert_eq!(clock.sleeps(), vec![Duration::from_millis(100)]);
        // Headers gone: the spacing halves per answer, then goes.
        // (The slot already reserved keeps its time.)
        l.on_rate_limit(None);
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        assert_eq!(
            clock.sleeps()[1..],
            [Duration::from_millis(100), Duration::from_millis(50)]
        );
        for _ in 0..7 {
            l.on_rate_limit(None);
        }
        clock.advance(Duration::from_secs(1));
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        assert_eq!(clock.sleeps().len(), 3);
        // Inside a Retry-After window the permit waits for the gate.
        gate.close_for(&clock, Duration::from_secs(5));
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        assert_eq!(clock.sleeps()[3], Duration::from_secs(5));
        intr.trigger();
        assert!(l.acquire(&clock, &gate, &intr, true).is_none());
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn a_waiting_big_request_gets_the_last_permit() {
        let gate = Throttle::new();
        let l = Arc::new(Limiter::new(2));
        let intr = Interrupt::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = l.acquire(&SystemClock, &gate, &intr, false).unwrap();
        let _held2 = l.acquire(&SystemClock, &gate, &intr, false).unwrap();
        let spawn = |big: bool, hold: u64| {
            let (l, g, i, o) = (l.clone(), gate.clone(), intr.clone(), order.clone());
            std::thread::spawn(move || {
                let p = l.acquire(&SystemClock, &g, &i, big).unwrap();
                o.lock().unwrap().push(if big { "big" } else { "small" });
                std::thread::sleep(Duration::from_millis(hold));
                drop(p);
            })
        };
        let big = spawn(true, 200);
        std::thread::sleep(Duration::from_millis(100));
        let small = spawn(false, 0);
        std::thread::sleep(Duration::from_millis(100));
        // One permit frees: the big request waiting for it gets it, not the small one.
        drop(held);
        big.join().unwrap();
        small.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["big", "small"]);
    }
}
