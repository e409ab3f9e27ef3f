//! The change feed applied to the inode table by item id (field reference, entries 1–3), and
//! the merge of a folder listing into the table.
//!
//! The feed names items by id, with their parent's id and their name, never by path (entry 1).
//! The table is the id map: a node seen on the server keeps its drive item id
//! (`RemoteMeta::id`), its parent is the folder above it and its name its last component; the
//! round names the mount root's id. Each round builds an index id → inode from the table, and
//! a changed item's path is its parent's path plus its name:
//! - the last occurrence of an id wins (entry 3); an item whose parent comes later in the same
//!   round waits for it;
//! - an item the table holds moves, with its subtree, when its parent or name changed: a folder
//!   renamed or moved comes alone (entry 2), and the paths and listings beneath follow it;
//! - a new item is added when its folder's listing is held (else it is found when that folder
//!   is listed); a different item at its path (deleted and re-created there, its delete late or
//!   missing, entry 3) is replaced, under a new inode;
//! - a delete removes the node that holds that id now, never what is at its old path now;
//! - an item whose parent is unknown is never ignored: if the table holds it, it has left what
//!   the mount knows and is removed; and every held listing of a folder whose id is not known
//!   (a folder made through the mount before the server's echo; the mount root when the remote
//!   does not name it) is listed again, since the item may be there;
//! - a folder whose `childCount` differs from the children the table holds for it (a delete
//!   that never came, entry 3) is listed again.
//!
//! Local content wins: a file written or uploaded through the mount, and the folders above it,
//! are never replaced, moved or removed by a remote change (its upload replaces the server's
//! copy: the conflict rule of `conflict = replace`).
//!
//! Everything here runs with the core lock held and does no I/O: the folders to list again go
//! back to the poll thread (`coherence`), which lists them without the lock and merges them
//! with [`merge_listing`], the merge every listing uses (`namespace` too). What the kernel must
//! forget is returned, for the caller to tell it once the lock is released.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use log::{debug, info, warn};

use super::coherence::Forget;
use super::inode::{Node, RemoteMeta};
use super::names::{fold, join, split};
use super::{NodeKind, State, ROOT_INO};
use crate::remote::{DeltaChange, DeltaRound, RemoteItem};

/// What one round changed beyond the table.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Applied {
    /// Entries and inodes the kernel must forget.
    pub forget: Vec<Forget>,
    /// Folders (inodes) whose held listing can no longer be trusted: list them again.
    pub relist: Vec<u64>,
}

/// The server id a node carries, if known.
fn node_id(n: &Node) -> Option<&str> {
    n.remote
        .as_ref()
        .map(|r| r.id.as_str())
        .filter(|s| !s.is_empty())
}

/// Whether the server's item differs from what the table last saw (content or times).
fn content_changed(before: Option<&RemoteMeta>, item: &RemoteItem) -> bool {
    before.is_none_or(|b| b.size != item.size || b.mtime != item.mtime || b.etag != item.etag)
}

/// Whether the node at `path`, or anything beneath it, has local (spool) content.
fn has_local(st: &State, path: &str) -> bool {
    let key = fold(path);
    let prefix = format!("{key}/");
    st.table.local_nodes().any(|(_, n)| {
        let f = fold(&n.path);
        f == key || f.starts_with(&prefix)
    })
}

/// The kernel entry of the node at `path`.
fn entry_of(st: &State, path: &str) -> Option<Forget> {
    let (parent, name) = split(path);
    st.table
        .ino_of(parent)
        .map(|p| Forget::Entry(p, name.to_string()))
}

/// Remove the node at `path` and its subtree, except local content and the folders above it
/// (whose listings are then stale). Returns the kernel entries to forget and the server ids
/// of the nodes removed.
fn remove_subtree(st: &mut State, path: &str) -> (Vec<Forget>, Vec<String>) {
    // A file: nothing beneath it (the common case, without scanning the table for locals).
    if let Some(n) = st.table.ino_of(path).and_then(|i| st.table.get(i)) {
        if n.kind == NodeKind::File {
            if n.local.is_some() {
                return (Vec::new(), Vec::new());
            }
            let id = node_id(n).map(str::to_string);
            let forget = entry_of(st, path).into_iter().collect();
            st.table.remove_tree(path);
            return (forget, id.into_iter().collect());
        }
    }
    let key = fold(path);
    let prefix = format!("{key}/");
    let under = |p: &str| {
        let f = fold(p);
        f == key || f.starts_with(&prefix)
    };
    let mut keep: HashSet<String> = HashSet::new();
    for (_, n) in st.table.local_nodes().filter(|(_, n)| under(&n.path)) {
        let mut p = fold(&n.path);
        while under(&p) && keep.insert(p.clone()) {
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => break,
            }
        }
    }
    let doomed: Vec<(String, Option<String>)> = st
        .table
        .iter()
        .filter(|(_, n)| !n.unlinked && under(&n.path) && !keep.contains(&fold(&n.path)))
        .map(|(_, n)| (n.path.clone(), node_id(n).map(str::to_string)))
        .collect();
    let mut forget = Vec::new();
    let mut ids = Vec::new();
    for (p, id) in doomed {
        ids.extend(id);
        if st.table.ino_of(&p).is_some() {
            forget.extend(entry_of(st, &p));
            st.table.remove_tree(&p);
        }
    }
    for k in &keep {
        if let Some(n) = st.table.ino_of(k).and_then(|i| st.table.get_mut(i)) {
            if n.kind == NodeKind::Dir {
                n.listed = None;
            }
        }
    }
    (forget, ids)
}

/// Id → inode over the table, for one round.
struct Ids {
    root: Option<String>,
    map: HashMap<String, u64>,
}

impl Ids {
    fn build(st: &State, root: Option<&str>) -> Ids {
        let map = st
            .table
            .iter()
            .filter(|(_, n)| !n.unlinked)
            .filter_map(|(i, n)| Some((node_id(n)?.to_string(), *i)))
            .collect();
        Ids {
            root: root.map(str::to_string),
            map,
        }
    }

    /// The node holding `id` now.
    fn get(&self, st: &State, id: &str) -> Option<u64> {
        if self.root.as_deref() == Some(id) {
            return Some(ROOT_INO);
        }
        let ino = *self.map.get(id)?;
        st.table
            .get(ino)
            .filter(|n| !n.unlinked && node_id(n) == Some(id))
            .map(|_| ino)
    }
}

/// The changes of a round, each id once, at its last occurrence (entry 3).
fn last_occurrences(changes: &[DeltaChange]) -> Vec<&DeltaChange> {
    let last: HashMap<&str, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id(), i))
        .collect();
    changes
        .iter()
        .enumerate()
        .filter(|(i, c)| last.get(c.id()) == Some(i))
        .map(|(_, c)| c)
        .collect()
}

/// One round being applied.
struct Run {
    ids: Ids,
    out: Applied,
    now: Instant,
    /// Some item's parent is unknown (and not known to be elsewhere).
    unknown_parent: bool,
    /// Ids known to be outside what the table holds: folders placed in folders whose listing
    /// is not held, and nodes removed this round. Their children are not "unknown".
    elsewhere: HashSet<String>,
    /// Folders' `childCount` as the feed gave it.
    counts: Vec<(u64, u64)>,
    /// Ids already applied.
    done: HashSet<String>,
}

/// Apply one round to the table. Called with the core lock held.
pub(super) fn apply(st: &mut State, round: &DeltaRound, now: Instant) -> Applied {
    let mut run = Run {
        ids: Ids::build(st, round.root_id.as_deref()),
        out: Applied::default(),
        now,
        unknown_parent: false,
        elsewhere: HashSet::new(),
        counts: Vec::new(),
        done: HashSet::new(),
    };
    let mut pending = last_occurrences(&round.changes);
    let in_round: HashSet<&str> = pending
        .iter()
        .filter(|c| matches!(c, DeltaChange::Changed { .. }))
        .map(|c| c.id())
        .collect();
    let mut last_pass = false;
    while !pending.is_empty() {
        let before = pending.len();
        let mut deferred = Vec::new();
        for c in pending {
            if !last_pass && run.waits_for_parent(st, c, &in_round) {
                deferred.push(c);
                continue;
            }
            match c {
                DeltaChange::Changed {
                    item,
                    parent_id,
                    child_count,
                } => run.changed(st, item, parent_id.as_deref(), *child_count),
                DeltaChange::Deleted { id, parent_id } => run.deleted(st, id, parent_id.as_deref()),
            }
            run.done.insert(c.id().to_string());
        }
        last_pass = deferred.len() == before;
        pending = deferred;
    }
    run.finish(st)
}

impl Run {
    /// A changed item whose parent is not placed yet but comes later in this round.
    fn waits_for_parent(&self, st: &State, c: &DeltaChange, in_round: &HashSet<&str>) -> bool {
        let DeltaChange::Changed {
            parent_id: Some(p), ..
        } = c
        else {
            return false;
        };
        self.ids.get(st, p).is_none() && in_round.contains(p.as_str()) && !self.done.contains(p)
    }

    fn forget_all(&mut self, f: impl IntoIterator<Item = Forget>) {
        self.out.forget.extend(f);
    }

    /// Remove the node `ino` (keeping local content).
    fn remove(&mut self, st: &mut State, ino: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(path) = st.table.get(ino).map(|n| n.path.clone()) else {
            return;
        };
        let (forget, ids) = remove_subtree(st, &path);
        self.forget_all(forget);
        self.elsewhere.extend(ids);
    }

    fn changed(
        &mut self,
        st: &mut State,
        item: &RemoteItem,
        parent_id: Option<&str>,
        child_count: Option<u64>,
    ) {
        if self.ids.root.as_deref() == Some(item.id.as_str()) {
            // The mount folder itself: its children are checked against its childCount.
            self.counts.extend(child_count.map(|n| (ROOT_INO, n)));
            return;
        }
        let cur = self.ids.get(st, &item.id).filter(|i| *i != ROOT_INO);
        let parent = parent_id
            .and_then(|p| self.ids.get(st, p))
            .filter(|p| st.table.get(*p).is_some_and(|n| n.kind == NodeKind::Dir));
        let Some(parent) = parent else {
            // No parent id: a drive root, never inside the mount. A parent known to be
            // elsewhere: so is the item. Otherwise the item may be in a held folder whose
            // id we do not know: those are listed again (`finish`).
            if parent_id.is_some_and(|p| !self.elsewhere.contains(p)) {
                self.unknown_parent = true;
            }
            self.elsewhere.insert(item.id.clone());
            if let Some(c) = cur {
                debug!("change feed: {} left the mount's view", item.name);
                self.remove(st, c);
            }
            return;
        };
        let Some((parent_path, parent_listed)) = st
            .table
            .get(parent)
            .map(|n| (n.path.clone(), n.listed.is_some()))
        else {
            return;
        };
        let path = join(&parent_path, &item.name);
        let ino = match cur {
            Some(c) => match self.place(st, c, parent, &path) {
                Some(i) => i,
                None => return,
            },
            None => {
                let occupant = st.table.ino_of(&path);
                if let Some(o) = occupant {
                    let n = st.table.get(o);
                    if n.is_some_and(|n| n.local.is_some()) {
                        return; // written through the mount: ours wins
                    }
                    if n.and_then(node_id).is_some() {
                        // Another item was here: deleted or moved on the server, its delete
                        // late or missing (entry 3). The new one gets a new inode.
                        self.remove(st, o);
                    }
                }
                match st.table.ino_of(&path) {
                    // A folder made through the mount (the server's echo names it), or
                    // what local content kept of the item displaced.
                    Some(o) => o,
                    None if parent_listed => {
                        self.out
                            .forget
                            .push(Forget::Entry(parent, item.name.clone()));
                        st.table.upsert(
                            &path,
                            if item.is_folder {
                                NodeKind::Dir
                            } else {
                                NodeKind::File
                            },
                        )
                    }
                    None => {
                        // Found when its folder is listed.
                        self.elsewhere.insert(item.id.clone());
                        return;
                    }
                }
            }
        };
        let Some(n) = st.table.get(ino) else {
            return;
        };
        if n.local.is_some() {
            return; // written through the mount: ours wins
        }
        if n.remote.is_some() && content_changed(n.remote.as_ref(), item) {
            self.out.forget.push(Forget::Inode(ino));
        }
        st.table.upsert_remote(&parent_path, item, self.now);
        self.ids.map.insert(item.id.clone(), ino);
        if item.is_folder {
            self.counts.extend(child_count.map(|n| (ino, n)));
        }
    }

    /// Move the held node `c` to `path` (in folder `parent`) if it is elsewhere. `None`: the
    /// change is not applied (local content).
    fn place(&mut self, st: &mut State, c: u64, parent: u64, path: &str) -> Option<u64> {
        let old = st.table.get(c)?.path.clone();
        if old == path {
            return Some(c);
        }
        if has_local(st, &old) {
            info!(
                "{old} was moved on the server to {path}; not followed while files in it are \
                 written or uploaded through the mount"
            );
            return None;
        }
        if let Some(o) = st.table.ino_of(path).filter(|o| *o != c) {
            if has_local(st, path) {
                // Our content waits there; its upload replaces the item moved there.
                self.remove(st, c);
                return None;
            }
            self.remove(st, o);
        }
        let old_entry = entry_of(st, &old);
        st.table.rename_tree(&old, path);
        self.forget_all(old_entry);
        self.out
            .forget
            .push(Forget::Entry(parent, split(path).1.to_string()));
        debug!("change feed: {old} -> {path}");
        Some(c)
    }

    fn deleted(&mut self, st: &mut State, id: &str, parent_id: Option<&str>) {
        match self.ids.get(st, id) {
            Some(ROOT_INO) => warn!("change feed: the mount folder itself was deleted"),
            Some(ino) => self.remove(st, ino),
            None => {
                self.elsewhere.insert(id.to_string());
                match parent_id.and_then(|p| self.ids.get(st, p)) {
                    // A child the table does not know by id may be this one: list again.
                    Some(p) if folder_has_unknown_child(st, p) => self.out.relist.push(p),
                    Some(_) => {}
                    None => {
                        if parent_id.is_some_and(|p| !self.elsewhere.contains(p)) {
                            self.unknown_parent = true;
                        }
                    }
                }
            }
        }
    }

    /// Folders to list again: counts that do not match, and folders of unknown id when some
    /// parent was unknown.
    fn finish(mut self, st: &State) -> Applied {
        for (ino, n) in std::mem::take(&mut self.counts) {
            let Some(node) = st.table.get(ino) else {
                continue;
            };
            if node.listed.is_none() {
                continue;
            }
            let held = st
                .table
                .children(&node.path)
                .into_iter()
                .filter(|c| st.table.get(*c).is_some_and(|c| c.remote.is_some()))
                .count() as u64;
            if held != n {
                debug!(
                    "change feed: /{} has {n} items on the server, {held} here",
                    node.path
                );
                self.out.relist.push(ino);
            }
        }
        if self.unknown_parent {
            let root_unknown = self.ids.root.is_none();
            let unknown: Vec<u64> = st
                .table
                .iter()
                .filter(|(i, n)| {
                    n.kind == NodeKind::Dir
                        && n.listed.is_some()
                        && !n.unlinked
                        && if **i == ROOT_INO {
                            root_unknown
                        } else {
                            node_id(n).is_none()
                        }
                })
                .map(|(i, _)| *i)
                .collect();
            self.out.relist.extend(unknown);
        }
        let mut seen = HashSet::new();
        self.out.relist.retain(|i| seen.insert(*i));
        self.out
    }
}

/// Whether a held folder listing has a child without a server id (not local content).
fn folder_has_unknown_child(st: &State, ino: u64) -> bool {
    let Some(n) = st.table.get(ino).filter(|n| n.listed.is_some()) else {
        return false;
    };
    st.table.children(&n.path).into_iter().any(|c| {
        st.table
            .get(c)
            .is_some_and(|c| c.local.is_none() && node_id(c).is_none())
    })
}

/// Merge the complete listing `items` of folder `ino` at `path` into the table: children are
/// added or updated (a different item under a known name gets a new inode), those the server
/// no longer has are removed unless they have local content or are folders the mount made.
/// Returns what the kernel must forget: the poll thread tells it; a FUSE request, which may
/// hold the folder's lock in the kernel, must not. Called with the core lock held.
pub(super) fn merge_listing(
    st: &mut State,
    ino: u64,
    path: &str,
    items: &[RemoteItem],
    now: Instant,
) -> Vec<Forget> {
    let mut forget = Vec::new();
    let mut seen = HashSet::new();
    for item in items {
        let child = join(path, &item.name);
        match st
            .table
            .ino_of(&child)
            .and_then(|o| Some((o, st.table.get(o)?)))
        {
            Some((o, n)) if n.local.is_none() => {
                if node_id(n).is_some_and(|id| id != item.id) && !has_local(st, &n.path) {
                    let p = n.path.clone();
                    st.table.remove_tree(&p);
                    forget.push(Forget::Entry(ino, item.name.clone()));
                } else if n.remote.is_some() && content_changed(n.remote.as_ref(), item) {
                    forget.push(Forget::Inode(o));
                }
            }
            Some(_) => {}
            None => forget.push(Forget::Entry(ino, item.name.clone())),
        }
        seen.insert(st.table.upsert_remote(path, item, now));
    }
    for child in st.table.children(path) {
        if seen.contains(&child) {
            continue;
        }
        let gone = st
            .table
            .get(child)
            .is_some_and(|n| n.local.is_none() && n.remote.is_some());
        if let Some(p) = st.table.get(child).map(|n| n.path.clone()).filter(|_| gone) {
            forget.extend(remove_subtree(st, &p).0);
        }
    }
    if let Some(n) = st.table.get_mut(ino) {
        n.listed = Some(now);
        n.seen = Some(now);
    }
    forget
}

/// Folder `ino`'s listing and its children's metadata are stale: each is read again when next
/// used. Returns the kernel entries to forget (the folder's children and its attributes).
/// Called with the core lock held.
pub(super) fn stale_folder(st: &mut State, ino: u64) -> Vec<Forget> {
    let Some(path) = st.table.get(ino).map(|n| n.path.clone()) else {
        return Vec::new();
    };
    let mut forget = vec![Forget::Inode(ino)];
    for c in st.table.children(&path) {
        if let Some(n) = st.table.get_mut(c) {
            n.seen = None;
            forget.push(Forget::Entry(ino, n.name().to_string()));
        }
    }
    if let Some(n) = st.table.get_mut(ino) {
        n.listed = None;
    }
    forget
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
