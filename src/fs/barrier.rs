//! The opt-in fsync barrier's waiting room: an fsync that uploads a snapshot of its file
//! waits here until the upload listener reports that snapshot's job finished.
//!
//! Waiters are keyed by the snapshot's spool file, which is unique per fsync. A waiter also
//! gives up when its snapshot file disappears (a newer upload of the path superseded the job
//! before it ran, so no answer will come) or at its deadline.
//!
//! Locks: the result map's mutex is held only to update a slot, or while waiting on the
//! condition variable (which releases it); never together with the core state lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::remote::RemoteItem;
use crate::upload::UploadJob;

/// Waiters of the fsync barrier, keyed by the snapshot spool file they wait for.
#[derive(Default)]
pub(super) struct FsyncBarrier {
    results: Mutex<HashMap<PathBuf, Option<Result<(), String>>>>,
    cond: Condvar,
}

impl FsyncBarrier {
    /// Called by the upload listener for every job that ends.
    pub(super) fn finished(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>) {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = r.get_mut(&job.spool_file) {
            *slot = Some(outcome.map(|_| ()).map_err(str::to_string));
            self.cond.notify_all();
        }
    }

    /// Register a waiter for `snap` before its job is submitted, so its end is not missed.
    pub(super) fn expect(&self, snap: &Path) {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(snap.to_path_buf(), None);
    }

    /// Wait until the job of `snap` (registered with `expect`) has ended, or it can no
    /// longer end, or `deadline` passes. `Err(reason)` unless it committed.
    pub(super) fn wait(&self, snap: &Path, deadline: Instant) -> Result<(), String> {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = loop {
            if let Some(Some(done)) = r.get(snap) {
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
            r = self
                .cond
                .wait_timeout(r, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        r.remove(snap);
        outcome
    }
}
