//! The spool directory: private local storage where written files live until SharePoint has
//! committed them.
//!
//! Invariants: the directory is mode 0700 and files in it 0600 (spool content and, later,
//! upload-session records are private); one mount owns a spool directory at a time (an
//! exclusive `flock` on `spool/lock`, released by the kernel if the process dies); spool files
//! are created with `O_EXCL` under unique names and are never reused. Files left by an earlier
//! run are never deleted here: recovery decides what they are.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Free space and capacity of the filesystem holding the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub block_size: u64,
}

/// An open, locked spool directory.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    data: PathBuf,
    _lock: File,
    counter: AtomicU64,
}

impl Spool {
    /// Create (mode 0700) and lock `root`. Fails if another mount holds it.
    pub fn open(root: &Path) -> io::Result<Spool> {
        fs::create_dir_all(root)?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        let data = root.join("data");
        fs::create_dir_all(&data)?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join("lock"))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "spool directory {} is in use by another shareuplift mount; \
                     use a different spool_dir for each mount",
                    root.display()
                ),
            ));
        }
        Ok(Spool {
            root: root.to_path_buf(),
            data,
            _lock: lock,
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of spool data files.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Create a new, empty, private spool file under a unique name.
    pub fn new_file(&self) -> io::Result<(PathBuf, File)> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let path = self
                .data
                .join(format!("{nanos:x}-{}-{n}.data", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Spool data files present right now (e.g. left by an earlier run).
    pub fn existing_files(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.data)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "data") {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Capacity and free space of the spool's filesystem.
    pub fn disk_space(&self) -> io::Result<DiskSpace> {
        disk_space(&self.root)
    }
}

/// `statvfs` of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    } as u64;
    Ok(DiskSpace {
        total_bytes: st.f_blocks as u64 * frsize,
        free_bytes: st.f_bavail as u64 * frsize,
        block_size: frsize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_locked_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("spool");
        let spool = Spool::open(&root).unwrap();
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (a, _) = spool.new_file().unwrap();
        let (b, _) = spool.new_file().unwrap();
        assert_ne!(a, b);
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(spool.existing_files().unwrap().len(), 2);
        let second = Spool::open(&root).unwrap_err();
        assert!(second.to_string().contains("in use"), "{second}");
        drop(spool);
        Spool::open(&root).unwrap();
        assert!(disk_space(tmp.path()).unwrap().total_bytes > 0);
    }
}
