//! Reading and writing through an open handle: read (spool files, or remote files through
//! ranged downloads with a one-window read-ahead), write, fsync (and its opt-in barrier),
//! truncate and setattr.
//!
//! Invariants: space is admitted (`space`) before a write grows a spool file; a file that saw
//! a failed write is never submitted as if complete (`records`). Times: every change (write,
//! truncate, setattr) sets the node's ctime; atime is set only by `utimens` and never leaves
//! the mount.
//!
//! Locks: the core state lock for each read or update of the table; reads and writes of spool
//! files and downloads run without it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Instant, SystemTime};

use log::warn;

use super::handles::HandleKind;
use super::inode::{NodeKind, RemoteMeta};
use super::{Attr, Fs, FsError, FsResult};
use crate::protocol::MAX_FILE_BYTES;
use crate::upload::UploadJob;

/// Read-ahead window for remote files.
const READ_WINDOW: u64 = 4 * 1024 * 1024;
/// Longest an fsync barrier waits for the commit before it fails with EIO.
const BARRIER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Fs {
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

    pub(super) fn truncate(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<()> {
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
                self.note_truncated(ino, size);
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
            self.note_truncated(ino, size);
            Ok(())
        })();
        self.release(opened.fh)?;
        res
    }

    /// The table after the spool content of `ino` was cut to `size`: new size, dirty, new
    /// mtime and ctime.
    fn note_truncated(&self, ino: u64, size: u64) {
        let mut st = self.lock();
        if let Some(l) = st.table.get_mut(ino).and_then(|n| n.local.as_mut()) {
            l.size = size;
            l.dirty = true;
            l.mtime = SystemTime::now();
        }
        st.table.changed(ino, SystemTime::now());
    }

    pub(super) fn set_mtime(&self, ino: u64, mtime: SystemTime) -> FsResult<()> {
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

    /// The fsync barrier (opt-in): upload a snapshot of the file's current content and wait
    /// until SharePoint has committed it. The file stays open and is uploaded again at its
    /// last close as usual.
    pub(super) fn fsync_barrier(&self, ino: u64, spool_file: &Path) -> FsResult<()> {
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
