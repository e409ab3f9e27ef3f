//! The mount-wide bandwidth limit (`bwlimit`): one token bucket shared by every upload worker,
//! its rate taken from a [`Timetable`] (`"08:00,2MiB 19:00,off"`) that is looked at on the
//! clock, so the limit changes at the listed minute without a restart, and that `.control`
//! can replace live (`bwlimit 4MiB`, `bwlimit reset` for the configured one).
//!
//! The bucket: `burst` = half a second of the rate, at least 256 KiB (one streamed piece), and
//! full when the limit starts. A caller reserves its bytes before sending them
//! ([`BwLimit::wait_for`]) and is told how long to wait first; reservations queue behind each
//! other in arrival order (the bucket may go into debt), so workers share the rate fairly and
//! a piece of any size is paced exactly. It is kept as two running totals, bytes credited by
//! the clock and bytes reserved: a waiter's turn comes when the credit reaches its reservation,
//! which stays true when the rate changes under it ([`BwLimit::take`] re-checks every 250 ms,
//! so a switch to a higher limit or to `off` frees waiters at once). Switching to `off` forgives
//! all debt; switching from `off` starts with a full bucket.
//!
//! Time: the timetable's minute comes from the clock's wall time in the local time zone (as in
//! rclone); the zone is a plain function so tests use UTC. The mutex is a leaf lock, never held
//! across a sleep. What `.status` shows is [`BwLimit::status`]. At shutdown the mount calls
//! [`BwLimit::release`] so that no worker stays asleep in the bucket.

mod timetable;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use log::info;
use serde::Serialize;

use super::clock::{Clock, Interrupt, SystemClock};
pub use timetable::{parse_limit, InForce, Limit, Timetable, MIN_RATE, WEEK_MINUTES};

/// The smallest burst: one streamed piece of a fragment body.
pub const MIN_BURST: u64 = 256 * 1024;
/// How long a blocked [`BwLimit::take`] sleeps before it looks at the limit again.
const RECHECK: Duration = Duration::from_millis(250);

/// Maps a wall-clock time to its minute of the week (0 = Monday 00:00) in some time zone.
pub type WeekMinute = fn(SystemTime) -> u32;

/// Where the timetable in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `bwlimit` key or `--bwlimit` flag.
    Config,
    /// A `bwlimit VALUE` written to `.control` (until `bwlimit reset` or the unmount).
    Control,
}

/// The limit in force, as `.status` and `.status.json` (`bandwidth_limit`) show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BandwidthStatus {
    /// Bytes per second now; `null` when off.
    pub bytes_per_sec: Option<u64>,
    /// When the timetable next changes the limit (`19:00`, `Fri 19:00`); absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The limit from then (`off`, `4 MiB/s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    /// The whole value in force, as it would be written (`08:00,2MiB 19:00,off`).
    pub timetable: String,
    pub source: Source,
}

impl BandwidthStatus {
    /// `bandwidth limit: 2 MiB/s (until 19:00, then off)`: the `.status` header line.
    pub fn line(&self) -> String {
        let now = match self.bytes_per_sec {
            Some(n) => Limit::BytesPerSec(n).display_text(),
            None => "off".to_string(),
        };
        let mut notes = Vec::new();
        if let (Some(until), Some(then)) = (&self.until, &self.then) {
            notes.push(format!("until {until}, then {then}"));
        }
        if self.source == Source::Control {
            notes.push("set through .control".to_string());
        }
        if notes.is_empty() {
            format!("bandwidth limit: {now}")
        } else {
            format!("bandwidth limit: {now} ({})", notes.join("; "))
        }
    }
}

/// The token bucket's state, in bytes since it was made.
#[derive(Debug)]
struct Bucket {
    /// `None`: no limit.
    rate: Option<u64>,
    burst: f64,
    /// Bytes the clock has credited (capped at `reserved + burst`).
    credit: f64,
    /// Bytes callers have reserved.
    reserved: f64,
    /// When `credit` was last brought up to date.
    at: Instant,
}

fn burst_of(rate: u64) -> f64 {
    (rate / 2).max(MIN_BURST) as f64
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            rate: None,
            burst: MIN_BURST as f64,
            credit: MIN_BURST as f64,
            reserved: 0.0,
            at: now,
        }
    }

    /// Bring `credit` up to `now` at the current rate.
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        match self.rate {
            None => self.credit = self.credit.max(self.reserved + self.burst),
            Some(r) => self.credit = (self.credit + r as f64 * dt).min(self.reserved + self.burst),
        }
    }

    /// Change the rate at `now`: debt is kept (and paid at the new rate), except that a switch
    /// to off forgives it and a switch from off starts with a full bucket.
    fn set_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.advance(now);
        let was_off = self.rate.is_none();
        self.rate = rate;
        self.burst = rate.map_or(MIN_BURST as f64, burst_of);
        if was_off || rate.is_none() {
            self.credit = self.reserved + self.burst;
        } else {
            self.credit = self.credit.min(self.reserved + self.burst);
        }
    }

    /// How long until the credit reaches `target` (bytes reserved up to and including a
    /// caller's own).
    fn wait_until(&self, target: f64) -> Duration {
        match self.rate {
            Some(r) if self.credit < target => {
                Duration::try_from_secs_f64((target - self.credit) / r as f64)
                    .unwrap_or(Duration::MAX)
            }
            _ => Duration::ZERO,
        }
    }
}

struct Inner {
    configured: Timetable,
    current: Timetable,
    source: Source,
    bucket: Bucket,
}

/// The mount-wide upload bandwidth limit. Cheap to share (`Arc`); every method takes `&self`.
pub struct BwLimit {
    clock: Arc<dyn Clock>,
    zone: WeekMinute,
    inner: Mutex<Inner>,
    /// Set by [`BwLimit::release`]: the mount is stopping, nobody waits any more.
    released: Interrupt,
}

impl std::fmt::Debug for BwLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        write!(f, "BwLimit({}, {:?})", inner.current, inner.source)
    }
}

impl BwLimit {
    /// The limit of a mount: the real clock, the local time zone.
    pub fn new(configured: Timetable) -> Self {
        Self::with_clock(configured, Arc::new(SystemClock), local_week_minute)
    }

    /// With an injected clock and time zone (tests: `ManualClock`, [`utc_week_minute`]).
    pub fn with_clock(configured: Timetable, clock: Arc<dyn Clock>, zone: WeekMinute) -> Self {
        let now = clock.now();
        let minute = if configured.is_constant() {
            0
        } else {
            zone(clock.wall())
        };
        let mut bucket = Bucket::new(now);
        bucket.set_rate(configured.at(minute).limit.bytes_per_sec(), now);
        BwLimit {
            clock,
            zone,
            inner: Mutex::new(Inner {
                current: configured.clone(),
                configured,
                source: Source::Config,
                bucket,
            }),
            released: Interrupt::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The timetable's entry in force now, applied to the bucket if it changed.
    fn sync(&self, inner: &mut Inner) -> InForce {
        let in_force = if inner.current.is_constant() {
            inner.current.at(0)
        } else {
            inner.current.at((self.zone)(self.clock.wall()))
        };
        let rate = in_force.limit.bytes_per_sec();
        if rate != inner.bucket.rate {
            info!("bandwidth limit now {}", in_force.limit);
            inner.bucket.set_rate(rate, self.clock.now());
        }
        in_force
    }

    /// The limit in force now (`None`: off).
    pub fn rate(&self) -> Option<u64> {
        let mut inner = self.lock();
        self.sync(&mut inner).limit.bytes_per_sec()
    }

    /// Reserve `bytes` and say how long the caller must wait before sending them (zero when
    /// the bucket holds them, or when there is no limit). The reservation is made either way:
    /// a caller that does not wait has its bytes counted against the next callers.
    pub fn wait_for(&self, bytes: u64) -> Duration {
        let wait = self.reserve(bytes).1;
        if self.released.is_set() {
            return Duration::ZERO;
        }
        wait
    }

    /// Reserve `bytes`; the reservation's place among all reserved bytes, and the wait now.
    fn reserve(&self, bytes: u64) -> (f64, Duration) {
        let mut inner = self.lock();
        self.sync(&mut inner);
        let now = self.clock.now();
        inner.bucket.advance(now);
        inner.bucket.reserved += bytes as f64;
        let target = inner.bucket.reserved;
        (target, inner.bucket.wait_until(target))
    }

    /// How long a reservation at `target` still waits, at the limit in force now.
    fn remaining(&self, target: f64) -> Duration {
        let mut inner = self.lock();
        self.sync(&mut inner);
        let now = self.clock.now();
        inner.bucket.advance(now);
        inner.bucket.wait_until(target)
    }

    /// Reserve `bytes` and block until they may be sent, or until [`release`](Self::release).
    pub fn take(&self, bytes: u64) {
        self.take_or_interrupt(bytes, &self.released);
    }

    /// The mount is stopping: every caller of [`take`](Self::take) returns now and nobody
    /// waits any more, so a small limit never holds up a shutdown (what is cut off resumes at
    /// the next mount). For good.
    pub fn release(&self) {
        self.released.trigger();
    }

    /// [`take`](Self::take) that returns early (`false`) when `interrupt` is triggered (cancel,
    /// shutdown). The wait is re-checked every 250 ms against the limit in force, so a live
    /// change (or the timetable's) applies to callers already waiting.
    pub fn take_or_interrupt(&self, bytes: u64, interrupt: &Interrupt) -> bool {
        let (target, mut wait) = self.reserve(bytes);
        while !wait.is_zero() {
            if !self.clock.sleep(wait.min(RECHECK), interrupt) {
                return false;
            }
            wait = self.remaining(target);
        }
        true
    }

    /// Replace the timetable in force (`.control bwlimit VALUE`) until [`reset`](Self::reset).
    pub fn set(&self, timetable: Timetable) {
        let mut inner = self.lock();
        info!("bandwidth limit set through .control: {timetable}");
        inner.current = timetable;
        inner.source = Source::Control;
        self.sync(&mut inner);
    }

    /// Go back to the configured timetable (`.control bwlimit reset`).
    pub fn reset(&self) {
        let mut inner = self.lock();
        info!(
            "bandwidth limit back to the configured {}",
            inner.configured
        );
        inner.current = inner.configured.clone();
        inner.source = Source::Config;
        self.sync(&mut inner);
    }

    /// What `.status` shows: `None` when no limit is configured and none was set live.
    pub fn status(&self) -> Option<BandwidthStatus> {
        let mut inner = self.lock();
        if inner.source == Source::Config && inner.current.is_off() {
            return None;
        }
        let in_force = self.sync(&mut inner);
        let (until, then) = match in_force.next {
            Some((minute, limit)) => (
                Some(inner.current.minute_text(minute)),
                Some(limit.display_text()),
            ),
            None => (None, None),
        };
        Some(BandwidthStatus {
            bytes_per_sec: in_force.limit.bytes_per_sec(),
            until,
            then,
            timetable: inner.current.text(),
            source: inner.source,
        })
    }
}

/// The minute of the week of `t` in UTC.
pub fn utc_week_minute(t: SystemTime) -> u32 {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 1970-01-01 was a Thursday: day 3 of a week starting Monday.
    let day = (secs / 86_400 + 3) % 7;
    let minute = (secs % 86_400) / 60;
    (day * 24 * 60 + minute) as u32
}

/// The minute of the week of `t` in the local time zone (`TZ`, `/etc/localtime`).
pub fn local_week_minute(t: SystemTime) -> u32 {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as libc::time_t,
        Err(_) => return 0,
    };
    // SAFETY: localtime_r writes only into the `tm` we own; both pointers are valid.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return utc_week_minute(t);
        }
        tm
    };
    // tm_wday: 0 = Sunday.
    let day = ((tm.tm_wday + 6) % 7) as u32;
    day * 24 * 60 + (tm.tm_hour as u32) * 60 + tm.tm_min as u32
}

#[cfg(test)]
mod tests;

impl super::byte_pace::BytePace for BwLimit {
    fn take(&self, bytes: u64) {
        BwLimit::take(self, bytes)
    }
}
