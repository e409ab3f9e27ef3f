//! Opening files, the handle half of the core: create, open (a write-open of a file whose
//! content is only on the server, or already handed to the queue, is lazy: nothing is copied
//! until the first write or truncate, so `touch` copies nothing), the handle table, and the
//! spool file a written file starts in. Reading and writing through a handle is `file_io.rs`;
//! the last close, and the hand-off to the upload queue, is `seal.rs`.
//!
//! Invariants: a spool file gets an `incomplete` record (`records`) before its first byte is
//! written. Creating a file changes its folder's mtime/ctime.
//!
//! Locks: the core state lock, for each read or update of the table and the handle map;
//! file I/O (copies and downloads into spool files) runs without it. A lazy handle's `real`
//! slot is taken before the core lock, a remote handle's read window on its own.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use log::debug;

use super::inode::{LocalFile, NodeKind, RemoteMeta};
use super::virtual_files;
use super::{Attr, Fs, FsError, FsResult, Opened};

/// Block size used when copying remote content into the spool.
const FETCH_BLOCK: u64 = 8 * 1024 * 1024;

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
    pub(super) fn open_write(&self, ino: u64, truncate: bool) -> FsResult<HandleKind> {
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
    pub(super) fn fresh_remote(
        &self,
        path: &str,
        cached: &RemoteMeta,
    ) -> (u64, SystemTime, Option<String>) {
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
    pub(super) fn resolve(&self, fh: u64) -> FsResult<Arc<HandleKind>> {
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
    pub(super) fn fetch_into(&self, path: &str, size: u64, file: &File) -> FsResult<()> {
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

    /// A new spool file for writing `path`, recorded as `incomplete`; refused while draining.
    pub(super) fn new_spool_file(&self, path: &str) -> FsResult<(PathBuf, File)> {
        let (spool_path, file) = self.spool.new_file()?;
        if let Err(e) = self.drain.check_writable() {
            let _ = std::fs::remove_file(&spool_path);
            return Err(e);
        }
        self.records.incomplete(&spool_path, path)?;
        Ok((spool_path, file))
    }
}
