//! The queue's threads and what they run: [`UploadQueue::start`] spawns them; the scheduler
//! (jobs whose write-back delay has passed go to the ready channel), the folder loop
//! (folders made through the mount, created before their files), the workers of both lanes
//! (`run_one`: one job, handed to the session driver in `worker.rs`), and `settle`, which
//! applies a job's end to the queue, the store and the listener.
//!
//! Locks: as in the parent module (`queue/mod.rs`): the queue lock is never held across the
//! driver, a remote call, a `JobStore` call or a listener call.

use super::*;
use crate::remote::{Remote, RemoteItem};
use crate::upload::chunk::ChunkPlan;
use crate::upload::clock::Interrupt;
use crate::upload::registry::StatusRegistry;
use crate::upload::retry::RetryPolicy;
use crate::upload::worker::{JobEnd, UploadContext, Uploader};
use crate::upload::{QueueConfig, Release, UploadJob, UploadListener};
use crossbeam_channel::{select, unbounded};
use log::{error, warn};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

impl QueueShared {
    pub(super) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put `key` in the ready channel if its pending job may start.
    pub(super) fn dispatch(&self, state: &mut QueueState, key: &str) {
        if state.shutdown || state.running.contains_key(key) {
            return;
        }
        if let Some(p) = state.pending.get_mut(key) {
            if p.not_before > Instant::now() {
                self.sched.notify_all();
                return;
            }
            // The channel is unbounded and we hold its receiver: send cannot block or fail.
            let lane = if self.small_max > 0 && p.job.size <= self.small_max {
                &self.small_tx
            } else {
                &self.ready_tx
            };
            if !p.enqueued && lane.send(key.to_string()).is_ok() {
                p.enqueued = true;
            }
        }
    }

    /// Dispatch delayed jobs when their write-back delay has passed.
    pub(super) fn scheduler_loop(&self) {
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return;
            }
            let now = Instant::now();
            let due: Vec<String> = state
                .pending
                .iter()
                .filter(|(_, p)| !p.enqueued && p.not_before <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                self.dispatch(&mut state, &key);
            }
            let next = state
                .pending
                .values()
                .filter(|p| !p.enqueued && p.not_before > now)
                .map(|p| p.not_before - now)
                .min()
                .unwrap_or(Duration::from_secs(1));
            state = self
                .sched
                .wait_timeout(state, next)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Create the folders made through the mount that no file has needed yet (empty ones),
    /// after the write-back delay, so a file written right after `mkdir` is what creates them.
    pub(super) fn folder_loop(&self) {
        let pause = self.write_back_delay.max(Duration::from_millis(200));
        loop {
            match self.stop_rx.recv_timeout(pause) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            crate::upload::limiter::set_lane(crate::upload::limiter::Lane::Background);
            self.pacer.check_blocked();
            for dir in self.ctx.folders.waiting() {
                if self.ctx.throttle.closed_until(&*self.ctx.clock).is_some() {
                    break;
                }
                if self.ctx.folders.ensure(&*self.ctx.remote, &dir).is_err() {
                    break; // logged; tried again next round
                }
            }
            self.changed.notify_all();
        }
    }

    pub(super) fn begin_shutdown(&self) {
        self.ctx.ops.stop();
        {
            let mut state = self.lock();
            state.shutdown = true;
            self.ctx.stopping.store(true, Ordering::SeqCst);
            for r in state.running.values() {
                r.interrupt.trigger();
            }
        }
        self.pacer.stop_signal().trigger();
        self.sched.notify_all();
        self.stop_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.changed.notify_all();
    }

    pub(super) fn worker_loop(&self, small: bool) {
        let (plan, rx) = if small {
            (ChunkPlan::new(self.small_max), &self.small_rx)
        } else {
            (self.ctx.plan, &self.ready_rx)
        };
        crate::upload::limiter::set_big_lane(!small);
        let mut uploader = Uploader::new(plan);
        loop {
            select! {
                recv(rx) -> key => match key {
                    Ok(key) => self.run_one(&mut uploader, &key),
                    Err(_) => return,
                },
                recv(self.stop_rx) -> _ => return,
            }
        }
    }

    /// Start the pending job of `key` if it may start, drive it, and settle its end.
    pub(super) fn run_one(&self, uploader: &mut Uploader, key: &str) {
        let (id, job, interrupt) = {
            let mut state = self.lock();
            if state.shutdown || state.running.contains_key(key) {
                // Re-dispatched when the running job ends (or never, at shutdown).
                if let Some(p) = state.pending.get_mut(key) {
                    p.enqueued = false;
                }
                return;
            }
            let Some(p) = state.pending.remove(key) else {
                return; // cancelled after it was queued
            };
            let interrupt = Interrupt::new();
            state.running.insert(
                key.to_string(),
                Running {
                    interrupt: interrupt.clone(),
                    cancelled: false,
                },
            );
            (p.id, p.job, interrupt)
        };

        // A panic (a bug) must not leave the path marked as running forever.
        let end = catch_unwind(AssertUnwindSafe(|| {
            uploader.run(&self.ctx, id, &job, &interrupt)
        }))
        .unwrap_or_else(|_| {
            error!("upload worker panicked on {}", job.remote_path);
            JobEnd::Failed("internal error: the upload worker panicked".into())
        });
        self.settle(key, id, job, end);
    }

    /// Tell the store of jobs the queue let go of. Called with no queue lock held.
    pub(super) fn release(&self, jobs: Released) {
        for (job, why) in jobs {
            self.ctx.store.released(&job, why);
        }
    }

    pub(super) fn tell_listener(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>) {
        if catch_unwind(AssertUnwindSafe(|| self.listener.finished(job, outcome))).is_err() {
            error!("upload listener panicked on {}", job.remote_path);
        }
    }

    /// Report the end of a job, then free its path. The listener hears of the end before the
    /// next job of the path can start, so it sees ends in upload order.
    pub(super) fn settle(&self, key: &str, id: u64, job: UploadJob, end: JobEnd) {
        let clock = &self.ctx.clock;
        let cancelled_early = self.lock().running.get(key).is_some_and(|r| r.cancelled);
        match &end {
            // The listener first: when `.status` says done or failed, the filesystem already
            // shows the outcome (and a utimens after "done" addresses the committed item).
            JobEnd::Done(item) => {
                self.tell_listener(&job, Ok(item));
                self.ctx
                    .registry
                    .finished(id, clock.now(), clock.wall(), Ok(()));
            }
            JobEnd::Failed(reason) if !cancelled_early => {
                // Persisted first: a `failed` status implies a `failed` record.
                self.ctx.store.failed(&job, reason);
                self.tell_listener(&job, Err(reason));
                self.ctx
                    .registry
                    .finished(id, clock.now(), clock.wall(), Err(reason));
            }
            JobEnd::Failed(_) | JobEnd::Stopped => {}
        }

        let mut to_release = Released::new();
        {
            let mut state = self.lock();
            let cancelled = state.running.remove(key).is_some_and(|r| r.cancelled);
            let newer = state.pending.get(key).map(|p| p.job.spool_file.clone());
            let superseded = newer.is_some();
            let spool_shared = newer.as_ref() == Some(&job.spool_file);
            match end {
                JobEnd::Done(_) => {
                    if !spool_shared {
                        to_release.push((job, Release::Committed));
                    }
                }
                JobEnd::Failed(_) | JobEnd::Stopped if cancelled || superseded => {
                    if !spool_shared {
                        let why = if cancelled {
                            Release::Cancelled
                        } else {
                            Release::Superseded
                        };
                        to_release.push((job, why));
                    }
                    if cancelled || matches!(end, JobEnd::Stopped) {
                        self.ctx.registry.remove(id);
                    }
                }
                JobEnd::Failed(_) => {
                    state.failed.insert(key.to_string(), (id, job));
                }
                JobEnd::Stopped => {
                    // Shutdown: keep the job (and its spool file) as queued.
                    self.ctx.registry.queued(id, &job.remote_path, job.size);
                    state
                        .pending
                        .insert(key.to_string(), Pending::new(id, job, Instant::now()));
                }
            }
            self.dispatch(&mut state, key);
            state.settling += 1;
        }
        self.release(to_release);
        self.lock().settling -= 1;
        self.changed.notify_all();
    }
}

impl UploadQueue {
    /// Start `config.workers` worker threads.
    pub fn start(
        remote: Arc<dyn Remote>,
        config: QueueConfig,
        listener: Arc<dyn UploadListener>,
    ) -> UploadQueue {
        let plan = ChunkPlan::new(config.chunk_size);
        if plan.chunk_size() != config.chunk_size {
            warn!(
                "chunk size {} is not a multiple of 320 KiB under 60 MiB; using {}",
                config.chunk_size,
                plan.chunk_size()
            );
        }
        let (ready_tx, ready_rx) = unbounded();
        let (small_tx, small_rx) = unbounded();
        // One fragment's worth, so a small file is createUploadSession + one PUT.
        let small_max = if config.small_file_workers > 0 {
            SMALL_FILE_MAX.min(plan.chunk_size())
        } else {
            0
        };
        let (stop_tx, stop_rx) = unbounded();
        // The mount's pacer, whose `LimitedRemote` the remote already is, or one of our own.
        let (remote, pacer) = match config.pacer.clone() {
            Some(pacer) => (remote, pacer),
            None => {
                let pacer = crate::upload::limiter::Pacer::new(
                    config.workers.max(1) + config.small_file_workers,
                    Arc::clone(&config.clock),
                );
                let limited: Arc<dyn Remote> = Arc::new(pacer.wrap(remote));
                (limited, pacer)
            }
        };
        let throttle = pacer.gate().clone();
        let shared = Arc::new(QueueShared {
            ctx: UploadContext {
                remote,
                clock: config.clock,
                throttle,
                folders: Arc::new(crate::upload::folders::FolderPlan::default()),
                registry: StatusRegistry::with_limits(config.retention, config.status_limits),
                policy: RetryPolicy {
                    max_attempts: config.max_attempts.max(1),
                    base: config.backoff_base,
                    cap: config.backoff_cap,
                },
                stale_wait: crate::upload::retry::StaleSessionWait {
                    lifetime: config.session_idle,
                    ..Default::default()
                },
                locked_wait: config.locked_wait,
                plan,
                fragments: crate::upload::fragment_size::FragmentSizes::new(
                    if config.adapt_fragments {
                        crate::upload::fragment_size::FragmentSizer::adaptive(plan.chunk_size())
                    } else {
                        crate::upload::fragment_size::FragmentSizer::fixed(plan.chunk_size())
                    },
                ),
                pace: config.pace,
                sign_in: config.sign_in,
                enriches_files: config.enriches_files,
                conflict: config.conflict,
                hasher: config.hasher,
                hash_recheck_delay: config.hash_recheck_delay,
                store: config.store,
                ops: Arc::new(crate::upload::pending_ops::PendingOps::new(
                    config.retention,
                )),
                quota: Default::default(),
                stopping: std::sync::atomic::AtomicBool::new(false),
            },
            listener,
            state: Mutex::new(QueueState::default()),
            changed: Condvar::new(),
            sched: Condvar::new(),
            write_back_delay: config.write_back_delay,
            ready_tx,
            ready_rx,
            small_tx,
            small_rx,
            small_max,
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            pacer,
            threads: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        let lanes = (0..config.workers.max(1))
            .map(|i| (format!("upload-{i}"), false))
            .chain((0..config.small_file_workers).map(|i| (format!("upload-small-{i}"), true)));
        for (name, small) in lanes {
            let worker = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || worker.worker_loop(small))
            {
                Ok(handle) => threads.push(handle),
                Err(e) => error!("cannot start upload worker {name}: {e}"),
            }
        }
        let folders = Arc::clone(&shared);
        match std::thread::Builder::new()
            .name("upload-folders".into())
            .spawn(move || folders.folder_loop())
        {
            Ok(handle) => threads.push(handle),
            Err(e) => error!("cannot start the folder thread: {e}"),
        }
        let ops = Arc::clone(&shared);
        match std::thread::Builder::new()
            .name("upload-ops".into())
            .spawn(move || {
                // Waiting deletes and late hash checks wait at the gate like uploads do.
                crate::upload::limiter::set_lane(crate::upload::limiter::Lane::Background);
                ops.ctx.ops.run(&ops.ctx, ops.pacer.stop_signal())
            }) {
            Ok(handle) => threads.push(handle),
            Err(e) => error!("cannot start the thread of waiting deletes: {e}"),
        }
        let sched = Arc::clone(&shared);
        match std::thread::Builder::new()
            .name("upload-sched".into())
            .spawn(move || sched.scheduler_loop())
        {
            Ok(handle) => threads.push(handle),
            Err(e) => error!("cannot start the upload scheduler: {e}"),
        }
        *shared.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        UploadQueue {
            owner: Arc::new(Owner { shared }),
        }
    }
}
