//! The filesystem core: every operation the FUSE adapter forwards, on plain types, testable
//! without a kernel.
//!
//! It owns the inode table, open handles, the spool files being written and the virtual
//! `.status` / `.status.json` / `.control`. Writes go to spool files; on the last release of a
//! written file the file is sealed and handed to the upload queue, and the call returns at
//! once. Metadata calls (lookup, readdir, mkdir, unlink, rename) talk to the remote
//! synchronously, because their result is what the caller asked for; the write path never
//! does.
//!
//! This file holds the `Fs` type, its options and the plain types the adapter sees; the
//! operations live in one file per concern:
//! - `namespace`: lookup, getattr, listings (opendir/readdir), mkdir, unlink, rmdir, rename
//!   and the metadata cache (`meta_ttl`, the transient-error fallback);
//! - `handles`: create, open and the handle table (a write-open of a server-only file is
//!   lazy); `file_io`: read, write, fsync, truncate, setattr; `seal`: release and seal, the
//!   one door to the upload queue, and the local (spool) content of files unlinked while
//!   open, adopted at start-up, discarded on request;
//! - `virtual_files`: the names and inodes of `.status`, `.status.json`, `.control`, their
//!   attributes and content;
//! - `command`: the `.control` grammar, shared with the CLI client (`crate::control`);
//! - `listener`: applies finished uploads to the table;
//! - `coherence` and `feed`: the change feed's poll thread, and a round applied to the table by
//!   item id (with the merge of a folder listing, which every listing uses);
//! - `locked`: unlinks and renames of files SharePoint reports locked (entry 23);
//! - own types `Fs` holds and calls, which never see the core state: `records`
//!   ([`records::SpoolRecords`]: the records written on FUSE threads, the broken-write set),
//!   `space` ([`space::SpaceMeter`]: `spool_max`), `barrier` ([`barrier::FsyncBarrier`]) and
//!   `drain` ([`drain::Drain`]);
//! - `xattr`: the read-only `user.shareuplift.*` extended attributes (per-file upload state);
//! - `local_names`: names that clash under SharePoint's collation (refused) and local-only
//!   names (application owner and lock files: kept in the mount, never uploaded);
//! - `inode` (the table), `names` (SharePoint's naming rules), `error` (the errno table).
//!
//! # Locks
//!
//! The lock order of the whole mount, written here once:
//!
//! **core state lock** ([`CoreShared::state`]: inode table and handle map) → **upload queue
//! lock** (`upload::queue`'s state) → **status registry lock** (`upload::registry`).
//!
//! - The queue never calls the [`UploadListener`] with its lock held, so the listener
//!   (`listener.rs`) may take the core lock; it does so only after the barrier's lock is
//!   released, and makes its remote calls (orphan delete, mtime fix) after releasing it.
//! - Leaves, taken with or without the core lock and never while taking another lock: the
//!   broken-write set (`records`), the space meter's scan cache (`space`), the barrier's
//!   result map (`barrier`, which is also never taken together with the core lock).
//! - Per-handle locks come *before* the core lock: a lazy write handle's `real` slot is held
//!   while `open_write` takes the core lock and copies content into the spool (so two writes
//!   through one handle materialize it once); a remote read handle's window is held across its
//!   ranged download, without the core lock.
//! - **Record lock** (`spool/record_io.rs`): one per spool file, a leaf. Taken with or
//!   without the core lock (`seal` and `create` write their file's record under it) and by
//!   workers for their own file's record; **no fsync is done under it**, and workers call
//!   the `JobStore` with no lock of the core or the queue held, so a `close()` never waits for
//!   another file's disk flush (`lock_tests.rs`). The rare rename path of a record over a page
//!   syncs its temp file under that one file's record lock.
//! - The core lock is held to read or update the table, and is never held across a network
//!   call or across copying file content or an fsync. It **is** held, on purpose, across
//!   small spool record writes (no sync) and the queue calls that follow them: `seal` writes
//!   the `sealed` (or `incomplete`) record and submits (or keeps) the job under it; `unlink`
//!   of a closed file cancels its job under it, and `unlink` of an open one (`unlink_open`)
//!   hard-links the spool content under a new name and cancels under it (a link is a
//!   metadata write, no data is copied); `rename` / `move_pending_under` retarget queued
//!   jobs under it (the queue then amends the job's record, and may remove a superseded
//!   spool file). A concurrent release — FUSE sends it after `close` returns — then sees
//!   either the file before it was queued or the queued job, never a job in flight to the
//!   queue, and the record on disk always matches the queue (doc/DURABILITY.md).
//! - `queue.cancel` is also called *without* the core lock, in four places: `rename` and
//!   `move_pending_under` when a queued job moves to a new spool link (the old name's job is
//!   cancelled after the link is made), `forget_local_target` (a rename's replaced target)
//!   and `discard` (failed jobs). The queue lock alone orders those with `seal`'s submit.
//! - Functions called with the core lock held say so (`/// Called with the core lock held.`)
//!   or take the guard's `&State`; every `InodeTable` method runs under it.

mod barrier;
pub mod coherence;
pub mod command;
mod drain;
pub mod error;
mod feed;
mod file_io;
mod handles;
pub mod inode;
mod listener;
pub mod local_names;
#[cfg(test)]
mod local_names_tests;
#[cfg(test)]
mod lock_tests;
mod locked;
pub mod names;
mod namespace;
mod records;
mod seal;
mod space;
#[cfg(test)]
mod tests;
pub mod virtual_files;
pub mod xattr;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;

pub use command::ControlCommand;
pub use error::FsError;
use handles::HandleKind;
use inode::InodeTable;
pub use inode::{NodeKind, ROOT_INO};
pub use virtual_files::{
    CONTROL_INO, CONTROL_NAME, STATUS_ALL_INO, STATUS_ALL_JSON_INO, STATUS_ALL_JSON_NAME,
    STATUS_ALL_NAME, STATUS_INO, STATUS_JSON_INO, STATUS_JSON_NAME, STATUS_NAME,
};

use crate::remote::Remote;
use crate::spool::Spool;
use crate::upload::{UploadListener, UploadQueue};

pub type FsResult<T> = Result<T, FsError>;

/// Attributes of a node, as the adapter turns them into a `FileAttr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    pub size: u64,
    /// Kept by the mount only (SharePoint has no access time).
    pub atime: SystemTime,
    pub mtime: SystemTime,
    /// Kept by the mount only: the last change through it (content, times, name).
    pub ctime: SystemTime,
    pub perm: u16,
    /// Link count: 2 for a folder, 1 for a file, 0 for a file unlinked while open.
    pub nlink: u32,
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
    /// How long server metadata (attributes, listings) is trusted without a change feed
    /// (delta refused, or not polled). Default 2 s.
    pub meta_ttl: Duration,
    /// How long it is trusted while the change feed is polled (`coherence.rs`). Default 5 min.
    pub dir_cache_time: Duration,
    /// How often the change feed is polled; `None`: never (no coherence thread). Default
    /// `None`; mounts use the `poll_interval` key (30 s).
    pub poll_interval: Option<Duration>,
    /// Characters of the mounted folder's server-relative path, for the 400-character rule.
    pub base_path_chars: usize,
    /// The upload conflict behaviour is `replace`.
    pub replace_by_upload: bool,
    /// Most bytes the spool may hold; `None`: keep max(1 GiB, 5 %) of its filesystem free.
    pub spool_max: Option<u64>,
    /// fsync waits for the commit of the file's current content (see `barrier.rs`, `file_io.rs`).
    pub fsync_barrier: bool,
    /// The mount's upload bandwidth limit, shown in `.status` and changed by `.control`
    /// (`bwlimit LIMIT`); `None`: no limiter (the `bwlimit` command is refused).
    pub bwlimit: Option<Arc<crate::upload::bwlimit::BwLimit>>,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            meta_ttl: Duration::from_secs(2),
            dir_cache_time: Duration::from_secs(300),
            poll_interval: None,
            base_path_chars: 0,
            replace_by_upload: true,
            spool_max: None,
            fsync_barrier: false,
            bwlimit: None,
        }
    }
}

/// The core's mutable state, behind [`CoreShared::state`].
struct State {
    table: InodeTable,
    handles: HashMap<u64, Arc<HandleKind>>,
    next_fh: u64,
}

/// What the core shares with its upload listener: the state lock and the remote.
struct CoreShared {
    /// The core state lock (first in the lock order, see the module doc).
    state: Mutex<State>,
    remote: Arc<dyn Remote>,
    /// The kernel's caches, once mounted ([`Fs::set_kernel_cache`]).
    kernel: std::sync::OnceLock<Box<dyn KernelCache>>,
}

impl CoreShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tell the kernel to drop what it cached of these entries and inodes. Called with no
    /// lock held: the kernel takes the folder's inode lock for an entry, and a FUSE request
    /// holding it may be waiting for the core lock.
    fn forget(&self, what: &[coherence::Forget]) {
        let Some(k) = self.kernel.get() else {
            return;
        };
        for f in what {
            match f {
                coherence::Forget::Entry(parent, name) => k.forget_entry(*parent, name),
                coherence::Forget::Inode(ino) => k.forget_inode(*ino),
            }
        }
    }
}

/// The kernel's entry, attribute and page caches, as the core may ask them to forget what the
/// server changed behind them (the change feed, `coherence`). The FUSE adapter implements it
/// with fuser's notifier; without it (tests without a kernel) entries expire by their
/// timeouts. Implementations ignore "not cached" answers.
pub trait KernelCache: Send + Sync {
    /// Forget the entry, or the negative entry, `name` in folder `parent`.
    fn forget_entry(&self, parent: u64, name: &str);
    /// Forget the attributes and cached content of `ino`.
    fn forget_inode(&self, ino: u64);
}

/// The filesystem core.
pub struct Fs {
    shared: Arc<CoreShared>,
    queue: UploadQueue,
    spool: Arc<Spool>,
    opts: FsOptions,
    records: records::SpoolRecords,
    space: space::SpaceMeter,
    barrier: Arc<barrier::FsyncBarrier>,
    drain: drain::Drain,
    /// Folder listings in flight (single flight per folder, `namespace`).
    flights: namespace::ListingFlights,
    /// Whether the change feed keeps the cache coherent (`coherence`).
    coherence: Arc<coherence::Coherence>,
    /// Names recently refused, for `.status` (`local_names`).
    refused: local_names::RefusedNames,
}

impl Fs {
    /// Give the core the kernel's caches, once mounted (the first call wins).
    pub fn set_kernel_cache(&self, kernel: Box<dyn KernelCache>) {
        let _ = self.shared.kernel.set(kernel);
    }

    /// Build the core and start the upload queue with a listener bound to it.
    pub fn new(
        remote: Arc<dyn Remote>,
        spool: Arc<Spool>,
        start_queue: impl FnOnce(Arc<dyn UploadListener>) -> UploadQueue,
        opts: FsOptions,
    ) -> Fs {
        let shared = Arc::new(CoreShared {
            state: Mutex::new(State {
                table: InodeTable::new(),
                handles: HashMap::new(),
                next_fh: 1,
            }),
            remote,
            kernel: std::sync::OnceLock::new(),
        });
        let barrier = Arc::new(barrier::FsyncBarrier::default());
        let listener = Arc::new(listener::CoreListener::new(shared.clone(), barrier.clone()));
        let queue = start_queue(listener);
        let coherence = Arc::new(coherence::Coherence::default());
        if let Some(interval) = opts.poll_interval {
            let window = queue.retry_after_left();
            coherence::spawn(shared.clone(), coherence.clone(), window, interval);
        }
        Fs {
            shared,
            queue,
            space: space::SpaceMeter::new(spool.clone(), opts.spool_max),
            spool,
            opts,
            records: records::SpoolRecords::default(),
            barrier,
            drain: drain::Drain::new(),
            flights: namespace::ListingFlights::default(),
            coherence,
            refused: local_names::RefusedNames::default(),
        }
    }

    pub fn queue(&self) -> &UploadQueue {
        &self.queue
    }

    /// Take the core state lock.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn remote(&self) -> &dyn Remote {
        self.shared.remote.as_ref()
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

    /// Ask the mount to drain: new writes are refused now; the mount's drain thread waits for
    /// the queue and unmounts.
    pub fn request_drain(&self) {
        self.drain.request();
    }

    /// Drain requests (from `.control`), for the mount's drain thread.
    pub fn drain_requests(&self) -> Receiver<()> {
        self.drain.requests()
    }

    /// Stop the queue (on unmount).
    pub fn shutdown(&self) {
        self.coherence.stop();
        self.queue.shutdown();
        self.drop_local_only(None);
    }
}
