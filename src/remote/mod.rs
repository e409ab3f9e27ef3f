//! The remote seam: everything the filesystem core and the upload queue need from SharePoint,
//! expressed as a blocking trait over paths relative to the mount root.
//!
//! Paths are `/`-separated, without a leading slash; `""` is the mount root (the configured
//! folder). Names compare case-insensitively on the server, as in SharePoint. Implementations:
//! the real Microsoft Graph client (`crate::graph::GraphRemote`) and, for tests only (compiled
//! under `cfg(test)` or the `test-support` feature, never into a release build), an in-memory
//! remote (`memory::MemoryRemote`) and a fault-injecting wrapper (`faults::FaultyRemote`).
//! Upload URLs are capabilities and travel only inside [`UploadSession`], whose `Debug` never
//! shows them.

#[cfg(any(test, feature = "test-support"))]
pub mod faults;
mod fragment_body;
pub mod hints;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::redact::SecretUrl;

pub use fragment_body::{FragmentBody, Pieces, SendLog, PIECE};

/// A file or folder as SharePoint reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteItem {
    /// Drive item id (opaque).
    pub id: String,
    /// Name as stored (case preserved).
    pub name: String,
    pub is_folder: bool,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// `fileSystemInfo.lastModifiedDateTime`, falling back to `lastModifiedDateTime`.
    pub mtime: SystemTime,
    pub etag: Option<String>,
    /// `file.hashes.quickXorHash` (base64), when the server has computed it.
    pub quick_xor_hash: Option<String>,
    /// `webUrl`: where a person opens the item in SharePoint (not a capability).
    pub web_url: Option<String>,
}

/// `@microsoft.graph.conflictBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    #[default]
    Replace,
    Rename,
    Fail,
}

impl Conflict {
    pub fn as_str(self) -> &'static str {
        match self {
            Conflict::Replace => "replace",
            Conflict::Rename => "rename",
            Conflict::Fail => "fail",
        }
    }
}

/// What an answer's `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` headers
/// said: the budget is nearly spent (SharePoint sends them once 80 % is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHint {
    /// Requests (or resource units) in the budget.
    pub limit: u64,
    /// Left in it.
    pub remaining: u64,
    /// Until the budget is full again (SharePoint: until the window resets).
    pub reset: Duration,
}

/// A drive's storage quota, as `GET /drives/{id}` reports it (field reference entry 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveQuota {
    /// Bytes that can still be stored.
    pub remaining: u64,
    /// The quota, when reported.
    pub total: Option<u64>,
}

/// An open Graph upload session. The URL is a bearer capability: it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub url: SecretUrl,
    /// `expirationDateTime`, if the server sent one.
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for UploadSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadSession")
            .field("url", &self.url)
            .field("expires", &self.expires)
            .finish()
    }
}

/// One entry of `nextExpectedRanges`: `"N-"` (end = None) or `"N-M"` (end inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// What a fragment PUT achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// 202: more bytes expected; the server's `nextExpectedRanges`, and its
    /// `expirationDateTime` (which slides forward with every fragment) when it sent one.
    Accepted {
        next_expected: Vec<ByteRange>,
        expires: Option<SystemTime>,
    },
    /// 200/201: the upload is committed. `None` when the server answered with a
    /// session-shaped body instead of a driveItem (ODI#1531): look the item up by path.
    Completed(Option<RemoteItem>),
}

/// Errors from the remote, classified so callers branch on kinds, never on messages.
/// Messages never contain tokens, passwords, secrets or upload URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// 404: item, parent folder or upload session not found.
    NotFound(String),
    /// 401 after a token refresh, or from an upload URL (expired tempauth).
    Unauthorized(String),
    /// 403.
    Forbidden(String),
    /// 429, 503 (with or without Retry-After: field reference entries 7 and 8) or 509.
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// 409 (e.g. `nameAlreadyExists` with conflict = fail).
    Conflict(String),
    /// 409 with inner `similarRelationshipNameAlreadyExists`: another item of the folder has a
    /// name SharePoint's collation treats as this one (`Maersk.txt` / `Mærsk.txt`; field
    /// reference entry 15, `crate::collation`). Permanent: retrying, or `replace`, never helps.
    NameClash(String),
    /// 412 (if-match failed).
    PreconditionFailed(String),
    /// 416 (`fragmentOverlap`, `fragmentOutOfOrder`).
    RangeNotSatisfiable(String),
    /// 507: the tenant or site quota is full.
    QuotaExceeded(String),
    /// The item is locked: checked out, or open for editing elsewhere. 423 whatever the body,
    /// or 409/403 with the code `resourceLocked` (field reference entry 23). It lasts until
    /// the other app lets go: retry later, never treat it as a bad request.
    Locked(String),
    /// The library refused the file by its own rules: column validation or required columns
    /// ("List data validation failed", entry 22). Permanent until the library or its
    /// columns change.
    ValidationFailed(String),
    /// 5xx other than throttling.
    Server { status: u16, code: String },
    /// Other 4xx (400 `invalidRequest`, `fragmentLengthMismatch`, ...).
    Client {
        status: u16,
        code: String,
        message: String,
    },
    /// Connection refused/reset, timeout, body cut off.
    Transport(String),
    /// Token acquisition failed (wrong password, unknown client, ...).
    Auth(String),
    /// The server answered something we could not understand.
    Protocol(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::NotFound(m) => write!(f, "not found: {m}"),
            RemoteError::Unauthorized(m) => write!(f, "unauthorized (401): {m}"),
            RemoteError::Forbidden(m) => write!(f, "access denied (403): {m}"),
            RemoteError::Throttled {
                status,
                retry_after,
            } => match retry_after {
                Some(d) => write!(f, "throttled ({status}), retry after {}s", d.as_secs()),
                None => write!(f, "throttled ({status})"),
            },
            RemoteError::Conflict(m) => write!(f, "name conflict (409): {m}"),
            RemoteError::NameClash(m) => write!(f, "similar name exists (409): {m}"),
            RemoteError::PreconditionFailed(m) => write!(f, "precondition failed (412): {m}"),
            RemoteError::RangeNotSatisfiable(m) => write!(f, "range not satisfiable (416): {m}"),
            RemoteError::QuotaExceeded(m) => write!(f, "quota exceeded (507): {m}"),
            RemoteError::Locked(m) => write!(f, "locked (checked out or open in another app): {m}"),
            RemoteError::ValidationFailed(m) => write!(
                f,
                "the library requires columns this file does not fill (column validation or \
                 required columns: {m}); set them in SharePoint or relax the rule, then retry"
            ),
            RemoteError::Server { status, code } => write!(f, "server error {status} {code}"),
            RemoteError::Client {
                status,
                code,
                message,
            } => {
                write!(f, "request refused ({status} {code}): {message}")
            }
            RemoteError::Transport(m) => write!(f, "connection error: {m}"),
            RemoteError::Auth(m) => write!(f, "authentication failed: {m}"),
            RemoteError::Protocol(m) => write!(f, "unexpected server response: {m}"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// One change from the drive's change feed, by item id (field reference, entry 1: on
/// SharePoint the feed carries no `parentReference.path`; paths are resolved by the caller,
/// through the ids it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaChange {
    /// Created, changed, renamed or moved: the item as it is now, and its parent's id (`None`
    /// for a drive root). A folder moved or renamed comes alone, without its descendants
    /// (entry 2).
    Changed {
        item: RemoteItem,
        parent_id: Option<String>,
        /// Folders: `folder.childCount`, when the feed gave it.
        child_count: Option<u64>,
    },
    /// Deleted; its last parent's id when the feed gave it.
    Deleted {
        id: String,
        parent_id: Option<String>,
    },
}

impl DeltaChange {
    /// The id of the item the change is about.
    pub fn id(&self) -> &str {
        match self {
            DeltaChange::Changed { item, .. } => &item.id,
            DeltaChange::Deleted { id, .. } => id,
        }
    }
}

/// One round of the change feed: every page up to its deltaLink.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeltaRound {
    /// Changes in the whole drive (the feed is the drive's, not the mount folder's), in feed
    /// order: the same item may come more than once, a delete and a re-create at one path in
    /// either order (entry 3); the caller keeps the last occurrence of each id.
    pub changes: Vec<DeltaChange>,
    /// The mount folder's item id, when the remote knows it: its children are the mount root's.
    pub root_id: Option<String>,
    /// The token of the deltaLink, for the next round.
    pub token: String,
}

/// Is this the change feed's "token too old" answer (410 `resyncRequired`)?
pub fn is_resync_required(e: &RemoteError) -> bool {
    matches!(e, RemoteError::Client { status: 410, .. })
}

/// The folders above a mount-relative path, outermost first: `"a/b/c"` → `["a", "a/b"]`.
pub fn ancestors(path: &str) -> Vec<&str> {
    path.match_indices('/').map(|(i, _)| &path[..i]).collect()
}

/// The operations ShareUplift needs from SharePoint. All calls block; none is ever made on a
/// FUSE request thread that the kernel waits on for a write.
pub trait Remote: Send + Sync + 'static {
    /// Metadata of the item at `path`, `Ok(None)` if it does not exist.
    fn stat(&self, path: &str) -> Result<Option<RemoteItem>, RemoteError>;
    /// All children of the folder at `path`, following `@odata.nextLink`.
    fn list(&self, path: &str) -> Result<Vec<RemoteItem>, RemoteError>;
    /// Create the folder at `path` (parents must exist). An existing folder is `Ok`.
    fn mkdir(&self, path: &str) -> Result<RemoteItem, RemoteError>;
    /// createUploadSession with explicit conflict behaviour and `fileSystemInfo` mtime.
    /// `if_match`: the eTag the item must still have (an in-place edit of a file read from
    /// the server); otherwise 412 [`RemoteError::PreconditionFailed`] and no session.
    fn create_upload_session(
        &self,
        path: &str,
        size: u64,
        mtime: SystemTime,
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<UploadSession, RemoteError>;
    /// PUT `body` as bytes `body.offset()..body.offset() + body.len()` of `total`, without
    /// Authorization. The body is streamed from its source piece by piece (never held whole).
    fn upload_fragment(
        &self,
        session: &UploadSession,
        total: u64,
        body: &FragmentBody,
    ) -> Result<FragmentOutcome, RemoteError>;
    /// GET the upload URL: the server's `nextExpectedRanges`.
    fn upload_status(&self, session: &UploadSession) -> Result<Vec<ByteRange>, RemoteError>;
    /// DELETE the upload URL (cancel the session).
    fn cancel_upload(&self, session: &UploadSession) -> Result<(), RemoteError>;
    /// Simple PUT of a small file (used for zero-byte files); `if_match` as for
    /// [`Remote::create_upload_session`].
    fn upload_small(
        &self,
        path: &str,
        body: &[u8],
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<RemoteItem, RemoteError>;
    /// Delete the item at `path` (to the recycle bin).
    fn delete(&self, path: &str) -> Result<(), RemoteError>;
    /// Move/rename `from` to `to` (the parent of `to` must exist); replaces nothing.
    fn rename(&self, from: &str, to: &str) -> Result<RemoteItem, RemoteError>;
    /// PATCH `fileSystemInfo.lastModifiedDateTime`.
    fn set_mtime(&self, path: &str, mtime: SystemTime) -> Result<RemoteItem, RemoteError>;
    /// Ranged download of `len` bytes at `offset` (fewer at end of file).
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RemoteError>;
    /// Whether the latest answer that carried `item` (the commit, a stat) said it is checked
    /// out (`publication.level` = `checkout`): a library that requires check-out keeps every
    /// upload visible to the uploader only until it is checked in (field reference entry
    /// 21). Cheap, no request.
    fn checked_out(&self, item: &RemoteItem) -> bool {
        let _ = item;
        false
    }

    /// Check in `item`, the file at `path` (`POST …/items/{id}/checkin`), with `comment`, so
    /// that others see it (entry 21).
    fn checkin(&self, item: &RemoteItem, path: &str, comment: &str) -> Result<(), RemoteError> {
        let _ = (item, path, comment);
        Err(RemoteError::Client {
            status: 501,
            code: "notSupported".into(),
            message: "this remote has no check-in".into(),
        })
    }

    /// The drive's quota (`GET /drives/{id}`), `Ok(None)` when the drive reports none
    /// (entry 13: SharePoint checks it only at the end of an upload).
    fn drive_quota(&self) -> Result<Option<DriveQuota>, RemoteError> {
        Ok(None)
    }

    /// One round of the drive's change feed after `token`; `None` starts the feed at "now"
    /// (`token=latest`: no changes, a token). 410 `resyncRequired` when the token is too old
    /// ([`is_resync_required`]). Remotes without a change feed answer 501 (the default).
    fn delta(&self, token: Option<&str>) -> Result<DeltaRound, RemoteError> {
        let _ = token;
        Err(RemoteError::Client {
            status: 501,
            code: "notSupported".into(),
            message: "this remote has no change feed".into(),
        })
    }
}

#[cfg(test)]
mod path_tests {
    #[test]
    fn ancestors_outermost_first() {
        assert_eq!(super::ancestors("a/b/c.txt"), vec!["a", "a/b"]);
        assert!(super::ancestors("top.txt").is_empty());
    }
}
