//! Errors of the filesystem core and the one table that maps them to errno values.
//!
//! The FUSE adapter logs each error once (with the path) and replies with [`FsError::errno`];
//! nothing else in the program chooses an errno.

use std::fmt;
use std::io;

use crate::remote::RemoteError;

/// What went wrong in a filesystem operation.
#[derive(Debug)]
pub enum FsError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    /// A name SharePoint refuses (reference §6).
    InvalidName(String),
    /// A name SharePoint's collation folds onto this other entry of the folder
    /// (`Mærsk.txt` / `Maersk.txt`, field reference entry 15).
    NameClash(String),
    /// A path over 400 characters.
    NameTooLong(usize),
    /// A path component over 255 bytes (`NAME_MAX`, `f_namelen`); the number of bytes.
    ComponentTooLong(usize),
    /// A file over 250 GB.
    FileTooBig,
    /// The spool is full (spool_max or the disk).
    NoSpace(String),
    /// Links, special files and other things SharePoint cannot hold.
    NotSupported(&'static str),
    /// Writing to `.status` and other read-only things.
    ReadOnly,
    BadHandle,
    /// Local I/O on the spool.
    Io(io::Error),
    /// The server refused or could not be reached.
    Remote(RemoteError),
    /// getxattr/removexattr of an extended attribute the node does not have.
    NoAttribute,
    /// setxattr/removexattr: the `user.shareuplift.*` attributes are read-only and no others
    /// can be stored (SharePoint has nowhere to keep them).
    AttributesReadOnly,
}

impl FsError {
    /// The errno table. Comments say why where it is not obvious.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            // The name is taken, as far as SharePoint is concerned.
            FsError::Exists | FsError::NameClash(_) => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::InvalidName(_) => libc::EINVAL,
            FsError::NameTooLong(_) | FsError::ComponentTooLong(_) => libc::ENAMETOOLONG,
            FsError::FileTooBig => libc::EFBIG,
            FsError::NoSpace(_) => libc::ENOSPC,
            // EPERM is what link(2)/symlink(2)/mknod(2) return on filesystems that cannot
            // hold such objects.
            FsError::NotSupported(_) => libc::EPERM,
            FsError::ReadOnly => libc::EACCES,
            FsError::BadHandle => libc::EBADF,
            FsError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            // ENODATA is what getxattr(2) returns for a missing attribute (ENOATTR on BSD).
            FsError::NoAttribute => libc::ENODATA,
            // ENOTSUP, like a filesystem mounted without xattr support: tools such as
            // `cp -a` and `rsync -X` then carry on without the attributes.
            FsError::AttributesReadOnly => libc::ENOTSUP,
            FsError::Remote(r) => match r {
                RemoteError::NotFound(_) => libc::ENOENT,
                RemoteError::Conflict(_) | RemoteError::NameClash(_) => libc::EEXIST,
                RemoteError::Forbidden(_) | RemoteError::Unauthorized(_) | RemoteError::Auth(_) => {
                    libc::EACCES
                }
                RemoteError::QuotaExceeded(_) => libc::ENOSPC,
                // Checked out or open in another app (field reference entry 23): EBUSY is
                // what rename(2) and unlink(2) answer for a file in use ("Device or resource
                // busy"); the lock passes, unlike EINVAL's "your request is wrong".
                RemoteError::Locked(_) => libc::EBUSY,
                // The library's column rules refuse the item (entry 22): not a permission of
                // the user's, but an operation the library does not permit.
                RemoteError::ValidationFailed(_) => libc::EPERM,
                // Throttling and outages are transient: EAGAIN tells callers to try again.
                RemoteError::Throttled { .. } => libc::EAGAIN,
                RemoteError::Client { .. } => libc::EINVAL,
                RemoteError::PreconditionFailed(_)
                | RemoteError::RangeNotSatisfiable(_)
                | RemoteError::Server { .. }
                | RemoteError::Transport(_)
                | RemoteError::Protocol(_) => libc::EIO,
            },
        }
    }

    /// Whether this is an ordinary outcome (ENOENT on lookup) rather than a failure worth a
    /// log line.
    pub fn is_quiet(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::Exists
                | FsError::NotEmpty
                | FsError::NotDir
                | FsError::ComponentTooLong(_)
                | FsError::NoAttribute
                | FsError::AttributesReadOnly
        )
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file or folder"),
            FsError::Exists => f.write_str("already exists"),
            FsError::NotDir => f.write_str("not a folder"),
            FsError::IsDir => f.write_str("is a folder"),
            FsError::NotEmpty => f.write_str("folder not empty"),
            FsError::InvalidName(m) => write!(f, "invalid SharePoint name: {m}"),
            FsError::NameClash(other) => write!(
                f,
                "name clashes with {other} (SharePoint treats the two names as one: case, \
                 accents written composed or decomposed, æ = ae, œ = oe, ß = ss); \
                 choose another name"
            ),
            FsError::NameTooLong(n) => {
                write!(f, "path is {n} characters; SharePoint allows at most 400")
            }
            FsError::ComponentTooLong(n) => write!(
                f,
                "name is {n} bytes; at most {} are allowed",
                crate::protocol::MAX_NAME_BYTES
            ),
            FsError::FileTooBig => f.write_str("file larger than SharePoint's 250 GB limit"),
            FsError::NoSpace(m) => write!(f, "spool full: {m}"),
            FsError::NotSupported(what) => write!(f, "{what} are not supported on SharePoint"),
            FsError::ReadOnly => f.write_str("read-only"),
            FsError::BadHandle => f.write_str("bad file handle"),
            FsError::Io(e) => write!(f, "spool I/O error: {e}"),
            FsError::Remote(e) => write!(f, "{e}"),
            FsError::NoAttribute => f.write_str("no such extended attribute"),
            FsError::AttributesReadOnly => {
                f.write_str("extended attributes are read-only on this mount")
            }
        }
    }
}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> Self {
        FsError::Io(e)
    }
}

impl From<RemoteError> for FsError {
    fn from(e: RemoteError) -> Self {
        FsError::Remote(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table() {
        let cases: Vec<(FsError, i32)> = vec![
            (FsError::NotFound, libc::ENOENT),
            (FsError::InvalidName("x".into()), libc::EINVAL),
            (FsError::NameTooLong(401), libc::ENAMETOOLONG),
            (FsError::NameClash("Maersk.txt".into()), libc::EEXIST),
            (FsError::ComponentTooLong(256), libc::ENAMETOOLONG),
            (FsError::FileTooBig, libc::EFBIG),
            (FsError::NoSpace("x".into()), libc::ENOSPC),
            (FsError::NotSupported("hard links"), libc::EPERM),
            (FsError::NotEmpty, libc::ENOTEMPTY),
            (FsError::NoAttribute, libc::ENODATA),
            (FsError::AttributesReadOnly, libc::ENOTSUP),
            (
                FsError::Io(io::Error::from_raw_os_error(libc::ENOSPC)),
                libc::ENOSPC,
            ),
            (
                FsError::Remote(RemoteError::NotFound("x".into())),
                libc::ENOENT,
            ),
            (
                FsError::Remote(RemoteError::QuotaExceeded("x".into())),
                libc::ENOSPC,
            ),
            (
                FsError::Remote(RemoteError::Transport("x".into())),
                libc::EIO,
            ),
            (
                FsError::Remote(RemoteError::Conflict("x".into())),
                libc::EEXIST,
            ),
            (
                FsError::Remote(RemoteError::Locked("x".into())),
                libc::EBUSY,
            ),
            (
                FsError::Remote(RemoteError::ValidationFailed("x".into())),
                libc::EPERM,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.errno(), want, "{e}");
        }
    }
}
