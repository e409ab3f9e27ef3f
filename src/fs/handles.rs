//! The handle half of the core: create, open, read, write, fsync (and its opt-in barrier),
//! release, seal, truncate and setattr, and the local (spool) content of a file from its
//! first write to its hand-off to the queue — or its adoption from the spool at start-up, or
//! its discard on request.
//!
//! Invariants: a spool file gets an `incomplete` record (`records`) before its first byte is
//! written, and a `sealed` one (with its fingerprint) just before its job is submitted; a file
//! that saw a failed write is never submitted as if complete. Space is admitted (`space`)
//! before a write grows a spool file. A write-open of a file whose content is only on the
//! server, or already handed to the queue, is lazy: nothing is copied until the first write
//! or truncate (`touch` copies nothing). A file unlinked while open stays usable through its
//! handles (`unlink_open`): its node is detached from its path and its content kept in the
//! spool, never submitted; the last release forgets both.
//!
//! Times: every change (write, truncate, setattr) sets the node's ctime; atime is set only by
//! `utimens` and never leaves the mount; creating a file changes its folder's mtime/ctime.
//!
//! Locks: the core state lock, for each read or update of the table and the handle map;
//! file I/O (copies, downloads, reads and writes of spool files) runs without it. `seal`
//! holds it across the record write and the submit (see "Locks" in `mod.rs`). A lazy
//! handle's `real` slot is taken before the core lock, a remote handle's read window on its
//! own.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use log::{debug, info, warn};

use super::inode::{LocalFile, NodeKind, RemoteMeta};
use super::virtual_files;
use super::{Attr, Fs, FsError, FsResult, Opened};
use crate::protocol::MAX_FILE_BYTES;
use crate::upload::UploadJob;

/// Read-ahead window for remote files.
const READ_WINDOW: u64 = 4 * 1024 * 1024;
/// Block size used when copying remote content into the spool.
const FETCH_BLOCK: u64 = 8 * 1024 * 1024;
/// Longest an fsync barrier waits for the commit before it fails with EIO.
const BARRIER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// What an open file handle refers to.
pub(super) enum HandleKind {
    /// Spool file open for writing (and reading back).
    Write {
        ino: u64,
        spool: PathBuf,
        file: Arc<File>,
    },
    /// Spool file open for reading.
    ReadLocal { ino: u64, file: File },
    /// Remote file, read through ranged downloads with a one-window read-ahead buffer; if the
    /// file is unlinked while open, from the spool copy made then.
    ReadRemote {
        ino: u64,
        path: String,
        size: u64,
        window: Mutex<(u64, Vec<u8>)>,
    },
    /// Opened for writing, content still only on the server: materialized by `resolve`.
    Lazy {
        ino: u64,
        real: Mutex<Option<Arc<HandleKind>>>,
    },
    /// Rendered `.status` content, fixed at open.
    Virtual { data: Vec<u8> },
    /// `.control`: each write is applied as commands.
    Control,
    /// Directory listing, fixed at opendir.
    Dir {
        entries: Vec<(u64, NodeKind, String)>,
    },
}

impl HandleKind {
    /// The file this handle keeps open, if any.
    pub(super) fn ino(&self) -> Option<u64> {
        match self {
            HandleKind::Write { ino, .. }
            | HandleKind::ReadLocal { ino, .. }
            | HandleKind::ReadRemote { ino, .. }
            | HandleKind::Lazy { ino, .. } => Some(*ino),
            _ => None,
        }
    }
}

pub(super) fn accmode_writes(flags: i32) -> bool {
    let acc = flags & libc::O_ACCMODE;
    acc == libc::O_WRONLY || acc == libc::O_RDWR
}

impl Fs {
    pub fn create(&self, parent: u64, name: &str, flags: i32) -> FsResult<(Attr, Opened)> {
        if virtual_files::is_status_file(parent, name) {
            return Err(FsError::ReadOnly);
        }
        let path = {
            let st = self.lock();
            let parent_path = self.dir_path(&st, parent)?;
            self.new_name(&st, &parent_path, name, NodeKind::File)?
        };
        if super::names::is_local_only(name) {
            self.created_local_only(&path);
        }
        // A file still being written (not yet queued) is opened again, truncated, rather than
        // given a second spool file.
        let existing = {
            let st = self.lock();
            st.table.ino_of(&path).filter(|i| {
                st.table
                    .get(*i)
                    .is_some_and(|n| n.local.as_ref().is_some_and(|l| !l.queued))
            })
        };
        if let Some(ino) = existing {
            let opened = self.open(
                ino,
                (flags & !libc::O_ACCMODE) | libc::O_RDWR | libc::O_TRUNC,
            )?;
            let st = self.lock();
            return Ok((Self::attr_of(&st, ino)?, opened));
        }
        let (spool_path, file) = self.new_spool_file(&path)?;
        let mut st = self.lock();
        let ino = st.table.upsert(&path, NodeKind::File);
        let now = SystemTime::now();
        st.table.entries_changed(&path, now);
        st.table.changed(ino, now);
        let node = st.table.get_mut(ino).ok_or(FsError::NotFound)?;
        // Any earlier queued version stays owned by the queue, which supersedes it.
        node.local = Some(LocalFile {
            spool: spool_path.clone(),
            size: 0,
            mtime: now,
            writers: 1,
            dirty: true,
            queued: false,
            queued_mtime: None,
            failed: None,
            base_etag: None,
        });
        drop(st);
        let fh = self.add_handle(HandleKind::Write {
            ino,
            spool: spool_path,
            file: Arc::new(file),
        });
        let st = self.lock();
        Ok((
            Self::attr_of(&st, ino)?,
            Opened {
                fh,
                direct_io: false,
            },
        ))
    }

    pub(super) fn add_handle(&self, h: HandleKind) -> u64 {
        let mut st = self.lock();
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, Arc::new(h));
        fh
    }

    pub(super) fn handle(&self, fh: u64) -> FsResult<Arc<HandleKind>> {
        self.lock()
            .handles
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// Open an existing file.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        if let Some(opened) = self.open_virtual(ino, flags) {
            return opened;
        }
        let (path, kind, local, remote) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.path.clone(), n.kind, n.local.clone(), n.remote.clone())
        };
        if kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        let truncate = flags & libc::O_TRUNC != 0;
        if !accmode_writes(flags) {
            let h = match local {
                Some(l) => HandleKind::ReadLocal {
                    ino,
                    file: File::open(&l.spool)?,
                },
                None => HandleKind::ReadRemote {
                    ino,
                    path,
                    size: remote.map(|r| r.size).unwrap_or(0),
                    window: Mutex::new((0, Vec::new())),
                },
            };
            return Ok(Opened {
                fh: self.add_handle(h),
                direct_io: false,
            });
        }
        self.drain.check_writable()?;
        // Writing without O_TRUNC a file that only exists on the server, or whose content is
        // already handed to the queue: fetch or copy it on the first write or truncate, not
        // now. `touch` and other utimens-only opens copy nothing and leave the queued upload
        // (and its rename or mtime amendments) alone.
        let remote_only = local.is_none() && remote.as_ref().is_some_and(|r| r.size > 0);
        let queued = local.as_ref().is_some_and(|l| l.queued);
        if !truncate && (remote_only || queued) {
            let fh = self.add_handle(HandleKind::Lazy {
                ino,
                real: Mutex::new(None),
            });
            return Ok(Opened {
                fh,
                direct_io: false,
            });
        }
        let h = self.open_write(ino, truncate)?;
        Ok(Opened {
            fh: self.add_handle(h),
            direct_io: false,
        })
    }

    /// Set up spool content for writing `ino` and return the write handle. Reuses the spool
    /// file while it is still being written (not yet queued); otherwise starts a new spool
    /// file, seeded with the current content (local or fetched) unless truncating.
    fn open_write(&self, ino: u64, truncate: bool) -> FsResult<HandleKind> {
        let (path, local, remote) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.path.clone(), n.local.clone(), n.remote.clone())
        };
        if let Some(l) = local.as_ref().filter(|l| !l.queued) {
            let file = OpenOptions::new().read(true).write(true).open(&l.spool)?;
            if truncate {
                file.set_len(0)?;
            }
            let mut st = self.lock();
            if let Some(lf) = st.table.get_mut(ino).and_then(|n| n.local.as_mut()) {
                lf.writers += 1;
                if truncate {
                    lf.size = 0;
                    lf.dirty = true;
                    lf.mtime = SystemTime::now();
                }
            }
            if truncate {
                st.table.changed(ino, SystemTime::now());
            }
            drop(st);
            return Ok(HandleKind::Write {
                ino,
                spool: l.spool.clone(),
                file: Arc::new(file),
            });
        }
        let (spool_path, file) = self.new_spool_file(&path)?;
        // The base eTag (conflict-safe in-place edits, `LocalFile::base_etag`): only a
        // read-modify-write of the server's content has one. An O_TRUNC rewrite replaces the
        // file by intent (as `cp` and most applications mean it). A copy of content still in
        // the spool (queued or uploading) has none: its base would be our own upload ahead of
        // it, whose eTag is not known until it commits, so it replaces like a rewrite.
        let (size, mtime, base_etag) = if truncate {
            (0, SystemTime::now(), None)
        } else if let Some(l) = &local {
            let copied = std::fs::copy(&l.spool, &spool_path);
            match copied {
                Ok(n) => (n, l.mtime, None),
                Err(e) => {
                    crate::spool::remove_spooled(&spool_path);
                    return Err(e.into());
                }
            }
        } else if let Some(r) = &remote {
            let (size, mtime, etag) = self.fresh_remote(&path, r);
            if let Err(e) = self.fetch_into(&path, size, &file) {
                crate::spool::remove_spooled(&spool_path);
                return Err(e);
            }
            (size, mtime, etag)
        } else {
            (0, SystemTime::now(), None)
        };
        let mut st = self.lock();
        let node = st.table.get_mut(ino).ok_or(FsError::NotFound)?;
        node.local = Some(LocalFile {
            spool: spool_path.clone(),
            size,
            mtime,
            writers: 1,
            dirty: truncate,
            queued: false,
            queued_mtime: None,
            failed: None,
            base_etag,
        });
        drop(st);
        Ok(HandleKind::Write {
            ino,
            spool: spool_path,
            file: Arc::new(file),
        })
    }

    /// Size, mtime and eTag of the server's current version of `path`, asked once just before
    /// its content is fetched for an in-place edit, so that the eTag is that of the bytes
    /// fetched (a cached one may be older: a false conflict). A change between this stat and
    /// the download gives new bytes with the older eTag: at worst a needless conflict copy,
    /// never an overwrite. A failed or empty answer falls back to the cached metadata (the
    /// fetch then fails or not on its own). One metadata request on the FUSE thread of the
    /// first write, beside the download that thread makes anyway (`fetch_into`).
    fn fresh_remote(&self, path: &str, cached: &RemoteMeta) -> (u64, SystemTime, Option<String>) {
        match self.remote().stat(path) {
            Ok(Some(item)) if !item.is_folder => (item.size, item.mtime, item.etag),
            Ok(_) => (cached.size, cached.mtime, cached.etag.clone()),
            Err(e) => {
                debug!("{path}: stat before fetching for an edit: {e}");
                (cached.size, cached.mtime, cached.etag.clone())
            }
        }
    }

    /// The handle to use for I/O on `fh`: a lazy write handle is materialized (its remote
    /// content fetched into the spool) on first use.
    fn resolve(&self, fh: u64) -> FsResult<Arc<HandleKind>> {
        let h = self.handle(fh)?;
        let HandleKind::Lazy { ino, real } = h.as_ref() else {
            return Ok(h);
        };
        let mut real = real.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = real.as_ref() {
            return Ok(r.clone());
        }
        let r = Arc::new(self.open_write(*ino, false)?);
        *real = Some(r.clone());
        Ok(r)
    }

    /// Copy a remote file into a spool file, in constant memory.
    fn fetch_into(&self, path: &str, size: u64, file: &File) -> FsResult<()> {
        let mut off = 0;
        while off < size {
            let len = FETCH_BLOCK.min(size - off);
            let data = self.remote().read_range(path, off, len)?;
            // Short of the known size: a wrong answer, never file data (entry 18).
            if (data.len() as u64) < len {
                return Err(FsError::Remote(crate::remote::RemoteError::Protocol(
                    format!(
                        "download of {path} ended early: {} of the {len} bytes at {off}",
                        data.len()
                    ),
                )));
            }
            file.write_all_at(&data, off)?;
            off += data.len() as u64;
        }
        Ok(())
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.resolve(fh)?;
        match h.as_ref() {
            HandleKind::Virtual { data } => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                Ok(data[start..end].to_vec())
            }
            HandleKind::Write { file, .. } => read_file_at(file, offset, size),
            HandleKind::ReadLocal { file, .. } => read_file_at(file, offset, size),
            HandleKind::ReadRemote { ino, .. } if self.detached_spool(*ino).is_some() => {
                let spool = self.detached_spool(*ino).ok_or(FsError::BadHandle)?;
                read_file_at(&File::open(spool)?, offset, size)
            }
            HandleKind::ReadRemote {
                path,
                size: total,
                window,
                ..
            } => {
                if offset >= *total {
                    return Ok(Vec::new());
                }
                let want = (size as u64).min(total - offset);
                let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
                let (wstart, ref buf) = *w;
                let in_window = offset >= wstart && offset + want <= wstart + buf.len() as u64;
                if !in_window {
                    let len = READ_WINDOW.max(want).min(total - offset);
                    let data = self.remote().read_range(path, offset, len)?;
                    // The file is `total` bytes: fewer here is a wrong answer (or a file that
                    // changed meanwhile), never the end of the file (entry 18).
                    if (data.len() as u64) < len {
                        return Err(FsError::Remote(crate::remote::RemoteError::Protocol(
                            format!(
                                "read {path}: the server sent {} of the {len} bytes at {offset} \
                                 of a {total}-byte file",
                                data.len()
                            ),
                        )));
                    }
                    *w = (offset, data);
                }
                let (wstart, ref buf) = *w;
                let s = (offset - wstart) as usize;
                let e = (s + want as usize).min(buf.len());
                Ok(buf[s.min(e)..e].to_vec())
            }
            HandleKind::Dir { .. } => Err(FsError::IsDir),
            HandleKind::Lazy { .. } => Err(FsError::BadHandle),
            HandleKind::Control => Err(FsError::ReadOnly),
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.resolve(fh)?;
        if let HandleKind::Control = h.as_ref() {
            return self.control_write(data);
        }
        let HandleKind::Write { ino, spool, file } = h.as_ref() else {
            return Err(FsError::BadHandle);
        };
        let end = offset + data.len() as u64;
        if end > MAX_FILE_BYTES {
            return Err(FsError::FileTooBig);
        }
        // Space is checked before the spool file grows; a failed write marks the file so it
        // is never uploaded as if complete.
        let size = {
            let st = self.lock();
            st.table
                .get(*ino)
                .and_then(|n| n.local.as_ref())
                .map_or(0, |l| l.size)
        };
        if let Err(e) = self.space.admit(end.saturating_sub(size)) {
            if let FsError::NoSpace(reason) = &e {
                let why = format!("a write failed: no space ({reason})");
                self.records.mark_broken(spool, &why);
            }
            return Err(e);
        }
        if let Err(e) = file.write_all_at(data, offset) {
            self.records
                .mark_broken(spool, &format!("a write failed: {e}"));
            return Err(e.into());
        }
        let mut st = self.lock();
        let local = st.table.get_mut(*ino).and_then(|n| n.local.as_mut());
        if let Some(l) = local.filter(|l| l.spool == *spool) {
            l.size = l.size.max(end);
            l.dirty = true;
            l.mtime = SystemTime::now();
            let now = l.mtime;
            st.table.changed(*ino, now);
        }
        Ok(data.len() as u32)
    }

    /// `fsync`: the spool file is made durable on local disk.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if matches!(h.as_ref(), HandleKind::Lazy { .. }) {
            return Ok(()); // nothing written: nothing to make durable
        }
        if let HandleKind::Write { file, ino, spool } = h.as_ref() {
            file.sync_data()?;
            self.fsync_barrier(*ino, spool)?;
        }
        Ok(())
    }

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
    fn detached_spool(&self, ino: u64) -> Option<PathBuf> {
        let st = self.lock();
        let n = st.table.get(ino).filter(|n| n.unlinked)?;
        n.local.as_ref().map(|l| l.spool.clone())
    }

    /// An unlinked file whose last handle closed: forget it and its spool content. Its data
    /// never reaches SharePoint.
    fn forget_if_closed(&self, ino: u64) {
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

    /// Set size, atime and/or mtime (`truncate`, `utimens`: `None` is `UTIME_OMIT`); mode and
    /// owner are accepted and ignored. atime stays in the mount; every call sets the ctime.
    pub fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        if let Some(attr) = self.setattr_virtual(ino, size) {
            return attr;
        }
        if let Some(sz) = size {
            if sz > MAX_FILE_BYTES {
                return Err(FsError::FileTooBig);
            }
            self.truncate(ino, sz, fh)?;
        }
        if let Some(m) = mtime {
            self.set_mtime(ino, m)?;
        }
        let mut st = self.lock();
        let node = st.table.get_mut(ino).ok_or(FsError::NotFound)?;
        if let Some(a) = atime {
            node.times.atime = Some(a);
        }
        node.changed(SystemTime::now());
        Self::attr_of(&st, ino)
    }

    fn truncate(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<()> {
        let (kind, local) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.kind, n.local.clone())
        };
        if kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        // Truncating through an open write handle, or a file still being written.
        let writable = match fh.map(|f| self.resolve(f)) {
            Some(Ok(h)) => matches!(h.as_ref(), HandleKind::Write { .. }),
            _ => false,
        };
        if writable || local.as_ref().is_some_and(|l| !l.queued) {
            let spool = local.as_ref().map(|l| l.spool.clone());
            if let Some(p) = spool {
                OpenOptions::new().write(true).open(&p)?.set_len(size)?;
                let mut st = self.lock();
                if let Some(l) = st.table.get_mut(ino).and_then(|n| n.local.as_mut()) {
                    l.size = size;
                    l.dirty = true;
                    l.mtime = SystemTime::now();
                }
                st.table.changed(ino, SystemTime::now());
                drop(st);
                self.seal(ino, false);
                return Ok(());
            }
        }
        // A queued or remote file: make a new version in the spool and queue it.
        let opened = self.open(
            ino,
            libc::O_RDWR | if size == 0 { libc::O_TRUNC } else { 0 },
        )?;
        let res = (|| {
            let h = self.handle(opened.fh)?;
            if let HandleKind::Write { file, .. } = h.as_ref() {
                file.set_len(size)?;
            }
            let mut st = self.lock();
            if let Some(l) = st.table.get_mut(ino).and_then(|n| n.local.as_mut()) {
                l.size = size;
                l.dirty = true;
                l.mtime = SystemTime::now();
            }
            st.table.changed(ino, SystemTime::now());
            Ok(())
        })();
        self.release(opened.fh)?;
        res
    }

    fn set_mtime(&self, ino: u64, mtime: SystemTime) -> FsResult<()> {
        let (path, kind, has_local, queued) = {
            let mut st = self.lock();
            let n = st.table.get_mut(ino).ok_or(FsError::NotFound)?;
            let (has_local, queued) = match n.local.as_mut() {
                Some(l) => {
                    l.mtime = mtime;
                    (true, l.queued)
                }
                None => (false, false),
            };
            (n.path.clone(), n.kind, has_local, queued)
        };
        if queued && self.queue.amend_mtime(&path, mtime) {
            let mut st = self.lock();
            if let Some(l) = st.table.get_mut(ino).and_then(|n| n.local.as_mut()) {
                l.queued_mtime = Some(mtime);
            }
            return Ok(());
        }
        if has_local {
            // Sent with the upload; if the job is already under way, the listener patches
            // the committed item.
            return Ok(());
        }
        // The mounted folder itself, or a folder made through the mount and not on the server
        // yet (its creation is queued, `upload::folders`): the time is kept in the mount.
        let local_only =
            kind == NodeKind::Dir && (path.is_empty() || self.queue.folders().is_pending(&path));
        let item = if local_only {
            None
        } else {
            Some(self.remote().set_mtime(&path, mtime)?)
        };
        let mut st = self.lock();
        if let Some(n) = st.table.get_mut(ino) {
            if let Some(item) = &item {
                n.remote = Some(RemoteMeta::from(item));
                n.seen = Some(Instant::now());
            }
            if kind == NodeKind::Dir {
                // What SharePoint now holds (to the second), or the root's own.
                n.times.dir_mtime = Some(item.as_ref().map_or(mtime, |i| i.mtime));
            }
        }
        Ok(())
    }
}

impl Fs {
    /// A new spool file for writing `path`, recorded as `incomplete`; refused while draining.
    fn new_spool_file(&self, path: &str) -> FsResult<(PathBuf, File)> {
        let (spool_path, file) = self.spool.new_file()?;
        if let Err(e) = self.drain.check_writable() {
            let _ = std::fs::remove_file(&spool_path);
            return Err(e);
        }
        self.records.incomplete(&spool_path, path)?;
        Ok((spool_path, file))
    }

    /// The fsync barrier (opt-in): upload a snapshot of the file's current content and wait
    /// until SharePoint has committed it. The file stays open and is uploaded again at its
    /// last close as usual.
    fn fsync_barrier(&self, ino: u64, spool_file: &Path) -> FsResult<()> {
        if !self.opts.fsync_barrier {
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
        if !self.records.record_sealed(&self.queue, &job) {
            return Err(FsError::NoSpace("a write to this file failed".into()));
        }
        self.barrier.expect(&snap);
        self.queue.submit(job);
        self.barrier
            .wait(&snap, Instant::now() + BARRIER_TIMEOUT)
            .map_err(|reason| {
                warn!("{path}: fsync barrier: {reason}");
                FsError::Io(std::io::Error::other(reason))
            })
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

fn read_file_at(file: &File, offset: u64, size: u32) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}
