//! Remote work the mount finishes later, owned by the upload queue and run on its
//! `upload-ops` thread (one request at a time, through the same limiter and throttle gate as
//! uploads):
//!
//! - **Deletes of locked files** (field reference entry 23). An unlink changes the local view
//!   at once; when SharePoint answers "locked" (checked out, open in another app) the FUSE
//!   thread hands the delete here ([`PendingOps::defer_delete`]) instead of failing or
//!   waiting. It is retried at most [`LOCKED_RETRY_MAX`] apart (the upload's 423 rule) for
//!   `locked_wait`, shown in `.status` as a `retrying` entry ([`DELETE_LOCKED`]), `done` once
//!   SharePoint has deleted it (a 404 then counts as done: the goal is reached) or `failed`
//!   with the reason. Passing errors (network, 5xx, throttling) are retried with the retry
//!   policy's backoff for `max_attempts` tries. While it waits, folder listings hide the item
//!   ([`PendingOps::hides`]); a new upload to the same path supersedes it (the upload
//!   replaces the item: deleting it afterwards would delete the new content).
//! - **Late hash checks** (entry 14): an upload committed without a quickXorHash is `done`
//!   with a note and looked at again after [`VERIFY_AFTER`]; the note then says verified,
//!   mismatch, or never reported.
//! - **Notices**: recent refusals the user should see in `.status` (a rename of a locked file
//!   answered EBUSY), kept for the status retention.
//!
//! Not durable: pending deletes live in memory; at shutdown those left are logged (the files
//! stay in SharePoint). Status entries of these operations use ids from [`OP_ID_BASE`] up, apart
//! from the queue's. Locks: the state lock is taken after the queue lock (`submit` calls
//! [`PendingOps::upload_submitted`] with it held) and before the registry's; it is never held
//! across a remote call.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::clock::{Clock, Interrupt};
use super::registry::StatusRegistry;
use super::retry::{classify, Decision, Op};
use super::status::{
    sanitize_error, Notice, DELETED_LATER, DELETE_LOCKED, HASH_NEVER, HASH_VERIFIED_LATER,
};
use super::worker::{UploadContext, LOCKED_RETRY_MAX};
use crate::remote::{RemoteError, RemoteItem};

/// First status id of these operations (the queue's ids count up from 1).
pub const OP_ID_BASE: u64 = 1 << 62;

/// When a committed file without a quickXorHash is looked at again, after its commit.
pub const VERIFY_AFTER: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// Notices kept at most.
const NOTICES_KEPT: usize = 20;

/// Longest sleep of the thread between looks at its work (real time).
const POLL: Duration = Duration::from_secs(1);

fn key(path: &str) -> String {
    crate::collation::fold(path)
}

#[derive(Debug, Clone)]
struct Delete {
    id: u64,
    path: String,
    since: Instant,
    due: Instant,
    locked: u32,
    failures: u32,
}

#[derive(Debug, Clone)]
struct HashCheck {
    entry: u64,
    path: String,
    size: u64,
    local: String,
    committed: Instant,
    tries: usize,
}

impl HashCheck {
    fn due(&self) -> Option<Instant> {
        VERIFY_AFTER.get(self.tries).map(|d| self.committed + *d)
    }
}

#[derive(Default)]
struct OpsState {
    next_id: u64,
    deletes: Vec<Delete>,
    checks: Vec<HashCheck>,
    notices: VecDeque<(Instant, Notice)>,
    /// Status entries of failed deletes, removed after the retention.
    failed: Vec<(u64, Instant)>,
    stopped: bool,
}

/// The queue's later work (module documentation).
pub struct PendingOps {
    retention: Duration,
    state: Mutex<OpsState>,
    wake: Condvar,
}

/// What one try of a delete came to.
enum Tried {
    Done,
    /// Still locked: try again at `due`.
    Locked {
        due: Instant,
    },
    /// A passing error (`reason`): try again at `due`.
    Passing {
        due: Instant,
        reason: String,
    },
    /// Not tried: the throttle gate is closed until `due`.
    Paused {
        due: Instant,
    },
    Failed(String),
}

impl PendingOps {
    /// `retention`: how long notices and failed entries stay in `.status`.
    pub fn new(retention: Duration) -> PendingOps {
        PendingOps {
            retention,
            state: Mutex::new(OpsState::default()),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OpsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file at `path` was deleted here, and SharePoint refused the delete because the file
    /// is locked (`reason`): delete it there once the lock is gone. Never blocks.
    pub fn defer_delete(
        &self,
        registry: &StatusRegistry,
        clock: &dyn Clock,
        path: &str,
        reason: &str,
    ) {
        let mut st = self.lock();
        if st.stopped || st.deletes.iter().any(|d| key(&d.path) == key(path)) {
            return;
        }
        st.next_id += 1;
        let id = OP_ID_BASE + st.next_id;
        let now = clock.now();
        registry.queued(id, path, 0);
        registry.started(id, now, clock.wall(), 1);
        registry.retrying(id, 1, DELETE_LOCKED);
        info!(
            "{path}: deleted here; SharePoint refused the delete ({}), it is retried until the \
             lock is released",
            sanitize_error(reason)
        );
        st.deletes.push(Delete {
            id,
            path: path.to_string(),
            since: now,
            due: now + Duration::from_secs(1),
            locked: 1,
            failures: 0,
        });
        drop(st);
        self.wake.notify_all();
    }

    /// Whether the item at `path` is deleted here with its delete in SharePoint still waiting
    /// (listings hide it).
    pub fn hides(&self, path: &str) -> bool {
        let k = key(path);
        self.lock().deletes.iter().any(|d| key(&d.path) == k)
    }

    /// A new upload of `path` was queued: it replaces the item, so a delete still waiting
    /// there must not happen after it.
    pub fn upload_submitted(&self, registry: &StatusRegistry, path: &str) {
        let k = key(path);
        let mut st = self.lock();
        let before = st.deletes.len();
        st.deletes.retain(|d| {
            let same = key(&d.path) == k;
            if same {
                registry.remove(d.id);
            }
            !same
        });
        if st.deletes.len() != before {
            info!("{path}: a new upload replaces it; its waiting delete is dropped");
        }
        st.checks.retain(|c| key(&c.path) != k);
    }

    /// `item`, just committed as status entry `entry` without a quickXorHash (entry 14):
    /// compare `local` with the server's hash once it has one.
    pub fn verify_later(
        &self,
        clock: &dyn Clock,
        entry: u64,
        path: &str,
        item: &RemoteItem,
        local: String,
    ) {
        let mut st = self.lock();
        let k = key(path);
        st.checks.retain(|c| key(&c.path) != k);
        st.checks.push(HashCheck {
            entry,
            path: path.to_string(),
            size: item.size,
            local,
            committed: clock.now(),
            tries: 0,
        });
        drop(st);
        self.wake.notify_all();
    }

    /// Add a line to `.status` for a while (a refusal the user should know the reason of).
    pub fn notice(&self, clock: &dyn Clock, message: &str) {
        let mut st = self.lock();
        st.notices.push_back((
            clock.now(),
            Notice {
                at: clock.wall(),
                message: sanitize_error(message),
            },
        ));
        while st.notices.len() > NOTICES_KEPT {
            st.notices.pop_front();
        }
    }

    /// The notices of the last `retention`, oldest first.
    pub fn notices(&self, now: Instant) -> Vec<Notice> {
        let mut st = self.lock();
        let keep = self.retention;
        st.notices
            .retain(|(t, _)| now.saturating_duration_since(*t) < keep);
        st.notices.iter().map(|(_, n)| n.clone()).collect()
    }

    /// No delete is waiting (late hash checks do not keep the queue busy).
    pub fn is_idle(&self) -> bool {
        self.lock().deletes.is_empty()
    }

    /// Paths whose delete is still waiting.
    pub fn waiting_deletes(&self) -> Vec<String> {
        self.lock().deletes.iter().map(|d| d.path.clone()).collect()
    }

    /// End `run` (at shutdown).
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
    }

    /// The `upload-ops` thread: do what is due, sleep until the next, until `stop`.
    pub fn run(&self, ctx: &UploadContext, interrupt: &Interrupt) {
        let mut rng = StdRng::from_entropy();
        loop {
            let (deletes, checks) = {
                let mut st = self.lock();
                if st.stopped {
                    for d in &st.deletes {
                        warn!(
                            "{}: deleted here, but still in SharePoint (locked); the delete \
                             was not done before the mount stopped",
                            d.path
                        );
                    }
                    return;
                }
                let now = ctx.clock.now();
                let retention = self.retention;
                st.failed.retain(|(id, at)| {
                    let old = now.saturating_duration_since(*at) >= retention;
                    if old {
                        ctx.registry.remove(*id);
                    }
                    !old
                });
                let deletes: Vec<Delete> = st
                    .deletes
                    .iter()
                    .filter(|d| d.due <= now)
                    .cloned()
                    .collect();
                let checks: Vec<HashCheck> = st
                    .checks
                    .iter()
                    .filter(|c| c.due().is_some_and(|t| t <= now))
                    .cloned()
                    .collect();
                (deletes, checks)
            };
            for d in deletes {
                if interrupt.is_set() {
                    break;
                }
                let tried = self.try_delete(ctx, &d, &mut rng);
                self.settle_delete(ctx, &d, tried);
            }
            for c in checks {
                if interrupt.is_set() {
                    break;
                }
                self.check_hash(ctx, &c);
            }
            let st = self.lock();
            if st.stopped {
                continue;
            }
            let now = ctx.clock.now();
            let next = st
                .deletes
                .iter()
                .map(|d| d.due)
                .chain(st.checks.iter().filter_map(HashCheck::due))
                .min();
            let wait = next.map_or(POLL, |t| t.saturating_duration_since(now).min(POLL));
            if wait.is_zero() {
                continue;
            }
            drop(
                self.wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }

    /// One try of a delete.
    fn try_delete(&self, ctx: &UploadContext, d: &Delete, rng: &mut StdRng) -> Tried {
        let now = ctx.clock.now();
        if let Some(until) = ctx.throttle.closed_until(&*ctx.clock) {
            return Tried::Paused { due: until };
        }
        let err = match ctx.remote.delete(&d.path) {
            // A 404 from the DELETE itself: the goal is reached.
            Ok(()) | Err(RemoteError::NotFound(_)) => return Tried::Done,
            Err(e) => e,
        };
        let reason = sanitize_error(&err.to_string());
        match classify(Op::Lookup, &err) {
            Decision::Locked => {
                let waited = now.saturating_duration_since(d.since);
                if waited >= ctx.locked_wait {
                    return Tried::Failed(format!(
                        "{reason} (still locked after {} s): deleted here, but still in \
                         SharePoint",
                        waited.as_secs()
                    ));
                }
                let wait = ctx
                    .policy
                    .backoff(d.locked + 1, rng)
                    .clamp(Duration::from_millis(200), LOCKED_RETRY_MAX);
                Tried::Locked { due: now + wait }
            }
            Decision::Backoff | Decision::Throttle(_)
                if d.failures + 1 < ctx.policy.max_attempts =>
            {
                let wait = match classify(Op::Lookup, &err) {
                    Decision::Throttle(Some(ra)) => ra,
                    _ => ctx.policy.backoff(d.failures + 1, rng),
                };
                Tried::Passing {
                    due: now + wait,
                    reason: format!("delete in SharePoint waits: {reason}"),
                }
            }
            _ => Tried::Failed(format!(
                "deleted here, but SharePoint refused the delete: {reason}"
            )),
        }
    }

    fn settle_delete(&self, ctx: &UploadContext, d: &Delete, tried: Tried) {
        let mut st = self.lock();
        let Some(pos) = st.deletes.iter().position(|x| x.id == d.id) else {
            return; // superseded by an upload meanwhile
        };
        let now = ctx.clock.now();
        match tried {
            Tried::Done => {
                st.deletes.remove(pos);
                info!("{}: {DELETED_LATER}", d.path);
                ctx.registry.clear_error(d.id);
                ctx.registry.note(d.id, DELETED_LATER, false);
                ctx.registry.finished(d.id, now, ctx.clock.wall(), Ok(()));
            }
            Tried::Paused { due } => st.deletes[pos].due = due,
            Tried::Locked { due } | Tried::Passing { due, .. } => {
                let x = &mut st.deletes[pos];
                let reason = match &tried {
                    Tried::Passing { reason, .. } => {
                        x.failures += 1;
                        reason.as_str()
                    }
                    _ => {
                        x.locked += 1;
                        x.failures = 0;
                        DELETE_LOCKED
                    }
                };
                x.due = due;
                let tries = x.locked + x.failures;
                debug!(
                    "{}: delete retried in {} ms",
                    d.path,
                    due.saturating_duration_since(now).as_millis()
                );
                ctx.registry.retrying(d.id, tries, reason);
            }
            Tried::Failed(reason) => {
                st.deletes.remove(pos);
                warn!("{}: {reason}", d.path);
                ctx.registry
                    .finished(d.id, now, ctx.clock.wall(), Err(&reason));
                st.failed.push((d.id, now));
            }
        }
    }

    /// One late look at a committed file's hash.
    fn check_hash(&self, ctx: &UploadContext, c: &HashCheck) {
        let outcome = match ctx.remote.stat(&c.path) {
            // Gone or changed since: nothing left to check.
            Ok(None) => Some(None),
            Ok(Some(item)) if item.size != c.size => Some(None),
            Ok(Some(item)) => match item.quick_xor_hash {
                Some(h) if h == c.local => Some(Some(HASH_VERIFIED_LATER.to_string())),
                Some(h) => Some(Some(format!(
                    "hash mismatch found after the commit: local {} SharePoint {h}; copy the \
                     file again",
                    c.local
                ))),
                None => None,
            },
            Err(e) => {
                debug!("{}: late hash check: {e}", c.path);
                None
            }
        };
        let mut st = self.lock();
        let Some(pos) = st.checks.iter().position(|x| x.entry == c.entry) else {
            return;
        };
        let note = match outcome {
            Some(note) => {
                st.checks.remove(pos);
                note
            }
            None => {
                st.checks[pos].tries += 1;
                if st.checks[pos].due().is_some() {
                    return;
                }
                st.checks.remove(pos);
                Some(HASH_NEVER.to_string())
            }
        };
        if let Some(note) = note {
            if note == HASH_VERIFIED_LATER {
                info!("{}: {note}", c.path);
            } else {
                warn!("{}: {note}", c.path);
            }
            ctx.registry.note(c.entry, &note, false);
        }
    }
}
