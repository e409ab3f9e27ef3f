//! The FUSE adapter: the only module that touches fuser types. Every handler forwards to the
//! filesystem core ([`crate::fs::Fs`]), converts the plain result into a reply, and on error
//! logs once (with the operation and path) and replies with the errno from the core's table.
//!
//! Kernel settings chosen in `init`: atomic O_TRUNC (so an `open(O_TRUNC)` of a remote file
//! does not first upload an empty version) and 1 MiB writes (fewer round trips for `cp`).
//! `destroy` (the kernel unmounted) leaves the upload queue alone: the mount process stops it,
//! after the unmount drain (`mount.rs`). [`KernelNotifier`] carries the core's "forget this"
//! (remote changes from the change feed) to the kernel as FUSE invalidation notices.
//!
//! Operations the filesystem does not support answer quietly (a debug line, never fuser's
//! `[Not Implemented]` warning) with the errno a local filesystem without the feature gives:
//! `ioctl` ENOTTY (Python's `open` asks TCGETS of every file), extended attributes other than
//! the read-only `user.shareuplift.*` ENODATA, setting any ENOTSUP, `readlink` EINVAL, and
//! ENOSYS/EOPNOTSUPP where the kernel then falls back by itself (`poll`, `lseek`,
//! `copy_file_range`, `fallocate`, `bmap`).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    CopyFileRangeFlags, IoctlFlags, PollEvents, PollFlags, PollNotifier, ReplyBmap, ReplyIoctl,
    ReplyLseek, ReplyPoll, ReplyXattr,
};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use log::{debug, warn};

use crate::fs::{Attr, DirReplier, Fs, FsError, NodeKind, Opened};
use crate::fs::{CONTROL_INO, STATUS_ALL_INO, STATUS_ALL_JSON_INO, STATUS_INO, STATUS_JSON_INO};
use crate::ownership::Ownership;
use crate::protocol::MAX_NAME_BYTES;

/// The fuser `Filesystem` over the core.
pub struct FuseAdapter {
    fs: Arc<Fs>,
    uid: u32,
    gid: u32,
    ownership: Ownership,
}

impl FuseAdapter {
    pub fn new(fs: Arc<Fs>) -> FuseAdapter {
        Self::with_ownership(fs, Ownership::default())
    }

    /// With the shared-mount options (`uid`, `gid`, `umask`, `file_mode`, `dir_mode`).
    pub fn with_ownership(fs: Arc<Fs>, ownership: Ownership) -> FuseAdapter {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FuseAdapter {
            fs,
            uid: ownership.uid.unwrap_or(uid),
            gid: ownership.gid.unwrap_or(gid),
            ownership,
        }
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
            crtime: a.mtime,
            kind: kind(a.kind),
            perm: self.ownership.perm(
                a.kind == NodeKind::Dir,
                matches!(
                    a.ino,
                    STATUS_INO
                        | STATUS_JSON_INO
                        | STATUS_ALL_INO
                        | STATUS_ALL_JSON_INO
                        | CONTROL_INO
                ),
                a.perm,
            ),
            nlink: a.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 1024 * 1024,
        }
    }
}

fn kind(k: NodeKind) -> FileType {
    match k {
        NodeKind::Dir => FileType::Directory,
        NodeKind::File => FileType::RegularFile,
    }
}

/// Attribute and entry TTL: zero for volatile nodes (`.status`), else what the core's cache
/// says (`Fs::kernel_ttl`), so the kernel does not ask again for what the cache knows.
fn ttl(fs: &Fs, a: &Attr) -> Duration {
    if a.volatile {
        Duration::ZERO
    } else {
        fs.kernel_ttl()
    }
}

fn fopen(o: &Opened) -> FopenFlags {
    if o.direct_io {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

/// Log a failure once, at this boundary, and turn it into an errno.
fn fail(op: &str, what: &dyn std::fmt::Display, e: &FsError) -> Errno {
    if e.is_quiet() {
        debug!("{op} {what}: {e}");
    } else {
        warn!("{op} {what}: {e}");
    }
    Errno::from_i32(e.errno())
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    // SharePoint names are Unicode; bytes that are not UTF-8 cannot be stored.
    name.to_str().ok_or(Errno::EINVAL)
}

/// Answer getxattr/listxattr: the size when asked for it (`size` 0), else the value, or
/// ERANGE when it does not fit the caller's buffer.
fn reply_xattr(value: Vec<u8>, size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(u32::try_from(value.len()).unwrap_or(u32::MAX));
    } else if value.len() <= size as usize {
        reply.data(&value);
    } else {
        reply.error(Errno::ERANGE);
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

struct Replier<'a>(&'a mut ReplyDirectory);

impl DirReplier for Replier<'_> {
    fn add(&mut self, ino: u64, offset: u64, k: NodeKind, name: &str) -> bool {
        self.0.add(INodeNo(ino), offset, kind(k), name)
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(e) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            warn!("kernel lacks atomic O_TRUNC ({e:?}); truncating opens still work");
        }
        let _ = config.set_max_write(1024 * 1024);
        Ok(())
    }

    /// The session ends; the upload queue keeps running: `mount::run` decides whether it
    /// finishes what is queued first (`unmount_drain`) and then stops it.
    fn destroy(&mut self) {
        debug!("FUSE session destroyed");
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Ok(n) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        match self.fs.lookup(parent.0, n) {
            Ok(a) => reply.entry(&ttl(&self.fs, &a), &self.file_attr(&a), Generation(0)),
            Err(e) => reply.error(fail("lookup", &n, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&self.fs, &a), &self.file_attr(&a)),
            Err(e) => reply.error(fail("getattr", &ino.0, &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // chmod/chown are accepted and ignored: SharePoint has no POSIX modes or owners.
        // A time left out is UTIME_OMIT; `TimeOrNow::Now` is UTIME_NOW.
        let (atime, mtime) = (atime.map(time), mtime.map(time));
        match self.fs.setattr(ino.0, size, atime, mtime, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&ttl(&self.fs, &a), &self.file_attr(&a)),
            Err(e) => reply.error(fail("setattr", &ino.0, &e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let e = FsError::NotSupported("special files");
        reply.error(fail("mknod", &name.to_string_lossy(), &e));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let n = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.mkdir(parent.0, n) {
            Ok(a) => reply.entry(&ttl(&self.fs, &a), &self.file_attr(&a), Generation(0)),
            Err(e) => reply.error(fail("mkdir", &n, &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let n = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.unlink(parent.0, n) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("unlink", &n, &e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let n = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.rmdir(parent.0, n) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rmdir", &n, &e)),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let e = FsError::NotSupported("symbolic links");
        reply.error(fail("symlink", &link_name.to_string_lossy(), &e));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let e = FsError::NotSupported("hard links");
        reply.error(fail("link", &newname.to_string_lossy(), &e));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_EXCHANGE / RENAME_NOREPLACE cannot be done atomically on SharePoint.
            return reply.error(Errno::EINVAL);
        }
        let (n, nn) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reply.error(Errno::EINVAL),
        };
        match self.fs.rename(parent.0, n, newparent.0, nn) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rename", &format!("{n} -> {nn}"), &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, flags.0) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen(&o)),
            Err(e) => reply.error(fail("open", &ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(fail("read", &ino.0, &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", &ino.0, &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() never waits for the network: the upload starts at release.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("release", &ino.0, &e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("fsync", &ino.0, &e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(o) => reply.opened(FileHandle(o.fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", &ino.0, &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.fs.readdir(fh.0, offset, &mut Replier(&mut reply)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdir", &ino.0, &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_free,
                1 << 20,
                1 << 20,
                s.block_size as u32,
                MAX_NAME_BYTES as u32,
                s.block_size as u32,
            ),
            Err(e) => reply.error(fail("statfs", &"/", &e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            let e = FsError::NotSupported("special files");
            return reply.error(fail("create", &name.to_string_lossy(), &e));
        }
        let n = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.create(parent.0, n, flags) {
            Ok((a, o)) => reply.created(
                &ttl(&self.fs, &a),
                &self.file_attr(&a),
                Generation(0),
                FileHandle(o.fh),
                fopen(&o),
            ),
            Err(e) => reply.error(fail("create", &n, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        // There are no symbolic links: readlink(2) of anything else is EINVAL.
        debug!("readlink {}: not a symbolic link", ino.0);
        reply.error(Errno::EINVAL);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = match name.to_str() {
            Some(n) => self.fs.getxattr(ino.0, n),
            None => Err(FsError::NoAttribute),
        };
        match value {
            Ok(v) => reply_xattr(v, size, reply),
            Err(e) => reply.error(fail("getxattr", &name.to_string_lossy(), &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino.0) {
            Ok(v) => reply_xattr(v, size, reply),
            Err(e) => reply.error(fail("listxattr", &ino.0, &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.fs.setxattr(ino.0, &name.to_string_lossy()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("setxattr", &name.to_string_lossy(), &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.setxattr(ino.0, &name.to_string_lossy()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("removexattr", &name.to_string_lossy(), &e)),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // Not a terminal, nor anything else with ioctls (TCGETS from isatty, FS_IOC_*).
        debug!("ioctl {:#x} on {}: ENOTTY", cmd, ino.0);
        reply.error(Errno::ENOTTY);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        // ENOSYS: the kernel stops asking and treats files as always ready, as for disk files.
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // posix_fallocate(3) in glibc falls back to writing zeros on EOPNOTSUPP.
        debug!("fallocate mode {mode:#x} on {}: EOPNOTSUPP", ino.0);
        reply.error(Errno::from_i32(libc::EOPNOTSUPP));
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        // ENOSYS: the kernel's generic lseek (SEEK_DATA/SEEK_HOLE: the file is all data).
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // ENOSYS: the kernel (or `cp`) falls back to read and write.
        reply.error(Errno::ENOSYS);
    }

    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        reply.error(Errno::ENOSYS);
    }
}
/// The core's [`crate::fs::KernelCache`] on a mounted session: FUSE `notify_inval_entry` and
/// `notify_inval_inode` (attributes and all cached pages). The kernel answers ENOENT for what
/// it has not cached, which is not an error here.
pub struct KernelNotifier(pub fuser::Notifier);

impl crate::fs::KernelCache for KernelNotifier {
    fn forget_entry(&self, parent: u64, name: &str) {
        if let Err(e) = self.0.inval_entry(INodeNo(parent), OsStr::new(name)) {
            debug!("kernel entry {parent}/{name} not invalidated: {e}");
        }
    }

    fn forget_inode(&self, ino: u64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            debug!("kernel inode {ino} not invalidated: {e}");
        }
    }
}
