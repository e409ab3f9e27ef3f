//! The live status registry: one entry per job the queue knows, updated by the queue and the
//! workers, read as a [`StatusSnapshot`] by `.status`.
//!
//! Entries are keyed by job id, not path: a path can have a finished entry (done/failed) and a
//! newer queued one at the same time. Done entries are kept for `retention` and at most
//! `StatusLimits::max_done` of them (the oldest go first), pruned on every finish and snapshot
//! in finish order (a queue of ids, so pruning costs O(pruned), not O(entries)): memory stays
//! bounded however many files pass through. Above `StatusLimits::summary_at` entries a
//! snapshot is in the summary form (`status_summary.rs`): every active, failed and incomplete
//! entry, the first `summary_at` queued ones, the last done ones, and a [`DoneSummary`];
//! [`StatusRegistry::snapshot_all`] lists them all.
//! Failed and incomplete entries stay until the queue removes them (retry, discard, a newer
//! upload of the path): their data is still in the spool, waiting for the user.
//! The rate is an exponentially weighted average of per-fragment rates (weight 0.3 for the
//! newest sample), so one fast or slow fragment does not make the ETA jump. Errors are
//! sanitised on the way in. The mutex is held only to update or copy entries; the queue may
//! call in while holding its own state lock (lock order: queue state → registry).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::status::{sanitize_error, StatusSnapshot, UploadState, UploadStatus, CONFLICT_NOTE};
use super::status_summary::{DoneSummary, StatusLimits, FULL_LIST_NAME};

/// Weight of the newest sample in the smoothed rate.
const RATE_ALPHA: f64 = 0.3;

#[derive(Debug)]
struct Entry {
    status: UploadStatus,
    rate: Option<f64>,
    /// Time and byte count of the previous progress sample.
    sample: Option<(Instant, u64)>,
    started_at: Option<Instant>,
    finished_at: Option<Instant>,
}

impl Entry {
    fn new(path: &str, size: u64) -> Entry {
        Entry {
            status: UploadStatus::queued(path, size),
            rate: None,
            sample: None,
            started_at: None,
            finished_at: None,
        }
    }

    fn is_done(&self) -> bool {
        self.status.state == UploadState::Done
    }
}

/// The entries and the bookkeeping of the done ones, behind one mutex.
#[derive(Debug, Default)]
struct Entries {
    map: BTreeMap<u64, Entry>,
    /// `(id, finished_at)` of done entries in finish order; an item whose entry is no longer
    /// done at that instant is stale and skipped.
    done_order: VecDeque<(u64, Instant)>,
    /// Entries in state done now.
    done: usize,
    /// Done since the start: count and bytes.
    done_total: (u64, u64),
}

impl Entries {
    /// Apply `f` to entry `id` (if any), keeping the count of done entries right.
    fn with(&mut self, id: u64, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.map.get_mut(&id) {
            let was = e.is_done();
            f(e);
            match (was, e.is_done()) {
                (true, false) => self.done -= 1,
                (false, true) => self.done += 1,
                _ => {}
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if self.map.remove(&id).is_some_and(|e| e.is_done()) {
            self.done -= 1;
        }
    }

    /// Whether `item` of `done_order` still names a done entry finished at that instant.
    fn current(&self, (id, at): (u64, Instant)) -> bool {
        self.map
            .get(&id)
            .is_some_and(|e| e.is_done() && e.finished_at == Some(at))
    }

    /// Drop done entries older than `retention`, and the oldest beyond `max_done`.
    fn prune(&mut self, now: Instant, retention: Duration, max_done: usize) {
        while let Some(&front) = self.done_order.front() {
            if !self.current(front) {
                self.done_order.pop_front();
                continue;
            }
            if self.done > max_done || now.saturating_duration_since(front.1) >= retention {
                self.done_order.pop_front();
                self.remove(front.0);
                continue;
            }
            break;
        }
        // Stale items behind the front (re-queued or removed entries) are dropped once they
        // outnumber the live ones, so the queue stays O(retained).
        if self.done_order.len() > 2 * self.done + 64 {
            let order = std::mem::take(&mut self.done_order);
            self.done_order = order.into_iter().filter(|i| self.current(*i)).collect();
        }
    }

    /// The status of entry `id` as shown, with its display rank.
    fn shown(id: u64, e: &Entry) -> (u8, u64, UploadStatus) {
        let mut s = e.status.clone();
        if s.state == UploadState::Uploading {
            s.rate_bytes_per_sec = e.rate.map(|r| r.round() as u64);
            s.eta_secs = e
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| (s.size.saturating_sub(s.uploaded) as f64 / r).ceil() as u64);
        }
        let rank = match s.state {
            UploadState::Uploading | UploadState::Retrying => 0,
            UploadState::Queued => 1,
            UploadState::Failed | UploadState::Incomplete => 2,
            UploadState::Done => 3,
        };
        (rank, id, s)
    }
}

/// Status of every known job.
#[derive(Debug)]
pub struct StatusRegistry {
    retention: Duration,
    limits: StatusLimits,
    entries: Mutex<Entries>,
}

impl StatusRegistry {
    pub fn new(retention: Duration) -> Self {
        Self::with_limits(retention, StatusLimits::default())
    }

    pub fn with_limits(retention: Duration, limits: StatusLimits) -> Self {
        StatusRegistry {
            retention,
            limits,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        self.lock().with(id, f);
    }

    /// A new job, or one put back in the queue (keeps its attempts and last error).
    pub fn queued(&self, id: u64, path: &str, size: u64) {
        let mut entries = self.lock();
        entries
            .map
            .entry(id)
            .or_insert_with(|| Entry::new(path, size));
        entries.with(id, |entry| {
            entry.status.state = UploadState::Queued;
            entry.status.uploaded = 0;
            entry.status.finished = None;
            entry.finished_at = None;
            entry.rate = None;
            entry.sample = None;
        });
    }

    /// Forget a job (superseded or cancelled).
    pub fn remove(&self, id: u64) {
        self.lock().remove(id);
    }

    /// A worker picked the job up.
    pub fn started(&self, id: u64, now: Instant, wall: SystemTime, attempts: u32) {
        self.update(id, |e| {
            e.status.state = UploadState::Uploading;
            e.status.attempts = attempts;
            e.status.uploaded = 0;
            e.status.started = Some(wall);
            e.started_at = Some(now);
            e.sample = Some((now, 0));
            e.rate = None;
        });
    }

    /// The server has acknowledged `uploaded` bytes (may be fewer than before: new session).
    pub fn progress(&self, id: u64, now: Instant, uploaded: u64) {
        self.update(id, |e| {
            e.status.state = UploadState::Uploading;
            match e.sample {
                Some((t0, b0)) if uploaded >= b0 && now > t0 => {
                    let sample = (uploaded - b0) as f64 / (now - t0).as_secs_f64();
                    e.rate = Some(match e.rate {
                        Some(r) => RATE_ALPHA * sample + (1.0 - RATE_ALPHA) * r,
                        None => sample,
                    });
                }
                Some((_, b0)) if uploaded >= b0 => {}
                _ => e.rate = None,
            }
            e.sample = Some((now, uploaded));
            e.status.uploaded = uploaded;
        });
    }

    /// The job's fragments are now `bytes` long (shown while it uploads).
    pub fn fragment_size(&self, id: u64, bytes: u64) {
        self.update(id, |e| e.status.fragment_bytes = Some(bytes));
    }

    /// A job kept in the spool without being uploaded: failed (with `attempts`) or incomplete.
    pub fn kept(&self, id: u64, path: &str, size: u64, state: UploadState, reason: &str) {
        let mut entries = self.lock();
        entries
            .map
            .entry(id)
            .or_insert_with(|| Entry::new(path, size));
        entries.with(id, |entry| {
            entry.status.state = state;
            entry.status.error = Some(sanitize_error(reason));
        });
    }

    /// A request failed and will be retried.
    pub fn retrying(&self, id: u64, attempts: u32, error: &str) {
        self.update(id, |e| {
            e.status.state = UploadState::Retrying;
            e.status.attempts = attempts;
            e.status.error = Some(sanitize_error(error));
        });
    }

    /// Remember a note for the job's line (shown until the entry is pruned);
    /// `server_modified` flags an upload SharePoint rewrote after the commit.
    pub fn note(&self, id: u64, note: &str, server_modified: bool) {
        self.update(id, |e| {
            e.status.note = Some(sanitize_error(note));
            e.status.server_modified |= server_modified;
        });
    }

    /// Forget the entry's last error (a remote operation whose wait is over).
    pub fn clear_error(&self, id: u64) {
        self.update(id, |e| e.status.error = None);
    }

    /// The job's content is being saved as a conflict copy at `copy_path` (see
    /// `UploadStatus::conflict_copy`); the note says so, with both names.
    pub fn conflict_copy(&self, id: u64, copy_path: &str) {
        let copy_name = copy_path.rsplit('/').next().unwrap_or(copy_path);
        let note = format!("{CONFLICT_NOTE}; saved as \"{copy_name}\"");
        self.update(id, |e| {
            e.status.note = Some(sanitize_error(&note));
            e.status.conflict_copy = Some(copy_path.to_string());
        });
    }

    /// The job ended: `Ok` = done, `Err(reason)` = failed.
    pub fn finished(&self, id: u64, now: Instant, wall: SystemTime, outcome: Result<(), &str>) {
        let mut entries = self.lock();
        let mut done_size = None;
        entries.with(id, |e| {
            match outcome {
                Ok(()) => {
                    e.status.state = UploadState::Done;
                    e.status.uploaded = e.status.size;
                    done_size = Some(e.status.size);
                }
                Err(reason) => {
                    e.status.state = UploadState::Failed;
                    e.status.error = Some(sanitize_error(reason));
                }
            }
            e.status.finished = Some(wall);
            e.finished_at = Some(now);
            e.sample = None;
            e.rate = None;
        });
        if let Some(size) = done_size {
            entries.done_order.push_back((id, now));
            entries.done_total.0 += 1;
            entries.done_total.1 += size;
        }
        entries.prune(now, self.retention, self.limits.max_done);
    }

    /// Current entries: uploading and retrying first, then queued, then failed, then done;
    /// in submission order within each group. Above `summary_at` entries, in the summary
    /// form (module doc).
    pub fn snapshot(&self, now: Instant, throttled_until: Option<SystemTime>) -> StatusSnapshot {
        self.snapshot_with(now, throttled_until, false)
    }

    /// Every retained entry, whatever their number (`.status.all.json`).
    pub fn snapshot_all(
        &self,
        now: Instant,
        throttled_until: Option<SystemTime>,
    ) -> StatusSnapshot {
        self.snapshot_with(now, throttled_until, true)
    }

    fn snapshot_with(
        &self,
        now: Instant,
        throttled_until: Option<SystemTime>,
        all: bool,
    ) -> StatusSnapshot {
        let mut entries = self.lock();
        entries.prune(now, self.retention, self.limits.max_done);
        let summary = !all && entries.map.len() > self.limits.summary_at;
        let mut uploads: Vec<(u8, u64, UploadStatus)> = Vec::new();
        let mut done_bytes = 0;
        // Summary form: the first `summary_at` queued entries (in submission order) are listed,
        // the others only counted (a long backlog must not make the status big either).
        let (mut queued_listed, mut queued_omitted, mut queued_omitted_bytes) = (0, 0, 0);
        for (id, e) in &entries.map {
            match e.status.state {
                UploadState::Done => {
                    done_bytes += e.status.size;
                    if summary {
                        continue;
                    }
                }
                UploadState::Queued if summary => {
                    if queued_listed >= self.limits.summary_at.max(1) {
                        queued_omitted += 1;
                        queued_omitted_bytes += e.status.size.saturating_sub(e.status.uploaded);
                        continue;
                    }
                    queued_listed += 1;
                }
                _ => {}
            }
            uploads.push(Entries::shown(*id, e));
        }
        let mut done_summary = None;
        if summary {
            let want = self.limits.listed_done();
            let mut last: Vec<u64> = Vec::with_capacity(want);
            for item in entries.done_order.iter().rev() {
                if last.len() == want {
                    break;
                }
                if entries.current(*item) {
                    last.push(item.0);
                }
            }
            for id in &last {
                if let Some(e) = entries.map.get(id) {
                    uploads.push(Entries::shown(*id, e));
                }
            }
            done_summary = Some(DoneSummary {
                count: entries.done as u64,
                bytes: done_bytes,
                listed: last.len() as u64,
                since_start: entries.done_total.0,
                bytes_since_start: entries.done_total.1,
                full_list: FULL_LIST_NAME,
            });
        }
        let done = entries.done;
        drop(entries);
        uploads.sort_by_key(|(rank, id, _)| (*rank, *id));
        let mut snap = StatusSnapshot::new(
            uploads.into_iter().map(|(_, _, s)| s).collect(),
            throttled_until,
        );
        if let Some(s) = done_summary {
            snap.totals.done = done;
            snap.done_summary = Some(s);
        }
        snap.totals.queued += queued_omitted as usize;
        snap.totals.bytes_pending += queued_omitted_bytes;
        snap.queued_not_listed = queued_omitted;
        snap
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod summary_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn lifecycle_rate_eta_and_pruning() {
        let reg = StatusRegistry::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        reg.queued(1, "a.bin", 100 * MIB);
        reg.queued(2, "b.bin", 10);
        reg.started(1, t0, wall, 1);
        reg.progress(1, t0 + Duration::from_secs(1), 10 * MIB);
        let s = reg.snapshot(t0, None);
        assert_eq!(s.uploads[0].path, "a.bin");
        assert_eq!(s.uploads[0].rate_bytes_per_sec, Some(10 * MIB));
        assert_eq!(s.uploads[0].eta_secs, Some(9));
        // A slower sample moves the rate by 30 %: 0.3·5 + 0.7·10 = 8.5 MiB/s.
        reg.progress(1, t0 + Duration::from_secs(3), 20 * MIB);
        let s = reg.snapshot(t0, None);
        assert_eq!(s.uploads[0].rate_bytes_per_sec, Some(17 * MIB / 2));
        reg.retrying(1, 2, "connection error:\nreset https://h/x?tempauth=1");
        let s = reg.snapshot(t0, None);
        assert_eq!(s.uploads[0].state, UploadState::Retrying);
        assert_eq!(s.uploads[0].rate_bytes_per_sec, None);
        assert_eq!(
            s.uploads[0].error.as_deref(),
            Some("connection error: reset https://h/…")
        );
        assert_eq!(s.totals.queued, 1);
        assert_eq!(s.totals.retrying, 1);

        let t1 = t0 + Duration::from_secs(10);
        reg.finished(1, t1, wall, Ok(()));
        reg.finished(2, t1, wall, Err("quota"));
        let s = reg.snapshot(t1, None);
        assert_eq!(s.totals.done, 1);
        assert_eq!(s.totals.failed, 1);
        assert_eq!(s.uploads[0].path, "b.bin"); // failed before done
        assert_eq!(s.uploads[1].uploaded, 100 * MIB);
        // Done entries are pruned after the retention; failed ones stay until the queue
        // removes them.
        let s = reg.snapshot(t1 + Duration::from_secs(600), None);
        assert_eq!(s.uploads.len(), 1);
        assert_eq!(s.uploads[0].state, UploadState::Failed);
        reg.remove(2);
        assert!(reg.snapshot(t1, None).uploads.is_empty());
    }

    #[test]
    fn restart_from_zero_resets_rate() {
        let reg = StatusRegistry::new(Duration::from_secs(1));
        let t0 = Instant::now();
        reg.queued(7, "a", 10 * MIB);
        reg.started(7, t0, SystemTime::UNIX_EPOCH, 1);
        reg.progress(7, t0 + Duration::from_secs(1), 5 * MIB);
        reg.progress(7, t0 + Duration::from_secs(2), 0);
        let s = reg.snapshot(t0, None);
        assert_eq!(s.uploads[0].uploaded, 0);
        assert_eq!(s.uploads[0].rate_bytes_per_sec, None);
    }
}
