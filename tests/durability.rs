//! Real-mount tests of issue 3, "Never lose a byte": `kill -9` and SIGTERM mid-upload with
//! resumption from the server's offset, files open at a crash kept as `incomplete`, every
//! fault class of the issue against the emulator, bounded retries with `failed` kept in the
//! spool, `.control` retry/discard, `shareuplift wait`, `spool_max` ENOSPC, drain and the fsync
//! barrier. Each test mounts `shareuplift mount` on a spool directory it owns.

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1024 * 1024;

fn received(emu: &Emu) -> u64 {
    emu.stats()["fragment_bytes_received"].as_u64().unwrap()
}

/// Five files (one of 520 MiB) are uploading over a bandwidth-limited link and a sixth is
/// still open for writing when the mount is killed with SIGKILL. After a restart the five
/// arrive identical, the big one resumed (the emulator received far less than twice its
/// size), the open one is `incomplete` and never uploaded, and `discard` empties the spool.
#[test]
fn kill9_mid_upload_resumes_and_keeps_open_file_incomplete() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 120000000}"#));
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "");
    let src = emu.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let big = 520 * MIB;
    let mut names = vec![("big.bin".to_string(), big)];
    for i in 0..4u64 {
        names.push((format!("small{i}.bin"), (i + 1) * 3 * MIB + 12_345));
    }
    for (i, (n, size)) in names.iter().enumerate() {
        random_file(&src.join(n), *size, 100 + i as u64);
    }
    fs::create_dir(m.path("Docs")).unwrap();
    // A file still being written at the kill.
    let mut open = fs::File::create(m.path("Docs/partial.bin")).unwrap();
    open.write_all(&vec![7u8; MIB as usize]).unwrap();
    sh(&format!(
        "cp {}/big.bin {}/small*.bin {}",
        src.display(),
        src.display(),
        m.path("Docs").display()
    ));
    let at_kill = m.wait_uploaded("Docs/big.bin", 100 * MIB, Duration::from_secs(60));
    m.kill9();
    drop(open);
    let before_restart = received(&emu);
    println!("killed with {at_kill} of {big} bytes acknowledged; {before_restart} received");
    assert!(
        emu.item("Docs/big.bin").is_none(),
        "big.bin committed before the kill"
    );

    let m = Mount::start_on(&emu, &spool, "");
    // The open file is incomplete, with its path, and is not uploaded.
    let partial = m
        .upload("Docs/partial.bin")
        .expect("partial.bin in .status");
    assert_eq!(partial["state"], "incomplete", "{partial:#}");
    assert!(m.status_text().contains("incomplete"));
    // The recovered files are visible in the mount while they upload.
    let ls = sh(&format!("ls {}", m.path("Docs").display()));
    assert!(ls.contains("big.bin"), "{ls}");

    let st = m.settle(Duration::from_secs(120));
    for (n, size) in &names {
        let rel = format!("Docs/{n}");
        let item = emu
            .item(&rel)
            .unwrap_or_else(|| panic!("{rel} missing: {st:#}"));
        assert_eq!(item["size"], *size, "{rel}");
        assert_eq!(
            item["quickXorHash"].as_str().unwrap(),
            qxh(&src.join(n)),
            "{rel}"
        );
    }
    assert!(emu.item("Docs/partial.bin").is_none());
    let total_small: u64 = names[1..].iter().map(|(_, s)| s).sum();
    let got = received(&emu);
    println!(
        "big file {big} bytes; emulator received {got} fragment bytes in all \
         ({} for the small files at most); sessions created {}",
        total_small,
        emu.stats()["sessions_created"]
    );
    assert!(
        got < big + big / 4 + 2 * total_small,
        "the upload restarted instead of resuming: received {got} for {big}"
    );
    assert!(m.log_text().contains("resuming"), "{}", m.log_text());
    // Discard the incomplete file: the spool is then empty.
    m.control("discard Docs/partial.bin").unwrap();
    wait_spool_empty(&spool, Duration::from_secs(10));
    assert!(m.upload("Docs/partial.bin").is_none());
    assert_no_violations(&emu);
}

/// SIGTERM mid-upload: the mount exits 0, the session stays in the spool record, and the next
/// mount completes the upload from where SharePoint stopped.
#[test]
fn sigterm_mid_upload_resumes_after_remount() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 60000000}"#));
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "");
    let src = emu.dir.path().join("big.bin");
    let size = 200 * MIB;
    random_file(&src, size, 7);
    sh(&format!("cp {} {}", src.display(), m.dir.display()));
    m.wait_uploaded("big.bin", 60 * MIB, Duration::from_secs(60));
    let st = m.signal(libc::SIGTERM);
    assert!(st.success(), "exit status {st:?}");
    let sessions = emu.stats()["sessions_cancelled"].as_u64().unwrap();
    assert_eq!(sessions, 0, "shutdown cancelled the session");
    let rec = spool_files(&spool)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("record kept");
    let text = fs::read_to_string(&rec).unwrap();
    assert!(text.contains("session_url"), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&rec).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let m = Mount::start_on(&emu, &spool, "");
    m.wait_state("big.bin", "done", Duration::from_secs(60));
    let item = emu.item("big.bin").unwrap();
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    let got = received(&emu);
    println!("SIGTERM: {size} bytes, emulator received {got}");
    assert!(
        got < size + size / 4,
        "restarted from zero: {got} for {size}"
    );
    assert_eq!(emu.stats()["sessions_created"], 1);
    wait_spool_empty(&spool, Duration::from_secs(10));
    assert_no_violations(&emu);
}

/// Copy a fresh file of `size` bytes to `rel` under `faults`, poll `.status.json` until it is
/// done, and return the states seen on the way. The file must arrive identical.
fn run_case(emu: &Emu, m: &Mount, rel: &str, faults: &str, size: u64, seed: u64) -> Vec<String> {
    let mut seen = run_case_entry(emu, m, rel, faults, size, seed);
    // The final entry's attempts show the retry even when `retrying` was too brief to see.
    if m.upload(rel).unwrap()["attempts"].as_u64().unwrap() >= 2 {
        seen.push("attempts>=2".into());
    }
    seen
}

fn run_case_entry(
    emu: &Emu,
    m: &Mount,
    rel: &str,
    faults: &str,
    size: u64,
    seed: u64,
) -> Vec<String> {
    emu.set_faults(faults);
    let src = emu.dir.path().join(format!("case-{seed}.bin"));
    random_file(&src, size, seed);
    sh(&format!("cp {} {}", src.display(), m.path(rel).display()));
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(u) = m.upload(rel) {
            let s = u["state"].as_str().unwrap_or("").to_string();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if s == "done" {
                break;
            }
            assert_ne!(s, "failed", "{rel} failed under {faults}: {u:#}");
        }
        assert!(Instant::now() < deadline, "{rel} stuck: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let item = emu.item(rel).unwrap_or_else(|| panic!("{rel} not stored"));
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src), "{rel}");
    seen
}

/// Each transient fault of the issue, one file each, through one mount: a burst of 5xx, a
/// connection dropped mid-PUT after an unaligned number of accepted bytes, session expiry
/// (404 → new session), upload-URL token expiry (401 → new session) and access-token expiry
/// (refresh). Every file arrives identical and `.status.json` shows the retry. Runs under the
/// emulator's one-open-session-per-path rule: after the 401 the old session is waited out.
#[test]
fn transient_faults_are_survived_and_visible() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 100000000}"#));
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "chunk_size = \"1280KiB\"");
    let size = 8 * MIB + 777;

    let seen = run_case(
        &emu,
        &m,
        "burst.bin",
        r#"{"script":[{"on":"put_fragment","status":503,"count":3,"skip":1}]}"#,
        size,
        1,
    );
    assert!(seen.contains(&"retrying".into()), "5xx: {seen:?}");

    let accepted0 = emu.stats()["fragment_bytes_accepted"].as_u64().unwrap();
    let seen = run_case(
        &emu,
        &m,
        "dropped.bin",
        r#"{"script":[{"on":"put_fragment","action":"drop","accept_bytes":1000003,"skip":2}]}"#,
        size,
        2,
    );
    assert!(seen.contains(&"retrying".into()), "drop: {seen:?}");
    assert_eq!(emu.stats()["drops"], 1);
    // Every byte was accepted exactly once: the unaligned resume offset re-sent nothing.
    let accepted = emu.stats()["fragment_bytes_accepted"].as_u64().unwrap() - accepted0;
    assert_eq!(accepted, size, "resume after the drop");

    for (i, action) in ["expire_session", "expire_upload_token"].iter().enumerate() {
        let before = emu.stats()["sessions_created"].as_u64().unwrap();
        // A session whose upload URL expired still holds its path until it is idle for the
        // session lifetime (strict one-session-per-path rule): a short lifetime keeps the
        // client's stale-session wait (409 → retrying) to seconds.
        let faults = format!(
            r#"{{"session_ttl_secs":3,"script":[{{"on":"put_fragment","action":"{action}","skip":2}}]}}"#
        );
        let rel = format!("{action}.bin");
        let seen = run_case(&emu, &m, &rel, &faults, size, 3 + i as u64);
        assert!(seen.contains(&"attempts>=2".into()), "{action}: {seen:?}");
        let created = emu.stats()["sessions_created"].as_u64().unwrap() - before;
        assert_eq!(created, 2, "{action}: a new session after the old one died");
    }

    let tokens = emu.stats()["tokens_issued"].as_u64().unwrap();
    run_case(
        &emu,
        &m,
        "token.bin",
        r#"{"script":[{"on":"any_graph","action":"expire_access_token"}]}"#,
        size,
        5,
    );
    assert!(emu.stats()["tokens_issued"].as_u64().unwrap() > tokens);
    wait_spool_empty(&spool, Duration::from_secs(10));
    assert_no_violations(&emu);
}

/// A 429 with a Retry-After of 4 s pauses every worker: `.status` shows `throttled until …`
/// and `.status.json` `throttled_until`; both files then arrive.
#[test]
fn throttling_pauses_all_workers_and_shows() {
    let emu = Emu::start(Some(
        r#"{"bandwidth_bytes_per_sec": 20000000,
            "script":[{"on":"put_fragment","status":429,"retry_after_secs":4,"skip":3}]}"#,
    ));
    let m = Mount::start(&emu, "chunk_size = \"1280KiB\"");
    let src = emu.dir.path().join("t.bin");
    random_file(&src, 12 * MIB, 9);
    let t0 = Instant::now();
    sh(&format!(
        "cp {} {}/a.bin && cp {} {}/b.bin",
        src.display(),
        m.dir.display(),
        src.display(),
        m.dir.display()
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (text, json) = loop {
        let json = m.status_json();
        if !json["throttled_until"].is_null() {
            break (m.status_text(), json);
        }
        assert!(Instant::now() < deadline, "never throttled: {json:#}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("throttled until"), "{text}");
    // While the gate is closed no fragment is sent by any worker.
    let puts = emu.stats()["fragment_puts"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        emu.stats()["fragment_puts"].as_u64().unwrap(),
        puts,
        "{json:#}"
    );
    m.wait_state("a.bin", "done", Duration::from_secs(60));
    m.wait_state("b.bin", "done", Duration::from_secs(60));
    assert!(t0.elapsed() >= Duration::from_secs(4));
    for n in ["a.bin", "b.bin"] {
        assert_eq!(
            emu.item(n).unwrap()["quickXorHash"].as_str().unwrap(),
            qxh(&src)
        );
    }
    assert_no_violations(&emu);
}

fn wait_cmd(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("wait")
        .args(args)
        .output()
        .expect("run wait")
}

/// 409 with `conflict = "fail"` and 507 (quota) end `failed` with the reason, are not retried
/// forever, stay in the spool, and make `shareuplift wait` exit 1 with the reason; a good file
/// makes it exit 0. Bounded retries: with `max_attempts = 2` a permanent 500 ends `failed`.
/// `shareuplift retry` (one path, then `--all`) uploads the kept files once the cause is gone.
#[test]
fn permanent_failures_are_kept_then_retried_and_wait_reports() {
    let emu = Emu::start(None);
    emu.seed("taken.txt", b"already there".to_vec());
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "conflict = \"fail\"\nmax_attempts = 2");

    write_file(&m.path("ok.txt"), b"fine");
    let out = wait_cmd(&["--timeout", "60", m.path("ok.txt").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");

    write_file(&m.path("taken.txt"), b"new content");
    let u = m.wait_state("taken.txt", "failed", Duration::from_secs(30));
    assert!(u["error"].as_str().unwrap().contains("409"), "{u:#}");
    let out = wait_cmd(&["--timeout", "60", m.path("taken.txt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409"),
        "{out:?}"
    );

    emu.set_faults(r#"{"quota_bytes": 1000}"#);
    let src = emu.dir.path().join("q.bin");
    random_file(&src, 3 * MIB, 4);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("q.bin").display()
    ));
    let u = m.wait_state("q.bin", "failed", Duration::from_secs(30));
    assert!(u["error"].as_str().unwrap().contains("507"), "{u:#}");
    assert!(u["attempts"].as_u64().unwrap() <= 2, "{u:#}");

    emu.set_faults(r#"{"error_rate": 1.0, "error_statuses": [500]}"#);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("flaky.bin").display()
    ));
    let u = m.wait_state("flaky.bin", "failed", Duration::from_secs(60));
    assert!(u["error"].as_str().unwrap().contains("gave up"), "{u:#}");
    // All three stay in the spool, recorded as failed.
    let records: Vec<String> = spool_files(&spool)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(
        records.iter().all(|r| r.contains("\"failed\"")),
        "{records:?}"
    );
    let out = wait_cmd(&["--timeout", "5", m.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    emu.set_faults("{}");
    let out = Command::new(bin())
        .args(["retry", m.path("q.bin").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = wait_cmd(&["--timeout", "60", m.path("q.bin").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        emu.item("q.bin").unwrap()["quickXorHash"].as_str().unwrap(),
        qxh(&src)
    );
    let out = Command::new(bin())
        .args(["retry", "--all", m.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    m.wait_state("flaky.bin", "done", Duration::from_secs(60));
    // The name conflict persists: retried, it fails again with the same reason.
    m.settle(Duration::from_secs(60));
    let u = m.wait_state("taken.txt", "failed", Duration::from_secs(1));
    assert!(u["error"].as_str().unwrap().contains("409"), "{u:#}");
    let out = Command::new(bin())
        .args(["discard", m.path("taken.txt").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_spool_empty(&spool, Duration::from_secs(10));
    let out = wait_cmd(&["--timeout", "30", m.dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_no_violations(&emu);
}

/// `spool_max`: `dd` past it gets ENOSPC; the file is kept `incomplete` (never uploaded
/// truncated); a file closed before still uploads; `.status.json` shows spool use.
#[test]
fn spool_max_gives_enospc_and_harms_nothing() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 5000000}"#));
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "spool_max = \"8MiB\"");
    let src = emu.dir.path().join("first.bin");
    random_file(&src, 3 * MIB, 5);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("first.bin").display()
    ));
    let out = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", m.path("big.bin").display()),
            "bs=1M",
            "count=20",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    let st = m.status_json();
    assert_eq!(st["spool"]["limit_bytes"], 8 * MIB, "{st:#}");
    assert!(st["spool"]["bytes"].as_u64().unwrap() <= 8 * MIB, "{st:#}");
    let u = m.wait_state("big.bin", "incomplete", Duration::from_secs(10));
    assert!(u["error"].as_str().unwrap().contains("no space"), "{u:#}");
    m.wait_state("first.bin", "done", Duration::from_secs(60));
    assert_eq!(
        emu.item("first.bin").unwrap()["quickXorHash"]
            .as_str()
            .unwrap(),
        qxh(&src)
    );
    assert!(emu.item("big.bin").is_none());
    m.control("discard big.bin").unwrap();
    wait_spool_empty(&spool, Duration::from_secs(10));
}

/// Drain (`shareuplift drain`): new writes are refused at once, the queue finishes, then the
/// mount unmounts by itself and exits 0.
#[test]
fn drain_finishes_queue_then_unmounts() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 20000000}"#));
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("d.bin");
    random_file(&src, 40 * MIB, 6);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("d.bin").display()
    ));
    let out = Command::new(bin())
        .args(["drain", m.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        fs::write(m.path("late.txt"), b"x").is_err(),
        "write accepted while draining"
    );
    let (st, log) = m.wait_exit(Duration::from_secs(60));
    assert!(st.success(), "{st:?}\n{}", tail(&log, 30));
    assert_eq!(
        emu.item("d.bin").unwrap()["quickXorHash"].as_str().unwrap(),
        qxh(&src)
    );
    assert!(emu.item("late.txt").is_none());
}

/// The opt-in fsync barrier: `dd conv=fsync` returns only after SharePoint has the content.
#[test]
fn fsync_barrier_waits_for_commit() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 50000000}"#));
    let m = Mount::start(&emu, "fsync_barrier = true");
    let src = emu.dir.path().join("f.bin");
    random_file(&src, 30 * MIB, 8);
    sh(&format!(
        "dd if={} of={} bs=1M conv=fsync status=none",
        src.display(),
        m.path("f.bin").display()
    ));
    let item = emu.item("f.bin").expect("committed when fsync returned");
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    m.settle(Duration::from_secs(60));
    assert_no_violations(&emu);
}

/// A crash inside the write-back delay, right after rsync-style rename + utimens: the file is
/// recovered under its final name with its final mtime; the temp name never reaches SharePoint.
#[test]
fn crash_right_after_rename_recovers_the_final_name() {
    let emu = Emu::start(None);
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "");
    write_file(&m.path(".report.pdf.Ab12Cd"), b"final content");
    sh(&format!(
        "touch -d @1500000000 '{}'",
        m.path(".report.pdf.Ab12Cd").display()
    ));
    fs::rename(m.path(".report.pdf.Ab12Cd"), m.path("report.pdf")).unwrap();
    m.kill9();
    let m = Mount::start_on(&emu, &spool, "");
    m.wait_state("report.pdf", "done", Duration::from_secs(60));
    assert_eq!(emu.file_paths(), vec!["report.pdf"]);
    let item = emu.item("report.pdf").unwrap();
    assert_eq!(rfc3339_secs(item["mtime"].as_str().unwrap()), 1_500_000_000);
    assert_eq!(
        fs::read_to_string(m.path("report.pdf")).unwrap(),
        "final content"
    );
}
