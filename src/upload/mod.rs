//! The upload queue: a FUSE-agnostic write-back queue. It is handed sealed spool files
//! (`UploadJob`s) and drives each through a Graph upload session on worker threads, with the
//! retry policy of reference §2/§7, and reports state for `.status`.
//!
//! This file holds the public types the filesystem core builds against; the parts live in one
//! file each: `queue` (per-path serialisation, workers, cancel, shutdown), `worker` (one upload
//! session, start to hash check), `chunk` (fragment planning), `retry` (error classification,
//! backoff, attempt counting), `throttle` (the gate all workers pass), `clock` (time seam),
//! `registry` (live status), `status` (snapshot and rendering), `name_clash` (the reason for a
//! name SharePoint's collation refuses), `quota` (the drive's quota before big uploads) and
//! `pending_ops` (deletes of locked files, late hash checks, notices). Tests run it against
//! `crate::remote::memory::MemoryRemote`.
//!
//! Contract with the core: `submit` never blocks; the queue never creates, writes or deletes
//! a spool file. From `submit` on it holds the job until it lets go of it, which it reports
//! through [`JobStore::released`] ([`Release`]: committed, after telling the listener;
//! cancelled; or superseded by a newer job for the same path). The store (the spool) decides
//! what to delete. A failed job is held until `retry_failed`, `cancel` or a newer submit for
//! its path.
//!
//! Durability: the [`JobStore`] (the spool records, `crate::spool::SpoolStore`, plugged in by
//! `mount`) is told of every session opened or dropped, of acknowledged bytes, of failures and
//! re-queues, so that a restart finds each job's session and resumes it
//! ([`UploadJob::resume`]). On shutdown an interrupted job keeps its session (persisted) for
//! the next mount; only a cancel DELETEs it. This module imports nothing above `remote`.

pub mod bwlimit;
pub mod byte_pace;
pub mod chunk;
pub mod clock;
pub mod conflict_name;
pub mod enrichment;
pub mod folders;
pub mod fragment_size;
pub mod limiter;
pub mod name_clash;
pub mod pacer;
pub mod pending_ops;
mod queue;
pub mod quota;
pub mod registry;
pub mod retry;
pub mod status;
pub mod status_summary;
pub mod temp_names;
pub mod throttle;
pub mod worker;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::remote::{Conflict, RemoteItem, UploadSession};

pub use conflict_name::conflict_name;
pub use queue::UploadQueue;

/// Computes the quickXorHash (base64) of a file; the integrator plugs in
/// `crate::quickxor::quickxor_file`.
pub type FileHasher = Arc<dyn Fn(&Path) -> io::Result<String> + Send + Sync>;

/// Settings of the queue, from the mount configuration.
#[derive(Clone)]
pub struct QueueConfig {
    /// Parallel uploads (worker threads); at least 1. Default 4.
    pub workers: usize,
    /// Extra workers for small files only (see "Lanes" in `queue/mod.rs`); 0: none, small files
    /// share `workers`. Default 0; mounts use the `small_file_workers` key (16).
    pub small_file_workers: usize,
    /// Fragment size: a multiple of `protocol::FRAGMENT_UNIT` (320 KiB), at most
    /// `protocol::MAX_FRAGMENT` (rounded down into that range if not). Default 10 MiB. The
    /// start when `adapt_fragments`, else every fragment's size. Bodies are streamed: no
    /// worker holds a buffer of this size.
    pub chunk_size: u64,
    /// Size fragments to the link from `chunk_size` on (`fragment_size.rs`). Default false;
    /// mounts: true unless `chunk_size` is set in the configuration.
    pub adapt_fragments: bool,
    /// Every fragment body's bytes pass it (the bandwidth limit). Default [`byte_pace::NoPace`].
    pub pace: Arc<dyn byte_pace::BytePace>,
    /// Whether the user must act before the remote can sign in again (the queue pauses
    /// meanwhile). Default [`crate::remote::hints::NoSignIn`].
    pub sign_in: Arc<dyn crate::remote::hints::SignIn>,
    /// Whether the remote is a SharePoint document library, which rewrites Office and PDF
    /// files after upload (metadata enrichment, `enrichment.rs`). Default false.
    pub enriches_files: bool,
    /// Default `Replace`.
    pub conflict: Conflict,
    /// Tries per job before it is `failed`: every failed request that is retried counts one
    /// (see `retry` for the exact rule). Default 10.
    pub max_attempts: u32,
    /// How long finished (done/failed) entries stay in the status. Default 10 min.
    pub retention: Duration,
    /// When `.status` switches to its summary form and how many done entries it keeps.
    pub status_limits: status_summary::StatusLimits,
    /// Ceiling of the first backoff (full jitter, doubling). Default 1 s.
    pub backoff_base: Duration,
    /// Largest backoff ceiling. Default 60 s.
    pub backoff_cap: Duration,
    /// Wait before asking again for a quickXorHash the server had not computed. Default 2 s.
    pub hash_recheck_delay: Duration,
    /// The service's idle lifetime of an upload session: how long a createUploadSession
    /// refused with 409 because an earlier session holds the path is retried
    /// (`retry::StaleSessionWait`). Default 900 s.
    pub session_idle: Duration,
    /// How long a file SharePoint reports locked (423: checked out, open in another app) is
    /// retried, without spending `max_attempts`, before the job fails. Default 1 h.
    pub locked_wait: Duration,
    /// Hash of a spool file, compared with the server's `quickXorHash` after the commit.
    pub hasher: FileHasher,
    /// Time source; `SystemClock` except in tests.
    pub clock: Arc<dyn clock::Clock>,
    /// How long a submitted job waits before it may start (real time), so that a rename or
    /// utimens right after close amends it instead of racing its upload. Default 0; mounts
    /// use 1 s.
    pub write_back_delay: Duration,
    /// Where job progress is persisted and released spool files go (the spool).
    pub store: Arc<dyn JobStore>,
    /// The mount-wide pacer (`limiter.rs`) when the remote handed to `UploadQueue::start` is
    /// already its `LimitedRemote` (`mount.rs`: one limiter and one gate for every request of
    /// the mount). `None`: the queue wraps the remote in a pacer of its own. Default `None`.
    pub pacer: Option<limiter::Pacer>,
}

impl QueueConfig {
    /// The defaults above, with the given hasher and job store.
    pub fn new(hasher: FileHasher, store: Arc<dyn JobStore>) -> Self {
        QueueConfig {
            workers: 4,
            small_file_workers: 0,
            chunk_size: crate::protocol::DEFAULT_CHUNK,
            adapt_fragments: false,
            pace: byte_pace::no_pace(),
            sign_in: Arc::new(crate::remote::hints::NoSignIn),
            enriches_files: false,
            conflict: Conflict::Replace,
            max_attempts: 10,
            retention: Duration::from_secs(600),
            status_limits: status_summary::StatusLimits::default(),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            hash_recheck_delay: Duration::from_secs(2),
            session_idle: Duration::from_secs(900),
            locked_wait: Duration::from_secs(3600),
            hasher,
            clock: Arc::new(clock::SystemClock),
            write_back_delay: Duration::ZERO,
            store,
            pacer: None,
        }
    }
}

impl fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueConfig")
            .field("workers", &self.workers)
            .field("small_file_workers", &self.small_file_workers)
            .field("chunk_size", &self.chunk_size)
            .field("adapt_fragments", &self.adapt_fragments)
            .field("conflict", &self.conflict)
            .field("max_attempts", &self.max_attempts)
            .field("retention", &self.retention)
            .field("status_limits", &self.status_limits)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("hash_recheck_delay", &self.hash_recheck_delay)
            .field("session_idle", &self.session_idle)
            .field("locked_wait", &self.locked_wait)
            .finish_non_exhaustive()
    }
}

/// A sealed spool file to upload. The queue holds the job from `submit` on and releases it
/// ([`JobStore::released`]) after SharePoint commits the upload (and only then), on cancel, or
/// when superseded; it never touches the file itself except to read it.
#[derive(Debug, Clone)]
pub struct UploadJob {
    /// Target path relative to the mount root, `/`-separated.
    pub remote_path: String,
    pub spool_file: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
    /// Set for a job recovered from the spool after a restart.
    pub resume: Option<Resume>,
    /// The eTag of the server's version this content was edited from (a read-modify-write of
    /// a file fetched from SharePoint), sent as `if-match`. On 412 — a colleague saved a newer
    /// version meanwhile — the content goes beside it under [`conflict_name`] instead of
    /// overwriting it. `None` (a new file, an `O_TRUNC` rewrite, a copy of spooled content):
    /// the upload replaces whatever is there, by intent.
    pub base_etag: Option<String>,
}

impl UploadJob {
    /// A fresh job (not recovered).
    pub fn new(remote_path: String, spool_file: PathBuf, size: u64, mtime: SystemTime) -> Self {
        UploadJob {
            remote_path,
            spool_file,
            size,
            mtime,
            resume: None,
            base_etag: None,
        }
    }

    /// The same job, sent with `if-match: etag` (see [`UploadJob::base_etag`]).
    pub fn with_base_etag(mut self, etag: Option<String>) -> Self {
        self.base_etag = etag;
        self
    }
}

/// The mount-relative path of the conflict copy a committed job became, if it did: a job
/// sent with a base eTag whose committed item has another name than its target (the worker
/// saved it beside the file that changed on the server, `worker.rs`). `None`: the item is the
/// job's own path.
pub fn conflict_copy_of(job: &UploadJob, item: &RemoteItem) -> Option<String> {
    job.base_etag.as_ref()?;
    let (parent, leaf) = match job.remote_path.rsplit_once('/') {
        Some((p, l)) => (Some(p), l),
        None => (None, job.remote_path.as_str()),
    };
    if item.name.is_empty() || crate::collation::fold(&item.name) == crate::collation::fold(leaf) {
        return None;
    }
    Some(match parent {
        Some(p) => format!("{p}/{}", item.name),
        None => item.name.clone(),
    })
}

/// What a recovered job brings from the previous run.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The session the previous run had open, checked by recovery to belong to this exact
    /// spool content. The worker asks it where it stands (GET) before sending anything; a
    /// 404/401 or a past expiry means a new session from byte 0.
    pub session: Option<UploadSession>,
    /// The previous run may have opened a session that it never recorded (the record says a
    /// createUploadSession was sent, but holds no session): the path may be held on the
    /// server until that session expires, and the first 409 at creation is expected. Shown
    /// in `.status` while the worker waits.
    pub unrecorded_session: bool,
    /// A recorded session the job will not resume (its data file changed): the worker
    /// cancels it (DELETE) before creating a new one, so it does not hold the path.
    pub stale: Option<UploadSession>,
}

/// Why the queue let go of a job's spool file ([`JobStore::released`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// SharePoint committed the upload (the listener has been told).
    Committed,
    /// `cancel`led, queued, failed or uploading.
    Cancelled,
    /// A newer job for the same target path replaced it before it ran, or while it was
    /// failed, or it ended (stopped or failed) while a newer one was waiting.
    Superseded,
}

/// Persists job progress (the spool records) and owns what happens to released spool files.
/// Called with no queue lock held, on worker threads and on the caller's thread of `submit`,
/// `cancel`, `retarget`, `keep`, `retry_failed` and `amend_mtime`; implementations do local
/// file I/O only and never fail the job (errors are logged). They must not call back into
/// the queue.
pub trait JobStore: Send + Sync + 'static {
    /// A worker is about to upload the job: make its spool file and record durable.
    fn starting(&self, job: &UploadJob);
    /// A session was opened (`Some`) or abandoned (`None`: a new one is needed).
    fn session(&self, job: &UploadJob, session: Option<&UploadSession>);
    /// The server has acknowledged `bytes` bytes of the current session.
    fn acked(&self, job: &UploadJob, bytes: u64);
    /// As `acked`, with the session's new `expirationDateTime` from the same answer (a 202
    /// slides it forward), written in the same record update. The default forgets the expiry.
    fn acked_until(&self, job: &UploadJob, bytes: u64, expires: Option<SystemTime>) {
        let _ = expires;
        self.acked(job, bytes);
    }
    /// The job is `failed` (kept in the spool).
    fn failed(&self, job: &UploadJob, reason: &str);
    /// A failed or incomplete job was queued again by the user.
    fn requeued(&self, job: &UploadJob);
    /// A waiting job's target path or mtime changed (rename or utimens after close).
    fn amended(&self, job: &UploadJob);
    /// The queue holds the job no more and no other job of the queue uses its spool file:
    /// the store decides what to delete (the spool removes the data file and its record).
    fn released(&self, job: &UploadJob, why: Release);
}

/// Told when a job ends, before its spool file is released. Called on a worker thread with no
/// queue lock held (it may call back into the queue, except `shutdown`). Not called for jobs
/// that were cancelled or superseded before they ended.
pub trait UploadListener: Send + Sync + 'static {
    /// `Ok(item)` after commit and hash check; `Err(reason)` when the job is `failed`.
    fn finished(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>);
}

#[cfg(test)]
mod tests;
