//! The spool directory: private local storage where written files live until SharePoint has
//! committed them.
//!
//! Invariants: the directory is mode 0700 and files in it 0600 (spool content and, later,
//! upload-session records are private); one mount owns a spool directory at a time (an
//! exclusive `flock` on `spool/lock`, released by the kernel if the process dies); spool files
//! are created with `O_EXCL` under unique names and are never reused. Files left by an earlier
//! run are never deleted here: recovery decides what they are.
//!
//! Each spool file has a small JSON record beside it (`data/NAME.json`): target path, size,
//! mtime, state, attempts, the upload session (URL — a secret, hence 0600 — and expiry) and the
//! bytes SharePoint acknowledged. A record is rewritten in place in one page-sized `pwrite`
//! (padded to its old length), or through a temp file and a rename when it is larger; so after
//! a crash of the process each record is either the old or the new version, never a torn one.
//! Durable updates are fsynced. After a power loss a device that tears a 4 KiB write could
//! leave a record unreadable: recovery then keeps the data under `lost+found` (never lost).
//!
//! Record life: `incomplete` when the spool file is created for writing; `sealed` (with the
//! size and a fingerprint of the data file) when the last writer closes it and the upload is
//! queued; then the session URL, its expiry and the acknowledged bytes as the upload advances
//! ([`SpoolStore`], the queue's `JobStore`); `failed` with the reason if the upload gives up;
//! removed with the data file when the queue releases the job (after the commit, on cancel,
//! or when superseded: [`SpoolStore`]'s `released` is the one place that decides). The fingerprint (size, inode and the data
//! file's own mtime in nanoseconds, captured at seal) is how recovery checks that the local
//! file is the one that was being sent before it resumes a session: nothing writes a spool
//! file after it is sealed, so any change means "not the same content"; the quickXorHash check
//! after the commit is the final guard.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The word after the pid in the lock file of a process in its unmount drain.
const DRAINING: &str = "draining";

/// How long a mount waits for a holder that does not say it is draining: the time between
/// the kernel's unmount and the old process marking its drain (or exiting), with margin.
const UNMOUNT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Replace a small file's content (the spool lock file's pid line).
trait WriteAtStart {
    fn write_all_at_start(self, bytes: &[u8]) -> io::Result<()>;
}

impl WriteAtStart for &File {
    fn write_all_at_start(self, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.set_len(0)?;
        self.write_all_at(bytes, 0)
    }
}

/// Free space and capacity of the filesystem holding the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub block_size: u64,
}

/// An open, locked spool directory.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    data: PathBuf,
    _lock: File,
    counter: AtomicU64,
}

impl Spool {
    /// [`Spool::open`], waiting up to `wait` while the holder of the lock says it is draining:
    /// after an outside unmount the previous mount process keeps the spool while it finishes
    /// its uploads (`unmount_drain`), so `umount && mount` must not fail for that. A holder
    /// that does not say so within [`UNMOUNT_GRACE`] is still serving a mount: refused. The
    /// wait is logged once, with the holder's pid.
    pub fn open_waiting(root: &Path, wait: std::time::Duration) -> io::Result<Spool> {
        let started = std::time::Instant::now();
        let deadline = started + wait.max(UNMOUNT_GRACE);
        let mut told = false;
        loop {
            match Spool::open(root) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let holder = fs::read_to_string(root.join("lock")).unwrap_or_default();
                    let mut words = holder.split_whitespace();
                    let pid = words.next().unwrap_or("?").to_string();
                    let draining = words.next() == Some(DRAINING);
                    // Not (yet) draining: an `umount && mount` can get here before the old
                    // process has seen its session end; give it a moment to say so or go.
                    let serving = !draining && started.elapsed() >= UNMOUNT_GRACE;
                    if serving || std::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    if draining && !told {
                        log::info!(
                            "spool directory {} is held by shareuplift pid {pid}, which is \
                             finishing its uploads after an unmount; waiting up to {} s for it",
                            root.display(),
                            wait.as_secs()
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Say in the lock file that this process no longer serves a mount and only finishes its
    /// uploads (the unmount drain): a new mount of this spool waits for it.
    pub fn mark_draining(&self) {
        let line = format!("{} {DRAINING}\n", std::process::id());
        if let Err(e) = (&self._lock).write_all_at_start(line.as_bytes()) {
            log::debug!("cannot mark the spool lock as draining: {e}");
        }
    }

    /// Create (mode 0700) and lock `root`. Fails if another mount holds it. The lock file
    /// holds the holder's pid (for the message of a mount that waits for it).
    pub fn open(root: &Path) -> io::Result<Spool> {
        fs::create_dir_all(root)?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        let data = root.join("data");
        fs::create_dir_all(&data)?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join("lock"))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "spool directory {} is in use by another shareuplift mount; \
                     use a different spool_dir for each mount",
                    root.display()
                ),
            ));
        }
        let _ = (&lock).write_all_at_start(format!("{}\n", std::process::id()).as_bytes());
        Ok(Spool {
            root: root.to_path_buf(),
            data,
            _lock: lock,
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of spool data files.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Create a new, empty, private spool file under a unique name.
    pub fn new_file(&self) -> io::Result<(PathBuf, File)> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let path = self
                .data
                .join(format!("{nanos:x}-{}-{n}.data", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Spool data files present right now (e.g. left by an earlier run).
    pub fn existing_files(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.data)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "data") {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Capacity and free space of the spool's filesystem.
    pub fn disk_space(&self) -> io::Result<DiskSpace> {
        disk_space(&self.root)
    }
}

/// Where a spool file is in its life, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Open for writing: not complete, never uploaded as is after a crash.
    Incomplete,
    /// Closed and waiting for (or in) upload.
    Sealed,
    /// Gave up after bounded attempts or a permanent refusal; kept for retry or discard.
    Failed,
}

/// The persisted state of one spool file. `session_url` is a bearer capability.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolRecord {
    /// Mount-relative target path.
    pub path: String,
    pub state: RecordState,
    pub size: u64,
    /// Seconds and nanoseconds since the epoch of the mtime to send.
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub error: Option<String>,
    /// Upload session URL, if a session is open.
    #[serde(default)]
    pub session_url: Option<String>,
    /// Session expiry, seconds since the epoch.
    #[serde(default)]
    pub session_expires: Option<i64>,
    /// Bytes SharePoint has acknowledged in that session.
    #[serde(default)]
    pub acked: u64,
    /// quickXorHash of the content when sealed, to check the spool file before resuming.
    #[serde(default)]
    pub content_hash: Option<String>,
    /// The data file as it was when sealed (see the module documentation).
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// A createUploadSession may have been sent for this file: set, durably, before the
    /// first one (`JobStore::starting`), never cleared. With no `session_url` after a crash,
    /// the server may hold a session for the path that was never recorded (the window
    /// between its creation and our record write): recovery marks the job so.
    #[serde(default)]
    pub may_hold_session: bool,
    /// The eTag the content was edited from (`UploadJob::base_etag`), sent as `if-match`;
    /// absent in records of earlier versions and for files that replace by intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_etag: Option<String>,
}

/// Identity of a sealed spool data file: length, inode and mtime (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u64,
    pub ino: u64,
    pub mtime_ns: i128,
}

impl Fingerprint {
    /// The fingerprint of `data_file` now.
    pub fn of(data_file: &Path) -> io::Result<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(data_file)?;
        Ok(Fingerprint {
            len: m.len(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

impl std::fmt::Debug for SpoolRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolRecord")
            .field("path", &self.path)
            .field("state", &self.state)
            .field("size", &self.size)
            .field("attempts", &self.attempts)
            .field("session", &self.session_url.as_ref().map(|_| "<redacted>"))
            .field("acked", &self.acked)
            .field("may_hold_session", &self.may_hold_session)
            .finish()
    }
}

impl SpoolRecord {
    /// A record with no session, no attempts and no error.
    pub fn new(path: &str, state: RecordState, size: u64, mtime: SystemTime) -> SpoolRecord {
        let mut rec = SpoolRecord {
            path: path.to_string(),
            state,
            size,
            mtime_secs: 0,
            mtime_nanos: 0,
            attempts: 0,
            error: None,
            session_url: None,
            session_expires: None,
            acked: 0,
            content_hash: None,
            fingerprint: None,
            may_hold_session: false,
            base_etag: None,
        };
        rec.set_mtime(mtime);
        rec
    }

    /// The session the record holds, if any.
    pub fn session(&self) -> Option<crate::remote::UploadSession> {
        let url = self.session_url.as_ref()?;
        Some(crate::remote::UploadSession {
            url: crate::redact::SecretUrl::new(url.clone()),
            expires: self
                .session_expires
                .map(|s| UNIX_EPOCH + std::time::Duration::from_secs(s.max(0) as u64)),
        })
    }

    pub fn mtime(&self) -> SystemTime {
        let d = std::time::Duration::new(self.mtime_secs.max(0) as u64, self.mtime_nanos);
        UNIX_EPOCH + d
    }

    pub fn set_mtime(&mut self, t: SystemTime) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.mtime_secs = d.as_secs() as i64;
        self.mtime_nanos = d.subsec_nanos();
    }
}

mod record_io;

#[cfg(test)]
pub(crate) use record_io::slow_disk;
use record_io::update_record_with;
pub use record_io::{
    load_record, make_durable, record_path, save_record, save_record_fast, update_record,
};

/// The queue's `JobStore`: keeps each job's record up to date. Errors are logged, never
/// fatal: the upload goes on, and at worst a restart starts that file over from byte 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpoolStore;

impl SpoolStore {
    fn update(job: &crate::upload::UploadJob, what: &str, f: impl FnOnce(&mut SpoolRecord)) {
        Self::update_with(job, what, true, f)
    }

    /// [`Self::update`], fsynced only when `sync`.
    fn update_with(
        job: &crate::upload::UploadJob,
        what: &str,
        sync: bool,
        f: impl FnOnce(&mut SpoolRecord),
    ) {
        // Only the data file's name is logged: the record holds the upload URL.
        if let Err(e) = update_record_with(&job.spool_file, sync, f) {
            log::warn!(
                "{}: cannot persist {what} in the spool: {e}",
                job.remote_path
            );
        }
    }
}

impl crate::upload::JobStore for SpoolStore {
    /// The record is rewritten with `may_hold_session`, then the data file, the record and the
    /// directory are fsynced, all before the worker's first createUploadSession: after a crash
    /// from here on, recovery knows a session may exist that the record does not hold.
    fn starting(&self, job: &crate::upload::UploadJob) {
        Self::update_with(job, "the start of the upload", false, |r| {
            r.may_hold_session = true
        });
        // Data file, record and directory (the create of both was not synced).
        if let Err(e) = make_durable(&job.spool_file) {
            log::warn!("{}: cannot sync the spool file: {e}", job.remote_path);
        }
    }

    fn session(
        &self,
        job: &crate::upload::UploadJob,
        session: Option<&crate::remote::UploadSession>,
    ) {
        Self::update(job, "the upload session", |r| {
            r.session_url = session.map(|s| s.url.expose().to_string());
            r.session_expires = session
                .and_then(|s| s.expires)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            r.acked = 0;
        });
    }

    fn acked(&self, job: &crate::upload::UploadJob, bytes: u64) {
        Self::update(job, "progress", |r| r.acked = bytes);
    }

    fn acked_until(&self, job: &crate::upload::UploadJob, bytes: u64, expires: Option<SystemTime>) {
        Self::update(job, "progress", |r| {
            r.acked = bytes;
            if let Some(secs) = expires
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64)
            {
                r.session_expires = Some(secs);
            }
        });
    }

    fn failed(&self, job: &crate::upload::UploadJob, reason: &str) {
        Self::update(job, "the failure", |r| {
            r.state = RecordState::Failed;
            r.attempts += 1;
            r.error = Some(crate::upload::status::sanitize_error(reason));
        });
    }

    /// Not fsynced: it is called on FUSE threads (a rename or `utimens` right after close) and
    /// only for jobs that have not started, whose worker fsyncs the record in
    /// [`Self::starting`] before the upload.
    fn amended(&self, job: &crate::upload::UploadJob) {
        Self::update_with(job, "the new name or mtime", false, |r| {
            r.path = job.remote_path.clone();
            r.set_mtime(job.mtime);
        });
    }

    fn requeued(&self, job: &crate::upload::UploadJob) {
        Self::update(job, "the re-queue", |r| {
            r.state = RecordState::Sealed;
            r.error = None;
        });
    }

    /// Every release ends the spool file's life: committed content is on SharePoint, and a
    /// cancelled or superseded job's content is not wanted any more.
    fn released(&self, job: &crate::upload::UploadJob, why: crate::upload::Release) {
        log::debug!("{}: spool file released ({why:?})", job.remote_path);
        if let Err(e) = fs::remove_file(&job.spool_file) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove spool file {}: {e}", job.spool_file.display());
            }
        }
        remove_spooled(&job.spool_file);
    }
}

/// Remove a spool data file and its record (after commit, or on discard).
pub fn remove_spooled(data_file: &Path) {
    let _ = fs::remove_file(data_file);
    let _ = fs::remove_file(record_path(data_file));
}

/// `statvfs` of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    } as u64;
    Ok(DiskSpace {
        total_bytes: st.f_blocks as u64 * frsize,
        free_bytes: st.f_bavail as u64 * frsize,
        block_size: frsize,
    })
}

#[cfg(test)]
mod tests;
