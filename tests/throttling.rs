//! The mount-wide limiter on real mounts (issue 16, items 3–5; field reference entries 5–8):
//! every request of the mount — FUSE-side listings, the change feed's poll, the upload
//! listener's follow-ups, uploads — honours a `Retry-After` window, the FUSE side without
//! waiting for it; a budget whose refusals cost is met with few refusals and no `RateLimit-*`
//! headers; an app answered nothing but 503 is named in `.status` within a bounded time and
//! probed slowly, and its uploads resume by themselves once the block is lifted.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

fn field(emu: &Emu, json: &str) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/field", emu.info.admin_url))
        .header("content-type", "application/json")
        .body(json.to_string())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "field {json}: {}", r.status());
}

fn stat_u64(emu: &Emu, key: &str) -> u64 {
    emu.stats()[key].as_u64().unwrap_or(0)
}

fn kind(emu: &Emu, key: &str) -> u64 {
    emu.stats()["by_kind"][key].as_u64().unwrap_or(0)
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `Retry-After` given to one request holds the change feed's poll and the upload
/// listener's follow-up (here: the modification time set while the upload was in flight,
/// patched onto the committed item) like every other request: neither is sent inside the
/// window, and the follow-up still happens after it.
#[test]
fn delta_poll_and_listener_requests_wait_out_a_retry_after_window() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "poll_interval = 1");
    // The upload's only fragment is held 4 s by the server.
    emu.set_faults(r#"{"script":[{"on":"put_fragment","delay_ms":4000}]}"#);
    write_file(&m.path("a.bin"), &[5u8; 3000]);
    wait_until("the fragment PUT arrives", Duration::from_secs(10), || {
        kind(&emu, "fragment_put") >= 1
    });
    // Touched while its last fragment is in flight: the listener patches the commit.
    sh(&format!(
        "touch -m -d '2001-02-03 04:05:06 UTC' {}",
        m.path("a.bin").display()
    ));
    // The next Graph request (the change feed's poll, every second) is told to keep quiet
    // for 5 s; the commit and the listener's PATCH fall inside that window.
    emu.set_faults(r#"{"script":[{"on":"any_graph","status":429,"retry_after_secs":5}]}"#);
    wait_until("the 429", Duration::from_secs(10), || {
        stat_u64(&emu, "throttled") >= 1
    });
    let throttled_at = Instant::now();
    let t0 = Instant::now();
    let patched = |emu: &Emu| {
        emu.item("a.bin")
            .and_then(|i| i["mtime"].as_str().map(|t| t.starts_with("2001-02-03")))
            == Some(true)
    };
    while !patched(&emu) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the mtime is not patched: {:?}\n{:#}\n{}",
            emu.items(),
            emu.stats(),
            tail(&m.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        throttled_at.elapsed() >= Duration::from_millis(4500),
        "the listener's PATCH did not wait for the window"
    );
    assert!(kind(&emu, "patch") >= 1, "the listener sent no PATCH");
    assert_eq!(
        stat_u64(&emu, "requests_inside_retry_after"),
        0,
        "a request was sent inside the Retry-After window: {:#}\n{}",
        emu.stats(),
        tail(&m.log_text(), 30)
    );
    assert!(kind(&emu, "delta") >= 2, "the feed was polled");
    assert_no_violations(&emu);
}

/// FUSE-side requests inside a `Retry-After` window are refused locally and at once: a
/// listing answers from the cache (here: nothing known yet), nothing is sent, and no FUSE
/// thread waits for the window. After it, the folder lists normally.
#[test]
fn fuse_requests_inside_a_retry_after_window_are_refused_locally_and_fast() {
    let emu = Emu::start(None);
    emu.seed("one/x.txt", b"x".to_vec());
    emu.seed("two/y.txt", b"y".to_vec());
    let m = Mount::start(&emu, "");
    let root: Vec<_> = fs::read_dir(&m.dir).unwrap().collect();
    assert_eq!(root.len(), 2);
    emu.set_faults(r#"{"script":[{"on":"any_graph","status":429,"retry_after_secs":30}]}"#);
    let t = Instant::now();
    let first = fs::read_dir(m.path("one")).map(|d| d.count());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(stat_u64(&emu, "throttled"), 1, "{first:?}");
    let listings = kind(&emu, "list_children");
    // Inside the window: another folder's listing is not sent, and returns at once.
    let t = Instant::now();
    let second = fs::read_dir(m.path("two")).map(|d| d.count());
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a FUSE thread waited {took:?}"
    );
    assert_eq!(second.ok(), Some(0), "answered from the (empty) cache");
    assert_eq!(
        kind(&emu, "list_children"),
        listings,
        "sent inside the window"
    );
    assert_eq!(stat_u64(&emu, "requests_inside_retry_after"), 0);
    let status = m.status_text();
    assert!(status.contains("throttled until"), "{status}");
    m.unmount();
}

/// A budget of 20 units a second whose refusals cost, without `Retry-After` and without
/// `RateLimit-*` headers, answered 503: an rsync of 300 small files ends with every file
/// done, few refusals, and no request inside a window (there is none to honour).
#[test]
fn a_costly_budget_without_hints_is_met_with_few_refusals() {
    let emu = Emu::start(None);
    field(
        &emu,
        r#"{"latency_ms": 20, "budget_per_sec": 20, "budget_units": "requests",
            "rate_limit_headers": false, "retry_after": "absent", "throttle_status": 503}"#,
    );
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("src");
    for d in 0..3 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            random_file(
                &src.join(format!("d{d}/f{f}.bin")),
                4096,
                (d * 100 + f) as u64,
            );
        }
    }
    let t0 = Instant::now();
    sh(&format!(
        "rsync -a {}/ {}/tree/",
        src.display(),
        m.dir.display()
    ));
    m.settle(Duration::from_secs(120));
    let took = t0.elapsed();
    assert_eq!(emu.file_paths().len(), 300);
    let s = emu.stats();
    let refused = s["budget_refused"].as_u64().unwrap();
    let admitted = s["budget_units_admitted"].as_u64().unwrap();
    let sent = refused + admitted;
    eprintln!(
        "{sent} requests, {refused} refused, {:.1} s",
        took.as_secs_f64()
    );
    assert!(
        refused * 100 <= sent * 5,
        "{refused} of {sent} refused: {:#}",
        s["by_kind"]
    );
    // The floor is admitted / 20 s; a generous bound (the rsync itself, the write-back delay).
    assert!(
        took.as_secs_f64() <= admitted as f64 / 20.0 * 1.5 + 10.0,
        "{took:?} for {admitted} requests\n{}",
        tail(&m.log_text(), 60)
    );
    assert_no_violations(&emu);
}

/// Entry 8: the app is blocked — every request answers 503, no Retry-After. Within a bounded
/// time `.status` says so in one line (what it means, what to do), the mount probes about
/// once a minute instead of storming, nothing fails, and the upload finishes by itself once
/// the block is lifted.
#[test]
fn a_blocked_app_is_named_in_status_and_uploads_resume_after() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "max_attempts = 3");
    field(&emu, r#"{"app_blocked": true}"#);
    let t0 = Instant::now();
    write_file(&m.path("blocked.bin"), &[1u8; 5000]);
    wait_until(
        "the block named in .status",
        Duration::from_secs(100),
        || m.status_text().contains("answered every request with 503"),
    );
    let named_after = t0.elapsed();
    let status = m.status_text();
    let line = status.lines().next().unwrap_or("");
    assert!(
        line.contains("blocked") && line.contains("message center"),
        "{status}"
    );
    assert!(
        m.status_json()["blocked"].as_str().is_some(),
        "{:#}",
        m.status_json()
    );
    let refused = stat_u64(&emu, "blocked_refused");
    eprintln!("named after {named_after:?}, {refused} requests refused meanwhile");
    assert!(
        refused <= 20,
        "{refused} requests in {named_after:?}: a storm"
    );
    let u = m.upload("blocked.bin").expect("in .status.json");
    assert_ne!(u["state"], "failed", "{u:#}");
    // Lifted: the next probe (at most a minute away) gets through; no `.control retry`.
    field(&emu, r#"{"app_blocked": false}"#);
    m.wait_state("blocked.bin", "done", Duration::from_secs(90));
    let status = m.status_text();
    let head = status.lines().next().unwrap_or("");
    assert!(!head.contains("answered every request"), "{status}");
    let log = m.log_text();
    assert_eq!(
        log.matches("answered every request with 503").count(),
        1,
        "{}",
        tail(&log, 30)
    );
    assert_no_violations(&emu);
}
