use std::collections::VecDeque;

use super::*;
use crate::upload::clock::ManualClock;

/// A remote whose `stat` answers from a script (then `Ok(None)`), counting what was sent.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<RemoteError>>,
    sent: Mutex<u32>,
}

impl Scripted {
    fn push(&self, e: RemoteError) {
        self.answers.lock().unwrap().push_back(e);
    }
    fn sent(&self) -> u32 {
        *self.sent.lock().unwrap()
    }
}

fn unused<T>() -> Result<T, RemoteError> {
    Err(RemoteError::Protocol("not used by these tests".into()))
}

impl Remote for Scripted {
    fn stat(&self, _: &str) -> Result<Option<RemoteItem>, RemoteError> {
        *self.sent.lock().unwrap() += 1;
        match self.answers.lock().unwrap().pop_front() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
    fn list(&self, _: &str) -> Result<Vec<RemoteItem>, RemoteError> {
        unused()
    }
    fn mkdir(&self, _: &str) -> Result<RemoteItem, RemoteError> {
        unused()
    }
    fn create_upload_session(
        &self,
        _: &str,
        _: u64,
        _: SystemTime,
        _: Conflict,
        _: Option<&str>,
    ) -> Result<UploadSession, RemoteError> {
        unused()
    }
    fn upload_fragment(
        &self,
        _: &UploadSession,
        _: u64,
        _: &FragmentBody,
    ) -> Result<FragmentOutcome, RemoteError> {
        unused()
    }
    fn upload_status(&self, _: &UploadSession) -> Result<Vec<ByteRange>, RemoteError> {
        unused()
    }
    fn cancel_upload(&self, _: &UploadSession) -> Result<(), RemoteError> {
        unused()
    }
    fn upload_small(
        &self,
        _: &str,
        _: &[u8],
        _: Conflict,
        _: Option<&str>,
    ) -> Result<RemoteItem, RemoteError> {
        unused()
    }
    fn delete(&self, _: &str) -> Result<(), RemoteError> {
        unused()
    }
    fn rename(&self, _: &str, _: &str) -> Result<RemoteItem, RemoteError> {
        unused()
    }
    fn set_mtime(&self, _: &str, _: SystemTime) -> Result<RemoteItem, RemoteError> {
        unused()
    }
    fn read_range(&self, _: &str, _: u64, _: u64) -> Result<Vec<u8>, RemoteError> {
        unused()
    }
}

fn setup() -> (Arc<ManualClock>, Arc<Scripted>, Pacer, LimitedRemote) {
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let remote = Arc::new(Scripted::default());
    let pacer = Pacer::new(4, clock.clone());
    let limited = pacer.wrap(remote.clone());
    (clock, remote, pacer, limited)
}

fn throttled(secs: Option<u64>, status: u16) -> RemoteError {
    RemoteError::Throttled {
        status,
        retry_after: secs.map(Duration::from_secs),
    }
}

#[test]
fn inside_a_retry_after_window_interactive_requests_are_refused_and_background_ones_wait() {
    let (clock, remote, pacer, limited) = setup();
    assert_eq!(
        current_lane(),
        Lane::Interactive,
        "unmarked threads are interactive"
    );
    remote.push(throttled(Some(5), 429));
    assert_eq!(limited.stat("a"), Err(throttled(Some(5), 429)));
    assert_eq!(remote.sent(), 1);
    assert!(pacer.gate().closed_until(&*clock).is_some());
    // A FUSE-side request inside the window: refused here, not sent, and no wait.
    assert_eq!(limited.stat("b"), Err(throttled(Some(5), 429)));
    assert_eq!(remote.sent(), 1);
    assert!(clock.sleeps().is_empty());
    // The change feed and anyone else asking see the window.
    assert!(limited.retry_after_until().is_some());
    // A background request waits the window out, then goes.
    set_lane(Lane::Background);
    assert_eq!(limited.stat("c"), Ok(None));
    set_lane(Lane::Interactive);
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(5)]);
    assert_eq!(remote.sent(), 2);
    assert_eq!(limited.retry_after_until(), None);
    // Shutdown ends waits: a stopped pacer sends nothing more.
    pacer.stop_signal().trigger();
    set_lane(Lane::Big);
    assert!(matches!(limited.stat("d"), Err(RemoteError::Transport(_))));
    set_lane(Lane::Interactive);
    assert_eq!(remote.sent(), 2);
    assert_eq!(pacer.limiter().in_flight(), 0);
}

#[test]
fn after_throttling_requests_leave_evenly_at_the_learnt_rate() {
    let (clock, remote, pacer, limited) = setup();
    set_lane(Lane::Small);
    // 20 requests a second get through for two seconds; never paced.
    for _ in 0..40 {
        assert_eq!(limited.stat("x"), Ok(None));
        clock.advance(Duration::from_millis(50));
    }
    assert!(clock.sleeps().is_empty());
    assert_eq!(pacer.limiter().rate(&*clock), None);
    // A 429 without Retry-After: a short pause, then 90 % of the 21 sent in the last second.
    remote.push(throttled(None, 429));
    assert!(limited.stat("x").is_err());
    let rate = pacer.limiter().rate(&*clock).unwrap();
    assert!((rate - 18.9).abs() < 0.01, "{rate}");
    for _ in 0..10 {
        assert_eq!(limited.stat("x"), Ok(None));
    }
    let sleeps = clock.sleeps();
    // The pause (the refused request's cost refilled), then one slot per 1/rate.
    assert!(sleeps[0] < Duration::from_millis(200), "{sleeps:?}");
    let gap = 1.0 / rate;
    assert!(sleeps.len() >= 9, "{sleeps:?}");
    for d in &sleeps[1..] {
        assert!((d.as_secs_f64() - gap).abs() < 0.01, "{sleeps:?}");
    }
    // An interactive request takes the next slot ahead of the waiting ones (≤ 1 s away).
    set_lane(Lane::Interactive);
    assert_eq!(limited.stat("y"), Ok(None));
    assert_eq!(remote.sent(), 52);
}

#[test]
fn a_service_answering_only_503_is_reported_blocked_and_probed_slowly() {
    let (clock, remote, pacer, limited) = setup();
    set_lane(Lane::Big);
    for _ in 0..20 {
        assert_eq!(limited.stat("x"), Ok(None));
        clock.advance(Duration::from_millis(50));
    }
    for _ in 0..200 {
        remote.push(throttled(None, 503));
    }
    let t0 = clock.now();
    let mut note = None;
    while note.is_none() {
        assert!(limited.stat("x").is_err());
        note = pacer.blocked_note();
        assert!(clock.now() - t0 < Duration::from_secs(180), "not reported");
    }
    let note = note.unwrap();
    assert!(
        note.contains("503") && note.contains("message center"),
        "{note}"
    );
    assert!(!note.contains('\n'));
    // Within bounded time, and with few requests: doubling pauses, one probe at a time.
    let took = clock.now() - t0;
    let sent = remote.sent() - 20;
    assert!(took <= Duration::from_secs(125), "{took:?}");
    assert!(sent <= 12, "{sent} requests in {took:?}");
    // An hour of it: about one request a minute.
    let before = remote.sent();
    let t1 = clock.now();
    while clock.now() - t1 < Duration::from_secs(3600) {
        let _ = limited.stat("x");
    }
    let hourly = remote.sent() - before;
    assert!((55..=65).contains(&hourly), "{hourly} requests in an hour");
    // The block is lifted: the next probe gets through, the note goes.
    remote.answers.lock().unwrap().clear();
    assert_eq!(limited.stat("x"), Ok(None));
    assert_eq!(pacer.blocked_note(), None);
}
