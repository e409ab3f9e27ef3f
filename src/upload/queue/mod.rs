//! The queue proper: accepts jobs without blocking, serialises them per remote path, runs them
//! on worker threads, and handles cancel, retry of failed jobs and shutdown.
//!
//! Per-path rule (paths compare case-insensitively, as in SharePoint): at most one job per path
//! is uploading. A job submitted while an older one for the same path is still QUEUED replaces
//! it (the older spool file is removed). A job submitted while one is UPLOADING waits until
//! that one has ended, then runs: the older upload is not cancelled, so a file rewritten more
//! often than it takes to upload still reaches SharePoint (newest content lands last, never
//! stale-after-new; at most one job waits per path, the newest). Cancelling the in-flight one
//! instead would save bandwidth but could starve such a file forever.
//!
//! Mechanics: the crossbeam channel carries path keys of jobs that are ready to start (not
//! blocked behind a running job of their path); `Pending::enqueued` says a key is in the
//! channel, so it is there at most once per path, and a stale key (job cancelled) is skipped.
//! Workers wait on the channel and on a stop channel whose sender is dropped at shutdown.
//!
//! Lanes: big jobs run on `workers` threads, each with a `chunk_size` buffer; jobs of at most
//! [`SMALL_FILE_MAX`] bytes run on `small_file_workers` threads of their own (default 0 here,
//! 16 in mounts), each with a one-fragment buffer. At 50–300 ms a round trip, a small file is
//! two round trips of waiting and almost no bandwidth, so many in flight hide the latency;
//! separate lanes mean a stream of small files never starves a big upload of its workers, and
//! a big upload never holds up small files. Every request of either lane passes the one
//! throttle gate (`throttle.rs`): a 429/503 closes it for the whole mount until Retry-After.
//! Every request of either lane (and of the folder loop) also passes the one mount-wide
//! limiter (`limiter.rs`): the remote given to [`UploadQueue::start`] is already a
//! `LimitedRemote` of the mount's `Pacer` (`QueueConfig::pacer`, shared with the filesystem's
//! own requests), or the queue wraps it in a pacer of its own. It paces requests at the rate
//! the service's answers allow and bounds how many are in flight; the lanes' thread counts
//! are upper bounds.
//!
//! Locks this layer owns, in order: `QueueShared::state` (the queue lock) → the status
//! registry's lock (inside `UploadContext`) → a job's `Interrupt` flag. The throttle, the
//! `threads` and `stop_tx` mutexes are leaves; nothing is taken inside them. Callers (the
//! filesystem core) may hold their own locks when they call in: the queue sits below them.
//!
//! The queue lock is taken by `submit`, `cancel`, `retry_failed`, `retarget`, `amend_mtime`,
//! `keep`, `failed_jobs`, `wait_idle` (waits on `changed`), and inside by `run_one`, `settle`,
//! `scheduler_loop` (waits on `sched`) and `begin_shutdown` (`shutdown`, drop of the last
//! handle). `dispatch` is called with it held. `snapshot` takes only the registry's lock.
//! It is never held across I/O, a remote call, a [`super::JobStore`] call or an
//! [`super::UploadListener`] call: jobs let go of are collected under the lock and reported
//! to `JobStore::released` after it is dropped (`QueueShared::release`). Calls out, all
//! without the queue lock: `JobStore::released` from `submit`, `cancel`, `retarget`, `keep`
//! and `settle`; `requeued` from `retry_failed`; `amended` from `retarget` and `amend_mtime`;
//! `failed` and the listener's `finished` from `settle` (worker thread); `starting`,
//! `session` and `acked` from the worker (`worker.rs`), which holds no queue lock at all.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{error, warn};

use super::clock::Interrupt;
use super::status::StatusSnapshot;
use super::status::UploadState;
use super::worker::UploadContext;
use super::{Release, UploadJob, UploadListener};

mod threads;

/// Largest file the small-file lane takes: 4 × 320 KiB (1.25 MiB), one fragment, so the
/// lane's buffers stay small (`small_file_workers` × 1.25 MiB at most).
const SMALL_FILE_MAX: u64 = 4 * crate::protocol::FRAGMENT_UNIT;

/// A job waiting to start.
struct Pending {
    id: u64,
    job: UploadJob,
    /// Its path key is in the ready channel.
    enqueued: bool,
    /// Not to be started before this (the write-back delay), so a rename or utimens right
    /// after close (rsync, cp -a, editors) amends the job instead of racing its upload.
    not_before: Instant,
}

impl Pending {
    fn new(id: u64, job: UploadJob, not_before: Instant) -> Pending {
        Pending {
            id,
            job,
            enqueued: false,
            not_before,
        }
    }
}

/// A job a worker is driving.
struct Running {
    interrupt: Interrupt,
    cancelled: bool,
}

#[derive(Default)]
struct QueueState {
    next_id: u64,
    /// At most one per path key.
    pending: HashMap<String, Pending>,
    running: HashMap<String, Running>,
    /// Failed jobs whose spool file is kept, by path key.
    failed: HashMap<String, (u64, UploadJob)>,
    /// Workers between freeing a path and removing spool files (not idle yet).
    settling: usize,
    shutdown: bool,
}

struct QueueShared {
    ctx: UploadContext,
    listener: Arc<dyn UploadListener>,
    state: Mutex<QueueState>,
    /// Signalled whenever a job ends or is dropped (for `wait_idle`).
    changed: Condvar,
    /// Wakes the scheduler thread when a delayed job is added or at shutdown.
    sched: Condvar,
    write_back_delay: Duration,
    ready_tx: Sender<String>,
    ready_rx: Receiver<String>,
    /// The small-file lane (see "Lanes" in the module doc): jobs of at most `small_max`
    /// bytes, when `small_file_workers` > 0.
    small_tx: Sender<String>,
    small_rx: Receiver<String>,
    /// Largest job the small lane takes; 0: no small lane.
    small_max: u64,
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    /// The mount-wide pacer (its stop signal ends the limiter's waits at shutdown).
    pacer: super::limiter::Pacer,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Signals shutdown when the last handle is dropped (workers hold `QueueShared`, not this).
struct Owner {
    shared: Arc<QueueShared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

/// Handle to the running queue; cheap to clone.
#[derive(Clone)]
pub struct UploadQueue {
    owner: Arc<Owner>,
}

fn path_key(path: &str) -> String {
    crate::collation::fold(path)
}

/// Jobs the queue has let go of, to report to the store once the queue lock is released.
type Released = Vec<(UploadJob, Release)>;

impl UploadQueue {
    fn shared(&self) -> &QueueShared {
        &self.owner.shared
    }

    /// Queue a job; never blocks. A queued-but-not-started job for the same path is replaced
    /// (its spool file removed); a job for the same path that is uploading finishes first and
    /// this one runs after it. A failed job kept for the same path is dropped (spool removed).
    pub fn submit(&self, job: UploadJob) {
        let shared = self.shared();
        let key = path_key(&job.remote_path);
        let mut to_release = Released::new();
        {
            let mut state = shared.lock();
            if state.shutdown {
                warn!(
                    "upload of {} queued after shutdown: it will not run",
                    job.remote_path
                );
            }
            state.next_id += 1;
            let id = state.next_id;
            if let Some((old_id, old)) = state.failed.remove(&key) {
                shared.ctx.registry.remove(old_id);
                if old.spool_file != job.spool_file {
                    to_release.push((old, Release::Superseded));
                }
            }
            shared.ctx.registry.queued(id, &job.remote_path, job.size);
            shared
                .ctx
                .ops
                .upload_submitted(&shared.ctx.registry, &job.remote_path);
            match state.pending.get_mut(&key) {
                Some(p) => {
                    shared.ctx.registry.remove(p.id);
                    if p.job.spool_file != job.spool_file {
                        to_release.push((p.job.clone(), Release::Superseded));
                    }
                    p.id = id;
                    // A second edit of a file whose first edit never reached the server: the
                    // version both were made from is still the one the server must have.
                    let mut job = job;
                    if job.base_etag.is_none() {
                        job.base_etag = p.job.base_etag.take();
                    }
                    p.job = job;
                    p.not_before = Instant::now() + shared.write_back_delay;
                }
                None => {
                    let not_before = Instant::now() + shared.write_back_delay;
                    state
                        .pending
                        .insert(key.clone(), Pending::new(id, job, not_before));
                }
            }
            shared.dispatch(&mut state, &key);
        }
        shared.release(to_release);
    }

    /// Cancel the jobs for `remote_path`: a queued one is dropped and a failed one forgotten
    /// (spool files removed at once); an uploading one stops at its next fragment boundary or
    /// wakes from its wait, DELETEs its session and removes its spool file then. The listener
    /// is not told. An upload whose last fragment was already in flight may still commit; the
    /// listener then hears `Ok`. Returns whether there was any job for the path.
    pub fn cancel(&self, remote_path: &str) -> bool {
        let shared = self.shared();
        let key = path_key(remote_path);
        let mut to_release = Released::new();
        let mut found = false;
        {
            let mut state = shared.lock();
            if let Some(p) = state.pending.remove(&key) {
                shared.ctx.registry.remove(p.id);
                to_release.push((p.job, Release::Cancelled));
                found = true;
            }
            if let Some((id, job)) = state.failed.remove(&key) {
                shared.ctx.registry.remove(id);
                to_release.push((job, Release::Cancelled));
                found = true;
            }
            if let Some(r) = state.running.get_mut(&key) {
                r.cancelled = true;
                r.interrupt.trigger();
                found = true;
            }
        }
        shared.changed.notify_all();
        shared.release(to_release);
        found
    }

    /// Re-queue failed jobs (all, or the one for `path`) whose spool file is kept; their
    /// attempts start again from 1. Returns how many were re-queued.
    pub fn retry_failed(&self, path: Option<&str>) -> usize {
        let shared = self.shared();
        let mut requeued = Vec::new();
        let mut state = shared.lock();
        let keys: Vec<String> = match path {
            Some(p) => vec![path_key(p)],
            None => state.failed.keys().cloned().collect(),
        };
        let mut count = 0;
        for key in keys {
            let Some((id, job)) = state.failed.remove(&key) else {
                continue;
            };
            if state.pending.contains_key(&key) {
                continue; // cannot happen: submit drops the failed job
            }
            shared.ctx.registry.queued(id, &job.remote_path, job.size);
            requeued.push(job.clone());
            state
                .pending
                .insert(key.clone(), Pending::new(id, job, Instant::now()));
            shared.dispatch(&mut state, &key);
            count += 1;
        }
        drop(state);
        for job in &requeued {
            shared.ctx.store.requeued(job);
        }
        count
    }

    /// Move a job that has not started from `from` to `to` (a rename right after close): no
    /// upload under the old name happens. A job already waiting for `to` is replaced (its
    /// spool file removed). Returns false if no job for `from` is waiting (none, or it is
    /// uploading already).
    pub fn retarget(&self, from: &str, to: &str) -> bool {
        let shared = self.shared();
        let (kf, kt) = (path_key(from), path_key(to));
        let mut to_release = Released::new();
        let amended: UploadJob;
        {
            let mut state = shared.lock();
            if state.running.contains_key(&kf) || !state.pending.contains_key(&kf) {
                return false;
            }
            let Some(mut p) = state.pending.remove(&kf) else {
                return false;
            };
            if let Some(old) = state.pending.remove(&kt) {
                shared.ctx.registry.remove(old.id);
                if old.job.spool_file != p.job.spool_file {
                    to_release.push((old.job, Release::Superseded));
                }
            }
            if let Some((id, old)) = state.failed.remove(&kt) {
                shared.ctx.registry.remove(id);
                to_release.push((old, Release::Superseded));
            }
            p.job.remote_path = to.to_string();
            shared.ctx.ops.upload_submitted(&shared.ctx.registry, to);
            if settles(from, to) {
                p.not_before = p.not_before.min(Instant::now() + RENAME_SETTLE);
            }
            amended = p.job.clone();
            // A key already in the channel under the old name is skipped as stale.
            p.enqueued = false;
            shared.ctx.registry.remove(p.id);
            state.next_id += 1;
            p.id = state.next_id;
            shared.ctx.registry.queued(p.id, to, p.job.size);
            state.pending.insert(kt.clone(), p);
            shared.dispatch(&mut state, &kt);
        }
        shared.release(to_release);
        shared.ctx.store.amended(&amended);
        true
    }

    /// Change the mtime a waiting (not started) job will send. False if none is waiting.
    pub fn amend_mtime(&self, path: &str, mtime: std::time::SystemTime) -> bool {
        let shared = self.shared();
        let job = {
            let mut state = shared.lock();
            match state.pending.get_mut(&path_key(path)) {
                Some(p) => {
                    p.job.mtime = mtime;
                    p.job.clone()
                }
                None => return false,
            }
        };
        shared.ctx.store.amended(&job);
        true
    }

    /// Keep a job in the spool without uploading it: `Failed` (recovered from an earlier run)
    /// or `Incomplete` (never closed, or a spool write failed). It shows in the status with
    /// `reason`, counts as failed for `retry_failed` (which uploads it as it is), `cancel`
    /// (discard) and `submit` (a newer version of the path replaces it).
    pub fn keep(&self, job: UploadJob, state: UploadState, reason: &str) {
        let shared = self.shared();
        let key = path_key(&job.remote_path);
        let mut to_release = Released::new();
        {
            let mut st = shared.lock();
            st.next_id += 1;
            let id = st.next_id;
            shared
                .ctx
                .registry
                .kept(id, &job.remote_path, job.size, state, reason);
            if let Some((old_id, old)) = st.failed.insert(key, (id, job.clone())) {
                shared.ctx.registry.remove(old_id);
                if old.spool_file != job.spool_file {
                    to_release.push((old, Release::Superseded));
                }
            }
        }
        shared.release(to_release);
    }

    /// Failed jobs whose spool files the queue keeps (for spool accounting).
    pub fn failed_jobs(&self) -> Vec<UploadJob> {
        self.shared()
            .lock()
            .failed
            .values()
            .map(|(_, job)| job.clone())
            .collect()
    }

    /// What is left of the Retry-After window the mount's one throttle gate holds, as a
    /// function other threads can ask (the change feed waits it out before polling). Holds
    /// no handle of the queue, so it never keeps the queue alive.
    pub fn retry_after_left(&self) -> Arc<dyn Fn() -> Option<Duration> + Send + Sync> {
        let ctx = &self.shared().ctx;
        let (gate, clock) = (ctx.throttle.clone(), ctx.clock.clone());
        Arc::new(move || {
            gate.closed_until(&*clock)
                .map(|t| t.saturating_duration_since(clock.now()))
                .filter(|d| !d.is_zero())
        })
    }

    /// `Some(reason)` while the remote cannot sign in until the user acts.
    pub fn sign_in_needed(&self) -> Option<String> {
        self.shared().ctx.sign_in.needed()
    }

    /// Everything `.status` shows (in the summary form above the threshold).
    pub fn snapshot(&self) -> StatusSnapshot {
        self.snapshot_with(false)
    }

    /// The same with every retained entry listed (`.status.all`).
    pub fn snapshot_all(&self) -> StatusSnapshot {
        self.snapshot_with(true)
    }

    fn snapshot_with(&self, all: bool) -> StatusSnapshot {
        let ctx = &self.shared().ctx;
        let throttled_until = ctx.throttle.closed_until_wall(&*ctx.clock);
        let now = ctx.clock.now();
        let mut snap = if all {
            ctx.registry.snapshot_all(now, throttled_until)
        } else {
            ctx.registry.snapshot(now, throttled_until)
        };
        snap.paused = ctx.sign_in.needed();
        snap.notices = ctx.ops.notices(ctx.clock.now());
        snap.blocked = self.shared().pacer.blocked_note();
        snap
    }

    /// The folders made through the mount and not yet on the server.
    pub fn folders(&self) -> &super::folders::FolderPlan {
        &self.shared().ctx.folders
    }

    /// The file at `path` was deleted here but SharePoint refused the delete because the file
    /// is locked (`err`): the queue deletes it there once the lock is gone (`pending_ops`).
    /// Never blocks.
    pub fn defer_delete(&self, path: &str, err: &crate::remote::RemoteError) {
        let ctx = &self.shared().ctx;
        ctx.ops
            .defer_delete(&ctx.registry, &*ctx.clock, path, &err.to_string());
    }

    /// Whether listings must hide `path`: deleted here, its delete in SharePoint waiting.
    pub fn hides(&self, path: &str) -> bool {
        self.shared().ctx.ops.hides(path)
    }

    /// A line for `.status` about an operation refused and why (kept for the retention).
    pub fn notice(&self, message: &str) {
        let ctx = &self.shared().ctx;
        ctx.ops.notice(&*ctx.clock, message);
    }

    /// Wait (in real time) until no job is queued or uploading. `false` on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let shared = self.shared();
        let deadline = Instant::now() + timeout;
        let mut state = shared.lock();
        loop {
            if state.pending.is_empty()
                && state.running.is_empty()
                && state.settling == 0
                && shared.ctx.folders.is_idle()
                && shared.ctx.ops.is_idle()
            {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Folders are created outside the queue lock: poll them at least every 50 ms.
            let step = (deadline - now).min(Duration::from_millis(50));
            state = shared
                .changed
                .wait_timeout(state, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stop workers: in-flight requests end, no new fragment starts, waiting workers wake, and
    /// interrupted jobs stay queued with their spool files. Blocks until the workers exit.
    /// Must not be called from the listener (a worker thread).
    pub fn shutdown(&self) {
        let shared = self.shared();
        shared.begin_shutdown();
        let handles: Vec<JoinHandle<()>> = shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let me = std::thread::current().id();
        for h in handles {
            if h.thread().id() == me {
                error!("UploadQueue::shutdown called from an upload worker; not joining it");
                continue;
            }
            if h.join().is_err() {
                error!("an upload worker panicked");
            }
        }
    }
}

/// How long a job renamed from a temp name to its final one still waits: the write-back delay
/// exists for the rename (and the `utimens`/`chmod` before it) that a tool like rsync does
/// right after close, and once that rename has happened the file is complete. A short pause
/// still lets a following `chmod` or `utimens` amend the job.
const RENAME_SETTLE: Duration = Duration::from_millis(50);

/// Whether a rename from `from` to `to` is the finishing rename of a temp file (see
/// [`super::temp_names`]): the last component of `from` looks temporary and that of `to` does
/// not.
fn settles(from: &str, to: &str) -> bool {
    use super::temp_names::looks_like_temp_name;
    let last = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    looks_like_temp_name(&last(from)) && !looks_like_temp_name(&last(to))
}
