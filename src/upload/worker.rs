//! The upload session driver: takes ONE job from a sealed spool file to a committed,
//! hash-checked SharePoint item, following the retry policy (`retry.rs`), the fragment plan
//! (`chunk.rs`) and the shared throttle gate (`throttle.rs`). It knows nothing of the queue:
//! it returns how the job ended and the queue decides when to release the spool file.
//!
//! Locks: a run (`JobRun`) holds no queue lock. It takes the registry's and the throttle's
//! locks only for updates, never across a remote call; the `JobStore` (`starting`, `session`,
//! `acked`) and the remote are called with no lock of this layer held.
//!
//! Invariants:
//! - Constant memory: fragments are streamed from the spool file in pieces of 256 KiB
//!   (`remote::FragmentBody`), whatever their size; no fragment is held whole or copied.
//!   Their size follows the link (`fragment_size.rs`, child module `fragment`).
//! - Fragments of a session are sent one at a time, each starting at the first byte the server
//!   expects; after any failed PUT the server is asked where it stands (GET the upload URL).
//! - Every request is preceded by a pass through the throttle gate and a check of the job's
//!   interrupt (cancel or shutdown): a stopped job sends no new fragment. A cancelled job's
//!   session is DELETEd (best effort); at shutdown the session is kept, and persisted through
//!   the `JobStore`, so the next mount resumes it.
//! - Durability: every session opened or abandoned and every acknowledgement is told to the
//!   `JobStore` (one record write per fragment at most). A recovered job (`UploadJob::resume`)
//!   first asks its old session where the server stands (GET) and continues from there; if
//!   that session is gone it first checks whether the earlier run's upload had in fact been
//!   committed (size, mtime, quickXorHash of the item at the path) before uploading anew, so a
//!   crash between commit and spool cleanup never uploads a file twice.
//! - Stale sessions: a 409 at createUploadSession under conflict `replace`/`rename` is an
//!   earlier session holding the path (`retry::classify_create`): the run first cancels a
//!   recorded stale session it was handed (`Resume::stale`), and otherwise waits for the
//!   unrecorded one to expire (`retry::StaleSessionWait`), in state `retrying` with
//!   `status::STALE_SESSION`, without spending `max_attempts`. A run that ends `failed` with
//!   a session open cancels it (DELETE), so a later retry is not refused by its own session.
//! - The upload URL is never logged: only `UploadSession`'s redacting `Debug` could show it,
//!   and it is not formatted anywhere here. Each failure is logged once (warn) by this file.
//! - Conflict-safe in-place edits: a job with a base eTag (`UploadJob::base_etag`) sends it
//!   as `if-match` on createUploadSession (or the simple PUT). A 412 there — or at the commit,
//!   should a server check it then — means a colleague saved a newer version meanwhile: the
//!   run switches its target to a free `conflict_name` beside the file (checked with a stat,
//!   counter from 2 on) and uploads the same spool content there without `if-match`; nothing
//!   is overwritten. The registry entry gets `conflict_copy` and a note naming both files; the
//!   committed item (under the copy's name) goes to the listener, which tells the two apart
//!   (`upload::conflict_copy_of`).
//! - Throttling (429/503) never counts toward the give-up bound (`JobRun::throttled`); the
//!   mount-wide limiter (`limiter.rs`) sits inside `ctx.remote` and paces every request.
//! - The final fragment (field reference entry 12): after a failure of the final PUT that does
//!   not say the bytes were refused, the item at the path is looked at before anything is sent
//!   again; a session that then reports `[]` without committing is asked once more, then
//!   cancelled (after the look) and the file uploaded in a new one (`worker/commit.rs`). A
//!   missing hash (entry 14) is never a reason to upload again: `pending_ops` checks it later.
//! - A big file is checked against the drive's quota before its session is created (entry
//!   13, `quota.rs`); a committed file the library keeps checked out is checked in (entry 21).
//! - Child modules: `waits` (throttling, locked files, stale sessions: the waits that spend
//!   no attempts), `commit` (finding a committed item, verification, check-in) and
//!   `fragment` (one fragment PUT: its size, its streamed body, its timing).

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::chunk::ChunkPlan;
use super::clock::{Clock, Interrupt};
use super::registry::StatusRegistry;
use super::retry::{classify, counts_toward_give_up, Decision, Op, RetryPolicy, StaleSessionWait};
use super::status::sanitize_error;
use super::throttle::Throttle;
use super::{FileHasher, JobStore, UploadJob};
use crate::remote::{ByteRange, Conflict, FragmentOutcome, Remote, RemoteError, RemoteItem};

mod commit;
mod fragment;
mod waits;

use commit::NothingExpected;
pub use waits::LOCKED_RETRY_MAX;

/// How often a worker paused for sign-in checks whether `login` has happened.
const SIGN_IN_POLL: Duration = Duration::from_secs(1);

/// Conflict names tried for one job (`… 013000).docx`, `… 013000 2).docx`, …): more copies
/// of one file in the same second than this is not a conflict, it is a loop.
const MAX_CONFLICT_NAMES: u32 = 100;

/// A 412 (if-match failed) for a job that sent one: the file changed on the server.
fn is_changed_meanwhile(err: &RemoteError, if_match: Option<&str>) -> bool {
    if_match.is_some() && matches!(err, RemoteError::PreconditionFailed(_))
}

/// Everything workers share: the remote, the policy and the shared state they report to.
pub struct UploadContext {
    pub remote: Arc<dyn Remote>,
    pub clock: Arc<dyn Clock>,
    pub throttle: Throttle,
    /// Folders made through the mount, created on the server before their files.
    pub folders: Arc<super::folders::FolderPlan>,
    pub registry: StatusRegistry,
    pub policy: RetryPolicy,
    /// How long a path held by an earlier session is waited for.
    pub stale_wait: StaleSessionWait,
    /// How long a file SharePoint reports locked (423) is retried before the job fails.
    pub locked_wait: Duration,
    /// The big-file lane's plan: `chunk_size`, the start (or fixed) fragment size.
    pub plan: ChunkPlan,
    /// The mount's current fragment size (`fragment_size.rs`).
    pub fragments: super::fragment_size::FragmentSizes,
    /// Every fragment body's bytes pass it (the mount-wide bandwidth limit's hook).
    pub pace: Arc<dyn super::byte_pace::BytePace>,
    /// The remote's sign-in state (`remote::hints`).
    pub sign_in: Arc<dyn crate::remote::hints::SignIn>,
    /// SharePoint enriches Office and PDF files after upload (`enrichment.rs`).
    pub enriches_files: bool,
    pub conflict: Conflict,
    pub hasher: FileHasher,
    /// Wait before asking again for a hash the server had not computed yet.
    pub hash_recheck_delay: Duration,
    /// Where progress is persisted (spool records).
    pub store: Arc<dyn JobStore>,
    /// Remote work finished later: deletes of locked files, late hash checks.
    pub ops: Arc<super::pending_ops::PendingOps>,
    /// The drive's quota, read before big uploads (`quota.rs`).
    pub quota: super::quota::QuotaGuard,
    /// The queue is shutting down: interrupted jobs keep their sessions.
    pub stopping: AtomicBool,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Committed and hash-checked (or the server had no hash to check).
    Done(RemoteItem),
    /// Given up, with the reason shown in `.status` and told to the listener.
    Failed(String),
    /// Stopped by cancel or shutdown before the commit.
    Stopped,
}

/// Why the driving loop ended early.
enum Stop {
    Failed(String),
    Interrupted,
}

/// One worker's resources. No fragment buffer: bodies stream from the spool file.
pub struct Uploader {
    /// The lane's plan: the mount's (`ctx.plan`, sized to the link) for the big-file lane,
    /// one fragment per file for the small-file lane.
    lane: ChunkPlan,
    rng: StdRng,
}

impl Uploader {
    pub fn new(lane: ChunkPlan) -> Self {
        Uploader {
            lane,
            rng: StdRng::from_entropy(),
        }
    }

    /// Drive `job` (status entry `id`) to its end.
    pub fn run(
        &mut self,
        ctx: &UploadContext,
        id: u64,
        job: &UploadJob,
        interrupt: &Interrupt,
    ) -> JobEnd {
        let started = ctx.clock.now();
        ctx.registry.started(id, started, ctx.clock.wall(), 1);
        ctx.store.starting(job);
        // Folders made through the mount are created (once, outermost first) before the
        // file's first request; a failure here falls back to the 404 rule below.
        if let Err(e) = ctx.folders.ensure_parents(&*ctx.remote, &job.remote_path) {
            debug!("{}: parent folders not created yet: {e}", job.remote_path);
        }
        let mut run = JobRun {
            ctx,
            id,
            job,
            target: job.remote_path.clone(),
            if_match: job.base_etag.clone(),
            interrupt,
            attempts: 1,
            failures_in_row: 0,
            parents_created: false,
            stalled: 1,
            best_acked: 0,
            stale_since: None,
            stale_refusals: 0,
            locked_since: None,
            locked_refusals: 0,
            empty_ranges: 0,
            lane: self.lane,
            early_hash: None,
            rng: &mut self.rng,
        };
        let result = if job.size == 0 {
            run.upload_empty()
        } else {
            run.upload_session()
        };
        match result {
            Ok(item) => {
                let secs = ctx
                    .clock
                    .now()
                    .saturating_duration_since(started)
                    .as_secs_f64();
                let mbps = if secs > 0.0 {
                    job.size as f64 / secs / 1_000_000.0
                } else {
                    0.0
                };
                info!(
                    "uploaded {} ({} bytes) in {secs:.1} s, {mbps:.2} MB/s",
                    job.remote_path, job.size
                );
                JobEnd::Done(item)
            }
            Err(Stop::Failed(reason)) => {
                warn!("upload of {} failed: {reason}", job.remote_path);
                JobEnd::Failed(reason)
            }
            Err(Stop::Interrupted) => {
                debug!("upload of {} stopped", job.remote_path);
                JobEnd::Stopped
            }
        }
    }
}

/// The state of one job's run.
struct JobRun<'a> {
    ctx: &'a UploadContext,
    id: u64,
    job: &'a UploadJob,
    /// Where the content goes: the job's path, or its conflict copy's after a 412.
    target: String,
    /// The eTag sent as `if-match` (the job's base eTag until a conflict copy is chosen).
    if_match: Option<String>,
    interrupt: &'a Interrupt,
    /// Tries started (see `retry.rs`).
    attempts: u32,
    /// Failures since the last request that got through: the backoff exponent.
    failures_in_row: u32,
    /// Missing parent folders were created once already for this run.
    parents_created: bool,
    /// Tries since the server last acknowledged new bytes (the current one counts): the
    /// give-up counter, compared with `max_attempts`.
    stalled: u32,
    /// Most bytes the server has acknowledged in this run.
    best_acked: u64,
    /// When the first of the current run of 409s "an earlier session holds the path" came.
    stale_since: Option<std::time::Instant>,
    /// 409s of that kind in a row (the stale-session wait's exponent).
    stale_refusals: u32,
    /// When the first of the current run of 423 "locked" answers came.
    locked_since: Option<std::time::Instant>,
    /// 423s in a row (the locked wait's backoff exponent).
    locked_refusals: u32,
    /// Times the current session answered "nothing expected" without committing (entry 12).
    empty_ranges: u32,
    /// The uploader's lane plan (see [`Uploader`]).
    lane: ChunkPlan,
    /// A big file's spool hash, computed beside the upload (`commit.rs`).
    early_hash: Option<std::thread::JoinHandle<std::io::Result<String>>>,
    rng: &'a mut StdRng,
}

impl JobRun<'_> {
    fn path(&self) -> &str {
        &self.target
    }

    /// The file changed on the server since it was read (412 on `if-match`): from now on the
    /// run uploads to a free conflict name beside it, without `if-match`.
    fn save_as_conflict(&mut self) -> Result<(), Stop> {
        let original = self.job.remote_path.clone();
        let (parent, name) = match original.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, original.as_str()),
        };
        let when = self.ctx.clock.wall();
        let remote = Arc::clone(&self.ctx.remote);
        let mut n = 1;
        let copy = loop {
            let leaf = super::conflict_name::conflict_name_nth(name, when, n);
            let candidate = match parent {
                Some(p) => format!("{p}/{leaf}"),
                None => leaf,
            };
            self.ready()?;
            match remote.stat(&candidate) {
                Ok(None) => break candidate,
                Ok(Some(_)) if n < MAX_CONFLICT_NAMES => n += 1,
                Ok(Some(_)) => {
                    return Err(Stop::Failed(format!(
                        "changed in SharePoint meanwhile, and {MAX_CONFLICT_NAMES} conflict \
                         names are taken"
                    )))
                }
                Err(e) => {
                    self.on_failure(Op::Lookup, &e)?;
                }
            }
        };
        info!("{original}: changed in SharePoint since it was read here; saving this version as {copy}");
        self.ctx.registry.conflict_copy(self.id, &copy);
        self.target = copy;
        self.if_match = None;
        self.parents_created = false;
        Ok(())
    }

    /// Check the interrupt, pass the throttle gate, and wait while sign-in is needed.
    fn ready(&self) -> Result<(), Stop> {
        if self.interrupt.is_set() || !self.ctx.throttle.wait(&*self.ctx.clock, self.interrupt) {
            return Err(Stop::Interrupted);
        }
        self.wait_for_sign_in()
    }

    /// The sign-in gate: while the remote needs the user to sign in again (`shareuplift
    /// login`), every worker waits here, polling the cheap `SignIn::needed` check.
    fn wait_for_sign_in(&self) -> Result<(), Stop> {
        while self.ctx.sign_in.needed().is_some() {
            if !self.ctx.clock.sleep(SIGN_IN_POLL, self.interrupt) {
                return Err(Stop::Interrupted);
            }
        }
        Ok(())
    }

    fn succeeded(&mut self) {
        self.failures_in_row = 0;
        self.locked_since = None;
        self.locked_refusals = 0;
        self.ctx.throttle.note_success();
    }

    /// Apply the retry policy to a failed request: fail, or count an attempt and wait as the
    /// decision says. Returns the decision when the request is to be retried.
    fn on_failure(&mut self, op: Op, err: &RemoteError) -> Result<Decision, Stop> {
        if matches!(err, RemoteError::Auth(_)) && self.ctx.sign_in.pauses() {
            // The mount's sign-in, not this job: no attempt is spent; `ready` waits at the
            // sign-in gate before the retry.
            let reason = sanitize_error(&err.to_string());
            debug!("{}: {op:?} waits for sign-in: {reason}", self.path());
            self.ctx.registry.retrying(self.id, self.attempts, &reason);
            return Ok(Decision::RetryNow);
        }
        if self.interrupt.is_set() {
            // Cancel or shutdown (the limiter refuses new requests then): not a failure.
            return Err(Stop::Interrupted);
        }
        let decision = classify(op, err);
        if decision == Decision::Locked {
            return self.wait_locked(err);
        }
        if let RemoteError::NameClash(_) = err {
            let reason = super::name_clash::clash_reason(&*self.ctx.remote, self.path());
            return Err(Stop::Failed(sanitize_error(&reason)));
        }
        // Remote errors carry no secrets by contract; sanitise anyway (one line, no URLs).
        let reason = sanitize_error(&err.to_string());
        if decision == Decision::Fail {
            return Err(Stop::Failed(reason));
        }
        if !counts_toward_give_up(decision) {
            if let Decision::Throttle(retry_after) = decision {
                return Ok(self.throttled(op, retry_after, &reason));
            }
        }
        if self.stalled >= self.ctx.policy.max_attempts {
            return Err(Stop::Failed(format!(
                "{reason} (gave up after {} attempts without progress)",
                self.stalled
            )));
        }
        self.stalled += 1;
        self.attempts += 1;
        self.failures_in_row += 1;
        self.ctx.registry.retrying(self.id, self.attempts, &reason);
        debug!(
            "{}: {op:?} failed: {reason}; {decision:?} (attempt {}/{})",
            self.path(),
            self.attempts,
            self.ctx.policy.max_attempts
        );
        match decision {
            Decision::Backoff => {
                let d = self.ctx.policy.backoff(self.failures_in_row, self.rng);
                self.ctx.clock.sleep(d, self.interrupt);
            }
            Decision::RetryNow
            | Decision::Throttle(_)
            | Decision::NewSession
            | Decision::StaleSession
            | Decision::Locked
            | Decision::Fail => {}
        }
        Ok(decision)
    }

    /// Cancel a recorded session this run will not use (best effort: it may be gone).
    fn cancel_stale(&self) {
        let Some(stale) = self.job.resume.as_ref().and_then(|r| r.stale.as_ref()) else {
            return;
        };
        match self.ctx.remote.cancel_upload(stale) {
            Ok(()) => info!("{}: cancelled the earlier upload session", self.path()),
            Err(e) => debug!("{}: cancelling the earlier session: {e}", self.path()),
        }
    }

    fn persist_session(&self, session: Option<&crate::remote::UploadSession>) {
        self.ctx.store.session(self.job, session);
    }

    /// Acknowledged bytes and the session's latest expiry (it slides with every 202).
    fn persist_acked(&self, bytes: u64, expires: Option<std::time::SystemTime>) {
        self.ctx.store.acked_until(self.job, bytes, expires);
    }

    fn progress(&mut self, uploaded: u64) {
        if uploaded > self.best_acked {
            self.best_acked = uploaded;
            self.stalled = 1;
        }
        self.ctx
            .registry
            .progress(self.id, self.ctx.clock.now(), uploaded);
    }

    /// Open the spool file and check it still has the job's size.
    fn open_spool(&self) -> Result<File, Stop> {
        let file = File::open(&self.job.spool_file).map_err(|e| {
            Stop::Failed(format!(
                "cannot open spool file {}: {e}",
                self.job.spool_file.display()
            ))
        })?;
        let len = file
            .metadata()
            .map_err(|e| Stop::Failed(format!("cannot stat spool file: {e}")))?
            .len();
        if len != self.job.size {
            return Err(Stop::Failed(format!(
                "spool file changed: {len} bytes, expected {}",
                self.job.size
            )));
        }
        Ok(file)
    }

    /// A 404 at creation means a parent folder is missing (deleted on the server, or never
    /// created): create the ancestors once, then let the caller retry. Returns whether it did.
    fn create_parents_once(&mut self, e: &RemoteError) -> bool {
        if !matches!(e, RemoteError::NotFound(_)) || self.parents_created {
            return false;
        }
        self.parents_created = true;
        let path = self.path().to_string();
        let dirs = crate::remote::ancestors(&path);
        if dirs.is_empty() {
            return false; // directly in the mount folder: nothing to create
        }
        for dir in dirs {
            if let Err(err) = self.ctx.remote.mkdir(dir) {
                warn!("{path}: cannot create folder {dir}: {err}");
                return false;
            }
        }
        info!("{path}: created missing parent folders");
        true
    }

    /// Zero-byte files cannot use a session: simple PUT, then the mtime.
    fn upload_empty(&mut self) -> Result<RemoteItem, Stop> {
        self.open_spool()?;
        let remote = Arc::clone(&self.ctx.remote);
        loop {
            self.ready()?;
            let if_match = self.if_match.clone();
            match remote.upload_small(self.path(), &[], self.ctx.conflict, if_match.as_deref()) {
                Ok(_) => break,
                Err(e) if is_changed_meanwhile(&e, if_match.as_deref()) => {
                    self.save_as_conflict()?;
                }
                Err(e) => {
                    if !self.create_parents_once(&e) {
                        self.on_failure(Op::Create, &e)?;
                    }
                }
            }
        }
        self.succeeded();
        // The simple PUT cannot carry fileSystemInfo: set the mtime afterwards.
        let item = loop {
            self.ready()?;
            match remote.set_mtime(self.path(), self.job.mtime) {
                Ok(item) => break item,
                Err(e) => {
                    self.on_failure(Op::Lookup, &e)?;
                }
            }
        };
        self.finish(item)
    }

    /// createUploadSession, fragments, commit, verification.
    fn upload_session(&mut self) -> Result<RemoteItem, Stop> {
        let file = Arc::new(self.open_spool()?);
        self.start_early_hash();
        let mut session = self.resumable_session();
        if self.job.resume.is_some() && session.is_none() {
            // Recovered without a usable session: the earlier run may have committed it.
            if let Some(item) = self.find_committed() {
                return Ok(item);
            }
        }
        if session.is_none() {
            self.cancel_stale();
            // Entry 13: SharePoint checks the quota only at the final PUT; a big file that
            // cannot fit fails now, with its data kept, instead of after the whole upload.
            let (remote, clock) = (&*self.ctx.remote, &*self.ctx.clock);
            let room = self
                .ctx
                .quota
                .check_room(remote, clock, &self.target, self.job.size);
            room.map_err(Stop::Failed)?;
        }
        let result = self.drive_session(&file, &mut session);
        let stopping = self.ctx.stopping.load(Ordering::SeqCst);
        let drop_session = match &result {
            // Cancelled: do not leave an open session (ODB refuses a second one per path).
            Err(Stop::Interrupted) => !stopping,
            // Failed: a retry starts a new session, which this one would refuse.
            Err(Stop::Failed(_)) => true,
            Ok(_) => false,
        };
        if let (true, Some(s)) = (drop_session, &session) {
            if let Err(e) = self.ctx.remote.cancel_upload(s) {
                debug!("{}: cancelling the upload session failed: {e}", self.path());
            }
            self.persist_session(None);
        }
        let item = result?;
        self.finish(item)
    }

    /// The recovered job's session. The record keeps the `expirationDateTime` of the latest
    /// 202 (it slides forward with every fragment, reference §2), so a session that is still
    /// alive is resumed. Even a passed expiry is not trusted to discard it (clock skew, or the
    /// answer carrying the newer expiry was lost): dropping a live session would leave it
    /// holding the path (409 for a new one until it idles out); a status GET answers 404 if it
    /// has expired.
    fn resumable_session(&self) -> Option<crate::remote::UploadSession> {
        let s = self.job.resume.as_ref()?.session.clone()?;
        if s.expires.is_some_and(|t| t <= self.ctx.clock.wall()) {
            debug!(
                "{}: the recorded session expiry has passed; asking the server",
                self.path()
            );
        }
        Some(s)
    }

    fn drive_session(
        &mut self,
        file: &Arc<File>,
        session: &mut Option<crate::remote::UploadSession>,
    ) -> Result<RemoteItem, Stop> {
        let remote = Arc::clone(&self.ctx.remote);
        let size = self.job.size;
        let mut expected: Vec<ByteRange> = Vec::new();
        // A resumed session: ask the server where it stands before sending anything.
        let mut resync = session.is_some();
        // A PUT carrying the last byte was sent in this session (or, for a resumed session,
        // may have been sent by the earlier run).
        let mut sent_final = session.is_some();
        loop {
            self.ready()?;
            let Some(sess) = session.as_ref() else {
                match remote.create_upload_session(
                    self.path(),
                    size,
                    self.job.mtime,
                    self.ctx.conflict,
                    self.if_match.as_deref(),
                ) {
                    Ok(s) => {
                        self.succeeded();
                        self.stale_since = None;
                        self.stale_refusals = 0;
                        // The session exists on the server from the moment it answered; it is
                        // ours to resume or cancel only once its URL is on disk. `persist_session`
                        // writes and fsyncs the record (and directory) before the first fragment
                        // is read. The remaining window — the server has created the session,
                        // the record with its URL is not yet renamed into place — is the
                        // response in flight plus one small record write. It cannot be smaller:
                        // the URL exists only in this answer (Graph has no way to list or look
                        // up a path's upload sessions), so nothing can be persisted earlier
                        // than the answer itself. A crash inside it leaves an unrecorded session;
                        // the record's `may_hold_session` (set before the request, in
                        // `JobStore::starting`) tells recovery so, and a 409 then waits for it
                        // to expire (`wait_stale_session`).
                        self.persist_session(Some(&s));
                        *session = Some(s);
                        expected = vec![ByteRange {
                            start: 0,
                            end: None,
                        }];
                        resync = false;
                        sent_final = false;
                        self.empty_ranges = 0;
                        self.progress(0);
                    }
                    Err(e) => {
                        if !self.create_parents_once(&e) {
                            self.create_failed(&e)?;
                        }
                    }
                }
                continue;
            };
            if resync {
                match remote.upload_status(sess) {
                    Ok(ranges) if ranges.is_empty() && sent_final => {
                        // Entry 12: nothing expected, yet no commit came back.
                        self.succeeded();
                        match self.nothing_expected(sess)? {
                            NothingExpected::Committed(item) => return Ok(item),
                            NothingExpected::AskAgain => {}
                            NothingExpected::Abandoned => {
                                *session = None;
                                self.persist_session(None);
                                self.progress(0);
                                resync = false;
                            }
                        }
                    }
                    Ok(ranges) => {
                        self.succeeded();
                        debug!("{}: server expects {ranges:?}", self.path());
                        let at = ranges.first().map_or(size, |r| r.start.min(size));
                        if self.best_acked == 0 && at > 0 {
                            info!("{}: resuming at byte {at} of {size}", self.path());
                        }
                        self.progress(at);
                        expected = ranges;
                        resync = false;
                    }
                    Err(e) => {
                        if self.on_failure(Op::Status, &e)? == Decision::NewSession {
                            *session = None;
                            self.persist_session(None);
                            if sent_final {
                                if let Some(item) = self.find_committed() {
                                    return Ok(item);
                                }
                            }
                        }
                    }
                }
                continue;
            }
            let fragment = match self.plan_fragment(&expected) {
                Ok(f) => f,
                Err(plan_err) => {
                    let err = RemoteError::Protocol(plan_err.to_string());
                    self.on_failure(Op::Fragment, &err)?;
                    resync = true;
                    continue;
                }
            };
            let range = format!(
                "{}-{}/{size}",
                fragment.offset,
                fragment.offset + fragment.len - 1
            );
            let final_put = fragment.offset + fragment.len == size;
            sent_final |= final_put;
            match self.send_fragment(file, sess, fragment)? {
                Ok(FragmentOutcome::Accepted {
                    next_expected,
                    expires,
                }) => {
                    self.succeeded();
                    debug!("{}: bytes {range} accepted", self.path());
                    let at = next_expected.first().map_or(size, |r| r.start.min(size));
                    self.progress(at);
                    self.persist_acked(at, expires);
                    expected = next_expected;
                }
                Ok(FragmentOutcome::Completed(item)) => {
                    self.succeeded();
                    debug!("{}: bytes {range} committed", self.path());
                    self.progress(size);
                    return match item {
                        Some(item) => Ok(item),
                        None => self.lookup(),
                    };
                }
                Err(e) if is_changed_meanwhile(&e, self.if_match.as_deref()) => {
                    // Refused at the commit: drop this session, start over as the copy.
                    debug!("{}: bytes {range} refused: {e}", self.path());
                    if let Err(e) = remote.cancel_upload(sess) {
                        debug!("{}: cancelling the upload session: {e}", self.path());
                    }
                    *session = None;
                    self.persist_session(None);
                    self.progress(0);
                    self.save_as_conflict()?;
                }
                Err(e) => {
                    debug!("{}: bytes {range} failed: {e}", self.path());
                    // Entry 12: a final PUT whose answer failed may have committed the file.
                    let ambiguous = matches!(
                        e,
                        RemoteError::Transport(_)
                            | RemoteError::Server { .. }
                            | RemoteError::Protocol(_)
                    );
                    if final_put && ambiguous {
                        if let Some(item) = self.committed_after_failed_final() {
                            return Ok(item);
                        }
                    }
                    match self.on_failure(Op::Fragment, &e)? {
                        Decision::NewSession => {
                            *session = None;
                            self.persist_session(None);
                            if sent_final {
                                if let Some(item) = self.find_committed() {
                                    return Ok(item);
                                }
                            }
                            self.progress(0);
                        }
                        _ => resync = true,
                    }
                }
            }
        }
    }
}
