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
//! - **Staying inside the budget**: when answers carry `RateLimit-Limit` / `-Remaining` /
//!   `-Reset` (SharePoint sends them once 80 % of the budget is used), the limiter keeps a copy
//!   of the service's token bucket ([`Budget`]): capacity `Limit`, a refill rate learnt as
//!   `(Limit − Remaining) / Reset` (the bucket is full again after `Reset`; Reset is whole
//!   seconds rounded up, so each estimate is at most the true rate, and the highest estimate
//!   of the last minute is kept), and a token count set from `Remaining` minus the requests
//!   this mount has in flight (they will be charged too) at every answer that has the headers.
//!   Every request takes a token of the copy, waiting for one at the learnt rate (a little
//!   below it, keeping a small reserve). So once the budget is known the mount sends at about
//!   its refill rate and the 429s — which still count against the budget — mostly do not come.
//!   Without headers for a minute the copy is dropped.
//! - **Spreading after throttling**: for a while after a 429/503, requests leave at least
//!   [`SPREAD`] apart, so answers do not arrive in a burst in which some threads send again
//!   before the one holding the 429 has closed the gate. After a paced or spread wait the gate
//!   is looked at again before the request goes.
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

/// After a 429/503, requests are sent at least this far apart, for [`WARY`] beyond the
/// Retry-After. Requests released together (the gate reopening, a round of answers) come back
/// together; if one of them is throttled, the others' next requests would go out before the
/// thread holding the 429 has read it and closed the gate, i.e. inside the window the service
/// just opened. Spread out, each answer is read before the next one arrives. 10 ms caps the
/// send rate at 100 a second while wary, above what a throttled tenant grants anyway.
pub const SPREAD: Duration = Duration::from_millis(10);

/// How long after a throttling window sends stay spread out.
const WARY: Duration = Duration::from_secs(10);

/// A budget copy not refreshed by any header for this long is dropped.
const BUDGET_MEMORY: Duration = Duration::from_secs(60);

/// The share of the learnt refill rate the mount uses, and the tokens it leaves in the
/// service's bucket: margins for the estimate and for requests of the mount's other parts
/// (listings, reads) that do not pass here.
const BUDGET_SHARE: f64 = 0.95;
const BUDGET_RESERVE: f64 = 1.0;

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    big_waiting: usize,
    /// No throttling after this halves the limit again (one episode = one decrease).
    hold_until: Option<Instant>,
    /// The copy of the service's budget, once `RateLimit-*` headers were seen.
    budget: Option<Budget>,
    /// When the latest request was (or is reserved to be) sent.
    last_send: Option<Instant>,
    /// Until then sends are at least [`SPREAD`] apart (set by a 429/503).
    wary_until: Option<Instant>,
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
                budget: None,
                last_send: None,
                wary_until: None,
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
            let spread_at = s
                .last_send
                .filter(|_| s.wary_until.is_some_and(|t| now < t))
                .map(|last| last + SPREAD)
                .filter(|at| *at > now);
            let paced_at = s.budget.as_mut().and_then(|b| b.take(now));
            if let Some(at) = paced_at.max(spread_at) {
                // Reserve the slot `at`, then sleep to it outside the lock.
                s.last_send = Some(at);
                s.in_flight += 1;
                drop(s);
                let slept = clock.sleep(at.saturating_duration_since(now), interrupt);
                s = self.lock();
                if !slept {
                    s.in_flight = s.in_flight.saturating_sub(1);
                    break None;
                }
                if gate.closed_until(clock).is_some() {
                    // Throttled while we slept: give the permit back and wait for the gate.
                    s.in_flight = s.in_flight.saturating_sub(1);
                    self.freed.notify_all();
                    continue;
                }
                break Some(());
            }
            s.last_send = Some(now);
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
            s.wary_until = Some(now + retry_after.unwrap_or(Duration::ZERO) + WARY);
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

    /// The latest answer's `RateLimit-*` headers (or their absence): refresh the budget copy.
    /// Called by the thread whose request was answered, with its permit still held.
    pub fn on_rate_limit(&self, clock: &dyn Clock, hint: Option<RateLimitHint>) {
        let now = clock.now();
        let mut s = self.lock();
        let others = s.in_flight.saturating_sub(1) as f64;
        match hint {
            Some(h) if h.limit > 0 => {
                let b = s.budget.get_or_insert_with(|| Budget::new(h, now));
                b.learn(h, others, now);
            }
            _ => {
                if s.budget
                    .as_ref()
                    .is_some_and(|b| now >= b.seen + BUDGET_MEMORY)
                {
                    s.budget = None;
                } else if let Some(b) = s.budget.as_mut() {
                    b.headerless(others, now);
                }
            }
        }
    }
}

/// The limiter's copy of the service's token bucket (module documentation). Tokens may go
/// below zero: each is a request reserved to leave when the refill has paid for it.
#[derive(Debug, Clone, Copy)]
struct Budget {
    capacity: f64,
    /// Tokens a second: the highest estimate of the last [`BUDGET_MEMORY`].
    rate: f64,
    rate_seen: Instant,
    tokens: f64,
    at: Instant,
    /// The latest answer with headers.
    seen: Instant,
}

impl Budget {
    fn new(h: RateLimitHint, now: Instant) -> Budget {
        Budget {
            capacity: h.limit as f64,
            rate: 0.0,
            rate_seen: now,
            tokens: h.remaining as f64,
            at: now,
            seen: now,
        }
    }

    /// Refill since `at`, at the share of the learnt rate the mount uses.
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate * BUDGET_SHARE).min(self.capacity);
        self.at = now;
    }

    /// Headers from an answer, while `others` more requests of ours are in flight.
    fn learn(&mut self, h: RateLimitHint, others: f64, now: Instant) {
        self.refill(now);
        self.capacity = h.limit as f64;
        let used = h.limit.saturating_sub(h.remaining) as f64;
        let reset = h.reset.as_secs_f64();
        if used > 0.0 && reset > 0.0 {
            let estimate = used / reset;
            if estimate > self.rate || now >= self.rate_seen + BUDGET_MEMORY {
                self.rate = estimate;
                self.rate_seen = now;
            }
        }
        // Reservations already made (negative tokens) are requests that will be sent; they
        // are among `others` (they hold permits while they wait).
        self.tokens = h.remaining as f64 - others - BUDGET_RESERVE;
        self.seen = now;
    }

    /// An answer without headers: the service has more than a fifth of its budget left (it
    /// sends them from 80 % used on), so the copy holds at least that much, less what is in
    /// flight.
    fn headerless(&mut self, others: f64, now: Instant) {
        self.refill(now);
        self.tokens = self
            .tokens
            .max(self.capacity / 5.0 - others - BUDGET_RESERVE);
    }

    /// Take a token for a request: `None` to send now, or the instant its turn comes.
    fn take(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return None;
        }
        let rate = self.rate * BUDGET_SHARE;
        if rate <= 0.0 {
            // Nothing learnt about the refill yet: one token a second until an answer says.
            return Some(now + Duration::from_secs_f64(-self.tokens));
        }
        Some(now + Duration::from_secs_f64((-self.tokens / rate).min(60.0)))
    }
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
        self.limiter
            .on_rate_limit(&*self.clock, self.inner.rate_limit());
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
    fn checked_out(&self, item: &RemoteItem) -> bool {
        self.inner.checked_out(item)
    }
    fn checkin(&self, item: &RemoteItem, path: &str, comment: &str) -> Result<(), RemoteError> {
        self.call(|r| r.checkin(item, path, comment))
    }
    fn drive_quota(&self) -> Result<Option<crate::remote::DriveQuota>, RemoteError> {
        self.call(|r| r.drive_quota())
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
    fn the_budget_copy_learns_the_refill_rate_and_paces_to_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // 16 of 20 used, full again within 1 s: at least 16 a second.
        let mut b = Budget::new(hint(20, 4, 1), t0);
        b.learn(hint(20, 4, 1), 0.0, t0);
        assert_eq!(b.rate, 16.0);
        // Empty, full in 1 s: 20 a second; a lower estimate later does not lower it...
        b.learn(hint(20, 0, 1), 0.0, ms(10));
        assert_eq!(b.rate, 20.0);
        b.learn(hint(20, 4, 1), 0.0, ms(20));
        assert_eq!(b.rate, 20.0);
        // ...until the minute is over.
        b.learn(hint(20, 4, 1), 0.0, ms(20) + BUDGET_MEMORY);
        assert_eq!(b.rate, 16.0);
        // Tokens: Remaining, less our other requests in flight and the reserve.
        let mut b = Budget::new(hint(20, 0, 1), t0);
        b.learn(hint(20, 5, 1), 2.0, t0);
        assert_eq!(b.tokens, 2.0);
        assert_eq!(b.take(t0), None);
        assert_eq!(b.take(t0), None);
        // Then one request per 1 / (15 x 0.95) s, reserved in turn.
        let gap = 1.0 / (15.0 * BUDGET_SHARE);
        let at = b.take(t0).unwrap();
        assert!(((at - t0).as_secs_f64() - gap).abs() < 1e-6);
        let at = b.take(t0).unwrap();
        assert!(((at - t0).as_secs_f64() - 2.0 * gap).abs() < 1e-6);
        // An answer without headers: more than a fifth is left.
        b.headerless(0.0, t0);
        assert_eq!(b.tokens, 3.0);
    }

    #[test]
    fn permits_bound_in_flight_and_the_budget_paces() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let gate = Throttle::new();
        let intr = Interrupt::new();
        let l = Limiter::new(2);
        let a = l.acquire(&clock, &gate, &intr, true).unwrap();
        let b = l.acquire(&clock, &gate, &intr, true).unwrap();
        assert_eq!(l.in_flight(), 2);
        drop(a);
        // b is answered: the budget is spent, full again in 1 s.
        l.on_rate_limit(&clock, Some(hint(20, 0, 1)));
        drop(b);
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 2, "{sleeps:?}");
        // Reserve of 1, then 19 a second: the first waits 2 tokens' time, the next 1 more.
        let per = 1.0 / (20.0 * BUDGET_SHARE);
        assert!(
            (sleeps[0].as_secs_f64() - 2.0 * per).abs() < 1e-3,
            "{sleeps:?}"
        );
        assert!((sleeps[1].as_secs_f64() - per).abs() < 1e-3, "{sleeps:?}");
        // A minute without headers: the copy is dropped, no more pacing.
        clock.advance(BUDGET_MEMORY);
        l.on_rate_limit(&clock, None);
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        assert_eq!(clock.sleeps().len(), 2);
        // Inside a Retry-After window the permit waits for the gate.
        gate.close_for(&clock, Duration::from_secs(5));
        drop(l.acquire(&clock, &gate, &intr, true).unwrap());
        assert_eq!(clock.sleeps()[2], Duration::from_secs(5));
        intr.trigger();
        assert!(l.acquire(&clock, &gate, &intr, true).is_none());
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn sends_spread_out_after_throttling() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let gate = Throttle::new();
        let intr = Interrupt::new();
        let l = Limiter::new(4);
        // Never throttled: back to back.
        drop(l.acquire(&clock, &gate, &intr, false).unwrap());
        drop(l.acquire(&clock, &gate, &intr, false).unwrap());
        assert!(clock.sleeps().is_empty());
        l.on_throttled(&clock, &gate, Some(Duration::from_secs(1)));
        // The first waits out the window, the next one leaves SPREAD after it.
        drop(l.acquire(&clock, &gate, &intr, false).unwrap());
        drop(l.acquire(&clock, &gate, &intr, false).unwrap());
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(1), SPREAD]);
        // Long after the window: back to back again.
        clock.advance(WARY + Duration::from_secs(1));
        drop(l.acquire(&clock, &gate, &intr, false).unwrap());
        drop(l.acquire(&clock, &gate, &intr, false).unwrap());
        assert_eq!(clock.sleeps().len(), 2);
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
