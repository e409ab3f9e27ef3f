//! Coherence of the metadata cache with changes made by others, from the drive's change feed
//! (`/root/delta` with its deltaLink), polled every `FsOptions::poll_interval` on a thread of
//! its own — never a FUSE thread.
//!
//! While the feed is followed ([`Coherence::live`]), listings are trusted for
//! `FsOptions::dir_cache_time` (minutes); when the server refuses the feed, or it is not
//! polled, for `FsOptions::meta_ttl` (seconds), so a change made elsewhere still shows up
//! after that long. The feed starts at "now" (`token=latest`): listings are fetched on demand,
//! so there is nothing to enumerate.
//!
//! Each round is applied to the table by item id (`feed.rs`: paths resolved through the ids
//! the table holds, field reference entries 1–3), then the kernel is told what to forget
//! ([`Forget`]), so a remote change shows in `stat`, `ls` and `read` right after the round and
//! not after the kernel's timeouts. The folders whose held listing the round made doubtful (an
//! item under a parent of unknown id, a `childCount` that does not match) are listed again
//! here, on the poll thread, at most [`MAX_RELIST`] per round; the others are only marked
//! stale (listed again when next used) and their entries forgotten.
//!
//! `410 resyncRequired` (entry 4; it can come on any page of a round) restarts the feed at
//! "now": every listing is stale and the folders whose listings were held are listed again as
//! above. The `Location` of a fresh enumeration is not followed: listings are on demand.
//!
//! Locks: the poll thread takes the core state lock only to apply a round or merge a listing
//! (no I/O under it) and tells the kernel with no lock held; the stop flag's mutex is a leaf.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::feed;
use super::{CoreShared, NodeKind, State};
use crate::remote::{is_resync_required, RemoteError};

/// Most folders listed again on the poll thread after one round; the others are marked stale.
pub const MAX_RELIST: usize = 32;

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
/// What is left of the mount's Retry-After window (`UploadQueue::retry_after_left`).
pub(super) type Window = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

pub(super) fn spawn(
    shared: Arc<CoreShared>,
    coherence: Arc<Coherence>,
    window: Window,
    interval: Duration,
) {
    let run = move || poll_loop(&shared, &coherence, &*window, interval);
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

fn poll_loop(
    shared: &CoreShared,
    coherence: &Coherence,
    window: &(dyn Fn() -> Option<Duration> + Send + Sync),
    interval: Duration,
) {
    let mut token: Option<String> = None;
    let mut told_refused = false;
    let mut announced = false;
    // After a 410: the folders to list again once the new feed has its token (so a change
    // made meanwhile is either in those listings or in the next round), and how many 410s
    // came in a row (a server that keeps answering 410 is asked once per poll).
    let mut resync: Vec<u64> = Vec::new();
    let mut gone_in_a_row = 0u32;
    loop {
        // A Retry-After the service gave (to any request of this mount) holds the feed too:
        // it is one more request of the same app and user.
        while let Some(left) = window() {
            if !coherence.pause(left) {
                return;
            }
        }
        match shared.remote.delta(token.as_deref()) {
            Ok(round) => {
                gone_in_a_row = 0;
                if token.is_none() {
                    if !announced {
                        info!("following the drive's change feed every {interval:?}");
                        announced = true;
                    }
                    relist(shared, &std::mem::take(&mut resync));
                } else if !round.changes.is_empty() {
                    let applied = feed::apply(&mut shared.lock(), &round, Instant::now());
                    debug!(
                        "change feed: {} changes, {} kernel entries to forget, {} folders to \
                         list again",
                        round.changes.len(),
                        applied.forget.len(),
                        applied.relist.len()
                    );
                    shared.forget(&applied.forget);
                    relist(shared, &applied.relist);
                }
                token = Some(round.token);
                coherence.live.store(true, Ordering::Relaxed);
                told_refused = false;
            }
            Err(e) if is_resync_required(&e) => {
                info!("change feed: {e}; every listing is read again");
                let held = stale_all(&mut shared.lock());
                for i in held {
                    if !resync.contains(&i) {
                        resync.push(i);
                    }
                }
                token = None;
                gone_in_a_row += 1;
                if gone_in_a_row < 3 {
                    continue;
                }
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

/// Every listing and every node's metadata is stale; returns the folders whose listings were
/// held, shallowest first. Called with the core lock held.
fn stale_all(st: &mut State) -> Vec<u64> {
    let mut held: Vec<(usize, u64)> = st
        .table
        .iter()
        .filter(|(_, n)| n.kind == NodeKind::Dir && n.listed.is_some() && !n.unlinked)
        .map(|(i, n)| {
            (
                n.path.matches('/').count() + usize::from(!n.path.is_empty()),
                *i,
            )
        })
        .collect();
    held.sort();
    st.table.for_each_mut(|n| {
        n.listed = None;
        n.seen = None;
    });
    held.into_iter().map(|(_, i)| i).collect()
}

/// List the folders `inos` again (the first [`MAX_RELIST`]; the others are marked stale) and
/// tell the kernel what changed. Called with no lock held (network I/O).
fn relist(shared: &CoreShared, inos: &[u64]) {
    for (i, ino) in inos.iter().enumerate() {
        let path = {
            let st = shared.lock();
            match st.table.get(*ino) {
                Some(n) if n.kind == NodeKind::Dir && !n.unlinked => n.path.clone(),
                _ => continue,
            }
        };
        let forget = if i >= MAX_RELIST {
            feed::stale_folder(&mut shared.lock(), *ino)
        } else {
            match shared.remote.list(&path) {
                Ok(items) => {
                    let mut st = shared.lock();
                    // Renamed through the mount meanwhile: that listing is for another path.
                    if st.table.get(*ino).is_none_or(|n| n.path != path) {
                        continue;
                    }
                    feed::merge_listing(&mut st, *ino, &path, &items, Instant::now())
                }
                // Not on the server: a folder made through the mount and not created there
                // yet, or deleted (its delete comes in a round).
                Err(RemoteError::NotFound(_)) => continue,
                Err(e) => {
                    debug!("change feed: listing /{path}: {e}; read again when next used");
                    feed::stale_folder(&mut shared.lock(), *ino)
                }
            }
        };
        shared.forget(&forget);
    }
}

/// What the kernel is told to forget after a round (`CoreShared::forget`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Forget {
    /// A name in a folder: created (a negative entry may be cached) or deleted remotely.
    Entry(u64, String),
    /// A file whose metadata or content changed remotely.
    Inode(u64),
}
