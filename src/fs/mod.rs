//! The filesystem core: every operation the FUSE adapter forwards, on plain types, testable
//! without a kernel.
//!
//! It owns the inode table, open handles, the spool files being written and the virtual
//! `.status` / `.status.json`. Writes go to spool files; on the last release of a written file
//! the file is sealed and handed to the upload queue, and the call returns at once. Metadata
//! calls (lookup, readdir, mkdir, unlink, rename) talk to the remote synchronously, because
//! their result is what the caller asked for; the write path never does.
//!
//! Locking: one mutex (`State`) guards the table and the handle map. It is held only to read
//! or update state, never across file or network I/O: handles are `Arc`s cloned out of the
//! map, I/O runs unlocked, and the result is applied under the lock afterwards.

mod durable;
pub mod error;
pub mod inode;
pub mod names;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};

pub use durable::{ControlCommand, CONTROL_INO, CONTROL_NAME};
pub use error::FsError;
use inode::{InodeTable, LocalFile, RemoteMeta};
pub use inode::{NodeKind, ROOT_INO, STATUS_INO, STATUS_JSON_INO};
use names::{check_name, check_path_len, join, NameProblem, MAX_FILE_BYTES};

use crate::remote::{Remote, RemoteItem};
use crate::spool::Spool;
use crate::upload::{UploadJob, UploadListener, UploadQueue};

pub type FsResult<T> = Result<T, FsError>;

pub const STATUS_NAME: &str = ".status";
pub const STATUS_JSON_NAME: &str = ".status.json";

/// Read-ahead window for remote files.
const READ_WINDOW: u64 = 4 * 1024 * 1024;
/// Block size used when copying remote content into the spool.
const FETCH_BLOCK: u64 = 8 * 1024 * 1024;

/// Attributes of a node, as the adapter turns them into a `FileAttr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    /// Zero TTL: the kernel must ask again every time (`.status`).
    pub volatile: bool,
}

/// A newly opened handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Bypass the page cache (virtual files, whose size is not known in advance).
    pub direct_io: bool,
}

/// Receives directory entries; returns true when its buffer is full.
pub trait DirReplier {
    fn add(&mut self, ino: u64, offset: u64, kind: NodeKind, name: &str) -> bool;
}

/// File system numbers for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
}

/// Options of the core.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// How long server metadata (attributes, listings) is trusted.
    pub meta_ttl: Duration,
    /// Characters of the mounted folder's server-relative path, for the 400-character rule.
    pub base_path_chars: usize,
    /// The upload conflict behaviour is `replace`.
    pub replace_by_upload: bool,
    /// Most bytes the spool may hold; `None`: keep max(1 GiB, 5 %) of its filesystem free.
    pub spool_max: Option<u64>,
    /// fsync waits for the commit of the file's current content (see `durable.rs`).
    pub fsync_barrier: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            meta_ttl: Duration::from_secs(2),
            base_path_chars: 0,
            replace_by_upload: true,
            spool_max: None,
            fsync_barrier: false,
        }
    }
}

enum HandleKind {
    /// Spool file open for writing (and reading back).
    Write {
        ino: u64,
        spool: PathBuf,
        file: Arc<File>,
    },
    /// Spool file open for reading.
    ReadLocal { file: File },
    /// Remote file, read through ranged downloads with a one-window read-ahead buffer.
    ReadRemote {
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

struct State {
    table: InodeTable,
    handles: HashMap<u64, Arc<HandleKind>>,
    next_fh: u64,
}

/// Shared by the core and the upload listener.
struct Shared {
    state: Mutex<State>,
    remote: Arc<dyn Remote>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies finished uploads to the table.
struct Listener {
    shared: Arc<Shared>,
    barrier: Arc<durable::Barrier>,
}

impl UploadListener for Listener {
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

/// The filesystem core.
pub struct Fs {
    shared: Arc<Shared>,
    queue: UploadQueue,
    spool: Arc<Spool>,
    opts: FsOptions,
    /// Uploads replace existing items (conflict = replace), so a rename over a file can
    /// leave the server's item to be replaced by the upload.
    replace_by_upload: bool,
    dur: durable::Durability,
}

fn name_error(p: NameProblem) -> FsError {
    match p {
        NameProblem::Invalid(m) => FsError::InvalidName(m),
        NameProblem::TooLong(n) => FsError::NameTooLong(n),
    }
}

fn accmode_writes(flags: i32) -> bool {
    let acc = flags & libc::O_ACCMODE;
    acc == libc::O_WRONLY || acc == libc::O_RDWR
}

impl Fs {
    /// Build the core and start the upload queue with a listener bound to it.
    pub fn new(
        remote: Arc<dyn Remote>,
        spool: Arc<Spool>,
        start_queue: impl FnOnce(Arc<dyn UploadListener>) -> UploadQueue,
        opts: FsOptions,
    ) -> Fs {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                table: InodeTable::new(),
                handles: HashMap::new(),
                next_fh: 1,
            }),
            remote,
        });
        let dur = durable::Durability::new(spool.clone(), opts.spool_max, opts.fsync_barrier);
        let listener = Arc::new(Listener {
            shared: shared.clone(),
            barrier: dur.barrier.clone(),
        });
        let queue = start_queue(listener);
        Fs {
            shared,
            queue,
            spool,
            replace_by_upload: opts.replace_by_upload,
            opts,
            dur,
        }
    }

    pub fn queue(&self) -> &UploadQueue {
        &self.queue
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn remote(&self) -> &dyn Remote {
        self.shared.remote.as_ref()
    }

    fn fresh(&self, t: Option<Instant>) -> bool {
        t.is_some_and(|t| t.elapsed() < self.opts.meta_ttl)
    }

    fn attr_of(st: &State, ino: u64) -> FsResult<Attr> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let (size, mtime) = node.size_mtime();
        Ok(Attr {
            ino,
            kind: node.kind,
            size,
            mtime,
            perm: if node.kind == NodeKind::Dir {
                0o755
            } else {
                0o644
            },
            volatile: false,
        })
    }

    fn control_attr(&self) -> Attr {
        Attr {
            ino: CONTROL_INO,
            kind: NodeKind::File,
            size: 0,
            mtime: SystemTime::now(),
            perm: 0o200,
            volatile: true,
        }
    }

    fn virtual_attr(&self, ino: u64) -> Attr {
        let size = self.render_virtual(ino).len() as u64;
        Attr {
            ino,
            kind: NodeKind::File,
            size,
            mtime: SystemTime::now(),
            perm: 0o444,
            volatile: true,
        }
    }

    fn render_virtual(&self, ino: u64) -> Vec<u8> {
        let snap = self.status_snapshot();
        if ino == STATUS_INO {
            snap.render_table().into_bytes()
        } else {
            snap.render_json().into_bytes()
        }
    }

    /// The status the virtual files show.
    pub fn status_snapshot(&self) -> crate::upload::status::StatusSnapshot {
        let mut snap = self.queue.snapshot();
        let st = self.lock();
        let mut open: Vec<String> = st
            .table
            .local_nodes()
            .filter(|(_, n)| {
                n.local
                    .as_ref()
                    .is_some_and(|l| !l.queued && l.failed.is_none())
            })
            .map(|(_, n)| n.path.clone())
            .collect();
        open.sort();
        snap.open_for_writing = open;
        drop(st);
        snap.spool = Some(self.dur.usage());
        snap
    }

    fn dir_path(&self, st: &State, ino: u64) -> FsResult<String> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        if node.kind != NodeKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(node.path.clone())
    }

    fn check_new_name(&self, parent_path: &str, name: &str) -> FsResult<String> {
        check_name(name, parent_path.is_empty()).map_err(name_error)?;
        let path = join(parent_path, name);
        check_path_len(self.opts.base_path_chars, &path).map_err(name_error)?;
        Ok(path)
    }

    /// Look `name` up in the folder `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if parent == ROOT_INO && name == STATUS_NAME {
            return Ok(self.virtual_attr(STATUS_INO));
        }
        if parent == ROOT_INO && name == STATUS_JSON_NAME {
            return Ok(self.virtual_attr(STATUS_JSON_INO));
        }
        if parent == ROOT_INO && name == CONTROL_NAME {
            return Ok(self.control_attr());
        }
        let path = {
            let st = self.lock();
            let parent_path = self.dir_path(&st, parent)?;
            let path = join(&parent_path, name);
            let parent_listed = st.table.get(parent).and_then(|n| n.listed);
            match st.table.ino_of(&path) {
                Some(ino) => {
                    let n = st.table.get(ino).ok_or(FsError::NotFound)?;
                    if n.local.is_some()
                        || self.fresh(n.seen)
                        || self.fresh(parent_listed)
                        || (n.kind == NodeKind::Dir && n.remote.is_none())
                    {
                        return Self::attr_of(&st, ino);
                    }
                }
                None if self.fresh(parent_listed) => return Err(FsError::NotFound),
                None => {}
            }
            path
        };
        if check_name(name, false).is_err() {
            return Err(FsError::NotFound);
        }
        let found = match self.remote().stat(&path) {
            Ok(f) => f,
            // SharePoint unreachable or overloaded: answer from what we know, so writes keep
            // going to the spool during an outage (a name we have never seen is "absent").
            Err(e) if transient(&e) => {
                debug!("lookup {path}: {e}; answering from the cache");
                let st = self.lock();
                return match st.table.ino_of(&path) {
                    Some(ino) => Self::attr_of(&st, ino),
                    None => Err(FsError::NotFound),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let mut st = self.lock();
        match found {
            Some(item) => {
                let parent_path = names::split(&path).0.to_string();
                let ino = st.table.upsert_remote(&parent_path, &item, Instant::now());
                Self::attr_of(&st, ino)
            }
            None => {
                if let Some(ino) = st.table.ino_of(&path) {
                    let keep = st
                        .table
                        .get(ino)
                        .is_some_and(|n| n.local.is_some() || n.remote.is_none());
                    if keep {
                        return Self::attr_of(&st, ino);
                    }
                    st.table.remove_tree(&path);
                }
                Err(FsError::NotFound)
            }
        }
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if ino == STATUS_INO || ino == STATUS_JSON_INO {
            return Ok(self.virtual_attr(ino));
        }
        if ino == CONTROL_INO {
            return Ok(self.control_attr());
        }
        let st = self.lock();
        Self::attr_of(&st, ino)
    }

    /// Create and open a new file for writing.
    pub fn create(&self, parent: u64, name: &str, flags: i32) -> FsResult<(Attr, Opened)> {
        if parent == ROOT_INO && (name == STATUS_NAME || name == STATUS_JSON_NAME) {
            return Err(FsError::ReadOnly);
        }
        let path = {
            let st = self.lock();
            let parent_path = self.dir_path(&st, parent)?;
            self.check_new_name(&parent_path, name)?
        };
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
        let (spool_path, file) = self.spool.new_file()?;
        self.dur.opened_for_write(&spool_path, &path)?;
        let mut st = self.lock();
        let ino = st.table.upsert(&path, NodeKind::File);
        let node = st.table.get_mut(ino).ok_or(FsError::NotFound)?;
        // Any earlier queued version stays owned by the queue, which supersedes it.
        node.local = Some(LocalFile {
            spool: spool_path.clone(),
            size: 0,
            mtime: SystemTime::now(),
            writers: 1,
            dirty: true,
            queued: false,
            queued_mtime: None,
            failed: None,
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

    fn add_handle(&self, h: HandleKind) -> u64 {
        let mut st = self.lock();
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, Arc::new(h));
        fh
    }

    fn handle(&self, fh: u64) -> FsResult<Arc<HandleKind>> {
        self.lock()
            .handles
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// Open an existing file.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        if ino == CONTROL_INO {
            return Ok(Opened {
                fh: self.add_handle(HandleKind::Control),
                direct_io: true,
            });
        }
        if ino == STATUS_INO || ino == STATUS_JSON_INO {
            if accmode_writes(flags) {
                return Err(FsError::ReadOnly);
            }
            let data = self.render_virtual(ino);
            let fh = self.add_handle(HandleKind::Virtual { data });
            return Ok(Opened {
                fh,
                direct_io: true,
            });
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
                    file: File::open(&l.spool)?,
                },
                None => HandleKind::ReadRemote {
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
        self.dur.check_writable()?;
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
            drop(st);
            return Ok(HandleKind::Write {
                ino,
                spool: l.spool.clone(),
                file: Arc::new(file),
            });
        }
        let (spool_path, file) = self.spool.new_file()?;
        self.dur.opened_for_write(&spool_path, &path)?;
        let (size, mtime) = if truncate {
            (0, SystemTime::now())
        } else if let Some(l) = &local {
            let copied = std::fs::copy(&l.spool, &spool_path);
            match copied {
                Ok(n) => (n, l.mtime),
                Err(e) => {
                    crate::spool::remove_spooled(&spool_path);
                    return Err(e.into());
                }
            }
        } else if let Some(r) = &remote {
            if let Err(e) = self.fetch_into(&path, r.size, &file) {
                crate::spool::remove_spooled(&spool_path);
                return Err(e);
            }
            (r.size, r.mtime)
        } else {
            (0, SystemTime::now())
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
        });
        drop(st);
        Ok(HandleKind::Write {
            ino,
            spool: spool_path,
            file: Arc::new(file),
        })
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
            if data.is_empty() {
                return Err(FsError::Remote(crate::remote::RemoteError::Protocol(
                    "download ended early".into(),
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
            HandleKind::ReadLocal { file } => read_file_at(file, offset, size),
            HandleKind::ReadRemote {
                path,
                size: total,
                window,
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
        self.dur.admit(spool, end.saturating_sub(size))?;
        if let Err(e) = file.write_all_at(data, offset) {
            self.dur.mark_broken(spool, &format!("a write failed: {e}"));
            return Err(e.into());
        }
        let mut st = self.lock();
        let local = st.table.get_mut(*ino).and_then(|n| n.local.as_mut());
        if let Some(l) = local.filter(|l| l.spool == *spool) {
            l.size = l.size.max(end);
            l.dirty = true;
            l.mtime = SystemTime::now();
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

    /// Last close of a handle. A written file whose last writer closes is queued for upload.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = {
            let mut st = self.lock();
            st.handles.remove(&fh).ok_or(FsError::BadHandle)?
        };
        let h = match h.as_ref() {
            HandleKind::Lazy { real, .. } => {
                let real = real.lock().unwrap_or_else(|e| e.into_inner());
                match real.as_ref() {
                    Some(r) => r.clone(),
                    None => return Ok(()), // never written: nothing to upload
                }
            }
            _ => h,
        };
        let HandleKind::Write { ino, .. } = h.as_ref() else {
            return Ok(());
        };
        self.seal(*ino, true);
        Ok(())
    }

    /// If `ino` has dirty spool content and no writers, hand it to the queue.
    fn seal(&self, ino: u64, closing_writer: bool) {
        // The job is submitted while the core's lock is held, so a concurrent rename or
        // unlink (FUSE release is asynchronous to close) sees either the file before it was
        // queued or the queued job, never a job in flight to the queue.
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
            if l.writers > 0 {
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
        };
        if !self.dur.sealing(&self.queue, &job) {
            return;
        }
        debug!(
            "{}: queued for upload ({} bytes)",
            job.remote_path, job.size
        );
        self.queue.submit(job);
        drop(st);
    }

    /// Set size and/or mtime (`truncate`, `utimens`); mode and owner are accepted and ignored.
    pub fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        mtime: Option<SystemTime>,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        if ino == CONTROL_INO {
            return Ok(self.control_attr());
        }
        if ino == STATUS_INO || ino == STATUS_JSON_INO {
            return if size.is_some() {
                Err(FsError::ReadOnly)
            } else {
                Ok(self.virtual_attr(ino))
            };
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
        let st = self.lock();
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
        if kind == NodeKind::Dir && path.is_empty() {
            return Ok(());
        }
        let item = self.remote().set_mtime(&path, mtime)?;
        let mut st = self.lock();
        if let Some(n) = st.table.get_mut(ino) {
            n.remote = Some(RemoteMeta::from(&item));
            n.seen = Some(Instant::now());
        }
        Ok(())
    }

    pub fn mkdir(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let path = {
            let st = self.lock();
            let parent_path = self.dir_path(&st, parent)?;
            let path = self.check_new_name(&parent_path, name)?;
            if let Some(ino) = st.table.ino_of(&path) {
                let n = st.table.get(ino);
                if n.is_some_and(|n| n.local.is_some() || self.fresh(n.seen)) {
                    return Err(FsError::Exists);
                }
            }
            path
        };
        if let Some(existing) = self.remote().stat(&path)? {
            let mut st = self.lock();
            st.table
                .upsert_remote(names::split(&path).0, &existing, Instant::now());
            return Err(FsError::Exists);
        }
        let item = self.remote().mkdir(&path)?;
        let mut st = self.lock();
        let ino = st
            .table
            .upsert_remote(names::split(&path).0, &item, Instant::now());
        if let Some(n) = st.table.get_mut(ino) {
            n.listed = Some(Instant::now());
        }
        Self::attr_of(&st, ino)
    }

    /// Fetch the listing of `dir` from the server if it is stale, merging it into the table.
    fn refresh_listing(&self, ino: u64) -> FsResult<String> {
        let (path, stale) = {
            let st = self.lock();
            let path = self.dir_path(&st, ino)?;
            let listed = st.table.get(ino).and_then(|n| n.listed);
            (path, !self.fresh(listed))
        };
        if !stale {
            return Ok(path);
        }
        let items = match self.remote().list(&path) {
            Ok(items) => items,
            Err(e) if transient(&e) => {
                warn!("listing {path}: {e}; showing the cached listing");
                return Ok(path);
            }
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        let mut st = self.lock();
        let mut seen = std::collections::HashSet::new();
        for item in &items {
            seen.insert(st.table.upsert_remote(&path, item, now));
        }
        // Forget children the server no longer has, unless they have local content.
        for child in st.table.children(&path) {
            if seen.contains(&child) {
                continue;
            }
            let gone = st
                .table
                .get(child)
                .is_some_and(|n| n.local.is_none() && n.remote.is_some());
            if gone {
                if let Some(p) = st.table.get(child).map(|n| n.path.clone()) {
                    st.table.remove_tree(&p);
                }
            }
        }
        if let Some(n) = st.table.get_mut(ino) {
            n.listed = Some(now);
            n.seen = Some(now);
        }
        Ok(path)
    }

    pub fn opendir(&self, ino: u64) -> FsResult<Opened> {
        let path = self.refresh_listing(ino)?;
        let st = self.lock();
        let parent_ino = if path.is_empty() {
            ROOT_INO
        } else {
            st.table.ino_of(names::split(&path).0).unwrap_or(ROOT_INO)
        };
        let mut entries = vec![
            (ino, NodeKind::Dir, ".".to_string()),
            (parent_ino, NodeKind::Dir, "..".to_string()),
        ];
        // `.status` and `.status.json` are looked up by name but not listed: `rsync --delete`
        // would try to remove them and `cp -r` of the mount would copy them.
        let mut children: Vec<(u64, NodeKind, String)> = st
            .table
            .children(&path)
            .into_iter()
            .filter_map(|c| st.table.get(c).map(|n| (c, n.kind, n.name().to_string())))
            .collect();
        children.sort_by(|a, b| a.2.cmp(&b.2));
        entries.extend(children);
        drop(st);
        Ok(Opened {
            fh: self.add_handle(HandleKind::Dir { entries }),
            direct_io: false,
        })
    }

    pub fn readdir(&self, fh: u64, offset: u64, out: &mut dyn DirReplier) -> FsResult<()> {
        let h = self.handle(fh)?;
        let HandleKind::Dir { entries } = h.as_ref() else {
            return Err(FsError::BadHandle);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if out.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.lock().handles.remove(&fh);
    }

    fn child(&self, parent: u64, name: &str) -> FsResult<(u64, String)> {
        self.lookup(parent, name)?;
        let st = self.lock();
        let parent_path = self.dir_path(&st, parent)?;
        let path = join(&parent_path, name);
        let ino = st.table.ino_of(&path).ok_or(FsError::NotFound)?;
        Ok((ino, path))
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        if parent == ROOT_INO && (name == STATUS_NAME || name == STATUS_JSON_NAME) {
            return Err(FsError::ReadOnly);
        }
        let (ino, path) = self.child(parent, name)?;
        let (kind, local, remote) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.kind, n.local.clone(), n.remote.clone())
        };
        if kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        // Forget the node and cancel its upload under the lock, so a concurrent release
        // cannot queue it again (see `seal`).
        let local = {
            let mut st = self.lock();
            let local = st.table.get(ino).and_then(|n| n.local.clone()).or(local);
            if local.is_some() {
                self.queue.cancel(&path);
            }
            st.table.remove_tree(&path);
            local
        };
        if let Some(l) = &local {
            crate::spool::remove_spooled(&l.spool);
        }
        if remote.is_some() || local.as_ref().is_some_and(|l| l.queued) {
            match self.remote().delete(&path) {
                Ok(()) | Err(crate::remote::RemoteError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Drop whatever local state the file at `path` has (its pending upload, its spool file)
    /// and forget it, leaving the server's item alone.
    fn forget_local_target(&self, path: &str) {
        let local = {
            let st = self.lock();
            st.table
                .ino_of(path)
                .and_then(|i| st.table.get(i))
                .and_then(|n| n.local.clone())
        };
        if let Some(l) = local {
            self.queue.cancel(path);
            crate::spool::remove_spooled(&l.spool);
        }
        self.lock().table.remove_tree(path);
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        let (ino, path) = self.child(parent, name)?;
        {
            let st = self.lock();
            if st.table.get(ino).map(|n| n.kind) != Some(NodeKind::Dir) {
                return Err(FsError::NotDir);
            }
        }
        // Ask the server, not the cache: a folder is empty only if SharePoint says so.
        if let Some(n) = self.lock().table.get_mut(ino) {
            n.listed = None;
        }
        self.refresh_listing(ino)?;
        if !self.lock().table.children(&path).is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remote().delete(&path)?;
        self.lock().table.remove_tree(&path);
        Ok(())
    }

    pub fn rename(&self, parent: u64, name: &str, newparent: u64, newname: &str) -> FsResult<()> {
        let (ino, from) = self.child(parent, name)?;
        let to = {
            let st = self.lock();
            let np = self.dir_path(&st, newparent)?;
            self.check_new_name(&np, newname)?
        };
        if from == to {
            return Ok(());
        }
        // Whatever is at the target is replaced (POSIX rename).
        let target = match self.lookup(newparent, newname) {
            Ok(a) => Some(a),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let (kind, local, remote) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.kind, n.local.clone(), n.remote.clone())
        };
        let same_item = names::fold(&from) == names::fold(&to);
        if let (Some(t), false) = (target, same_item) {
            if t.kind == NodeKind::Dir {
                self.rmdir(newparent, newname)?;
            } else if kind == NodeKind::File && local.is_some() && self.replace_by_upload {
                // Atomic save (write a temp file, rename it over the original): the upload of
                // the new content replaces the server's item, keeping its version history.
                // Only the target's own pending upload, if any, is dropped.
                self.forget_local_target(&to);
            } else {
                self.unlink(newparent, newname)?;
            }
        }
        if kind == NodeKind::File && remote.is_none() {
            // Decide under the lock: `seal` submits under it too (see there).
            let mut st = self.lock();
            let l = st.table.get(ino).and_then(|n| n.local.as_ref());
            let queued_now = l.is_some_and(|l| l.queued);
            let unqueued_now = l.is_some_and(|l| !l.queued);
            if unqueued_now || (queued_now && self.queue.retarget(&from, &to)) {
                // Not yet queued (it will be under the new name), or queued but not started
                // (the job simply goes to the new name): nothing to do on the server.
                st.table.rename_tree(&from, &to);
                if let Some(n) = st.table.get_mut(ino) {
                    n.seen = None;
                }
                drop(st);
                debug!("renamed {from} -> {to} before its upload started");
                return Ok(());
            }
        }
        let queued = {
            let st = self.lock();
            st.table
                .get(ino)
                .and_then(|n| n.local.as_ref())
                .is_some_and(|l| l.queued)
        };
        let mut relinked = None;
        if let (NodeKind::File, true, Some(l)) = (kind, queued, local.as_ref()) {
            // The queued upload goes to the old name: keep the content under a new spool
            // name (a hard link, no copy), stop that upload, and queue it under the new name.
            let (link, _) = self.spool.new_file()?;
            std::fs::remove_file(&link)?;
            std::fs::hard_link(&l.spool, &link)?;
            self.queue.cancel(&from);
            relinked = Some(link);
        }
        if remote.is_some() || kind == NodeKind::Dir {
            match self.remote().rename(&from, &to) {
                Ok(_) => {}
                // Not on the server yet (still uploading when cancelled): nothing to move.
                Err(crate::remote::RemoteError::NotFound(_)) if local.is_some() => {}
                // The new content is re-queued under the new name either way; an older copy
                // may stay under the old name, but nothing is lost.
                Err(e) if queued => warn!("rename {from} -> {to} on the server failed: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        {
            let mut st = self.lock();
            st.table.rename_tree(&from, &to);
            if let Some(n) = st.table.get_mut(ino) {
                n.seen = None;
                if let (Some(link), Some(l)) = (relinked.take(), n.local.as_mut()) {
                    l.spool = link;
                    l.queued = false;
                    l.dirty = true;
                }
            }
        }
        if queued {
            self.seal(ino, false);
        }
        if kind == NodeKind::Dir {
            self.move_pending_under(&from, &to)?;
        }
        info!("renamed {from} -> {to}");
        Ok(())
    }

    /// After a folder moved from `from` to `to`, send the queued uploads beneath it to their
    /// new paths: a waiting job is retargeted; one already uploading is stopped and its
    /// content queued again under the new path (a hard link keeps the spool content).
    fn move_pending_under(&self, from: &str, to: &str) -> FsResult<()> {
        let prefix = format!("{}/", names::fold(to));
        let moved: Vec<(u64, String, PathBuf)> = {
            let st = self.lock();
            st.table
                .local_nodes()
                .filter(|(_, n)| names::fold(&n.path).starts_with(&prefix))
                .filter_map(|(i, n)| {
                    let l = n.local.as_ref().filter(|l| l.queued)?;
                    Some((*i, n.path.clone(), l.spool.clone()))
                })
                .collect()
        };
        for (ino, new_path, spool) in moved {
            let old_path = format!("{from}{}", &new_path[to.len()..]);
            {
                let _st = self.lock(); // ordered with `seal`, as in `rename`
                if self.queue.retarget(&old_path, &new_path) {
                    continue;
                }
            }
            let (link, _) = self.spool.new_file()?;
            std::fs::remove_file(&link)?;
            std::fs::hard_link(&spool, &link)?;
            self.queue.cancel(&old_path);
            if let Some(l) = self
                .lock()
                .table
                .get_mut(ino)
                .and_then(|n| n.local.as_mut())
            {
                l.spool = link;
                l.queued = false;
                l.dirty = true;
            }
            self.seal(ino, false);
        }
        Ok(())
    }

    pub fn statfs(&self) -> FsResult<FsStats> {
        let d = self.spool.disk_space()?;
        let bs = d.block_size.max(512);
        Ok(FsStats {
            block_size: bs,
            blocks: d.total_bytes / bs,
            blocks_free: d.free_bytes / bs,
        })
    }

    /// Stop the queue (on unmount).
    pub fn shutdown(&self) {
        self.queue.shutdown();
    }
}

/// Errors that say nothing about the item (network, 5xx, throttling): the cache may answer.
fn transient(e: &crate::remote::RemoteError) -> bool {
    use crate::remote::RemoteError as E;
    matches!(e, E::Transport(_) | E::Server { .. } | E::Throttled { .. })
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
