//! The live status registry: one entry per job the queue knows, updated by the queue and the
//! workers, read as a [`StatusSnapshot`] by `.status`.
//!
//! Entries are keyed by job id, not path: a path can have a finished entry (done/failed) and a
//! newer queued one at the same time. Done entries are kept for `retention` and then pruned
//! (on every update and snapshot), so memory stays bounded however many files pass through.
//! Failed and incomplete entries stay until the queue removes them (retry, discard, a newer
//! upload of the path): their data is still in the spool, waiting for the user.
//! The rate is an exponentially weighted average of per-fragment rates (weight 0.3 for the
//! newest sample), so one fast or slow fragment does not make the ETA jump. Errors are
//! sanitised on the way in. The mutex is held only to update or copy entries; the queue may
//! call in while holding its own state lock (lock order: queue state → registry).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::status::{sanitize_error, StatusSnapshot, UploadState, UploadStatus, CONFLICT_NOTE};

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
}

/// Status of every known job.
#[derive(Debug)]
pub struct StatusRegistry {
    retention: Duration,
    entries: Mutex<BTreeMap<u64, Entry>>,
}

impl StatusRegistry {
    pub fn new(retention: Duration) -> Self {
        StatusRegistry {
            retention,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(&id) {
            f(entry);
        }
    }

    /// A new job, or one put back in the queue (keeps its attempts and last error).
    pub fn queued(&self, id: u64, path: &str, size: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(id).or_insert_with(|| Entry::new(path, size));
        entry.status.state = UploadState::Queued;
        entry.status.uploaded = 0;
        entry.status.finished = None;
        entry.finished_at = None;
        entry.rate = None;
        entry.sample = None;
    }

    /// Forget a job (superseded or cancelled).
    pub fn remove(&self, id: u64) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
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
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(id).or_insert_with(|| Entry::new(path, size));
        entry.status.state = state;
        entry.status.error = Some(sanitize_error(reason));
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
        self.update(id, |e| {
            match outcome {
                Ok(()) => {
                    e.status.state = UploadState::Done;
                    e.status.uploaded = e.status.size;
                }
                Err(reason) => {
                    e.status.state = UploadState::Failed;
                    e.status.error = Some(sanitize_error(reason));
                }
            }
            e.status.finished = Some(wall);
            e.finished_at = Some(now);
            e.sample = None;
        });
        self.prune(now);
    }

    fn prune(&self, now: Instant) {
        let retention = self.retention;
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| {
                e.status.state != UploadState::Done
                    || e.finished_at
                        .is_none_or(|t| now.saturating_duration_since(t) < retention)
            });
    }

    /// Current entries: uploading and retrying first, then queued, then failed, then done;
    /// in submission order within each group.
    pub fn snapshot(&self, now: Instant, throttled_until: Option<SystemTime>) -> StatusSnapshot {
        self.prune(now);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut uploads: Vec<(u8, u64, UploadStatus)> = entries
            .iter()
            .map(|(id, e)| {
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
                (rank, *id, s)
            })
            .collect();
        drop(entries);
        uploads.sort_by_key(|(rank, id, _)| (*rank, *id));
        StatusSnapshot::new(
            uploads.into_iter().map(|(_, _, s)| s).collect(),
            throttled_until,
        )
    }
}

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
