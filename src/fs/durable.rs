//! Durability in the filesystem core: spool records written at each state change of a written
//! file, the spool space limit, the hidden `.control` file (retry, discard, drain), files
//! adopted from the spool at start-up, and the opt-in fsync barrier.
//!
//! Invariants:
//! - Records written here (FUSE threads) are atomic but not fsynced: they survive a crash of
//!   the process; the worker fsyncs data and record before it uploads (see `spool.rs`).
//! - A spool file gets an `incomplete` record when it is created for writing and a `sealed`
//!   record (with its fingerprint) just before its job is submitted; everything later is the
//!   queue's `JobStore`. So after a crash every spool file says whether it was complete.
//! - A file that saw a failed write (ENOSPC from `spool_max` or from the disk, any I/O error)
//!   is never uploaded as if complete: at its last close it is kept as `incomplete` with the
//!   reason, until the user retries (uploads it as it is) or discards it.
//! - Space is checked before a write grows a spool file: with `spool_max` the sum of spool
//!   data files (rescanned at most once a second, plus growth since) must stay under it;
//!   without it, the spool filesystem must keep max(1 GiB, 5 %) free. Nothing spooled is
//!   touched when a write is refused.
//! - `.control` is write-only, not listed, looked up by name at the root (like `.status`);
//!   each written line is one command, applied at once, and the write fails with the errno of
//!   the first command that failed (ENOENT: no such kept upload, EINVAL: unknown command).
//!
//! Locks: the meter's and the broken set's mutexes are leaves, held only to copy or update a
//! value; the barrier's mutex is held only while waiting on its condition variable. None is
//! held across I/O or together with the core's state lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{unbounded, Receiver, Sender};
use log::{info, warn};

use super::inode::{LocalFile, NodeKind};
use super::{Fs, FsError, FsResult};
use crate::remote::RemoteItem;
use crate::spool::{save_record_fast as save_record, Fingerprint, RecordState, Spool, SpoolRecord};
use crate::upload::status::{SpoolUsage, UploadState};
use crate::upload::{UploadJob, UploadQueue};

/// The hidden, write-only command file at the mount root.
pub const CONTROL_NAME: &str = ".control";
pub const CONTROL_INO: u64 = 4;

/// Free space always left on the spool filesystem when no `spool_max` is set.
const MIN_MARGIN: u64 = 1024 * 1024 * 1024;
/// How long a spool usage scan is trusted (growth through writes is added in between).
const SCAN_TTL: Duration = Duration::from_secs(1);
/// Longest an fsync barrier waits for the commit before it fails with EIO.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Spool usage: a cached scan of the data files plus the bytes written since.
#[derive(Default)]
struct Meter {
    /// (when, bytes, files) of the last scan.
    scan: Mutex<Option<(Instant, u64, u64)>>,
    grown: AtomicU64,
}

impl Meter {
    fn rescan(&self, spool: &Spool) -> (u64, u64) {
        let mut bytes = 0;
        let mut files = 0;
        for f in spool.existing_files().unwrap_or_default() {
            if let Ok(m) = std::fs::metadata(&f) {
                bytes += m.len();
                files += 1;
            }
        }
        self.grown.store(0, Ordering::SeqCst);
        *self.scan.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), bytes, files));
        (bytes, files)
    }

    /// (bytes, files), rescanning if the last scan is older than `SCAN_TTL` or `fresh`.
    fn usage(&self, spool: &Spool, fresh: bool) -> (u64, u64) {
        let cached = *self.scan.lock().unwrap_or_else(|e| e.into_inner());
        match cached {
            Some((at, bytes, files)) if !fresh && at.elapsed() < SCAN_TTL => {
                (bytes + self.grown.load(Ordering::SeqCst), files)
            }
            _ => self.rescan(spool),
        }
    }
}

/// Waiters of the fsync barrier, keyed by the snapshot spool file they wait for.
#[derive(Default)]
pub(super) struct Barrier {
    results: Mutex<HashMap<PathBuf, Option<Result<(), String>>>>,
    cond: Condvar,
}

impl Barrier {
    /// Called by the upload listener for every job that ends.
    pub(super) fn finished(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>) {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = r.get_mut(&job.spool_file) {
            *slot = Some(outcome.map(|_| ()).map_err(str::to_string));
            self.cond.notify_all();
        }
    }
}

/// What the core adds for durability (one field of `Fs`).
pub(super) struct Durability {
    spool: Arc<Spool>,
    spool_max: Option<u64>,
    fsync_barrier: bool,
    meter: Meter,
    /// Spool files that saw a failed write, with the reason.
    broken: Mutex<HashMap<PathBuf, String>>,
    draining: AtomicBool,
    drain_tx: Sender<()>,
    drain_rx: Receiver<()>,
    pub(super) barrier: Arc<Barrier>,
}

impl Durability {
    pub(super) fn new(spool: Arc<Spool>, spool_max: Option<u64>, fsync_barrier: bool) -> Self {
        let (drain_tx, drain_rx) = unbounded();
        Durability {
            spool,
            spool_max,
            fsync_barrier,
            meter: Meter::default(),
            broken: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            drain_tx,
            drain_rx,
            barrier: Arc::new(Barrier::default()),
        }
    }

    /// A spool file was created for writing `path`: record it as `incomplete`.
    pub(super) fn opened_for_write(&self, spool_file: &Path, path: &str) -> FsResult<()> {
        if self.draining.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(spool_file);
            return Err(FsError::ReadOnly);
        }
        let rec = SpoolRecord::new(path, RecordState::Incomplete, 0, SystemTime::now());
        save_record(spool_file, &rec).map_err(|e| {
            crate::spool::remove_spooled(spool_file);
            FsError::Io(e)
        })
    }

    /// Refuse new writers while draining.
    pub(super) fn check_writable(&self) -> FsResult<()> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// May a spool file grow by `growth` bytes? Marks `spool_file` broken if not.
    pub(super) fn admit(&self, spool_file: &Path, growth: u64) -> FsResult<()> {
        if growth == 0 {
            return Ok(());
        }
        let refused = match self.spool_max {
            Some(max) => {
                let (used, _) = self.meter.usage(&self.spool, false);
                if used + growth > max {
                    let (used, _) = self.meter.usage(&self.spool, true);
                    (used + growth > max).then(|| format!("spool_max ({max} bytes) reached"))
                } else {
                    None
                }
            }
            None => {
                let d = self.spool.disk_space()?;
                let margin = MIN_MARGIN.max(d.total_bytes / 20);
                (d.free_bytes < growth + margin).then(|| {
                    format!("less than {margin} bytes would be left free on the spool filesystem")
                })
            }
        };
        if let Some(reason) = refused {
            self.mark_broken(spool_file, &format!("a write failed: no space ({reason})"));
            return Err(FsError::NoSpace(reason));
        }
        self.meter.grown.fetch_add(growth, Ordering::SeqCst);
        Ok(())
    }

    /// A write to `spool_file` failed: it must not be uploaded as complete.
    pub(super) fn mark_broken(&self, spool_file: &Path, reason: &str) {
        warn!("spool file {}: {reason}", spool_file.display());
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spool_file.to_path_buf(), reason.to_string());
    }

    /// The job's last writer closed: keep it as incomplete if a write failed, otherwise
    /// record it as sealed. Returns whether it may be submitted.
    pub(super) fn sealing(&self, queue: &UploadQueue, job: &UploadJob) -> bool {
        let broken = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.spool_file);
        let mut rec = SpoolRecord::new(&job.remote_path, RecordState::Sealed, job.size, job.mtime);
        if let Some(reason) = broken {
            rec.state = RecordState::Incomplete;
            rec.error = Some(reason.clone());
            if let Err(e) = save_record(&job.spool_file, &rec) {
                warn!("{}: cannot record the spool file: {e}", job.remote_path);
            }
            warn!("{}: not uploaded: {reason}", job.remote_path);
            queue.keep(job.clone(), UploadState::Incomplete, &reason);
            return false;
        }
        rec.fingerprint = Fingerprint::of(&job.spool_file).ok();
        if let Err(e) = save_record(&job.spool_file, &rec) {
            // The upload goes on; after a crash the file would show as incomplete.
            warn!("{}: cannot record the spool file: {e}", job.remote_path);
        }
        true
    }

    pub(super) fn usage(&self) -> SpoolUsage {
        let (bytes, files) = self.meter.usage(&self.spool, false);
        let limit_bytes = match self.spool_max {
            Some(m) => Some(m),
            None => self.spool.disk_space().ok().map(|d| {
                let margin = MIN_MARGIN.max(d.total_bytes / 20);
                (bytes + d.free_bytes).saturating_sub(margin)
            }),
        };
        SpoolUsage {
            files,
            bytes,
            limit_bytes,
        }
    }
}

/// One `.control` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// Queue again a failed or incomplete upload (`None`: all of them).
    Retry(Option<String>),
    /// Remove a failed or incomplete upload from the spool (`None`: all of them).
    Discard(Option<String>),
    /// Refuse new writes, finish the queue, then unmount.
    Drain,
}

impl ControlCommand {
    /// Parse one line: `retry PATH`, `retry --all`, `discard PATH`, `discard --all`, `drain`.
    /// Paths are relative to the mount root (a leading `/` is ignored).
    pub fn parse(line: &str) -> Result<ControlCommand, String> {
        let line = line.trim();
        let (verb, arg) = match line.split_once(char::is_whitespace) {
            Some((v, a)) => (v, a.trim()),
            None => (line, ""),
        };
        let target = |arg: &str| -> Result<Option<String>, String> {
            match arg {
                "" => Err(format!("{verb}: give a path or --all")),
                "--all" => Ok(None),
                p => Ok(Some(p.trim_start_matches('/').to_string())),
            }
        };
        match verb {
            "retry" => Ok(ControlCommand::Retry(target(arg)?)),
            "discard" => Ok(ControlCommand::Discard(target(arg)?)),
            "drain" if arg.is_empty() => Ok(ControlCommand::Drain),
            _ => Err(format!("unknown command {line:?}")),
        }
    }
}

impl Fs {
    /// Apply the commands written to `.control`.
    pub(super) fn control_write(&self, data: &[u8]) -> FsResult<u32> {
        let text = String::from_utf8_lossy(data);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let cmd = ControlCommand::parse(line).map_err(FsError::InvalidName)?;
            info!("control: {cmd:?}");
            match cmd {
                ControlCommand::Retry(path) => {
                    if self.queue.retry_failed(path.as_deref()) == 0 && path.is_some() {
                        return Err(FsError::NotFound);
                    }
                }
                ControlCommand::Discard(path) => {
                    if self.discard(path.as_deref()) == 0 && path.is_some() {
                        return Err(FsError::NotFound);
                    }
                }
                ControlCommand::Drain => self.request_drain(),
            }
        }
        Ok(data.len() as u32)
    }

    /// Remove failed/incomplete uploads (one path or all) from the spool. Returns how many.
    pub fn discard(&self, path: Option<&str>) -> usize {
        let jobs: Vec<UploadJob> = self
            .queue
            .failed_jobs()
            .into_iter()
            .filter(|j| path.is_none_or(|p| j.remote_path.eq_ignore_ascii_case(p)))
            .collect();
        for job in &jobs {
            self.queue.cancel(&job.remote_path);
            let mut st = self.lock();
            if let Some(ino) = st.table.ino_of(&job.remote_path) {
                let mut forget = false;
                if let Some(n) = st.table.get_mut(ino) {
                    if n.local.as_ref().is_some_and(|l| l.spool == job.spool_file) {
                        n.local = None;
                        forget = n.remote.is_none();
                    }
                }
                if forget {
                    st.table.remove_tree(&job.remote_path);
                }
            }
            info!("{}: discarded from the spool", job.remote_path);
        }
        jobs.len()
    }

    /// Put a spool file recovered at start-up into the table, so `ls`, `stat` and reads show
    /// it while it waits: `queued` for a sealed file about to be submitted, else a failed one.
    pub fn adopt_spooled(
        &self,
        path: &str,
        spool_file: PathBuf,
        size: u64,
        mtime: SystemTime,
        queued: bool,
        failed: Option<String>,
    ) {
        let mut st = self.lock();
        for dir in crate::remote::ancestors(path) {
            if st.table.ino_of(dir).is_none() {
                st.table.upsert(dir, NodeKind::Dir);
            }
        }
        let ino = st.table.upsert(path, NodeKind::File);
        if let Some(node) = st.table.get_mut(ino) {
            node.local = Some(LocalFile {
                spool: spool_file,
                size,
                mtime,
                writers: 0,
                dirty: false,
                queued,
                queued_mtime: queued.then_some(mtime),
                failed,
            });
        }
    }

    /// Ask the mount to drain: new writes are refused now; the mount's drain thread waits for
    /// the queue and unmounts.
    pub fn request_drain(&self) {
        self.dur.draining.store(true, Ordering::SeqCst);
        let _ = self.dur.drain_tx.send(());
    }

    /// Handles open for writing (a file is queued only at its last release).
    pub fn open_writers(&self) -> usize {
        self.lock()
            .handles
            .values()
            .filter(|h| matches!(h.as_ref(), super::HandleKind::Write { .. }))
            .count()
    }

    /// Drain requests (from `.control`), for the mount's drain thread.
    pub fn drain_requests(&self) -> Receiver<()> {
        self.dur.drain_rx.clone()
    }

    /// The fsync barrier (opt-in): upload a snapshot of the file's current content and wait
    /// until SharePoint has committed it. The file stays open and is uploaded again at its
    /// last close as usual.
    pub(super) fn fsync_barrier(&self, ino: u64, spool_file: &Path) -> FsResult<()> {
        if !self.dur.fsync_barrier {
            return Ok(());
        }
        let (path, size, mtime) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            let l = n.local.as_ref().ok_or(FsError::BadHandle)?;
            (n.path.clone(), l.size, l.mtime)
        };
        let (snap, _) = self.spool.new_file()?;
        if let Err(e) = std::fs::copy(spool_file, &snap) {
            let _ = std::fs::remove_file(&snap);
            return Err(e.into());
        }
        let job = UploadJob::new(path.clone(), snap.clone(), size, mtime);
        if !self.dur.sealing(&self.queue, &job) {
            return Err(FsError::NoSpace("a write to this file failed".into()));
        }
        let barrier = &self.dur.barrier;
        barrier
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(snap.clone(), None);
        self.queue.submit(job);
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        let mut r = barrier.results.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = loop {
            if let Some(Some(done)) = r.get(&snap) {
                break done.clone();
            }
            // Superseded by a newer upload of the path before it ran: no answer will come.
            if !snap.exists() {
                break Err("superseded by a newer upload".to_string());
            }
            let now = Instant::now();
            if now >= deadline {
                break Err("timed out".to_string());
            }
            let wait = (deadline - now).min(Duration::from_millis(500));
            r = barrier
                .cond
                .wait_timeout(r, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        r.remove(&snap);
        drop(r);
        outcome.map_err(|reason| {
            warn!("{path}: fsync barrier: {reason}");
            FsError::Io(std::io::Error::other(reason))
        })
    }
}

/// Spool files marked broken (for tests).
#[cfg(test)]
pub(super) fn broken_files(d: &Durability) -> std::collections::HashSet<PathBuf> {
    d.broken
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_commands_parse() {
        use ControlCommand::*;
        for (line, want) in [
            (
                "retry Docs/a b.bin\n",
                Ok(Retry(Some("Docs/a b.bin".into()))),
            ),
            ("retry --all", Ok(Retry(None))),
            ("discard /x.bin", Ok(Discard(Some("x.bin".into())))),
            ("discard --all", Ok(Discard(None))),
            ("drain", Ok(Drain)),
        ] {
            assert_eq!(ControlCommand::parse(line), want, "{line}");
        }
        for bad in ["retry", "frobnicate x", "drain now", ""] {
            assert!(ControlCommand::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spool_max_refuses_and_marks_broken() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(tmp.path()).unwrap());
        let d = Durability::new(spool.clone(), Some(1000), false);
        let (f, _) = spool.new_file().unwrap();
        d.admit(&f, 600).unwrap();
        std::fs::write(&f, vec![0u8; 600]).unwrap();
        assert!(matches!(d.admit(&f, 600), Err(FsError::NoSpace(_))));
        assert!(broken_files(&d).contains(&f));
        assert_eq!(d.usage().bytes, 600);
        assert_eq!(d.usage().limit_bytes, Some(1000));
    }
}
