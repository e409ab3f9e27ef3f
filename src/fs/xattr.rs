//! Per-file upload state as read-only extended attributes, so a script or a file manager can
//! ask one file "are you in SharePoint yet, and where?" (`getfattr -d FILE`):
//!
//! - `user.shareuplift.state`: `writing` (open for writing, not yet queued), `queued`,
//!   `uploading`, `retrying`, `done` (SharePoint has this content), `failed`, `incomplete`;
//! - `user.shareuplift.uploaded`: bytes SharePoint has acknowledged (the size once `done`);
//! - `user.shareuplift.error`: the last error, sanitised as in `.status` (only when there is one);
//! - `user.shareuplift.url`, `user.shareuplift.quickxorhash`: the item's `webUrl` and
//!   `quickXorHash`, only once `done` (and when SharePoint reported them);
//! - `user.shareuplift.note`: what else `.status` says about the upload (only when it says
//!   something), e.g. that the file is still checked out because its check-in failed.
//!
//! Every regular file has the state attributes: a file this mount did not upload, but that is
//! in SharePoint, is `done`. Folders, the virtual files (`.status`, …) and files unlinked while
//! open have none, so listing their attributes returns nothing. Nothing can be set or removed
//! (ENOTSUP: SharePoint has nowhere to keep arbitrary attributes, and our own are derived);
//! reading an attribute a node lacks is ENODATA.
//!
//! The state comes from the upload queue's status entry for the path when it describes the
//! node's current content, otherwise from the node itself (local content still being written,
//! or a remote item). Locks: the core state lock to copy the node, released before the queue's
//! snapshot is taken (never both at once), as in `virtual_files.rs`. Values are computed on
//! every call: the kernel does not cache xattrs, so each `getfattr` sees the current state.

use super::inode::{NodeKind, RemoteMeta};
use super::{Fs, FsError, FsResult};
use crate::upload::status::{UploadState, UploadStatus};

/// Prefix of every attribute this mount answers.
pub const XATTR_PREFIX: &str = "user.shareuplift.";
pub const XATTR_STATE: &str = "user.shareuplift.state";
pub const XATTR_UPLOADED: &str = "user.shareuplift.uploaded";
pub const XATTR_ERROR: &str = "user.shareuplift.error";
pub const XATTR_URL: &str = "user.shareuplift.url";
pub const XATTR_QUICKXORHASH: &str = "user.shareuplift.quickxorhash";
pub const XATTR_NOTE: &str = "user.shareuplift.note";

/// What the node itself says, copied out under the core lock.
#[derive(Debug, Clone, Default, PartialEq)]
struct NodeFacts {
    /// Local (spool) content: `(queued, failed reason)`.
    local: Option<(bool, Option<String>)>,
    remote: Option<RemoteMeta>,
}

/// The attributes of a regular file, in listing order.
fn file_attributes(facts: &NodeFacts, entry: Option<&UploadStatus>) -> Vec<(&'static str, String)> {
    // The queue's entry describes the current content unless the node has newer local content
    // that is not queued yet (rewritten after that upload).
    let entry = entry.filter(|e| match &facts.local {
        None => true,
        Some((queued, failed)) => *queued || failed.is_some() || !e.state.is_finished(),
    });
    let (state, uploaded, error): (&str, u64, Option<String>) = match (entry, &facts.local) {
        (Some(e), _) => (e.state.as_str(), e.uploaded, e.error.clone()),
        (None, Some((_, Some(reason)))) => (UploadState::Failed.as_str(), 0, Some(reason.clone())),
        (None, Some((true, None))) => (UploadState::Queued.as_str(), 0, None),
        (None, Some((false, None))) => ("writing", 0, None),
        (None, None) => match &facts.remote {
            Some(r) => (UploadState::Done.as_str(), r.size, None),
            None => return Vec::new(),
        },
    };
    let done = state == UploadState::Done.as_str();
    let mut out = vec![
        (XATTR_STATE, state.to_string()),
        (XATTR_UPLOADED, uploaded.to_string()),
    ];
    if let Some(e) = error.filter(|_| !done) {
        out.push((XATTR_ERROR, e));
    }
    if done {
        if let Some(r) = &facts.remote {
            if let Some(u) = &r.web_url {
                out.push((XATTR_URL, u.clone()));
            }
            if let Some(h) = &r.quick_xor_hash {
                out.push((XATTR_QUICKXORHASH, h.clone()));
            }
        }
    }
    if let Some(note) = entry.and_then(|e| e.note.clone()) {
        out.push((XATTR_NOTE, note));
    }
    out
}

impl Fs {
    /// The `user.shareuplift.*` attributes of `ino` (empty for folders and virtual files).
    fn xattrs(&self, ino: u64) -> FsResult<Vec<(&'static str, String)>> {
        if self.virtual_getattr(ino).is_some() {
            return Ok(Vec::new());
        }
        let (path, facts) = {
            let st = self.lock();
            let node = st.table.get(ino).ok_or(FsError::NotFound)?;
            if node.kind != NodeKind::File || node.unlinked {
                return Ok(Vec::new());
            }
            let facts = NodeFacts {
                local: node.local.as_ref().map(|l| (l.queued, l.failed.clone())),
                remote: node.remote.clone(),
            };
            (node.path.clone(), facts)
        };
        // The snapshot lists live entries before finished ones: the first match is the newest
        // thing that happened to this path.
        // Names are case-insensitive in SharePoint, and so in the queue.
        let key = crate::collation::fold(&path);
        let snap = self.queue.snapshot();
        let entry = snap
            .uploads
            .iter()
            .find(|u| crate::collation::fold(&u.path) == key);
        Ok(file_attributes(&facts, entry))
    }

    /// listxattr: the names, each NUL-terminated, as the kernel expects them.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        for (name, _) in self.xattrs(ino)? {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// getxattr: the value of `name`, or [`FsError::NoAttribute`].
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if !name.starts_with(XATTR_PREFIX) {
            // Not ours (security.*, system.posix_acl_*, user.*): no need to look at the node.
            return Err(FsError::NoAttribute);
        }
        self.xattrs(ino)?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.into_bytes())
            .ok_or(FsError::NoAttribute)
    }

    /// setxattr and removexattr: nothing can be stored.
    pub fn setxattr(&self, _ino: u64, _name: &str) -> FsResult<()> {
        Err(FsError::AttributesReadOnly)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn remote(size: u64) -> RemoteMeta {
        RemoteMeta {
            id: "A".into(),
            size,
            mtime: SystemTime::UNIX_EPOCH,
            web_url: Some("https://x/Docs/a.bin".into()),
            quick_xor_hash: Some("AAAA".into()),
            etag: None,
        }
    }

    fn entry(state: UploadState, uploaded: u64, error: Option<&str>) -> UploadStatus {
        let mut e = UploadStatus::queued("a.bin", 100);
        e.state = state;
        e.uploaded = uploaded;
        e.error = error.map(str::to_string);
        e
    }

    fn names(v: &[(&'static str, String)]) -> Vec<&'static str> {
        v.iter().map(|(n, _)| *n).collect()
    }

    fn get<'a>(v: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        v.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// (node, queue entry, state, uploaded, error)
    type Case = (
        NodeFacts,
        Option<UploadStatus>,
        &'static str,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn states_from_entry_and_node() {
        let queued_local = NodeFacts {
            local: Some((true, None)),
            remote: None,
        };
        let cases: Vec<Case> = vec![
            (queued_local.clone(), None, "queued", "0", None),
            (
                queued_local.clone(),
                Some(entry(UploadState::Queued, 0, None)),
                "queued",
                "0",
                None,
            ),
            (
                queued_local.clone(),
                Some(entry(UploadState::Uploading, 40, None)),
                "uploading",
                "40",
                None,
            ),
            (
                queued_local.clone(),
                Some(entry(UploadState::Retrying, 40, Some("HTTP 503"))),
                "retrying",
                "40",
                Some("HTTP 503"),
            ),
            (
                NodeFacts {
                    local: Some((false, None)),
                    remote: None,
                },
                None,
                "writing",
                "0",
                None,
            ),
            (
                NodeFacts {
                    local: Some((false, Some("quota".into()))),
                    remote: None,
                },
                Some(entry(UploadState::Failed, 0, Some("quota"))),
                "failed",
                "0",
                Some("quota"),
            ),
            // Rewritten after an upload finished: the old entry no longer describes it.
            (
                NodeFacts {
                    local: Some((false, None)),
                    remote: Some(remote(100)),
                },
                Some(entry(UploadState::Done, 100, None)),
                "writing",
                "0",
                None,
            ),
            // A file in SharePoint that this mount never uploaded.
            (
                NodeFacts {
                    local: None,
                    remote: Some(remote(7)),
                },
                None,
                "done",
                "7",
                None,
            ),
        ];
        for (facts, e, state, uploaded, error) in cases {
            let got = file_attributes(&facts, e.as_ref());
            assert_eq!(get(&got, XATTR_STATE), Some(state), "{facts:?} {e:?}");
            assert_eq!(get(&got, XATTR_UPLOADED), Some(uploaded), "{facts:?}");
            assert_eq!(get(&got, XATTR_ERROR), error, "{facts:?}");
            if state != "done" {
                assert_eq!(get(&got, XATTR_URL), None, "{facts:?}");
            }
        }
    }

    #[test]
    fn url_and_hash_only_once_done() {
        let facts = NodeFacts {
            local: None,
            remote: Some(remote(100)),
        };
        let done = file_attributes(&facts, Some(&entry(UploadState::Done, 100, Some("old"))));
        assert_eq!(
            names(&done),
            vec![XATTR_STATE, XATTR_UPLOADED, XATTR_URL, XATTR_QUICKXORHASH]
        );
        assert_eq!(get(&done, XATTR_URL), Some("https://x/Docs/a.bin"));
        assert_eq!(get(&done, XATTR_QUICKXORHASH), Some("AAAA"));
        // An earlier version is in SharePoint while the new one uploads: no URL yet.
        let up = file_attributes(
            &NodeFacts {
                local: Some((true, None)),
                remote: Some(remote(50)),
            },
            Some(&entry(UploadState::Uploading, 10, None)),
        );
        assert_eq!(names(&up), vec![XATTR_STATE, XATTR_UPLOADED]);
    }

    #[test]
    fn nothing_for_a_node_without_content() {
        assert!(file_attributes(&NodeFacts::default(), None).is_empty());
    }
}
