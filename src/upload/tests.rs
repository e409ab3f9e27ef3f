//! Tests of the queue and the session driver together, against `MemoryRemote` behind
//! `FaultyRemote` (the rules and the faults) and, where waits matter, the manual clock. One
//! test per retry path.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::chunk::ChunkPlan;
use super::clock::{Clock, Interrupt, ManualClock, SystemClock};
use super::registry::StatusRegistry;
use super::retry::RetryPolicy;
use super::status::UploadState;
use super::throttle::Throttle;
use super::worker::{JobEnd, UploadContext, Uploader};
use super::*;
use crate::protocol::FRAGMENT_UNIT as K;
use crate::remote::faults::{Fault, FaultyRemote};
use crate::remote::memory::{stand_in_file_hash, stand_in_hash, Call, MemoryRemote};

/// The remote of these tests: the in-memory drive behind the fault wrapper.
type TestRemote = FaultyRemote<MemoryRemote>;
use crate::remote::{Remote, RemoteError};

type Event = (String, Result<RemoteItem, String>, bool);

/// Records listener calls and whether the spool file still existed at that moment.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl UploadListener for Recorder {
    fn finished(&self, job: &UploadJob, outcome: Result<&RemoteItem, &str>) {
        self.events.lock().unwrap().push((
            job.remote_path.clone(),
            outcome.cloned().map_err(str::to_string),
            job.spool_file.exists(),
        ));
    }
}

/// The spool's part for these tests: a released job's spool file is deleted, so the tests can
/// check when the queue lets go of a file. Records nothing else.
struct RemovingStore;

impl JobStore for RemovingStore {
    fn starting(&self, _: &UploadJob) {}
    fn session(&self, _: &UploadJob, _: Option<&crate::remote::UploadSession>) {}
    fn acked(&self, _: &UploadJob, _: u64) {}
    fn failed(&self, _: &UploadJob, _: &str) {}
    fn requeued(&self, _: &UploadJob) {}
    fn amended(&self, _: &UploadJob) {}
    fn released(&self, job: &UploadJob, _: Release) {
        let _ = std::fs::remove_file(&job.spool_file);
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

struct Harness {
    dir: tempfile::TempDir,
    remote: Arc<TestRemote>,
    clock: Arc<ManualClock>,
    listener: Arc<Recorder>,
    queue: UploadQueue,
}

fn config(clock: Arc<dyn Clock>) -> QueueConfig {
    let mut c = QueueConfig::new(Arc::new(stand_in_file_hash), Arc::new(RemovingStore));
    c.workers = 1;
    c.chunk_size = K;
    c.max_attempts = 5;
    c.clock = clock;
    c
}

fn harness_with(tweak: impl FnOnce(&mut QueueConfig)) -> Harness {
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_296_000),
    ));
    let remote = Arc::new(TestRemote::default());
    let listener = Arc::new(Recorder::default());
    let mut c = config(clock.clone());
    tweak(&mut c);
    let queue = UploadQueue::start(remote.clone(), c, listener.clone());
    Harness {
        dir: tempfile::tempdir().unwrap(),
        remote,
        clock,
        listener,
        queue,
    }
}

fn harness() -> Harness {
    harness_with(|_| {})
}

fn bytes(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl Harness {
    fn job(&self, path: &str, name: &str, data: &[u8]) -> UploadJob {
        let spool_file = self.dir.path().join(name);
        std::fs::write(&spool_file, data).unwrap();
        UploadJob {
            remote_path: path.into(),
            spool_file,
            size: data.len() as u64,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            resume: None,
            base_etag: None,
        }
    }

    fn idle(&self) {
        assert!(
            self.queue.wait_idle(Duration::from_secs(20)),
            "queue not idle"
        );
    }

    fn fragments(&self) -> Vec<(u64, u64)> {
        self.remote
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Fragment { offset, len, .. } => Some((offset, len)),
                _ => None,
            })
            .collect()
    }

    fn count(&self, pred: impl Fn(&Call) -> bool) -> usize {
        self.remote.calls().iter().filter(|c| pred(c)).count()
    }

    fn creates(&self) -> usize {
        self.count(|c| matches!(c, Call::Create { .. }))
    }
}

fn transport() -> RemoteError {
    RemoteError::Transport("connection reset".into())
}

#[test]
fn happy_path_multi_fragment() {
    let h = harness();
    let data = bytes(3 * K + K / 2, 1);
    let job = h.job("big.bin", "s1", &data);
    let spool = job.spool_file.clone();
    h.queue.submit(job);
    h.idle();
    assert_eq!(h.remote.content("big.bin"), Some(data.clone()));
    assert_eq!(
        h.fragments(),
        vec![(0, K), (K, K), (2 * K, K), (3 * K, K / 2)]
    );
    let events = h.listener.events();
    assert_eq!(events.len(), 1);
    let (path, outcome, spool_existed) = &events[0];
    assert_eq!(path, "big.bin");
    assert_eq!(
        outcome.as_ref().unwrap().quick_xor_hash,
        Some(stand_in_hash(&data))
    );
    assert!(
        spool_existed,
        "listener must run before the spool file is removed"
    );
    assert!(!spool.exists());
    assert!(h.clock.sleeps().is_empty());
    let snap = h.queue.snapshot();
    assert_eq!(snap.uploads.len(), 1);
    let u = &snap.uploads[0];
    assert_eq!(
        (u.state, u.uploaded, u.size, u.attempts),
        (UploadState::Done, data.len() as u64, data.len() as u64, 1)
    );
    assert!(h.remote.violations().is_empty());
    assert_eq!(h.remote.open_sessions(), 0);
}

#[test]
fn resumes_from_unaligned_first_expected_byte() {
    let h = harness();
    let data = bytes(3 * K, 3);
    // The very first PUT is accepted for 1000 bytes and then cut off.
    h.remote.push_fragment_fault(Fault::PartialThenFail {
        accept: 1000,
        err: transport(),
    });
    h.queue.submit(h.job("f.bin", "s", &data));
    h.idle();
    assert_eq!(h.remote.content("f.bin"), Some(data));
    assert_eq!(
        h.fragments(),
        vec![(0, K), (1000, K), (1000 + K, K), (1000 + 2 * K, K - 1000)]
    );
    assert_eq!(h.count(|c| matches!(c, Call::Status { .. })), 1);
    assert_eq!(h.creates(), 1);
    // One backoff after a connection error, within the first ceiling (1 s).
    let sleeps = h.clock.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!(sleeps[0] < Duration::from_secs(1));
    assert_eq!(h.queue.snapshot().uploads[0].attempts, 2);
}

#[test]
fn range_not_satisfiable_resyncs_without_backoff() {
    let h = harness();
    let data = bytes(2 * K, 4);
    h.remote
        .push_fragment_fault(Fault::Fail(RemoteError::RangeNotSatisfiable(
            "fragmentOverlap".into(),
        )));
    h.queue.submit(h.job("f.bin", "s", &data));
    h.idle();
    assert_eq!(h.remote.content("f.bin"), Some(data));
    assert_eq!(h.count(|c| matches!(c, Call::Status { .. })), 1);
    assert!(h.clock.sleeps().is_empty());
}

#[test]
fn retry_after_closes_the_gate() {
    let h = harness();
    let data = bytes(2 * K, 5);
    h.remote
        .push_fragment_fault(Fault::Fail(RemoteError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(41)),
        }));
    h.remote
        .push_fragment_fault(Fault::Fail(RemoteError::Throttled {
            status: 503,
            retry_after: None,
        }));
    h.queue.submit(h.job("f.bin", "s", &data));
    h.idle();
    assert_eq!(h.remote.content("f.bin"), Some(data));
    let sleeps = h.clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_secs(41));
    // Then 503 without Retry-After: a pause, and the limiter's pacing at the rate it
    // measured (`limiter.rs`): seconds, not another Retry-After's worth.
    let rest: Duration = sleeps[1..].iter().sum();
    assert!(rest < Duration::from_secs(20), "{sleeps:?}");
    assert_eq!(h.queue.snapshot().uploads[0].attempts, 3);
}

#[test]
fn throttling_pauses_every_worker() {
    let remote = Arc::new(TestRemote::default());
    remote.set_fragment_delay(Duration::from_millis(10));
    let listener = Arc::new(Recorder::default());
    let mut c = config(Arc::new(SystemClock));
    c.workers = 2;
    let queue = UploadQueue::start(remote.clone(), c, listener.clone());
    let dir = tempfile::tempdir().unwrap();
    let ra = Duration::from_millis(800);
    remote.push_fragment_fault(Fault::Fail(RemoteError::Throttled {
        status: 429,
        retry_after: Some(ra),
    }));
    for name in ["a.bin", "b.bin"] {
        let data = bytes(12 * K, 6);
        let spool_file = dir.path().join(name);
        std::fs::write(&spool_file, &data).unwrap();
        queue.submit(UploadJob {
            remote_path: name.into(),
            spool_file,
            size: data.len() as u64,
            mtime: SystemTime::UNIX_EPOCH,
            resume: None,
            base_etag: None,
        });
    }
    std::thread::sleep(Duration::from_millis(150));
    let snap = queue.snapshot();
    assert!(
        snap.throttled_until.is_some(),
        "status shows the throttling"
    );
    assert!(snap.render_table().contains("throttled until"));
    assert!(queue.wait_idle(Duration::from_secs(20)));
    let starts: Vec<Instant> = remote
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Fragment { at, .. } => Some(at),
            _ => None,
        })
        .collect();
    let first = *starts.iter().min().unwrap();
    // The gate closed ~10 ms after the first PUT started, for 400 ms: no PUT of either
    // worker may start in the middle of that window.
    let window = (
        first + Duration::from_millis(60),
        first + Duration::from_millis(380),
    );
    let inside: Vec<_> = starts
        .iter()
        .filter(|t| **t > window.0 && **t < window.1)
        .collect();
    assert!(
        inside.is_empty(),
        "{} PUTs during the throttle window",
        inside.len()
    );
    assert_eq!(
        remote.content("a.bin").map(|d| d.len() as u64),
        Some(12 * K)
    );
    assert_eq!(
        remote.content("b.bin").map(|d| d.len() as u64),
        Some(12 * K)
    );
    assert!(remote.violations().is_empty());
    queue.shutdown();
}

#[test]
fn session_gone_404_starts_a_new_session() {
    let data = bytes(3 * K, 7);
    for err in [
        RemoteError::NotFound("uploadSessionNotFound".into()),
        RemoteError::Unauthorized("expiredToken".into()),
    ] {
        let h = harness();
        h.remote
            .push_fragment_fault(Fault::KillSession(err.clone()));
        h.queue.submit(h.job("f.bin", "s", &data));
        h.idle();
        assert_eq!(h.remote.content("f.bin"), Some(data.clone()), "{err:?}");
        assert_eq!(h.creates(), 2, "{err:?}");
        // Starts again from byte 0 in the new session.
        assert_eq!(
            h.fragments(),
            vec![(0, K), (0, K), (K, K), (2 * K, K)],
            "{err:?}"
        );
        assert!(h.clock.sleeps().is_empty());
    }
}

#[test]
fn permanent_errors_fail_without_retries() {
    for (err, needle) in [
        (
            RemoteError::QuotaExceeded("quotaLimitReached".into()),
            "quota exceeded",
        ),
        (
            RemoteError::Forbidden("accessDenied".into()),
            "access denied",
        ),
        (
            // A specific 400 (a plain `invalidRequest` is load at creation, entry 11).
            RemoteError::Client {
                status: 400,
                code: "nameContainsInvalidCharacters".into(),
                message: "bad name".into(),
            },
            "400",
        ),
    ] {
        let h = harness();
        h.remote.push_create_fault(err.clone());
        let job = h.job("f.bin", "s", &bytes(K, 8));
        let spool = job.spool_file.clone();
        h.queue.submit(job);
        h.idle();
        assert_eq!(h.creates(), 1, "{err:?}");
        assert!(h.clock.sleeps().is_empty());
        let events = h.listener.events();
        let reason = events[0].1.clone().unwrap_err();
        assert!(reason.contains(needle), "{reason}");
        assert!(spool.exists(), "spool kept on failure");
        let u = &h.queue.snapshot().uploads[0];
        assert_eq!(u.state, UploadState::Failed);
        assert_eq!(u.attempts, 1);
        assert_eq!(h.queue.failed_jobs().len(), 1);
    }
}

#[test]
fn conflict_fail_on_existing_item() {
    let h = harness_with(|c| c.conflict = Conflict::Fail);
    h.remote
        .upload_small("f.bin", b"old", Conflict::Replace, None)
        .unwrap();
    h.queue.submit(h.job("f.bin", "s", &bytes(10, 9)));
    h.idle();
    assert_eq!(h.creates(), 1);
    assert!(h.listener.events()[0]
        .1
        .as_ref()
        .unwrap_err()
        .contains("409"));
    assert_eq!(h.remote.content("f.bin"), Some(b"old".to_vec()));
}

#[test]
fn bounded_attempts_then_retry_failed() {
    let h = harness_with(|c| c.max_attempts = 3);
    for _ in 0..5 {
        h.remote.push_fragment_fault(Fault::Fail(transport()));
    }
    let data = bytes(2 * K, 10);
    let job = h.job("f.bin", "s", &data);
    let spool = job.spool_file.clone();
    h.queue.submit(job);
    h.idle();
    let reason = h.listener.events()[0].1.clone().unwrap_err();
    assert_eq!(
        reason,
        "connection error: connection reset (gave up after 3 attempts without progress)"
    );
    assert!(spool.exists());
    // Three tries without progress (the first counts), then it gives up.
    assert_eq!(h.fragments().len(), 3);
    assert_eq!(h.clock.sleeps().len(), 2);
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!((u.state, u.attempts), (UploadState::Failed, 3));
    assert!(u.error.as_deref().unwrap().contains("gave up"));

    // Two faults left: the retried job gets through on its third try.
    assert_eq!(h.queue.retry_failed(Some("F.BIN")), 1);
    h.idle();
    assert_eq!(h.queue.retry_failed(None), 0);
    assert_eq!(h.remote.content("f.bin"), Some(data));
    assert!(!spool.exists());
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!((u.state, u.attempts), (UploadState::Done, 3));
}

#[test]
fn zero_byte_file_uses_simple_put_and_sets_mtime() {
    let h = harness();
    let job = h.job("Empty.txt", "s", b"");
    let spool = job.spool_file.clone();
    h.queue.submit(job);
    h.idle();
    assert_eq!(h.remote.content("empty.txt"), Some(Vec::new()));
    assert_eq!(h.creates(), 0);
    assert_eq!(h.count(|c| matches!(c, Call::Small { .. })), 1);
    assert_eq!(h.count(|c| matches!(c, Call::SetMtime { .. })), 1);
    let item = h.listener.events()[0].1.clone().unwrap();
    assert_eq!(
        item.mtime,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
    assert!(!spool.exists());
}

#[test]
fn cancel_queued_and_uploading() {
    let h = harness();
    h.remote.pause_fragments();
    let a = h.job("a.bin", "a", &bytes(3 * K, 11));
    let b = h.job("b.bin", "b", &bytes(K, 12));
    let (a_spool, b_spool) = (a.spool_file.clone(), b.spool_file.clone());
    h.queue.submit(a);
    h.queue.submit(b);
    while h.remote.fragment_count() < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(h.queue.cancel("b.bin"));
    assert!(!b_spool.exists());
    assert!(h.queue.cancel("A.bin"));
    assert!(!h.queue.cancel("nothing.bin"));
    h.remote.resume_fragments();
    h.idle();
    assert!(!a_spool.exists());
    assert_eq!(h.fragments().len(), 1, "no fragment after the cancel");
    assert_eq!(
        h.count(|c| matches!(c, Call::Cancel { .. })),
        1,
        "session DELETEd"
    );
    assert_eq!(h.remote.open_sessions(), 0);
    assert_eq!(h.remote.content("a.bin"), None);
    assert_eq!(h.remote.content("b.bin"), None);
    assert!(h.listener.events().is_empty());
    assert!(h.queue.snapshot().uploads.is_empty());
}

#[test]
fn newest_content_wins_per_path() {
    let h = harness_with(|c| c.workers = 3);
    h.remote.pause_fragments();
    let v1 = bytes(2 * K, 21);
    let v2 = bytes(2 * K, 22);
    let v3 = bytes(K + 5, 23);
    h.queue.submit(h.job("Docs.bin", "v1", &v1));
    while h.remote.fragment_count() < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let j2 = h.job("docs.bin", "v2", &v2);
    let v2_spool = j2.spool_file.clone();
    h.queue.submit(j2);
    h.queue.submit(h.job("DOCS.bin", "v3", &v3));
    assert!(!v2_spool.exists(), "superseded queued job's spool removed");
    let snap = h.queue.snapshot();
    assert_eq!(snap.totals.uploading, 1);
    assert_eq!(snap.totals.queued, 1);
    // Other workers are free, but the path is busy: nothing else started.
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(h.creates(), 1);
    h.remote.resume_fragments();
    h.idle();
    assert_eq!(h.remote.content("docs.bin"), Some(v3));
    let paths: Vec<String> = h.listener.events().into_iter().map(|e| e.0).collect();
    assert_eq!(paths, vec!["Docs.bin", "DOCS.bin"]);
    assert_eq!(h.creates(), 2);
    assert!(h.remote.violations().is_empty());
}

#[test]
fn hash_checks() {
    // Wrong hash: failed, spool kept.
    let h = harness();
    h.remote.set_wrong_hash(true);
    let job = h.job("f.bin", "s", &bytes(K, 30));
    let spool = job.spool_file.clone();
    h.queue.submit(job);
    h.idle();
    let reason = h.listener.events()[0].1.clone().unwrap_err();
    assert!(reason.starts_with("hash mismatch: local "), "{reason}");
    assert!(spool.exists());
    drop(h);

    // Missing at commit, present a moment later: re-checked after the delay.
    let h = harness();
    h.remote.set_hash_missing(1);
    h.queue.submit(h.job("f.bin", "s", &bytes(K, 31)));
    h.idle();
    assert!(h.listener.events()[0]
        .1
        .as_ref()
        .unwrap()
        .quick_xor_hash
        .is_some());
    assert_eq!(h.clock.sleeps(), vec![Duration::from_secs(2)]);
    drop(h);

    // Never there: accepted (with a warning).
    let h = harness();
    h.remote.set_hash_missing(100);
    h.queue.submit(h.job("f.bin", "s", &bytes(K, 32)));
    h.idle();
    assert!(h.listener.events()[0].1.is_ok());
}

#[test]
fn session_shaped_commit_answer_looks_the_item_up() {
    let h = harness();
    h.remote.set_commit_without_item(1);
    let data = bytes(K + 1, 40);
    h.queue.submit(h.job("f.bin", "s", &data));
    h.idle();
    let item = h.listener.events()[0].1.clone().unwrap();
    assert_eq!(item.size, data.len() as u64);
    assert!(h.count(|c| matches!(c, Call::Stat { .. })) >= 1);
}

#[test]
fn changed_spool_file_fails() {
    let h = harness();
    let mut job = h.job("f.bin", "s", &bytes(K, 50));
    job.size += 1;
    h.queue.submit(job);
    h.idle();
    let reason = h.listener.events()[0].1.clone().unwrap_err();
    assert!(reason.starts_with("spool file changed"), "{reason}");
    assert_eq!(h.creates(), 0);
}

#[test]
fn shutdown_wakes_a_backing_off_worker() {
    let remote = Arc::new(TestRemote::default());
    let listener = Arc::new(Recorder::default());
    let mut c = config(Arc::new(SystemClock));
    c.backoff_base = Duration::from_secs(3600);
    c.backoff_cap = Duration::from_secs(3600);
    let queue = UploadQueue::start(remote.clone(), c, listener.clone());
    let dir = tempfile::tempdir().unwrap();
    let spool_file = dir.path().join("s");
    std::fs::write(&spool_file, bytes(2 * K, 60)).unwrap();
    // Several failures in a row make a long backoff overwhelmingly likely.
    for _ in 0..4 {
        remote.push_create_fault(transport());
    }
    queue.submit(UploadJob {
        remote_path: "f.bin".into(),
        spool_file: spool_file.clone(),
        size: 2 * K,
        mtime: SystemTime::UNIX_EPOCH,
        resume: None,
        base_etag: None,
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    queue.shutdown();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(spool_file.exists(), "interrupted job keeps its spool file");
    assert!(listener.events().is_empty());
    let snap = queue.snapshot();
    assert_eq!(snap.uploads[0].state, UploadState::Queued);
    // After shutdown nothing runs.
    assert!(!queue.wait_idle(Duration::from_millis(50)));
}

/// A context for driving `Uploader` directly, without the queue.
fn direct_context(remote: Arc<TestRemote>, chunk: u64, max_attempts: u32) -> UploadContext {
    UploadContext {
        remote,
        clock: Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)),
        throttle: Throttle::new(),
        folders: Default::default(),
        registry: StatusRegistry::new(Duration::from_secs(60)),
        policy: RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        },
        plan: ChunkPlan::new(chunk),
        fragments: super::fragment_size::FragmentSizes::new(
            super::fragment_size::FragmentSizer::fixed(chunk),
        ),
        pace: super::byte_pace::no_pace(),
        sign_in: Arc::new(crate::remote::hints::NoSignIn),
        enriches_files: false,
        stale_wait: Default::default(),
        locked_wait: Duration::from_secs(3600),
        conflict: Conflict::Replace,
        hasher: Arc::new(stand_in_file_hash),
        hash_recheck_delay: Duration::ZERO,
        ops: Arc::new(super::pending_ops::PendingOps::new(Duration::from_secs(
            600,
        ))),
        quota: Default::default(),
        store: Arc::new(RemovingStore),
        stopping: std::sync::atomic::AtomicBool::new(false),
    }
}

#[test]
fn random_faults_always_converge() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let dir = tempfile::tempdir().unwrap();
    for case in 0..40u8 {
        let remote = Arc::new(TestRemote::default());
        let ctx = direct_context(remote.clone(), K, 1000);
        let size = rng.gen_range(1..5 * K);
        let data = bytes(size, case);
        for _ in 0..rng.gen_range(0..10) {
            let fault = match rng.gen_range(0..6) {
                0 => Fault::Fail(transport()),
                1 => Fault::PartialThenFail {
                    accept: rng.gen_range(0..K + 1),
                    err: transport(),
                },
                2 => Fault::Fail(RemoteError::RangeNotSatisfiable("fragmentOverlap".into())),
                3 => Fault::KillSession(RemoteError::NotFound("uploadSessionNotFound".into())),
                4 => Fault::KillSession(RemoteError::Unauthorized("expiredToken".into())),
                _ => Fault::Fail(RemoteError::Throttled {
                    status: 429,
                    retry_after: None,
                }),
            };
            remote.push_fragment_fault(fault);
        }
        let spool_file = dir.path().join(format!("r{case}"));
        std::fs::write(&spool_file, &data).unwrap();
        let job = UploadJob {
            remote_path: "r.bin".into(),
            spool_file,
            size,
            mtime: SystemTime::UNIX_EPOCH,
            resume: None,
            base_etag: None,
        };
        ctx.registry.queued(1, "r.bin", size);
        let mut uploader = Uploader::new(ctx.plan);
        let end = uploader.run(&ctx, 1, &job, &Interrupt::new());
        assert!(matches!(end, JobEnd::Done(_)), "case {case}: {end:?}");
        assert_eq!(remote.content("r.bin"), Some(data), "case {case}");
        assert!(remote.violations().is_empty());
        assert_eq!(remote.open_sessions(), 0, "case {case}");
    }
}

#[test]
fn one_uploader_runs_jobs_of_every_size() {
    let chunk = 2 * K;
    let remote: Arc<TestRemote> = Arc::new(TestRemote::default());
    let ctx = direct_context(remote.clone(), chunk, 10);
    let mut uploader = Uploader::new(ctx.plan);
    let dir = tempfile::tempdir().unwrap();
    for (i, size) in [1, chunk - 1, chunk, 5 * chunk + 3].into_iter().enumerate() {
        let data = bytes(size, i as u8);
        let spool_file: PathBuf = dir.path().join(format!("s{i}"));
        std::fs::write(&spool_file, &data).unwrap();
        let path = format!("f{i}.bin");
        let job = UploadJob {
            remote_path: path.clone(),
            spool_file,
            size,
            mtime: SystemTime::UNIX_EPOCH,
            resume: None,
            base_etag: None,
        };
        ctx.registry.queued(i as u64, &path, size);
        let end = uploader.run(&ctx, i as u64, &job, &Interrupt::new());
        assert!(matches!(end, JobEnd::Done(_)), "{end:?}");
        assert_eq!(remote.content(&path), Some(data));
    }
}

#[test]
fn status_and_logs_never_show_upload_urls() {
    let h = harness();
    h.remote
        .push_fragment_fault(Fault::Fail(RemoteError::Protocol(
            "body from https://memory.invalid/upload/9?tempauth=secret".into(),
        )));
    h.queue.submit(h.job("f.bin", "s", &bytes(2 * K, 70)));
    h.idle();
    let snap = h.queue.snapshot();
    let table = snap.render_table();
    let json = snap.render_json();
    assert!(!table.contains("tempauth") && !json.contains("tempauth"));
    assert!(table.contains("https://memory.invalid/…"));
}

#[test]
fn a_panicking_listener_does_not_block_the_path() {
    struct Panics;
    impl UploadListener for Panics {
        fn finished(&self, _: &UploadJob, _: Result<&RemoteItem, &str>) {
            panic!("listener bug");
        }
    }
    let remote = Arc::new(TestRemote::default());
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let queue = UploadQueue::start(remote.clone(), config(clock), Arc::new(Panics));
    let dir = tempfile::tempdir().unwrap();
    for (i, content) in [b"one".as_slice(), b"two".as_slice()]
        .into_iter()
        .enumerate()
    {
        let spool_file = dir.path().join(format!("s{i}"));
        std::fs::write(&spool_file, content).unwrap();
        queue.submit(UploadJob {
            remote_path: "p.txt".into(),
            spool_file,
            size: content.len() as u64,
            mtime: SystemTime::UNIX_EPOCH,
            resume: None,
            base_etag: None,
        });
        assert!(queue.wait_idle(Duration::from_secs(20)));
    }
    assert_eq!(remote.content("p.txt"), Some(b"two".to_vec()));
    queue.shutdown();
}

#[test]
fn lost_answer_to_the_final_fragment_is_not_uploaded_twice() {
    let h = harness_with(|c| c.conflict = Conflict::Fail);
    let data = bytes(K + 10, 80);
    h.remote.pause_fragments();
    h.queue.submit(h.job("f.bin", "s", &data));
    while h.remote.fragment_count() < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The final 10 bytes arrive and commit, but the answer is lost.
    h.remote.push_fragment_fault(Fault::PartialThenFail {
        accept: 10,
        err: transport(),
    });
    h.remote.resume_fragments();
    h.idle();
    assert!(
        h.listener.events()[0].1.is_ok(),
        "{:?}",
        h.listener.events()
    );
    assert_eq!(h.creates(), 1);
    assert_eq!(h.remote.content("f.bin"), Some(data));
}

fn stale_409() -> RemoteError {
    RemoteError::Conflict(
        "nameAlreadyExists: Another upload session is already open for this path.".into(),
    )
}

/// Issue 12: with conflict = replace, a 409 at createUploadSession is an earlier session
/// holding the path: `retrying` with the stale-session message, waits that do not count
/// against max_attempts, then success once the stale session is gone.
#[test]
fn stale_session_409_retries_then_succeeds() {
    let h = harness_with(|c| {
        c.max_attempts = 2;
        c.session_idle = Duration::from_secs(100);
    });
    // More refusals than max_attempts: they must not fail the file.
    for _ in 0..6 {
        h.remote.push_create_fault(stale_409());
    }
    let data = bytes(2 * K, 21);
    h.queue.submit(h.job("f.bin", "s", &data));
    h.idle();
    assert_eq!(h.remote.content("f.bin"), Some(data));
    assert_eq!(h.creates(), 7);
    let s = Duration::from_secs;
    assert_eq!(
        h.clock.sleeps(),
        vec![s(2), s(4), s(8), s(16), s(32), s(48)],
        "doubling, capped by the deadline (100 s + 10 s margin)"
    );
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!(u.state, UploadState::Done);
    assert_eq!(u.attempts, 7);
    assert_eq!(u.error.as_deref(), Some(super::status::STALE_SESSION));
}

/// The stale session never goes away: the file fails only after the session's idle
/// lifetime (plus margin) has passed, not after max_attempts.
#[test]
fn stale_session_409_fails_after_the_idle_lifetime() {
    let h = harness_with(|c| {
        c.max_attempts = 2;
        c.session_idle = Duration::from_secs(60);
    });
    for _ in 0..100 {
        h.remote.push_create_fault(stale_409());
    }
    let job = h.job("f.bin", "s", &bytes(K, 22));
    let spool = job.spool_file.clone();
    h.queue.submit(job);
    h.idle();
    let waited: Duration = h.clock.sleeps().iter().sum();
    assert_eq!(waited, Duration::from_secs(66));
    assert!(h.creates() > 2, "{}", h.creates());
    let reason = h.listener.events()[0].1.clone().unwrap_err();
    assert!(reason.contains("409"), "{reason}");
    assert!(
        reason.contains("still held this path after 66 s"),
        "{reason}"
    );
    assert!(spool.exists());
}

/// With conflict = fail a 409 is the name being taken: failed at once, no wait.
#[test]
fn conflict_fail_409_fails_at_once() {
    let h = harness_with(|c| c.conflict = Conflict::Fail);
    h.remote.push_create_fault(stale_409());
    h.queue.submit(h.job("f.bin", "s", &bytes(K, 23)));
    h.idle();
    assert_eq!(h.creates(), 1);
    assert!(h.clock.sleeps().is_empty());
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!((u.state, u.attempts), (UploadState::Failed, 1));
    assert!(u.error.as_deref().unwrap().contains("409"));
}

/// A recovered job whose previous run may have left an unrecorded session says so while it
/// waits; one handed a recorded stale session cancels it before creating a new one.
#[test]
fn recovered_jobs_handle_stale_sessions() {
    let h = harness();
    h.remote.push_create_fault(stale_409());
    let mut job = h.job("a.bin", "a", &bytes(K, 24));
    job.resume = Some(Resume {
        unrecorded_session: true,
        ..Resume::default()
    });
    h.queue.submit(job);
    h.idle();
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!(u.state, UploadState::Done);
    assert_eq!(
        u.error.as_deref(),
        Some(super::status::STALE_UNRECORDED_SESSION)
    );

    let stale = h
        .remote
        .create_upload_session("b.bin", K, SystemTime::UNIX_EPOCH, Conflict::Replace, None)
        .unwrap();
    let mut job = h.job("b.bin", "b", &bytes(K, 25));
    job.resume = Some(Resume {
        stale: Some(stale),
        ..Resume::default()
    });
    h.queue.submit(job);
    h.idle();
    let calls = h.remote.calls();
    let cancel = calls
        .iter()
        .position(|c| matches!(c, Call::Cancel { path } if path == "b.bin"))
        .expect("stale session cancelled");
    let create = calls
        .iter()
        .rposition(|c| matches!(c, Call::Create { .. }))
        .unwrap();
    assert!(cancel < create, "{calls:?}");
}

/// A job that ends failed with a session open cancels it, so a retry is not refused.
#[test]
fn failed_job_cancels_its_session() {
    let h = harness_with(|c| c.max_attempts = 2);
    for _ in 0..3 {
        h.remote.push_fragment_fault(Fault::Fail(transport()));
    }
    h.queue.submit(h.job("f.bin", "s", &bytes(2 * K, 26)));
    h.idle();
    assert_eq!(h.queue.snapshot().uploads[0].state, UploadState::Failed);
    assert_eq!(h.count(|c| matches!(c, Call::Cancel { .. })), 1);
}

/// Issue 9's "sustained throttling burns max_attempts": a job throttled (429 + Retry-After)
/// on far more requests in a row than `max_attempts` still ends done, waiting each window out.
#[test]
fn sustained_throttling_does_not_spend_max_attempts() {
    let remote = Arc::new(TestRemote::default());
    let ctx = direct_context(remote.clone(), K, 3);
    for _ in 0..12 {
        remote.push_fragment_fault(Fault::Fail(RemoteError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(1)),
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(2 * K, 91);
    let spool_file = dir.path().join("t");
    std::fs::write(&spool_file, &data).unwrap();
    let job = UploadJob {
        remote_path: "t.bin".into(),
        spool_file,
        size: data.len() as u64,
        mtime: SystemTime::UNIX_EPOCH,
        resume: None,
        base_etag: None,
    };
    ctx.registry.queued(1, "t.bin", job.size);
    let mut uploader = Uploader::new(ctx.plan);
    let end = uploader.run(&ctx, 1, &job, &Interrupt::new());
    assert!(matches!(end, JobEnd::Done(_)), "{end:?}");
    assert_eq!(remote.content("t.bin"), Some(data));
    // But a permanent non-throttling failure still gives up after max_attempts.
    for _ in 0..12 {
        remote.push_fragment_fault(Fault::Fail(RemoteError::Server {
            status: 500,
            code: "x".into(),
        }));
    }
    let end = uploader.run(&ctx, 1, &job, &Interrupt::new());
    assert!(matches!(end, JobEnd::Failed(_)), "{end:?}");
}

fn locked_423() -> RemoteError {
    RemoteError::Locked("423 resourceLocked".into())
}

#[test]
fn locked_file_is_retried_beyond_max_attempts() {
    let h = harness_with(|c| c.max_attempts = 2);
    for _ in 0..6 {
        h.remote.push_create_fault(locked_423());
    }
    let data = bytes(K, 11);
    h.queue.submit(h.job("held.bin", "s", &data));
    h.idle();
    assert_eq!(h.creates(), 7);
    assert!(
        h.listener.events()[0].1.is_ok(),
        "{:?}",
        h.listener.events()
    );
    assert_eq!(h.remote.content("held.bin"), Some(data));
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!(u.state, UploadState::Done);
    assert_eq!(u.error.as_deref(), Some(super::status::FILE_LOCKED));
    // Six waits, each within the policy's (capped) backoff.
    assert_eq!(h.clock.sleeps().len(), 6);
}

#[test]
fn locked_file_fails_after_locked_wait() {
    let h = harness_with(|c| c.locked_wait = Duration::from_secs(5));
    for _ in 0..1000 {
        h.remote.push_create_fault(locked_423());
    }
    h.queue.submit(h.job("held.bin", "s", &bytes(K, 12)));
    h.idle();
    let reason = h.listener.events()[0].1.clone().unwrap_err();
    assert!(reason.contains("still locked after"), "{reason}");
    let slept: Duration = h.clock.sleeps().iter().sum();
    assert!(slept >= Duration::from_secs(5), "{slept:?}");
    assert!(slept < Duration::from_secs(6), "{slept:?}");
}

/// Conflict-safe in-place edits (issue 9): the job's base eTag goes out as `if-match`.
mod conflicts {
    use super::*;

    /// Seed `path` on the server, then let "a colleague" save a newer version: returns the
    /// eTag of the first (the base our edit was read from).
    fn seed_then_change(h: &Harness, path: &str, changed: bool) -> String {
        let base = h
            .remote
            .upload_small(path, b"server v1", Conflict::Replace, None)
            .unwrap()
            .etag
            .unwrap();
        if changed {
            h.remote
                .upload_small(path, b"colleague v2", Conflict::Replace, None)
                .unwrap();
        }
        base
    }

    fn names(h: &Harness, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = h
            .remote
            .list(dir)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        v.sort();
        v
    }

    /// Two edits of a fetched file within the write-back delay: the second (made from the
    /// spool copy, so without a base of its own) supersedes the first and keeps its base.
    #[test]
    fn a_second_edit_before_the_first_upload_keeps_the_base() {
        let h = harness_with(|c| c.write_back_delay = Duration::from_millis(300));
        h.remote.mkdir("Docs").unwrap();
        let base = seed_then_change(&h, "Docs/report.docx", true);
        h.queue.submit(
            h.job("Docs/report.docx", "s1", &bytes(K, 41))
                .with_base_etag(Some(base)),
        );
        let ours = bytes(K + 7, 42);
        h.queue.submit(h.job("Docs/report.docx", "s2", &ours));
        h.idle();
        assert_eq!(
            h.remote.content("Docs/report.docx"),
            Some(b"colleague v2".to_vec()),
            "the colleague's version is untouched"
        );
        let copy = format!("Docs/{}", conflict_name("report.docx", h.clock.wall()));
        assert_eq!(h.remote.content(&copy), Some(ours));
    }

    #[test]
    fn changed_on_server_is_saved_beside_it() {
        let h = harness();
        h.remote.mkdir("Docs").unwrap();
        let base = seed_then_change(&h, "Docs/report.docx", true);
        let ours = bytes(2 * K + 5, 40);
        let expected = conflict_name("report.docx", h.clock.wall());
        h.queue.submit(
            h.job("Docs/report.docx", "s", &ours)
                .with_base_etag(Some(base)),
        );
        h.idle();
        assert_eq!(
            h.remote.content("Docs/report.docx"),
            Some(b"colleague v2".to_vec()),
            "the colleague's version is untouched"
        );
        let copy = format!("Docs/{expected}");
        assert_eq!(h.remote.content(&copy), Some(ours), "ours is beside it");
        assert_eq!(
            names(&h, "Docs"),
            vec![expected.clone(), "report.docx".to_string()]
        );
        let events = h.listener.events();
        let item = events[0].1.as_ref().unwrap();
        assert_eq!(item.name, expected);
        let job = h
            .job("Docs/report.docx", "t", b"x")
            .with_base_etag(Some("e".into()));
        assert_eq!(conflict_copy_of(&job, item), Some(copy.clone()));
        let u = &h.queue.snapshot().uploads[0];
        assert_eq!(u.state, UploadState::Done);
        assert_eq!(u.path, "Docs/report.docx");
        assert_eq!(u.conflict_copy.as_deref(), Some(copy.as_str()));
        let note = u.note.clone().unwrap();
        assert!(note.starts_with(status::CONFLICT_NOTE), "{note}");
        assert!(note.contains(&expected), "{note}");
        let table = h.queue.snapshot().render_table();
        assert!(
            table.contains("report.docx") && table.contains(&expected),
            "{table}"
        );
    }

    #[test]
    fn unchanged_on_server_is_replaced() {
        let h = harness();
        let base = seed_then_change(&h, "a.txt", false);
        let ours = bytes(K + 1, 41);
        h.queue
            .submit(h.job("a.txt", "s", &ours).with_base_etag(Some(base)));
        h.idle();
        assert_eq!(h.remote.content("a.txt"), Some(ours));
        assert_eq!(names(&h, ""), vec!["a.txt".to_string()]);
        let u = &h.queue.snapshot().uploads[0];
        assert_eq!(u.state, UploadState::Done);
        assert_eq!(u.conflict_copy, None);
        assert_eq!(u.note, None);
        assert_eq!(
            conflict_copy_of(
                &h.job("a.txt", "t", b"x"),
                h.listener.events()[0].1.as_ref().unwrap()
            ),
            None
        );
    }

    #[test]
    fn without_base_etag_a_changed_file_is_replaced() {
        let h = harness();
        seed_then_change(&h, "a.txt", true);
        let ours = bytes(K, 42);
        h.queue.submit(h.job("a.txt", "s", &ours));
        h.idle();
        assert_eq!(h.remote.content("a.txt"), Some(ours));
        assert_eq!(names(&h, "").len(), 1);
    }

    #[test]
    fn a_taken_conflict_name_gets_a_counter() {
        let h = harness();
        let base = seed_then_change(&h, "notes.txt", true);
        let first = conflict_name("notes.txt", h.clock.wall());
        h.remote
            .upload_small(&first, b"earlier copy", Conflict::Replace, None)
            .unwrap();
        let ours = bytes(K, 43);
        h.queue
            .submit(h.job("notes.txt", "s", &ours).with_base_etag(Some(base)));
        h.idle();
        let second = conflict_name::conflict_name_nth("notes.txt", h.clock.wall(), 2);
        assert_eq!(h.remote.content(&second), Some(ours));
        assert_eq!(h.remote.content(&first), Some(b"earlier copy".to_vec()));
        assert_eq!(
            h.remote.content("notes.txt"),
            Some(b"colleague v2".to_vec())
        );
    }

    #[test]
    fn empty_file_uses_the_same_rule() {
        let h = harness();
        let base = seed_then_change(&h, "e.txt", true);
        h.queue
            .submit(h.job("e.txt", "s", b"").with_base_etag(Some(base)));
        h.idle();
        let copy = conflict_name("e.txt", h.clock.wall());
        assert_eq!(h.remote.content(&copy), Some(Vec::new()));
        assert_eq!(h.remote.content("e.txt"), Some(b"colleague v2".to_vec()));
        assert_eq!(h.queue.snapshot().uploads[0].state, UploadState::Done);
    }

    /// Should the server check the precondition at the commit (412 on a fragment), the
    /// session is dropped and the content goes to the copy from byte 0.
    #[test]
    fn precondition_failed_at_commit_also_saves_a_copy() {
        let h = harness();
        let base = seed_then_change(&h, "c.bin", false);
        h.remote
            .push_fragment_fault(Fault::Fail(RemoteError::PreconditionFailed(
                "eTag does not match".into(),
            )));
        let ours = bytes(2 * K, 44);
        h.queue
            .submit(h.job("c.bin", "s", &ours).with_base_etag(Some(base)));
        h.idle();
        let copy = conflict_name("c.bin", h.clock.wall());
        assert_eq!(h.remote.content(&copy), Some(ours));
        assert_eq!(h.remote.content("c.bin"), Some(b"server v1".to_vec()));
        assert_eq!(
            h.remote.open_sessions(),
            0,
            "the refused session was cancelled"
        );
    }
}

// ---- Field behaviour (issue 17; field reference entries 12, 14, 21, 23) ----

/// Wait (real time) until `pred` holds; the queue's own threads do the work.
fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Entry 12: the final PUT's answer is a 503 although the server committed the file: the
/// item is looked at first, and nothing is sent again.
#[test]
fn final_put_failure_that_committed_is_not_sent_again() {
    let h = harness();
    let data = bytes(K, 31);
    h.remote.push_fragment_fault(Fault::PartialThenFail {
        accept: K,
        err: RemoteError::Server {
            status: 503,
            code: "(no error code)".into(),
        },
    });
    h.queue.submit(h.job("c.bin", "s", &data));
    h.idle();
    assert!(
        h.listener.events()[0].1.is_ok(),
        "{:?}",
        h.listener.events()
    );
    assert_eq!(h.creates(), 1);
    assert_eq!(h.fragments().len(), 1, "not sent again");
    assert_eq!(h.count(|c| matches!(c, Call::Status { .. })), 0);
    assert_eq!(h.remote.content("c.bin"), Some(data));
}

/// Entry 14: committed, the answer lost, and the server has no hash yet: size, mtime and
/// the session being gone are the evidence; not uploaded again, noted, checked later.
#[test]
fn missing_hash_is_not_a_reason_to_upload_again() {
    let h = harness();
    let data = bytes(K, 32);
    h.remote.set_hash_missing(100);
    h.remote.push_fragment_fault(Fault::PartialThenFail {
        accept: K,
        err: RemoteError::Transport("connection reset".into()),
    });
    h.queue.submit(h.job("h.bin", "s", &data));
    h.idle();
    assert!(
        h.listener.events()[0].1.is_ok(),
        "{:?}",
        h.listener.events()
    );
    assert_eq!(
        h.creates(),
        1,
        "uploaded again because the hash was missing"
    );
    let u = &h.queue.snapshot().uploads[0];
    assert_eq!(u.state, UploadState::Done);
    assert_eq!(u.note.as_deref(), Some(super::status::HASH_NOT_YET));
}

/// Entry 21: a library that keeps uploads checked out: each upload is checked in.
#[test]
fn checked_out_uploads_are_checked_in() {
    let h = harness();
    h.remote.set_require_checkout(true);
    h.queue.submit(h.job("a.bin", "a", &bytes(K, 1)));
    h.queue.submit(h.job("e.txt", "e", &[]));
    h.idle();
    for p in ["a.bin", "e.txt"] {
        assert!(!h.remote.is_checked_out(p), "{p} still checked out");
    }
    assert_eq!(h.count(|c| matches!(c, Call::Checkin { .. })), 2);
    let snap = h.queue.snapshot();
    assert!(snap
        .uploads
        .iter()
        .all(|u| u.note.as_deref() == Some(super::status::CHECKED_IN)));
}

/// Entry 23: a delete refused because the file is locked waits in the queue (hidden from
/// listings, `retrying` in the status) and is done once the lock is gone; a new upload of
/// the path supersedes a waiting delete.
#[test]
fn locked_delete_waits_and_is_done_after_the_lock() {
    let h = harness();
    h.remote
        .upload_small("held.docx", b"x", Conflict::Replace, None)
        .unwrap();
    for _ in 0..2 {
        h.remote
            .push_delete_fault(RemoteError::Locked("423 resourceLocked".into()));
    }
    h.queue
        .defer_delete("held.docx", &RemoteError::Locked("423".into()));
    assert!(h.queue.hides("HELD.docx"));
    assert!(
        !h.queue.wait_idle(Duration::from_millis(20)),
        "a waiting delete is work"
    );
    let entry = |h: &Harness| {
        h.queue
            .snapshot()
            .uploads
            .into_iter()
            .find(|u| u.path == "held.docx")
    };
    assert_eq!(entry(&h).unwrap().state, UploadState::Retrying);
    // Two more refusals, then the delete goes through.
    eventually("the delete to be done", || {
        // The ops thread sleeps in real time (at most a second) between looks at the
        // manual clock: small steps, so the three tries fit well inside `locked_wait`.
        h.clock.advance(Duration::from_secs(2));
        entry(&h).is_some_and(|u| u.state == UploadState::Done)
    });
    assert!(h.remote.content("held.docx").is_none());
    assert!(!h.queue.hides("held.docx"));
    let u = entry(&h).unwrap();
    assert_eq!(u.note.as_deref(), Some(super::status::DELETED_LATER));
    assert_eq!(u.error, None);
    h.idle();

    // Superseded: a new upload replaces the item, the delete must not follow it.
    h.remote
        .upload_small("again.docx", b"y", Conflict::Replace, None)
        .unwrap();
    // (No refusal queued: a delete that was not dropped would go through at once.)
    h.queue
        .defer_delete("again.docx", &RemoteError::Locked("423".into()));
    let data = bytes(K, 7);
    h.queue.submit(h.job("again.docx", "n", &data));
    assert!(!h.queue.hides("again.docx"));
    h.idle();
    h.clock.advance(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(h.remote.content("again.docx"), Some(data));
}
