//! The core's upload listener: what a finished upload changes in the table. On commit the
//! node gets the server's metadata and, if nothing was written since the job was queued, drops
//! its local content (the queue has removed the spool file); an mtime changed after the job
//! was queued is patched on the server. On failure the node keeps its content, marked failed.
//! An upload that committed for a path no longer in the table (renamed or deleted meanwhile)
//! is removed from the server. An upload saved as a conflict copy (its file changed in
//! SharePoint while it was edited here, `upload::conflict_copy_of`) becomes a node of its own
//! at the copy's path; the original node lets go of the content and shows the server's
//! version again (re-read with one stat, after the core lock is released). A commit of an
//! in-place edit that stays open makes the committed eTag the base of the next upload.
//!
//! Locks: the queue calls the listener without its own lock held (see "Locks" in `mod.rs`).
//! The barrier's lock is taken and released first, then the core state lock; the remote calls
//! (orphan delete, mtime fix) run after the core lock is released.

use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use super::barrier::FsyncBarrier;
use super::inode::{LocalFile, Node, RemoteMeta};
use super::CoreShared;
use crate::remote::RemoteItem;
use crate::upload::{conflict_copy_of, UploadJob, UploadListener};

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
        if let Ok(item) = outcome {
            if let Some(copy) = conflict_copy_of(job, item) {
                self.conflict_copy(job, &copy, item);
                return;
            }
        }
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
                        if let Some(l) = let_go(node) {
                            if l.base_etag.is_some() {
                                // Still being edited in place: the next upload's base is the
                                // version just committed, not the one first read.
                                l.base_etag = item.etag.clone();
                            }
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

/// The upload of `node`'s spooled content has ended: the local content is forgotten if nobody
/// writes it any more; otherwise it is no longer queued, and returned. Called with the core
/// lock held.
fn let_go(node: &mut Node) -> Option<&mut LocalFile> {
    if node
        .local
        .as_ref()
        .is_some_and(|l| l.writers == 0 && !l.dirty)
    {
        node.local = None;
        return None;
    }
    let l = node.local.as_mut()?;
    l.queued = false;
    Some(l)
}

impl CoreListener {
    /// `job` was saved as `copy` (item `item`) because its file changed on the server. The
    /// copy is a committed file of its own; the original path lets go of this content (unless
    /// written to since) and shows the server's version, re-read here.
    fn conflict_copy(&self, job: &UploadJob, copy: &str, item: &RemoteItem) {
        let now = Instant::now();
        let parent = copy.rsplit_once('/').map_or("", |(p, _)| p);
        {
            let mut st = self.shared.lock();
            st.table.upsert_remote(parent, item, now);
            st.table.entries_changed(copy, std::time::SystemTime::now());
            if let Some(node) = st
                .table
                .ino_of(&job.remote_path)
                .and_then(|ino| st.table.get_mut(ino))
            {
                let same_content = node
                    .local
                    .as_ref()
                    .is_some_and(|l| l.spool == job.spool_file);
                if same_content {
                    // If still open here, its next upload is checked against the same (stale)
                    // base and, if the server's file is still newer, saved as another copy.
                    let_go(node);
                }
                node.seen = None;
            }
        }
        match self.shared.remote.stat(&job.remote_path) {
            Ok(Some(current)) => {
                let parent = job.remote_path.rsplit_once('/').map_or("", |(p, _)| p);
                self.shared
                    .lock()
                    .table
                    .upsert_remote(parent, &current, Instant::now());
            }
            Ok(None) => {
                // Deleted on the server meanwhile: the name is gone unless written here since.
                let mut st = self.shared.lock();
                let gone = st
                    .table
                    .ino_of(&job.remote_path)
                    .and_then(|ino| st.table.get(ino))
                    .is_some_and(|n| n.local.is_none());
                if gone {
                    st.table
                        .removed(&job.remote_path, std::time::SystemTime::now());
                }
            }
            Err(e) => warn!("{}: re-reading after a conflict: {e}", job.remote_path),
        }
    }
}
