//! Coherence of the metadata cache with changes made by others, from the drive's change feed
//! (`/root/delta` with its deltaLink), polled every `FsOptions::poll_interval` on a thread of
//! its own — never a FUSE thread.
//!
//! While the feed is followed ([`Coherence::live`]), listings are trusted for
//! `FsOptions::dir_cache_time` (minutes); when the server refuses the feed, or it is not
//! polled, for `FsOptions::meta_ttl` (seconds), so a change made elsewhere still shows up
//! after that long. The feed starts at "now" (`token=latest`): listings are fetched on demand,
//! so there is nothing to enumerate. Each round is applied to the table:
//! - a changed item already in the table takes the server's metadata, unless it has local
//!   content (a file being written or uploaded through the mount is never clobbered: its
//!   upload replaces the server's copy, the conflict rule of `conflict = replace`);
//! - a new item is added when its folder's listing is held (the listing stays complete);
//!   otherwise it is found when that folder is listed;
//! - a deleted item leaves the table with its subtree, unless it has local content;
//! - a deletion the remote could not place, or `410 resyncRequired`, makes every listing
//!   stale (each folder is listed again when next used) and restarts the feed at "now".
//!
//! Known gap: a folder moved on the server arrives as a change at its new path; the old path
//! stays in the table until its parent is listed again (the cache time bounds it).
//!
//! Locks: the poll thread takes the core state lock only to apply a round (no I/O under it);
//! the stop flag's mutex is a leaf.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::names;
use super::{CoreShared, NodeKind, State};
use crate::remote::{is_resync_required, DeltaChange, DeltaRound, RemoteError};

/// The change feed's state, shared by the core and its poll thread.
#[derive(Debug, Default)]
pub struct Coherence {
    live: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Coherence {
    /// The change feed is followed: remote changes reach the cache within a poll.
    pub fn live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// End the poll thread (at unmount).
    pub(super) fn stop(&self) {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleep `d`; false when stopped.
    fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopped = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        false
    }
}

/// Start the poll thread.
pub(super) fn spawn(shared: Arc<CoreShared>, coherence: Arc<Coherence>, interval: Duration) {
    let run = move || poll_loop(&shared, &coherence, interval);
    if let Err(e) = std::thread::Builder::new()
        .name("delta-poll".into())
        .spawn(run)
    {
        warn!("cannot start the change-feed thread ({e}); listings are kept for seconds only");
    }
}

/// Errors that mean "this server has no change feed for us": fall back to short listings.
fn refused(e: &RemoteError) -> bool {
    matches!(
        e,
        RemoteError::Forbidden(_) | RemoteError::NotFound(_) | RemoteError::Client { .. }
    ) && !is_resync_required(e)
}

fn poll_loop(shared: &CoreShared, coherence: &Coherence, interval: Duration) {
    let mut token: Option<String> = None;
    let mut told_refused = false;
    loop {
        // A Retry-After the service gave (to any request of this mount) holds the feed too:
        // it is one more request of the same app and user.
        while let Some(left) = shared
            .remote
            .retry_after_until()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
        {
            if !coherence.pause(left) {
                return;
            }
        }
        match shared.remote.delta(token.as_deref()) {
            Ok(round) => {
                if token.is_none() {
                    info!("following the drive's change feed every {interval:?}");
                } else {
                    let forget = apply(&mut shared.lock(), &round);
                    shared.forget(&forget);
                }
                token = Some(round.token);
                coherence.live.store(true, Ordering::Relaxed);
                told_refused = false;
            }
            Err(e) if is_resync_required(&e) => {
                info!("change feed: {e}; every listing is read again when next used");
                stale_all(&mut shared.lock());
                token = None;
                continue;
            }
            Err(e) if refused(&e) => {
                if !told_refused {
                    warn!("change feed refused ({e}); listings are kept for seconds only");
                    told_refused = true;
                }
                coherence.live.store(false, Ordering::Relaxed);
                token = None;
            }
            // Transient (network, 5xx, throttled): keep the token and the mode; a listing
            // stays at most `dir_cache_time` either way.
            Err(e) => debug!("change feed: {e}; trying again next poll"),
        }
        if !coherence.pause(interval) {
            return;
        }
    }
}

/// Every listing and every node's metadata is stale. Called with the core lock held.
fn stale_all(st: &mut State) {
    st.table.for_each_mut(|n| {
        n.listed = None;
        n.seen = None;
    });
}

/// What the kernel is told to forget after a round (`CoreShared::forget`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Forget {
    /// A name in a folder: created (a negative entry may be cached) or deleted remotely.
    Entry(u64, String),
    /// A file whose metadata or content changed remotely.
    Inode(u64),
}

/// Apply one round of changes to the table, and say what the kernel must forget: with it, a
/// remote change shows in `stat`, `ls` and `read` right after the round, not after the
/// kernel's timeouts. Called with the core lock held.
fn apply(st: &mut State, round: &DeltaRound) -> Vec<Forget> {
    let now = Instant::now();
    let mut forget = Vec::new();
    if round.unresolved {
        stale_all(st);
    }
    for change in &round.changes {
        match change {
            // The mount folder itself (its size or timestamp moves with its content).
            DeltaChange::Changed { path, .. } | DeltaChange::Deleted { path }
                if path.is_empty() => {}
            DeltaChange::Changed { path, item } => {
                if let Some(ino) = st.table.ino_of(path) {
                    if st.table.get(ino).is_some_and(|n| n.local.is_some()) {
                        continue; // written through the mount: ours wins
                    }
                    let parent = st.table.get(ino).map(|n| n.parent_path().to_string());
                    if let Some(parent) = parent {
                        st.table.upsert_remote(&parent, item, now);
                        forget.push(Forget::Inode(ino));
                    }
                    continue;
                }
                let (parent, name) = names::split(path);
                let parent_ino = st.table.ino_of(parent);
                let parent_node = parent_ino.and_then(|i| st.table.get(i));
                let Some(p) = parent_node.filter(|n| n.kind == NodeKind::Dir && n.listed.is_some())
                else {
                    continue; // found when the folder is listed
                };
                let parent_path = p.path.clone();
                st.table.upsert_remote(&parent_path, item, now);
                if let Some(pi) = parent_ino {
                    forget.push(Forget::Entry(pi, name.to_string()));
                }
            }
            DeltaChange::Deleted { path } => {
                let Some(ino) = st.table.ino_of(path) else {
                    continue;
                };
                let keep = st
                    .table
                    .get(ino)
                    .is_some_and(|n| n.local.is_some() || n.remote.is_none());
                if !keep {
                    let (parent, name) = names::split(path);
                    if let Some(pi) = st.table.ino_of(parent) {
                        forget.push(Forget::Entry(pi, name.to_string()));
                    }
                    st.table.remove_tree(path);
                }
            }
        }
    }
    forget
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::inode::InodeTable;
    use crate::remote::RemoteItem;
    use std::collections::HashMap;
    use std::time::SystemTime;

    fn item(name: &str, size: u64) -> RemoteItem {
        RemoteItem {
            id: name.into(),
            name: name.into(),
            is_folder: false,
            size,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
            quick_xor_hash: None,
            web_url: None,
        }
    }

    fn state() -> State {
        State {
            table: InodeTable::new(),
            handles: HashMap::new(),
            next_fh: 1,
        }
    }

    #[test]
    fn changes_update_add_and_delete_but_never_clobber_local_content() {
        let mut st = state();
        let now = Instant::now();
        if let Some(root) = st.table.get_mut(crate::fs::ROOT_INO) {
            root.listed = Some(now);
        }
        let a = st.table.upsert_remote("", &item("a.txt", 1), now);
        let gone = st.table.upsert_remote("", &item("gone.txt", 1), now);
        let round = DeltaRound {
            changes: vec![
                DeltaChange::Changed {
                    path: "a.txt".into(),
                    item: item("a.txt", 9),
                },
                DeltaChange::Changed {
                    path: "new.txt".into(),
                    item: item("new.txt", 3),
                },
                DeltaChange::Changed {
                    path: "unlisted/x.txt".into(),
                    item: item("x.txt", 3),
                },
                DeltaChange::Deleted {
                    path: "gone.txt".into(),
                },
            ],
            unresolved: false,
            token: "t".into(),
        };
        let forget = apply(&mut st, &round);
        assert_eq!(
            forget,
            vec![
                Forget::Inode(a),
                Forget::Entry(crate::fs::ROOT_INO, "new.txt".into()),
                Forget::Entry(crate::fs::ROOT_INO, "gone.txt".into()),
            ],
            "the kernel forgets the changed file, the new name and the deleted one; \
             nothing for a folder it was never shown"
        );
        assert_eq!(st.table.get(a).unwrap().remote.as_ref().unwrap().size, 9);
        assert!(st.table.ino_of("new.txt").is_some());
        assert!(st.table.ino_of("unlisted/x.txt").is_none());
        assert!(st.table.get(gone).is_none());
        assert!(st.table.get(crate::fs::ROOT_INO).unwrap().listed.is_some());
        let round = DeltaRound {
            unresolved: true,
            ..DeltaRound::default()
        };
        apply(&mut st, &round);
        assert!(st.table.get(crate::fs::ROOT_INO).unwrap().listed.is_none());
    }
}
