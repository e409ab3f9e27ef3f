//! The spool records the core writes on FUSE threads, and the set of spool files that saw a
//! failed write.
//!
//! Invariants:
//! - Records written here are atomic but not fsynced: they survive a crash of the process;
//!   the worker fsyncs data and record before it uploads (see `spool.rs`).
//! - A spool file gets an `incomplete` record when it is created for writing and a `sealed`
//!   record (with its fingerprint) just before its job is submitted; everything later is the
//!   queue's `JobStore`. So after a crash every spool file says whether it was complete.
//! - A file that saw a failed write (ENOSPC from `spool_max` or from the disk, any I/O error)
//!   is never uploaded as if complete: at its last close it is kept as `incomplete` with the
//!   reason, until the user retries (uploads it as it is) or discards it.
//!
//! Locks: the broken set's mutex is a leaf, held only to insert or remove one entry.
//! [`SpoolRecords::record_sealed`] is called with the core lock held (from `seal`, on purpose:
//! see "Locks" in `mod.rs`) and without it (from the fsync barrier).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use log::warn;

use super::{FsError, FsResult};
use crate::spool::{save_record_fast as save_record, Fingerprint, RecordState, SpoolRecord};
use crate::upload::status::UploadState;
use crate::upload::{UploadJob, UploadQueue};

/// Records of spool files being written, and which of them saw a failed write.
#[derive(Default)]
pub(super) struct SpoolRecords {
    /// Spool files that saw a failed write, with the reason.
    broken: Mutex<HashMap<PathBuf, String>>,
}

impl SpoolRecords {
    /// A spool file was created for writing `path`: record it as `incomplete`. On failure the
    /// spool file is removed.
    pub(super) fn incomplete(&self, spool_file: &Path, path: &str) -> FsResult<()> {
        let rec = SpoolRecord::new(path, RecordState::Incomplete, 0, SystemTime::now());
        save_record(spool_file, &rec).map_err(|e| {
            crate::spool::remove_spooled(spool_file);
            FsError::Io(e)
        })
    }

    /// A write to `spool_file` failed: it must not be uploaded as complete.
    pub(super) fn mark_broken(&self, spool_file: &Path, reason: &str) {
        warn!("spool file {}: {reason}", spool_file.display());
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spool_file.to_path_buf(), reason.to_string());
    }

    /// The job's last writer closed: keep it as incomplete (in the queue's kept set) if a
    /// write failed, otherwise record it as sealed. Returns whether it may be submitted.
    /// Called with the core lock held from `seal`; writes one small record.
    pub(super) fn record_sealed(&self, queue: &UploadQueue, job: &UploadJob) -> bool {
        let broken = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.spool_file);
        let mut rec = SpoolRecord::new(&job.remote_path, RecordState::Sealed, job.size, job.mtime);
        rec.base_etag = job.base_etag.clone();
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

    /// Spool files marked broken (for tests).
    #[cfg(test)]
    pub(super) fn broken_files(&self) -> std::collections::HashSet<PathBuf> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}
