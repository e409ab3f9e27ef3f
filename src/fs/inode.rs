//! The inode table: which paths the kernel knows, what we last saw of each on the server, and
//! which have local (spool) content.
//!
//! Invariants: inode 1 is the mount root (path `""`); paths are keyed by their folded form
//! (`names::fold`: case and Unicode normal form, as SharePoint compares names), and a node
//! keeps the spelling it was created or listed with; a second index by SharePoint's collation
//! key (`names::collation_key`, stored as a 64-bit hash and checked on use) finds the entry a
//! new name would clash with ([`InodeTable::clash_of`]); inode numbers are never reused within
//! a mount. The table is plain data behind the core's one mutex: no I/O happens here.
//!
//! Scale (issue 19): the path index is per folder (folded parent path → folded name → inode),
//! so looking up a name and listing a folder cost O(its children), and removing or renaming a
//! subtree O(the subtree), never O(the table); a folder's key is stored once, not once per
//! child.
//!
//! Times: SharePoint stores one time per item, its modification time, to the second. The
//! table keeps what SharePoint cannot, for as long as the mount knows the node
//! ([`LocalTimes`]): the access time (never uploaded), the change time (every change made
//! through the mount sets it to now) and a folder's own mtime (creating, removing or renaming
//! an entry sets it). A file's mtime is its local content's while pending (to the
//! nanosecond), then the server's (to the second), so what is read back after an upload is
//! what a fresh mount would show and `rsync` does not send the file again.
//!
//! Unlinked but open: `unlink` of a file that still has open handles *detaches* its node (the
//! path is free at once, the node stays reachable by inode) until the last handle closes,
//! when the core forgets it ([`InodeTable::forget`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::names::{collation_key, fold, join, split};
use crate::remote::RemoteItem;

pub const ROOT_INO: u64 = 1;
/// Inodes below this are reserved (the root and the virtual files, `virtual_files.rs`).
const FIRST_INO: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
}

/// What the server holds for a node, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMeta {
    /// The drive item id (`""`: not known): how the change feed finds the node (`feed.rs`).
    pub id: String,
    pub size: u64,
    pub mtime: SystemTime,
    /// `webUrl` and `quickXorHash`, for the `user.shareuplift.*` attributes (`xattr.rs`).
    pub web_url: Option<String>,
    pub quick_xor_hash: Option<String>,
    /// The server's eTag of this version: the base of an in-place edit (`LocalFile::base_etag`).
    pub etag: Option<String>,
}

impl From<&RemoteItem> for RemoteMeta {
    fn from(item: &RemoteItem) -> Self {
        RemoteMeta {
            id: item.id.clone(),
            size: item.size,
            mtime: item.mtime,
            web_url: item.web_url.clone(),
            quick_xor_hash: item.quick_xor_hash.clone(),
            etag: item.etag.clone(),
        }
    }
}

/// Content that lives in the spool: written through the mount and not yet committed.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub spool: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
    /// Open handles that may write.
    pub writers: u32,
    /// Changed since it was last handed to the queue.
    pub dirty: bool,
    /// Handed to the queue (and not yet reported finished).
    pub queued: bool,
    /// The mtime the queued job carries (to detect a later utimens).
    pub queued_mtime: Option<SystemTime>,
    /// The last upload of this content failed with this reason.
    pub failed: Option<String>,
    /// The server version this content was edited from (its eTag), for a read-modify-write
    /// of a file fetched from SharePoint; the upload sends it as `if-match` and saves a
    /// conflict copy on 412 (`UploadJob::base_etag`). `None`: replaces by intent.
    pub base_etag: Option<String>,
}

/// Times the mount keeps and SharePoint does not (module doc). `None`: the mtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalTimes {
    pub atime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
    /// Folders: the last change of an entry in it, or the last utimens.
    pub dir_mtime: Option<SystemTime>,
}

/// A node's three times as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub path: String,
    pub kind: NodeKind,
    pub remote: Option<RemoteMeta>,
    pub local: Option<LocalFile>,
    /// When `remote` was last confirmed by the server.
    pub seen: Option<Instant>,
    /// Folders: when the children were last listed from the server.
    pub listed: Option<Instant>,
    pub times: LocalTimes,
    /// Unlinked while open: no longer under any path, kept until its last handle closes.
    pub unlinked: bool,
}

impl Node {
    pub fn new(path: String, kind: NodeKind) -> Node {
        Node {
            path,
            kind,
            remote: None,
            local: None,
            seen: None,
            listed: None,
            times: LocalTimes::default(),
            unlinked: false,
        }
    }

    pub fn name(&self) -> &str {
        split(&self.path).1
    }

    pub fn parent_path(&self) -> &str {
        split(&self.path).0
    }

    /// Size and mtime as the kernel should see them: local content wins; a folder's own
    /// mtime wins over the server's.
    pub fn size_mtime(&self) -> (u64, SystemTime) {
        let (size, mtime) = match (&self.local, &self.remote) {
            (Some(l), _) => (l.size, l.mtime),
            (None, Some(r)) => (r.size, r.mtime),
            (None, None) => (0, self.times.ctime.unwrap_or_else(SystemTime::now)),
        };
        (size, self.times.dir_mtime.unwrap_or(mtime))
    }

    /// atime, mtime and ctime as `stat` shows them.
    pub fn times(&self) -> Times {
        let mtime = self.size_mtime().1;
        Times {
            atime: self.times.atime.unwrap_or(mtime),
            mtime,
            ctime: self.times.ctime.unwrap_or(mtime),
        }
    }

    /// `st_nlink`: SharePoint has no hard links; a file unlinked while open has none left.
    pub fn nlink(&self) -> u32 {
        match (self.kind, self.unlinked) {
            (NodeKind::Dir, _) => 2,
            (NodeKind::File, false) => 1,
            (NodeKind::File, true) => 0,
        }
    }

    /// Record a change of the node itself (its content, a time, its name): ctime is now.
    pub fn changed(&mut self, now: SystemTime) {
        self.times.ctime = Some(now);
    }
}

/// Path ↔ inode map plus per-node state.
#[derive(Debug)]
pub struct InodeTable {
    /// Boxed: a node is a few hundred bytes, and the map's spare capacity then costs a
    /// pointer per slot instead of a node.
    nodes: HashMap<u64, Box<Node>>,
    /// Folded parent path → folded name → inode, for every attached node but the root
    /// (whose key is `""`). A parent need not be a node itself (a path recovered from the
    /// spool before its folder was listed).
    dirs: BTreeMap<String, HashMap<Box<str>, u64>>,
    /// Hash of the collation key of a path → the node holding it (see
    /// [`InodeTable::clash_of`]).
    collated: HashMap<u64, u64>,
    next: u64,
}

/// The hash under which [`InodeTable::collated`] keeps a collation key (deterministic).
fn collation_hash(path: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    collation_key(path).hash(&mut h);
    h.finish()
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut t = InodeTable {
            nodes: HashMap::new(),
            dirs: BTreeMap::new(),
            collated: HashMap::new(),
            next: FIRST_INO,
        };
        t.nodes
            .insert(ROOT_INO, Box::new(Node::new(String::new(), NodeKind::Dir)));
        t.collated.insert(collation_hash(""), ROOT_INO);
        t
    }

    /// The inode indexed under the folded path `key`.
    fn index_get(&self, key: &str) -> Option<u64> {
        if key.is_empty() {
            return Some(ROOT_INO);
        }
        let (parent, name) = split(key);
        self.dirs.get(parent)?.get(name).copied()
    }

    fn index_insert(&mut self, key: &str, ino: u64) {
        if key.is_empty() {
            return;
        }
        let (parent, name) = split(key);
        match self.dirs.get_mut(parent) {
            Some(m) => {
                m.insert(name.into(), ino);
            }
            None => {
                let mut m = HashMap::new();
                m.insert(name.into(), ino);
                self.dirs.insert(parent.to_string(), m);
            }
        }
    }

    fn index_remove(&mut self, key: &str) -> Option<u64> {
        let (parent, name) = split(key);
        let m = self.dirs.get_mut(parent)?;
        let ino = m.remove(name);
        if m.is_empty() {
            self.dirs.remove(parent);
        }
        ino
    }

    /// Take the node at the folded path `key` and everything indexed below it out of the
    /// path index: `(folded path, inode)` of each. O(the subtree).
    fn take_subtree(&mut self, key: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        if !key.is_empty() {
            if let Some(ino) = self.index_remove(key) {
                out.push((key.to_string(), ino));
            }
        }
        // Folders at or below `key`: `key` itself, then those starting with `key/` (contiguous
        // in the ordered map); for the root, all of them.
        let mut below: Vec<String> = Vec::new();
        if key.is_empty() {
            below.extend(self.dirs.keys().cloned());
        } else {
            if self.dirs.contains_key(key) {
                below.push(key.to_string());
            }
            let prefix = format!("{key}/");
            below.extend(
                self.dirs
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone()),
            );
        }
        for dir in below {
            if let Some(m) = self.dirs.remove(&dir) {
                out.extend(m.into_iter().map(|(name, ino)| (join(&dir, &name), ino)));
            }
        }
        out
    }

    /// The node a new entry at `path` would clash with on the server: one whose name is
    /// another name (a different fold) with the same collation key (`Maersk.txt` for
    /// `Mærsk.txt`). `None` when the path is free or names that very node.
    pub fn clash_of(&self, path: &str) -> Option<u64> {
        let ino = *self.collated.get(&collation_hash(path))?;
        let n = self.nodes.get(&ino).filter(|n| !n.unlinked)?;
        (fold(&n.path) != fold(path) && collation_key(&n.path) == collation_key(path))
            .then_some(ino)
    }

    /// Drop the collation index entry of `path` if it is `ino`'s.
    fn uncollate(&mut self, path: &str, ino: u64) {
        let k = collation_hash(path);
        if self.collated.get(&k) == Some(&ino) {
            self.collated.remove(&k);
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino).map(|n| &**n)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino).map(|n| &mut **n)
    }

    pub fn ino_of(&self, path: &str) -> Option<u64> {
        self.index_get(&fold(path))
    }

    /// An entry was created, removed or renamed at `path`: its folder's mtime and ctime are
    /// now (POSIX; SharePoint keeps no such time, so it lives in the table).
    pub fn entries_changed(&mut self, path: &str, now: SystemTime) {
        let parent = split(path).0;
        if let Some(n) = self.ino_of(parent).and_then(|i| self.nodes.get_mut(&i)) {
            n.times.dir_mtime = Some(now);
            n.times.ctime = Some(now);
        }
    }

    /// `path` was removed (unlink, rmdir): forget its subtree, its folder changed.
    pub fn removed(&mut self, path: &str, now: SystemTime) {
        self.remove_tree(path);
        self.entries_changed(path, now);
    }

    /// The node `ino` was renamed from `from` to `to` (after [`Self::rename_tree`]): both
    /// folders changed, and the node itself (its ctime).
    pub fn renamed(&mut self, ino: u64, from: &str, to: &str, now: SystemTime) {
        self.entries_changed(from, now);
        self.entries_changed(to, now);
        self.changed(ino, now);
    }

    /// Record a change of the node `ino` itself (see [`Node::changed`]).
    pub fn changed(&mut self, ino: u64, now: SystemTime) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.changed(now);
        }
    }

    /// Unlink `ino` but keep it, reachable by inode only, until [`Self::forget`]: the path is
    /// free for a new file at once, the node no longer shows in listings.
    pub fn detach(&mut self, ino: u64) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        if ino == ROOT_INO {
            return;
        }
        let key = fold(&n.path);
        let path = n.path.clone();
        n.unlinked = true;
        if self.index_get(&key) == Some(ino) {
            self.index_remove(&key);
        }
        self.uncollate(&path, ino);
    }

    /// Drop a detached node (its last handle closed).
    pub fn forget(&mut self, ino: u64) {
        if self.nodes.get(&ino).is_some_and(|n| n.unlinked) {
            self.nodes.remove(&ino);
        }
    }

    /// The node at `path`, created with `kind` if unknown. An existing node keeps its inode
    /// but changes kind if the server says so.
    pub fn upsert(&mut self, path: &str, kind: NodeKind) -> u64 {
        if let Some(ino) = self.ino_of(path) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.kind = kind;
            }
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes
            .insert(ino, Box::new(Node::new(path.to_string(), kind)));
        self.index_insert(&fold(path), ino);
        self.collated.insert(collation_hash(path), ino);
        ino
    }

    /// Record what the server said about `parent/item.name`.
    pub fn upsert_remote(&mut self, parent: &str, item: &RemoteItem, now: Instant) -> u64 {
        let path = join(parent, &item.name);
        let kind = if item.is_folder {
            NodeKind::Dir
        } else {
            NodeKind::File
        };
        let ino = self.upsert(&path, kind);
        if let Some(n) = self.nodes.get_mut(&ino) {
            if n.local.is_none() {
                // Adopt the server's spelling of the name.
                n.path = path;
            }
            n.remote = Some(RemoteMeta::from(item));
            n.seen = Some(now);
        }
        ino
    }

    /// Forget the node at `path` and everything below it. O(the subtree).
    pub fn remove_tree(&mut self, path: &str) {
        for (_, ino) in self.take_subtree(&fold(path)) {
            if ino != ROOT_INO {
                if let Some(n) = self.nodes.remove(&ino) {
                    self.uncollate(&n.path, ino);
                }
            }
        }
    }

    /// Move the node at `from` (and its subtree) to `to`, which must be free. O(the subtree).
    pub fn rename_tree(&mut self, from: &str, to: &str) {
        for (_, ino) in self.take_subtree(&fold(from)) {
            let Some(old) = self.nodes.get(&ino).map(|n| n.path.clone()) else {
                continue;
            };
            self.uncollate(&old, ino);
            if let Some(n) = self.nodes.get_mut(&ino) {
                let rest = &n.path[from.len().min(n.path.len())..];
                n.path = format!("{to}{rest}");
                let path = n.path.clone();
                self.index_insert(&fold(&path), ino);
                self.collated.insert(collation_hash(&path), ino);
            }
        }
    }

    /// Inodes of the direct children of `dir`. O(its children).
    pub fn children(&self, dir: &str) -> Vec<u64> {
        self.dirs
            .get(fold(dir).as_str())
            .map(|m| {
                m.values()
                    .copied()
                    .filter(|ino| {
                        *ino != ROOT_INO && self.nodes.get(ino).is_some_and(|n| !n.unlinked)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Apply `f` to every node (the change feed's resync).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Node)) {
        for n in self.nodes.values_mut() {
            f(n);
        }
    }

    /// Every node, with its inode (the change feed's id index, `feed.rs`).
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Node)> {
        self.nodes.iter().map(|(i, n)| (i, &**n))
    }

    /// All nodes with spool content.
    pub fn local_nodes(&self) -> impl Iterator<Item = (&u64, &Node)> {
        self.iter()
            .filter(|(_, n)| n.local.is_some() && !n.unlinked)
    }
}

#[cfg(test)]
#[path = "inode_tests.rs"]
mod index_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, folder: bool) -> RemoteItem {
        RemoteItem {
            id: name.into(),
            name: name.into(),
            is_folder: folder,
            size: 7,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
            quick_xor_hash: None,
            web_url: None,
        }
    }

    #[test]
    fn case_insensitive_paths_keep_case() {
        let mut t = InodeTable::new();
        let now = Instant::now();
        let a = t.upsert_remote("", &item("Docs", true), now);
        let b = t.upsert_remote("docs", &item("Report.TXT", false), now);
        assert_eq!(t.ino_of("DOCS/report.txt"), Some(b));
        assert_eq!(t.get(b).unwrap().path, "docs/Report.TXT");
        assert_eq!(t.children("Docs"), vec![b]);
        assert_eq!(t.upsert("DOCS", NodeKind::Dir), a);
    }

    #[test]
    fn rename_and_remove_subtrees() {
        let mut t = InodeTable::new();
        let d = t.upsert("a", NodeKind::Dir);
        let f = t.upsert("a/b/c.txt", NodeKind::File);
        t.upsert("ab", NodeKind::File);
        t.rename_tree("a", "z");
        assert_eq!(t.ino_of("z"), Some(d));
        assert_eq!(t.get(f).unwrap().path, "z/b/c.txt");
        assert!(
            t.ino_of("ab").is_some(),
            "sibling with common prefix untouched"
        );
        t.remove_tree("z");
        assert!(t.get(f).is_none() && t.ino_of("z").is_none());
        assert!(t.ino_of("").is_some());
    }

    #[test]
    fn detached_nodes_keep_their_inode_but_free_their_path() {
        let mut t = InodeTable::new();
        let f = t.upsert("d/f.txt", NodeKind::File);
        t.upsert("d", NodeKind::Dir);
        t.detach(f);
        assert!(t.get(f).is_some_and(|n| n.unlinked));
        assert_eq!(t.ino_of("d/f.txt"), None);
        assert!(t.children("d").is_empty());
        let g = t.upsert("d/f.txt", NodeKind::File);
        assert_ne!(f, g, "a new file under the freed name is a new inode");
        t.remove_tree("d");
        assert!(
            t.get(f).is_some(),
            "kept until forgotten, even if its folder goes"
        );
        t.forget(g); // not detached: ignored
        t.forget(f);
        assert!(t.get(f).is_none());
    }

    #[test]
    fn times_fall_back_to_mtime_and_folders_keep_their_own() {
        let mut t = InodeTable::new();
        let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_294_967_296);
        let mut it = item("f", false);
        it.mtime = when;
        let f = t.upsert_remote("", &it, Instant::now());
        let n = t.get_mut(f).unwrap();
        assert_eq!(
            n.times(),
            Times {
                atime: when,
                mtime: when,
                ctime: when
            }
        );
        let a = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_147_483_648);
        n.times.atime = Some(a);
        assert_eq!(n.times().atime, a);
        assert_eq!(n.times().mtime, when, "atime is not the mtime");
        let d = t.upsert("d", NodeKind::Dir);
        let now = SystemTime::now();
        t.entries_changed("d/x", now);
        let dn = t.get(d).unwrap();
        assert_eq!((dn.times().mtime, dn.times().ctime), (now, now));
        let root_before = t.get(ROOT_INO).unwrap().times.dir_mtime;
        assert_eq!(root_before, None, "only the direct parent changes");
    }
}
