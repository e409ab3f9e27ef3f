//! The mount-wide request limiter: every request the mount sends — upload workers, the folder
//! loop, the upload listener's follow-ups, FUSE-side lookups, listings and reads, the change
//! feed's poll — passes one [`Limiter`] and one shared gate (`throttle.rs`), because
//! SharePoint meters the app and the user as a whole and a 429/503 means "too much, from all
//! of you" (field reference entries 5–7).
//!
//! `mount.rs` builds one [`Pacer`] (limiter, gate, clock, stop signal) and one
//! [`LimitedRemote`] around the Graph remote, and hands that same remote to the filesystem
//! core and to the upload queue (`QueueConfig::pacer`); a queue started without a pacer (the
//! tests) makes one of its own.
//!
//! What a request waits for, in order:
//! - **The gate**: closed by a `Retry-After` (or, without one, by the pause the rate controller
//!   asks for), for everybody: no request is *sent* inside that window; those already in
//!   flight finish. A `Retry-After` another thread's answer carried is followed as soon as
//!   its status line is in (`remote::hints::RateHints`, shared with the Graph transport).
//! - **A permit**: at most `max` requests (the queue's worker threads) in flight, and one at
//!   a time while the controller probes after throttling without a success in between.
//! - **Its slot**: requests leave evenly at the rate the controller (`pacer.rs`) learnt from
//!   the answers: unpaced until the first throttling, then a measured rate, decreased on
//!   throttling and increased gently while pacing binds; `RateLimit-*` headers, when the
//!   service sends them, give the rate the budget sustains.
//!
//! Lanes (a thread-local, [`set_lane`]): upload workers (big and small lane), the folder loop
//! and the listener (which runs on worker threads) **wait** for all of the above.
//! Every other thread — FUSE threads above all, and the change-feed poll — is
//! [`Lane::Interactive`]: it never waits for the gate nor for long for a slot. Inside a
//! `Retry-After` window, or when its slot is more than [`INTERACTIVE_WAIT`] away, the request
//! is refused locally, without being sent, as `RemoteError::Throttled` with the time left:
//! listings and lookups then answer from the cache (`fs/namespace.rs`), reads and other
//! calls fail with EAGAIN, and the change feed tries again at its next poll. Interactive
//! requests take the next free slot ahead of waiting background ones, and are not bounded
//! by the permits (FUSE has few threads and they must not queue behind uploads).
//!
//! Blocked app (entry 8): when the service has answered nothing but 503 for a minute, the
//! controller says so; [`Pacer::blocked_note`] is the `.status` line, and the log has one
//! warning when it starts and a line when it ends. Pauses without `Retry-After` double up to
//! a minute meanwhile, one probe at a time, so a blocked mount sends about one request a
//! minute, not a storm; uploads resume by themselves when the block is lifted.
//!
//! Locks: `Limiter::state` is a leaf lock, never held while sleeping or calling out; the gate
//! (`Throttle`) is looked at under it but takes only its own leaf lock.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use super::clock::{Clock, Interrupt};
use super::pacer::{Outcome, RateControl};
use super::throttle::Throttle;
use crate::remote::hints::RateHints;
use crate::remote::{
    ByteRange, Conflict, DeltaRound, FragmentBody, FragmentOutcome, RateLimitHint, Remote,
    RemoteError, RemoteItem, UploadSession,
};

/// Which kind of thread a request comes from (module documentation, "Lanes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// FUSE threads and anything not marked: never waits long.
    Interactive,
    /// Upload workers of the big-file lane.
    Big,
    /// Upload workers of the small-file lane.
    Small,
    /// Other background threads (the folder loop).
    Background,
}

thread_local! {
    static LANE: Cell<Lane> = const { Cell::new(Lane::Interactive) };
}

/// Mark the calling thread's lane.
pub fn set_lane(lane: Lane) {
    LANE.with(|c| c.set(lane));
}

/// Mark the calling thread as a big-lane (`true`) or small-lane upload worker.
pub fn set_big_lane(big: bool) {
    set_lane(if big { Lane::Big } else { Lane::Small });
}

/// The calling thread's lane.
pub fn current_lane() -> Lane {
    LANE.with(|c| c.get())
}

/// How long a waiter for a permit sleeps between looks (a freed permit also wakes it).
const POLL: Duration = Duration::from_millis(50);

/// The longest an interactive request waits for its slot; beyond, it is refused locally.
pub const INTERACTIVE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    control: RateControl,
    in_flight: usize,
    /// The blocked state was logged.
    blocked_told: bool,
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Shutdown (the pacer's stop signal).
    Stopped,
    /// An interactive request inside a throttling window, or too far from its slot: try
    /// again after this long.
    Throttled(Duration),
}

/// The mount-wide limiter (module documentation).
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
        self.limiter.release();
    }
}

impl Limiter {
    /// A limiter allowing up to `max` (≥ 1) waiting-lane requests in flight.
    pub fn new(max: usize) -> Limiter {
        Limiter {
            max: max.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.freed.notify_all();
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The rate requests are paced at now (requests/s); `None`: unpaced.
    pub fn rate(&self, clock: &dyn Clock) -> Option<f64> {
        self.lock().control.rate(clock.now())
    }

    /// Since when the service has refused everything with 503, once that has lasted long
    /// enough to say the app may be blocked (`pacer::BLOCKED_AFTER`). Logs the change when
    /// it is the first to see it.
    pub fn blocked_since(&self, clock: &dyn Clock) -> Option<Instant> {
        let now = clock.now();
        let mut s = self.lock();
        Self::tell_blocked(&mut s, now)
    }

    /// Log once when the blocked state begins and when it ends. Called with the lock held.
    fn tell_blocked(s: &mut State, now: Instant) -> Option<Instant> {
        let blocked = s.control.blocked_since(now);
        if blocked.is_some() != s.blocked_told {
            s.blocked_told = blocked.is_some();
            match blocked {
                Some(since) => warn!(
                    "SharePoint has answered every request with 503 for {} s: {}",
                    now.saturating_duration_since(since).as_secs(),
                    BLOCKED_MEANING
                ),
                None => info!("SharePoint answers requests again; uploads resume"),
            }
        }
        blocked
    }

    /// Wait until a request of `lane` may be sent (module documentation). Interactive
    /// requests are refused instead of waiting for the gate or for a slot further than
    /// [`INTERACTIVE_WAIT`] away.
    pub fn acquire(
        &self,
        clock: &dyn Clock,
        gate: &Throttle,
        interrupt: &Interrupt,
        lane: Lane,
    ) -> Result<Permit<'_>, Refused> {
        let interactive = lane == Lane::Interactive;
        let horizon = if interactive {
            INTERACTIVE_WAIT
        } else {
            Duration::ZERO
        };
        let mut s = self.lock();
        loop {
            if interrupt.is_set() {
                return Err(Refused::Stopped);
            }
            if let Some(until) = gate.closed_until(clock) {
                if interactive {
                    return Err(Refused::Throttled(
                        until.saturating_duration_since(clock.now()),
                    ));
                }
                drop(s);
                let open = gate.wait(clock, interrupt);
                s = self.lock();
                if !open {
                    return Err(Refused::Stopped);
                }
                continue;
            }
            if !interactive {
                let limit = s.control.concurrency().unwrap_or(self.max).min(self.max);
                if s.in_flight >= limit {
                    s = self
                        .freed
                        .wait_timeout(s, POLL)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
            }
            let now = clock.now();
            match s.control.reserve(now, horizon) {
                Ok(at) => {
                    s.in_flight += 1;
                    drop(s);
                    if at > now {
                        // An interactive request's reserved slot: sleep to it (≤ 1 s).
                        let slept = clock.sleep(at - now, interrupt);
                        let closed = gate.closed_until(clock);
                        if !slept || closed.is_some() {
                            self.release();
                            return Err(match closed {
                                Some(until) if slept => {
                                    Refused::Throttled(until.saturating_duration_since(clock.now()))
                                }
                                _ => Refused::Stopped,
                            });
                        }
                    }
                    return Ok(Permit { limiter: self });
                }
                Err(at) if interactive => {
                    return Err(Refused::Throttled(at.saturating_duration_since(now)));
                }
                Err(at) => {
                    drop(s);
                    if !clock.sleep(at.saturating_duration_since(now), interrupt) {
                        return Err(Refused::Stopped);
                    }
                    s = self.lock();
                }
            }
        }
    }

    /// A request sent at `sent_at` was answered (or failed) with `outcome`; `hint` is the
    /// answer's `RateLimit-*` headers. Closes the gate when the controller asks for it.
    pub fn on_answer(
        &self,
        clock: &dyn Clock,
        gate: &Throttle,
        sent_at: Instant,
        outcome: Outcome,
        hint: Option<RateLimitHint>,
    ) {
        let now = clock.now();
        let close = {
            let mut s = self.lock();
            let before = s.control.rate(now);
            let close = s.control.on_answer(sent_at, now, outcome, hint);
            let after = s.control.rate(now);
            if after.is_some() && (before != after) && !matches!(outcome, Outcome::Admitted) {
                log::debug!(
                    "throttled ({outcome:?}): requests now leave at {:.1} a second, gate closed \
                     for {close:?}",
                    after.unwrap_or_default()
                );
            }
            Self::tell_blocked(&mut s, now);
            close
        };
        if let Some(d) = close {
            gate.close_for(clock, d);
        }
    }
}

/// What a 503-only service means and what to do (entry 8), for the log and `.status`.
pub const BLOCKED_MEANING: &str = "the app may be blocked for exceeding SharePoint's limits; \
     uploads wait (one try a minute) and resume by themselves when the block is lifted — if it \
     lasts, an administrator sees the block in the Microsoft 365 message center";

/// The mount's one limiter, gate, clock and stop signal, shared by every request path.
/// Cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    limiter: Arc<Limiter>,
    gate: Throttle,
    clock: Arc<dyn Clock>,
    stop: Interrupt,
}

impl Pacer {
    /// A pacer for `max` waiting-lane requests in flight (the queue's worker threads).
    pub fn new(max: usize, clock: Arc<dyn Clock>) -> Pacer {
        Pacer {
            limiter: Arc::new(Limiter::new(max)),
            gate: Throttle::new(),
            clock,
            stop: Interrupt::new(),
        }
    }

    /// `inner` with every request passing this pacer.
    pub fn wrap(&self, inner: Arc<dyn Remote>) -> LimitedRemote {
        LimitedRemote {
            inner,
            pacer: self.clone(),
            hints: None,
        }
    }

    /// [`Self::wrap`], reading the rate hints `inner`'s transport records of its answers.
    pub fn wrap_with_hints(&self, inner: Arc<dyn Remote>, hints: Arc<RateHints>) -> LimitedRemote {
        LimitedRemote {
            hints: Some(hints),
            ..self.wrap(inner)
        }
    }

    /// The shared throttle gate.
    pub fn gate(&self) -> &Throttle {
        &self.gate
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// The signal that ends every wait (shutdown).
    pub fn stop_signal(&self) -> &Interrupt {
        &self.stop
    }

    /// Look whether the service has been refusing everything long enough to say so (logged
    /// once); called every second by the queue's folder loop, so the log says it even when
    /// no answer and no `.status` read comes in between.
    pub fn check_blocked(&self) {
        self.limiter.blocked_since(&*self.clock);
    }

    /// The `.status` line while the service refuses everything with 503 (entry 8).
    pub fn blocked_note(&self) -> Option<String> {
        let since = self.limiter.blocked_since(&*self.clock)?;
        let ago = self.clock.now().saturating_duration_since(since);
        let wall = self
            .clock
            .wall()
            .checked_sub(ago)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Some(format!(
            "SharePoint has answered every request with 503 since {}: {BLOCKED_MEANING}",
            super::status::clock_time_utc(wall)
        ))
    }
}

/// The remote every part of the mount uses: each request passes the [`Pacer`] (module
/// documentation) and tells it how it went.
pub struct LimitedRemote {
    inner: Arc<dyn Remote>,
    pacer: Pacer,
    /// What the inner remote's transport records of each answer (`RateLimit-*`, the latest
    /// Retry-After); `None` for a remote that meters nothing.
    hints: Option<Arc<RateHints>>,
}

impl LimitedRemote {
    /// Close the gate for what is left of a Retry-After another thread's answer carried
    /// (`RateHints::retry_until`, recorded before that thread has even read the body):
    /// answers to requests sent together arrive together, and without this the others would
    /// send their next requests before the throttled thread had closed the gate.
    fn follow_retry_after(&self) {
        if let Some(until) = self.hints.as_ref().and_then(|h| h.retry_until()) {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                self.pacer.gate.close_for(&*self.pacer.clock, left);
            }
        }
    }

    fn call<T>(
        &self,
        f: impl FnOnce(&dyn Remote) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        self.follow_retry_after();
        let p = &self.pacer;
        let permit = match p
            .limiter
            .acquire(&*p.clock, &p.gate, &p.stop, current_lane())
        {
            Ok(permit) => permit,
            Err(Refused::Stopped) => {
                return Err(RemoteError::Transport("the mount is shutting down".into()))
            }
            Err(Refused::Throttled(left)) => {
                // Refused here, never sent: the service asked for silence (or the budget's
                // pace has no slot soon enough for a caller that cannot wait).
                return Err(RemoteError::Throttled {
                    status: 429,
                    retry_after: Some(Duration::from_secs(left.as_secs_f64().ceil() as u64)),
                });
            }
        };
        let sent_at = p.clock.now();
        let result = f(&*self.inner);
        self.follow_retry_after();
        let outcome = match &result {
            Err(RemoteError::Throttled {
                status,
                retry_after,
            }) => Outcome::Throttled {
                status: *status,
                retry_after: *retry_after,
            },
            Err(RemoteError::Transport(_)) => Outcome::Unanswered,
            _ => Outcome::Admitted,
        };
        p.limiter.on_answer(
            &*p.clock,
            &p.gate,
            sent_at,
            outcome,
            self.hints.as_ref().and_then(|h| h.latest()),
        );
        drop(permit);
        result
    }
}

impl LimitedRemote {
    /// Until when the gate is closed by a Retry-After this mount was given (real time), if
    /// that is still ahead.
    pub fn retry_after_until(&self) -> Option<Instant> {
        // The gate holds every Retry-After this mount was given (its own clock's time).
        let clock = &*self.pacer.clock;
        let left = self
            .pacer
            .gate
            .closed_until(clock)?
            .saturating_duration_since(clock.now());
        Some(Instant::now() + left)
    }
}

impl Remote for LimitedRemote {
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
        total: u64,
        body: &FragmentBody,
    ) -> Result<FragmentOutcome, RemoteError> {
        self.call(|r| r.upload_fragment(session, total, body))
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
mod tests;
