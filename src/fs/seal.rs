//! The last close of a file and the one door to the upload queue: `release`, `seal` (a
//! written file's `sealed` record and its job), files unlinked while open (`unlink_open`: the
//! node is detached from its path and its content kept in the spool, never submitted; the
//! last release forgets both), files adopted from the spool at start-up, and discards.
//!
//! Invariants: a `sealed` record (with the data file's fingerprint) is written just before
//! its job is submitted; a file that saw a failed write is kept `incomplete`, never
//! submitted.
//!
//! Locks: `seal` holds the core lock across the record write (no fsync) and the submit (see
//! "Locks" in `mod.rs`); `unlink_open` hard-links the spool content and cancels under it.

use std::path::PathBuf;
use std::time::SystemTime;

use log::{debug, info};

use super::handles::HandleKind;
use super::inode::{LocalFile, NodeKind};
use super::{Fs, FsError, FsResult};
use crate::upload::UploadJob;

impl Fs {
    /// Last close of a handle. A written file whose last writer closes is queued for upload;
    /// an unlinked file whose last handle closes is forgotten with its spool content.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = {
            let mut st = self.lock();
            st.handles.remove(&fh).ok_or(FsError::BadHandle)?
        };
        let opened = h.ino();
        let h = match h.as_ref() {
            HandleKind::Lazy { real, .. } => {
                let real = real.lock().unwrap_or_else(|e| e.into_inner());
                real.as_ref().cloned() // None: never written, nothing to upload
            }
            _ => Some(h),
        };
        if let Some(HandleKind::Write { ino, .. }) = h.as_deref() {
            self.seal(*ino, true);
        }
        if let Some(ino) = opened {
            self.forget_if_closed(ino);
        }
        Ok(())
    }

    /// How many handles keep `ino` open. Called with the core lock held.
    pub(super) fn open_count(st: &super::State, ino: u64) -> usize {
        st.handles.values().filter(|h| h.ino() == Some(ino)).count()
    }

    /// The spool content of `ino` if it was unlinked while open.
    pub(super) fn detached_spool(&self, ino: u64) -> Option<PathBuf> {
        let st = self.lock();
        let n = st.table.get(ino).filter(|n| n.unlinked)?;
        n.local.as_ref().map(|l| l.spool.clone())
    }

    /// An unlinked file whose last handle closed: forget it and its spool content. Its data
    /// never reaches SharePoint.
    pub(super) fn forget_if_closed(&self, ino: u64) {
        let spool = {
            let mut st = self.lock();
            let detached = st.table.get(ino).is_some_and(|n| n.unlinked);
            if !detached || Self::open_count(&st, ino) > 0 {
                return;
            }
            let spool = st
                .table
                .get(ino)
                .and_then(|n| n.local.as_ref())
                .map(|l| l.spool.clone());
            st.table.forget(ino);
            spool
        };
        if let Some(p) = spool {
            crate::spool::remove_spooled(&p);
        }
        debug!("inode {ino}: last handle of an unlinked file closed; discarded");
    }

    /// `unlink` of a file that still has open handles (called by `unlink` after its checks):
    /// the path is freed, and the file stays readable, writable and `fstat`-able through its
    /// handles until the last one closes ([`Self::forget_if_closed`]); its content is never
    /// submitted. A pending upload is cancelled (its content kept under a new spool name); a
    /// remote-only file is first copied into the spool, as readers will read it after the
    /// server's item is gone; the server's item, if any, is deleted as for any unlink.
    /// Returns `Ok(false)`, doing nothing, if no handle is open, else `Ok(true)`.
    ///
    /// After a crash, the kept content is never uploaded under its old name: its record says
    /// `incomplete` (or, for fetched content, it has none and recovery files it under
    /// `lost+found/`, also `incomplete`).
    pub(super) fn unlink_open(&self, ino: u64, path: &str) -> FsResult<bool> {
        let (local, remote) = {
            let st = self.lock();
            if Self::open_count(&st, ino) == 0 {
                return Ok(false);
            }
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.local.clone(), n.remote.clone())
        };
        // Remote-only content is fetched now (readers will need it), without a record.
        let fetched = match (&local, &remote) {
            (None, Some(r)) => {
                let (spool, file) = self.spool.new_file()?;
                if let Err(e) = self.fetch_into(path, r.size, &file) {
                    crate::spool::remove_spooled(&spool);
                    return Err(e);
                }
                Some((spool, r.size, r.mtime))
            }
            _ => None,
        };
        let queued = {
            let mut st = self.lock();
            let now = SystemTime::now();
            let queued = st
                .table
                .get(ino)
                .and_then(|n| n.local.as_ref())
                .is_some_and(|l| l.queued);
            let mut relinked = None;
            if let Some(l) = st.table.get(ino).and_then(|n| n.local.as_ref()) {
                if l.queued || l.failed.is_some() {
                    // The queue owns (and on cancel removes) a queued or failed job's spool
                    // file: keep the content under a new name first.
                    let (link, _) = self.spool.new_file()?;
                    std::fs::remove_file(&link)?;
                    std::fs::hard_link(&l.spool, &link)?;
                    relinked = Some(link);
                }
                self.queue.cancel(path);
            }
            if let Some(n) = st.table.get_mut(ino) {
                if let (Some(link), Some(l)) = (relinked, n.local.as_mut()) {
                    l.spool = link;
                    l.queued = false;
                }
                if let Some((spool, size, mtime)) = fetched {
                    n.local = Some(LocalFile {
                        spool,
                        size,
                        mtime,
                        writers: 0,
                        dirty: false,
                        queued: false,
                        queued_mtime: None,
                        failed: None,
                        base_etag: None,
                    });
                }
            }
            st.table.detach(ino);
            st.table.entries_changed(path, now);
            st.table.changed(ino, now);
            queued
        };
        if remote.is_some() || queued {
            self.delete_on_server(path)?; // a locked file's delete waits in the queue
        }
        debug!("{path}: unlinked while open; kept until its last close");
        Ok(true)
    }

    /// If `ino` has dirty spool content and no writers, hand it to the queue.
    pub(super) fn seal(&self, ino: u64, closing_writer: bool) {
        // The `sealed` record is written and the job submitted while the core lock is held
        // (on purpose, see "Locks" in `mod.rs`), so a concurrent rename or unlink (FUSE
        // release is asynchronous to close) sees either the file before it was queued or the
        // queued job, never a job in flight to the queue, and the record matches the queue.
        let mut st = self.lock();
        let job = {
            let Some(node) = st.table.get_mut(ino) else {
                return;
            };
            let path = node.path.clone();
            let Some(l) = node.local.as_mut() else {
                return;
            };
            if closing_writer {
                l.writers = l.writers.saturating_sub(1);
            }
            if l.writers > 0 || node.unlinked {
                return; // still being written, or unlinked while open: never uploaded
            }
            if super::names::is_local_only(super::names::split(&path).1) {
                l.dirty = false; // kept in the mount only (`local_names`)
                return;
            }
            if !l.dirty {
                if !l.queued && l.failed.is_none() && node.remote.is_some() {
                    // An unchanged copy of the server's file (opened for writing, never
                    // written): nothing to upload, drop the copy.
                    let spool = l.spool.clone();
                    node.local = None;
                    drop(st);
                    crate::spool::remove_spooled(&spool);
                }
                return;
            }
            l.dirty = false;
            l.queued = true;
            l.failed = None;
            l.queued_mtime = Some(l.mtime);
            UploadJob::new(path, l.spool.clone(), l.size, l.mtime)
                .with_base_etag(l.base_etag.clone())
        };
        if !self.records.record_sealed(&self.queue, &job) {
            return;
        }
        debug!(
            "{}: queued for upload ({} bytes)",
            job.remote_path, job.size
        );
        self.queue.submit(job);
        drop(st);
    }

    /// Handles open for writing (a file is queued only at its last release).
    pub fn open_writers(&self) -> usize {
        self.lock()
            .handles
            .values()
            .filter(|h| matches!(h.as_ref(), HandleKind::Write { .. }))
            .count()
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
                base_etag: None,
            });
        }
    }

    /// Remove failed/incomplete uploads (one path or all) from the spool. Returns how many.
    pub fn discard(&self, path: Option<&str>) -> usize {
        let jobs: Vec<UploadJob> = self
            .queue
            .failed_jobs()
            .into_iter()
            .filter(|j| {
                path.is_none_or(|p| super::names::fold(&j.remote_path) == super::names::fold(p))
            })
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
}
