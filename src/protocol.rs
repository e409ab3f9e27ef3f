//! The numbers of SharePoint's and Microsoft Graph's upload protocol, in one place
//! (reference `graph-upload-protocol.md` §2, §3, §6). Config validation, the chunk plan, the
//! test remote, the filesystem's name checks and the emulator all read them from here, so the
//! client and its strict test peers can never disagree about a limit.
//!
//! Pure constants; no code depends on anything above this module.

/// 320 KiB: every upload-session fragment but the last must be a multiple of this length.
pub const FRAGMENT_UNIT: u64 = 320 * 1024;
/// Every fragment PUT must be smaller than this (60 MiB).
pub const FRAGMENT_LIMIT: u64 = 60 * 1024 * 1024;
/// The largest fragment length that is both a multiple of [`FRAGMENT_UNIT`] and under
/// [`FRAGMENT_LIMIT`]: 191 × 320 KiB = 62,586,880 bytes.
pub const MAX_FRAGMENT: u64 = (FRAGMENT_LIMIT - 1) / FRAGMENT_UNIT * FRAGMENT_UNIT;
/// Default fragment size: 10 MiB (32 × 320 KiB), recommended for fast stable links.
pub const DEFAULT_CHUNK: u64 = 32 * FRAGMENT_UNIT;
/// Largest body Graph's simple `PUT …/content` accepts (250 MB; older pages say 4 MB). We use
/// simple uploads only for empty files, because they cannot carry `fileSystemInfo`.
pub const SIMPLE_UPLOAD_LIMIT: u64 = 250 * 1000 * 1000;
/// Largest file SharePoint accepts: 250 GB.
pub const MAX_FILE_BYTES: u64 = 250 * 1000 * 1000 * 1000;
/// Longest server-relative path SharePoint accepts, in characters (decoded).
pub const MAX_PATH_CHARS: usize = 400;
/// Longest path component the mount accepts, in bytes: the POSIX `NAME_MAX` the kernel and
/// `statfs.f_namelen` use. SharePoint's own limit on one name is the 400-character path rule.
pub const MAX_NAME_BYTES: usize = 255;
/// Most children one listing page may carry (`$top`).
pub const MAX_PAGE_SIZE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_agree_with_the_reference() {
        assert_eq!(FRAGMENT_UNIT, 327_680);
        assert_eq!(MAX_FRAGMENT, 62_586_880);
        assert_eq!(MAX_FRAGMENT % FRAGMENT_UNIT, 0);
        const { assert!(MAX_FRAGMENT < FRAGMENT_LIMIT) };
        const { assert!(MAX_FRAGMENT + FRAGMENT_UNIT >= FRAGMENT_LIMIT) };
        assert_eq!(DEFAULT_CHUNK, 10 * 1024 * 1024);
    }
}
