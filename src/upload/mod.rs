//! The upload queue: a FUSE-agnostic write-back queue. It is handed sealed spool files
//! (`UploadJob`s) and drives each through a Graph upload session on worker threads, with the
//! retry policy of reference §2/§7, and reports state for `.status`.
//!
//! PLACEHOLDER API: bodies are filled in by the upload-queue work; signatures are the contract
//! the filesystem core builds against.

pub mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::remote::{Conflict, Remote, RemoteItem};
use status::StatusSnapshot;

/// Settings of the queue, from the mount configuration.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Parallel uploads (worker threads).
    pub workers: usize,
    /// Fragment size: a multiple of 320 KiB, under 60 MiB (validated by config).
    pub chunk_size: u64,
    pub conflict: Conflict,
    /// Attempts per job before it is `failed` (each attempt = one createUploadSession or one
    /// resumed run; see `retry`).
    pub max_attempts: u32,
    /// How long finished (done/failed) entries stay in the status.
    pub retention: Duration,
}

/// A sealed spool file to upload. The queue owns the spool file from `submit` on: it removes
/// it after SharePoint commits the upload (and only then).
#[derive(Debug, Clone)]
pub struct UploadJob {
    /// Target path relative to the mount root, `/`-separated.
    pub remote_path: String,
    pub spool_file: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
}

/// Told when a job ends, before its spool file is removed.
pub trait UploadListener: Send + Sync + 'static {
    /// `Ok(item)` after commit and hash check; `Err(reason)` when the job is `failed`.
    fn finished(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>);
}

/// Handle to the running queue; cheap to clone.
#[derive(Clone)]
pub struct UploadQueue {
    _remote: Arc<dyn Remote>,
}

impl UploadQueue {
    /// Start `config.workers` worker threads.
    pub fn start(
        remote: Arc<dyn Remote>,
        _config: QueueConfig,
        _listener: Arc<dyn UploadListener>,
    ) -> UploadQueue {
        UploadQueue { _remote: remote }
    }

    /// Queue a job; never blocks. A queued-but-not-started job for the same path is replaced
    /// (its spool file removed); a job for the same path that is uploading finishes first.
    pub fn submit(&self, _job: UploadJob) {}

    /// Cancel the queued or running job for `remote_path` (DELETE its session, remove its spool
    /// file). Returns whether there was one.
    pub fn cancel(&self, _remote_path: &str) -> bool {
        false
    }

    /// Everything `.status` shows.
    pub fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot::default()
    }

    /// Stop workers: in-flight fragments end, nothing new starts. Blocks until they exit.
    pub fn shutdown(&self) {}
}
