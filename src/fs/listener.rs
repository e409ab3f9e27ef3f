//! The core's upload listener: what a finished upload changes in the table. On commit the
//! node gets the server's metadata and, if nothing was written since the job was queued, drops
//! its local content (the queue has removed the spool file); an mtime changed after the job
//! was queued is patched on the server. On failure the node keeps its content, marked failed.
//! An upload that committed for a path no longer in the table (renamed or deleted meanwhile)
//! is removed from the server.
//!
//! Locks: the queue calls the listener without its own lock held (see "Locks" in `mod.rs`).
//! The barrier's lock is taken and released first, then the core state lock; the remote calls
//! (orphan delete, mtime fix) run after the core lock is released.

use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use super::barrier::FsyncBarrier;
use super::inode::RemoteMeta;
use super::CoreShared;
use crate::remote::RemoteItem;
use crate::upload::{UploadJob, UploadListener};

/// Applies finished uploads to the table and wakes fsync barrier waiters.
pub(super) struct CoreListener {
    shared: Arc<CoreShared>,
    barrier: Arc<FsyncBarrier>,
}

impl CoreListener {
    pub(super) fn new(shared: Arc<CoreShared>, barrier: Arc<FsyncBarrier>) -> Self {
        CoreListener { shared, barrier }
    }
}

impl UploadListener for CoreListener {
    fn finished(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>) {
        self.barrier.finished(job, outcome);
        let mut fix_mtime = None;
        {
            let mut st = self.shared.lock();
            let node = st
                .table
                .ino_of(&job.remote_path)
                .and_then(|ino| st.table.get_mut(ino));
            let Some(node) = node else {
                // The file was renamed or deleted while this upload was in flight and the
                // upload committed anyway: the item under the old name is an orphan.
                drop(st);
                if outcome.is_ok() {
                    info!(
                        "{}: removing upload of a file renamed or deleted meanwhile",
                        job.remote_path
                    );
                    if let Err(e) = self.shared.remote.delete(&job.remote_path) {
                        warn!("{}: could not remove orphaned upload: {e}", job.remote_path);
                    }
                }
                return;
            };
            let same_content = node
                .local
                .as_ref()
                .is_some_and(|l| l.spool == job.spool_file);
            match outcome {
                Ok(item) => {
                    node.remote = Some(RemoteMeta::from(item));
                    node.seen = Some(Instant::now());
                    if same_content {
                        if let Some(l) = &node.local {
                            if l.mtime != job.mtime {
                                fix_mtime = Some(l.mtime);
                            }
                        }
                        let settled = node
                            .local
                            .as_ref()
                            .is_some_and(|l| l.writers == 0 && !l.dirty);
                        if settled {
                            node.local = None;
                        } else if let Some(l) = node.local.as_mut() {
                            l.queued = false;
                        }
                        if let (Some(m), Some(r)) = (fix_mtime, node.remote.as_mut()) {
                            r.mtime = m;
                        }
                    }
                }
                Err(reason) => {
                    if same_content {
                        if let Some(l) = node.local.as_mut() {
                            l.queued = false;
                            l.failed = Some(reason.to_string());
                        }
                    }
                }
            }
        }
        // The mtime changed (utimens) after the job was queued: apply it on the server.
        if let Some(m) = fix_mtime {
            if let Err(e) = self.shared.remote.set_mtime(&job.remote_path, m) {
                warn!("{}: could not set modification time: {e}", job.remote_path);
            }
        }
    }
}
