//! Reading and rewriting one spool file's record, crash-safely, under a lock of that file
//! alone.
//!
//! A record is rewritten in place in one page-sized `pwrite` (padded to its old length), or
//! through a temp file and a rename when it is larger; so after a crash of the process each
//! record is the old or the new version, never a torn one.
//!
//! Locks: **the record lock is per data file** ([`RecordLock`]): a read-modify-write from a
//! worker and one from a FUSE thread on the same record never interleave, and a reader never
//! sees a rewrite half copied; writers of *different* records never wait for each other. The
//! lock is a leaf: nothing else is taken while it is held. **No fsync happens under it** for
//! the common paths: the bytes are written under the lock and the file (and, for a new
//! record, the directory) is synced after it is released, so a FUSE thread writing one
//! record never waits for a worker's flush of another, nor of the same one. Every writer
//! syncs after its own write, so when a durable update returns, that version or a newer one is
//! on disk. The one exception is the rare rename path (records over a page): its temp file is
//! synced before the rename, under the lock of that record only.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::SpoolRecord;

/// The record file that belongs to a spool data file.
pub fn record_path(data_file: &Path) -> PathBuf {
    data_file.with_extension("json")
}

/// Atomically replace the record of `data_file`, durably (fsync of the record and directory).
pub fn save_record(data_file: &Path, rec: &SpoolRecord) -> io::Result<()> {
    write_record(data_file, rec, true)
}

/// Atomically replace the record of `data_file` without waiting for the disk: after a crash
/// of the process the record is the old or the new one (the rename is atomic); after a power
/// loss it may be the old one. Used on FUSE threads (create, close), where an fsync would also
/// flush the whole just-written data file on ext4 and make `close` wait for the disk; the
/// worker makes both durable ([`make_durable`]) before it starts uploading.
pub fn save_record_fast(data_file: &Path, rec: &SpoolRecord) -> io::Result<()> {
    write_record(data_file, rec, false)
}

/// fsync a data file, its record and the directory. Takes no lock.
pub fn make_durable(data_file: &Path) -> io::Result<()> {
    slow_disk::pause(data_file);
    File::open(data_file)?.sync_all()?;
    match File::open(record_path(data_file)) {
        Ok(f) => f.sync_all()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = data_file.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_record(data_file: &Path, rec: &SpoolRecord, sync: bool) -> io::Result<()> {
    let flush = {
        let _lock = RecordLock::take(data_file);
        write_record_locked(data_file, rec, sync)?
    };
    flush.run(data_file)
}

/// Read the record of `data_file`, `Ok(None)` if there is none.
pub fn load_record(data_file: &Path) -> io::Result<Option<SpoolRecord>> {
    let _lock = RecordLock::take(data_file);
    load_record_locked(data_file)
}

/// Load, change and atomically save the record of `data_file`; nothing if it has none (the
/// file was discarded or uploaded meanwhile).
pub fn update_record(data_file: &Path, f: impl FnOnce(&mut SpoolRecord)) -> io::Result<()> {
    update_record_with(data_file, true, f)
}

/// [`update_record`], fsynced (after the record lock is released) only when `sync`.
pub(super) fn update_record_with(
    data_file: &Path,
    sync: bool,
    f: impl FnOnce(&mut SpoolRecord),
) -> io::Result<()> {
    let flush = {
        let _lock = RecordLock::take(data_file);
        let Some(mut rec) = load_record_locked(data_file)? else {
            return Ok(());
        };
        f(&mut rec);
        write_record_locked(data_file, &rec, sync)?
    };
    flush.run(data_file)
}

/// The lock of one record: held while the record is read or written, never while it is
/// synced. A set of the data files whose record is busy, and a condition variable to wait for
/// one to be let go; the set holds only the records being worked on right now.
struct RecordLock<'a> {
    data_file: &'a Path,
}

struct Busy {
    files: Mutex<HashSet<PathBuf>>,
    freed: Condvar,
}

static BUSY: std::sync::LazyLock<Busy> = std::sync::LazyLock::new(|| Busy {
    files: Mutex::new(HashSet::new()),
    freed: Condvar::new(),
});

fn busy_files() -> MutexGuard<'static, HashSet<PathBuf>> {
    BUSY.files.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> RecordLock<'a> {
    fn take(data_file: &'a Path) -> RecordLock<'a> {
        let mut files = busy_files();
        while files.contains(data_file) {
            files = BUSY.freed.wait(files).unwrap_or_else(|e| e.into_inner());
        }
        files.insert(data_file.to_path_buf());
        RecordLock { data_file }
    }
}

impl Drop for RecordLock<'_> {
    fn drop(&mut self) {
        busy_files().remove(self.data_file);
        BUSY.freed.notify_all();
    }
}

/// What must reach the disk once the record lock is released.
#[must_use]
#[derive(Default)]
struct Flush {
    /// The record file, and whether its metadata must be synced too (a new file).
    file: Option<(File, bool)>,
    /// The directory, after a create or a rename.
    dir: Option<PathBuf>,
}

impl Flush {
    fn run(self, data_file: &Path) -> io::Result<()> {
        if self.file.is_none() && self.dir.is_none() {
            return Ok(());
        }
        slow_disk::pause(data_file);
        match self.file {
            Some((f, true)) => f.sync_all()?,
            Some((f, false)) => f.sync_data()?,
            None => {}
        }
        if let Some(dir) = self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// [`write_record`] with the record lock already held; returns the syncing still to do.
fn write_record_locked(data_file: &Path, rec: &SpoolRecord, sync: bool) -> io::Result<Flush> {
    let bytes = serde_json::to_vec(rec).map_err(io::Error::other)?;
    if bytes.len() <= IN_PLACE_MAX {
        if let Some(flush) = rewrite_in_place(data_file, &bytes, sync)? {
            return Ok(flush);
        }
    }
    replace_by_rename(data_file, &bytes, sync)
}

/// Records up to this size are rewritten in place: one `pwrite` of at most one page at offset
/// 0, which a killed process cannot tear (the kernel copies a page into the page cache whole
/// before it acts on SIGKILL). Real records are a few hundred bytes; larger ones (a very long
/// error text) take the temp-file-and-rename path.
const IN_PLACE_MAX: usize = 4096;

/// Rewrite an existing record in place, padded with spaces (JSON allows trailing whitespace)
/// to at least its old length, so no byte of the old version is left after the new one and no
/// truncate is needed. Returns `None` when it is too long to be rewritten in one page; then
/// the caller replaces it by rename.
///
/// Why not always temp file + rename: every rename frees an inode and allocates another, and a
/// spool turns over several records per uploaded file. On ext4 without a journal the inode
/// allocator scans past recently freed inodes, so with thousands of small files that churn
/// became half of the mount's CPU time (measured with `perf`, issue 10); in place, a small
/// file costs two inodes (data and record) instead of seven.
fn rewrite_in_place(data_file: &Path, bytes: &[u8], sync: bool) -> io::Result<Option<Flush>> {
    use std::os::unix::fs::FileExt;
    let path = record_path(data_file);
    let f = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create_record(&path, bytes, sync),
        Err(e) => return Err(e),
    };
    let old = f.metadata()?.len();
    if old > IN_PLACE_MAX as u64 {
        return Ok(None);
    }
    let mut buf = bytes.to_vec();
    if (buf.len() as u64) < old {
        buf.resize(old as usize, b' ');
    }
    f.write_all_at(&buf, 0)?;
    Ok(Some(Flush {
        file: sync.then_some((f, false)),
        dir: None,
    }))
}

/// The first record of a spool file, created directly (`O_EXCL`). A kill between the create
/// and the write leaves an empty record, which recovery treats as unreadable: the data file
/// (empty at that point, since records are created before any write) is removed or kept under
/// `lost+found`, never lost.
fn create_record(path: &Path, bytes: &[u8], sync: bool) -> io::Result<Option<Flush>> {
    use std::io::Write;
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        // Raced with another creator: fall back to the rename path.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    };
    f.write_all(bytes)?;
    if !sync {
        return Ok(Some(Flush::default()));
    }
    Ok(Some(Flush {
        file: Some((f, true)),
        dir: path.parent().map(Path::to_path_buf),
    }))
}

/// Replace the record atomically through a temp file and a rename. When `sync`, the temp file
/// is synced before the rename (under this record's lock: otherwise a crash could leave the
/// new name on an empty file), the directory after the lock is released.
fn replace_by_rename(data_file: &Path, bytes: &[u8], sync: bool) -> io::Result<Flush> {
    use std::io::Write;
    let final_path = record_path(data_file);
    let tmp = final_path.with_extension("json.tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, &final_path)?;
    Ok(Flush {
        file: None,
        dir: if sync {
            final_path.parent().map(Path::to_path_buf)
        } else {
            None
        },
    })
}

/// [`load_record`] with the record lock already held.
fn load_record_locked(data_file: &Path) -> io::Result<Option<SpoolRecord>> {
    match fs::read(record_path(data_file)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A slow spool disk for tests: every durable sync of a data file under a chosen directory
/// first sleeps. Compiled out of non-test builds.
#[cfg(test)]
pub(crate) mod slow_disk {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Duration;

    static SLOW: Mutex<Vec<(PathBuf, Duration)>> = Mutex::new(Vec::new());

    /// Make every sync of the spool file `data_file` take `delay` more.
    pub(crate) fn slow_down(data_file: &Path, delay: Duration) {
        let mut slow = SLOW.lock().unwrap_or_else(|e| e.into_inner());
        slow.push((data_file.to_path_buf(), delay));
    }

    pub(super) fn pause(data_file: &Path) {
        let delay = {
            let slow = SLOW.lock().unwrap_or_else(|e| e.into_inner());
            slow.iter().find(|(f, _)| f == data_file).map(|(_, d)| *d)
        };
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
    }
}

#[cfg(not(test))]
mod slow_disk {
    pub(super) fn pause(_data_file: &std::path::Path) {}
}
