//! Field-conditions tests on real mounts (issue 10): sustained throttling ends done without a
//! manual retry (it does not spend `max_attempts`), changes made in the emulator's admin API
//! are seen through the mount within `poll_interval` + 5 s, an rsync of many small files costs
//! a bounded number of requests (and an identical second one almost none), and a `kill -9`
//! while many small files are still uploading loses none of them after remount. Each test is
//! a few seconds, so the file stays well under a minute.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn admin_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn admin_delete(emu: &Emu, rel: &str) {
    let r = admin_client()
        .delete(format!(
            "{}/files/Documents/{FOLDER}/{rel}",
            emu.info.admin_url
        ))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "DELETE {rel}: {}", r.status());
}

/// Graph and upload requests counted by the emulator (token requests excluded).
fn requests(emu: &Emu) -> u64 {
    let s = emu.stats();
    s["by_kind"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "token")
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// Every request answered 429 + Retry-After: 1 for longer than `max_attempts` tries: the
/// upload waits each window out and ends done once the service lets it through, with no
/// `.control retry` (issue 9: "sustained throttling burns max_attempts").
#[test]
fn sustained_throttling_ends_done_without_a_manual_retry() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "max_attempts = 2");
    let data = vec![7u8; 5000];
    emu.set_faults(r#"{"apply_to":"all","throttle_rate":1.0,"retry_after_secs":1}"#);
    write_file(&m.path("t.bin"), &data);
    // At least 2 × max_attempts throttled answers.
    wait_until("throttled tries", Duration::from_secs(20), || {
        emu.stats()["throttled"].as_u64().unwrap_or(0) >= 4
    });
    let u = m.upload("t.bin").expect("in .status.json");
    assert_ne!(u["state"], "failed", "{u:#}");
    emu.set_faults("{}");
    m.wait_state("t.bin", "done", Duration::from_secs(20));
    assert_eq!(emu.item("t.bin").unwrap()["size"], 5000);
    // Only requests sent after the 429 could be read count: one already in flight when the
    // window opened (the delta poll, a lookup) is not the client's choice.
    assert_eq!(
        emu.stats()["requests_inside_retry_after_late"].as_u64(),
        Some(0),
        "a request was sent inside a Retry-After window"
    );
    assert_no_violations(&emu);
}

/// A file created, changed and deleted in the emulator is seen through the mount within
/// poll_interval + 5 s.
#[test]
fn remote_changes_are_seen_within_poll_interval() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "poll_interval = 1");
    assert!(fs::read_dir(&m.dir).unwrap().next().is_none());
    let limit = Duration::from_secs(1 + 5);
    emu.seed("news.txt", b"first".to_vec());
    wait_until("remote create", limit, || {
        fs::read(m.path("news.txt")).ok().as_deref() == Some(b"first")
    });
    emu.seed("news.txt", b"second, longer".to_vec());
    wait_until("remote change", limit, || {
        fs::read(m.path("news.txt")).ok().as_deref() == Some(b"second, longer")
    });
    admin_delete(&emu, "news.txt");
    wait_until("remote delete", limit, || !m.path("news.txt").exists());
    let names: Vec<_> = fs::read_dir(&m.dir).unwrap().collect();
    assert!(names.is_empty(), "{names:?}");
}

fn small_tree(root: &std::path::Path, folders: usize, per: usize) {
    for d in 0..folders {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..per {
            random_file(&dir.join(format!("f{f}.bin")), 4096, (d * 1000 + f) as u64);
        }
    }
}

/// rsync of 200 × 4 KiB in 4 folders: createUploadSession + one PUT a file, one mkdir a
/// folder, a handful of listings; an identical second rsync sends (almost) nothing.
#[test]
fn small_file_rsync_costs_bounded_requests() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("src");
    small_tree(&src, 4, 50);
    std::thread::sleep(Duration::from_millis(500));
    emu.admin_post("reset_stats", "{}");
    sh(&format!(
        "rsync -a {}/ {}/tree/",
        src.display(),
        m.dir.display()
    ));
    m.settle(Duration::from_secs(60));
    let n = requests(&emu);
    let by_kind = emu.stats()["by_kind"].clone();
    // 2 per file + 5 folders + a few listings / delta polls.
    assert!(n <= 2 * 200 + 5 + 15, "{n} requests: {by_kind:#}");
    assert_eq!(by_kind["create_upload_session"], 200, "{by_kind:#}");
    assert_eq!(emu.file_paths().len(), 200);
    emu.admin_post("reset_stats", "{}");
    let out = sh(&format!(
        "rsync -a --stats {}/ {}/tree/",
        src.display(),
        m.dir.display()
    ));
    assert!(
        out.contains("Number of regular files transferred: 0"),
        "{out}"
    );
    let n2 = requests(&emu);
    assert!(
        n2 <= 20,
        "second rsync: {n2} requests: {:#}",
        emu.stats()["by_kind"]
    );
    assert_no_violations(&emu);
}

/// `kill -9` in the middle of the issue's 1,000-file rsync (10 folders × 100 files of 4 KiB;
/// the emulator answers after 50 ms, so rsync returns long before the last commit): after
/// remount on the same spool, every file rsync wrote reaches the server with its content, and
/// no temp name.
#[test]
fn kill9_during_small_file_uploads_loses_nothing() {
    // Sessions the kill left open expire after 3 s (emulator and mount agree).
    let emu = Emu::start(Some(r#"{"session_ttl_secs": 3}"#));
    emu.admin_post("field", r#"{"latency_ms": 50}"#);
    let extra = "session_idle_secs = 3";
    // The spool outlives the killed mount (a mount's own temp dir goes with it).
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, extra);
    let src = emu.dir.path().join("src");
    small_tree(&src, 10, 100);
    sh(&format!(
        "rsync -a {}/ {}/tree/",
        src.display(),
        m.dir.display()
    ));
    let committed = emu.file_paths().len();
    m.kill9();
    eprintln!("{committed} of 1000 committed when the mount was killed");
    assert!(
        committed < 1000,
        "all committed before the kill: the test proves nothing"
    );
    emu.admin_post("field", r#"{"latency_ms": 0}"#);
    let m = Mount::restart(&emu, &spool, extra);
    let t0 = Instant::now();
    // Generous: each recovered job fsyncs its spool file before it starts, and on a disk
    // busy with other writes (a build beside the test) that alone can take a second.
    while emu.file_paths().len() < 1000 {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "{} of 1000 on the server: {:#}\n{}",
            emu.file_paths().len(),
            m.status_text(),
            tail(&m.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    m.settle(Duration::from_secs(30));
    let paths = emu.file_paths();
    assert_eq!(paths.len(), 1000, "{paths:?}");
    for d in 0..10 {
        for f in 0..100 {
            let rel = format!("tree/d{d}/f{f}.bin");
            let item: Value = emu.item(&rel).unwrap_or_else(|| panic!("{rel} lost"));
            assert_eq!(
                item["quickXorHash"].as_str(),
                Some(qxh(&src.join(format!("d{d}/f{f}.bin"))).as_str()),
                "{rel}"
            );
        }
    }
    assert_no_violations(&emu);
}
