//! Real-mount tests of how SharePoint fails uploads, deletes and renames in the field (issue
//! 17; field reference entries 9–14 and 21–23), one behaviour at a time, each with its
//! emulator knob on and 5 ms of latency: what the user sees (the file arrives once, intact;
//! `.status` says why) and no protocol violation.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LATENCY: &str = r#"{"latency_ms": 5}"#;

/// How often the emulator shaped an answer of `kind` (`Stats::field_faults`).
fn fired(emu: &Emu, kind: &str) -> u64 {
    emu.stats()["field_faults"][kind].as_u64().unwrap_or(0)
}

/// The raw content of `rel` in SharePoint.
fn server_bytes(emu: &Emu, rel: &str) -> Vec<u8> {
    let url = format!("{}/files/Documents/{FOLDER}/{rel}", emu.info.admin_url);
    let r = reqwest::blocking::get(&url).expect("GET file");
    assert!(r.status().is_success(), "{rel}: {}", r.status());
    r.bytes().expect("bytes").to_vec()
}

/// A started emulator with 5 ms latency and a mount on it.
fn setup(extra: &str) -> (Emu, Mount) {
    let emu = Emu::start(None);
    emu.set_field(LATENCY);
    let m = Mount::start(&emu, extra);
    (emu, m)
}

fn copy_in(m: &Mount, src: &std::path::Path) {
    sh(&format!(
        "cp '{}' '{}'",
        src.display(),
        m.path("").display()
    ));
}

/// Poll `pred` every 100 ms up to `timeout`.
fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Entry 10: uploads into folders created seconds ago, with a tenth of item lookups and
/// createUploadSession calls answering a passing 404, all end done.
#[test]
fn passing_404s_and_fresh_folders_end_done() {
    let (emu, m) = setup("");
    emu.set_field(r#"{"fresh_folder_404_secs": 3, "passing_404_rate": 0.1}"#);
    let src = emu.dir.path().join("tree");
    for d in 0..3 {
        fs::create_dir_all(src.join(format!("dir{d}"))).unwrap();
        for f in 0..20 {
            let p = src.join(format!("dir{d}/f{f}.bin"));
            random_file(&p, 1000 + (d * 20 + f) as u64 * 997, (d * 20 + f) as u64);
        }
    }
    sh(&format!(
        "cp -r '{}' '{}'",
        src.display(),
        m.path("").display()
    ));
    let st = m.settle(Duration::from_secs(240));
    assert_eq!(st["totals"]["failed"], 0, "{st:#}");
    assert_eq!(st["totals"]["done"], 60, "{st:#}");
    for d in 0..3 {
        for f in 0..20 {
            let rel = format!("tree/dir{d}/f{f}.bin");
            let item = emu.item(&rel).unwrap_or_else(|| panic!("{rel} missing"));
            let local = src.join(format!("dir{d}/f{f}.bin"));
            assert_eq!(item["quickXorHash"].as_str(), Some(qxh(&local).as_str()));
        }
    }
    assert_eq!(emu.file_paths().len(), 60, "no duplicates");
    assert!(fired(&emu, "fresh_folder_404") > 0, "{}", emu.stats());
    assert!(fired(&emu, "passing_404") > 0, "{}", emu.stats());
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 12: the final fragment answers 500 with nothing committed, and the session then
/// reports `[]` (broken) or `["0-"]` (its bytes gone): the file still arrives, once, intact.
#[test]
fn broken_last_fragment_ends_done_without_duplicate() {
    let (emu, m) = setup("");
    for (name, then) in [("empty.bin", "empty"), ("restart.bin", "restart")] {
        emu.set_field(&format!(
            r#"{{"last_fragment": {{"status": 500, "committed": false, "then": "{then}"}}}}"#
        ));
        let before = fired(&emu, "last_fragment");
        let src = emu.dir.path().join(name);
        random_file(&src, 900_000, 21);
        copy_in(&m, &src);
        let done = m.wait_state(name, "done", Duration::from_secs(90));
        assert_eq!(fired(&emu, "last_fragment"), before + 1, "{done:#}");
        assert_eq!(server_bytes(&emu, name), fs::read(&src).unwrap(), "{name}");
    }
    assert_eq!(
        emu.file_paths(),
        vec!["empty.bin", "restart.bin"],
        "no duplicate"
    );
    assert!(emu.stats()["open_sessions"] == 0, "{}", emu.stats());
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 12 (and 14): the final fragment answers 503/504 with an HTML page although the file
/// was committed (once also with its hash late): it is not sent again, one session each.
#[test]
fn committed_last_fragment_with_html_error_is_not_sent_again() {
    let (emu, m) = setup("");
    let cases = [
        (
            "html503.bin",
            r#"{"last_fragment": {"status": 503, "committed": true, "html": true}}"#,
        ),
        (
            "html504.bin",
            r#"{"last_fragment": {"status": 504, "committed": true, "html": true},
                "hash_delay_secs": 8}"#,
        ),
    ];
    for (name, knobs) in cases {
        emu.set_field(knobs);
        let before = emu.stats();
        let src = emu.dir.path().join(name);
        random_file(&src, 700_000, 5);
        copy_in(&m, &src);
        let done = m.wait_state(name, "done", Duration::from_secs(90));
        let after = emu.stats();
        let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
        assert_eq!(delta("sessions_created"), 1, "{name}: {done:#}");
        assert_eq!(delta("fragment_puts"), 1, "{name}: sent again? {done:#}");
        assert_eq!(server_bytes(&emu, name), fs::read(&src).unwrap());
        emu.set_field(r#"{"last_fragment": null}"#);
    }
    // The late hash is checked later and found right.
    wait_until("the late hash check", Duration::from_secs(30), || {
        m.upload("html504.bin")
            .is_some_and(|u| u["note"].as_str() == Some("quickXorHash verified after the commit"))
    });
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 21: in a library that requires check-out, uploads end checked in; when the
/// check-in is refused, the file is done but `.status` and the xattr say it is checked out.
#[test]
fn checkout_library_files_end_checked_in() {
    let (emu, m) = setup("");
    emu.set_field(r#"{"require_checkout": true}"#);
    let big = emu.dir.path().join("big.bin");
    random_file(&big, 3_000_000, 1);
    let small = emu.dir.path().join("small.txt");
    write_file(&small, b"hello");
    copy_in(&m, &big);
    copy_in(&m, &small);
    for name in ["big.bin", "small.txt"] {
        let done = m.wait_state(name, "done", Duration::from_secs(60));
        assert_eq!(
            done["note"], "checked in (the library requires check-out)",
            "{done:#}"
        );
        let item = emu.item(name).unwrap();
        assert_eq!(item["checked_out"], false, "{item:#}");
    }
    assert_eq!(fired(&emu, "checkin"), 2);
    emu.set_field(r#"{"checkin_refused": true}"#);
    let held = emu.dir.path().join("held.txt");
    write_file(&held, b"required columns missing");
    copy_in(&m, &held);
    let done = m.wait_state("held.txt", "done", Duration::from_secs(60));
    let note = done["note"].as_str().unwrap_or_default().to_string();
    assert!(
        note.starts_with("checked out: only this mount's account sees it"),
        "{done:#}"
    );
    assert!(note.contains("check-in failed"), "{note}");
    assert_eq!(emu.item("held.txt").unwrap()["checked_out"], true);
    assert!(m.status_text().contains("check-in failed"));
    let xattr = sh(&format!(
        "getfattr --absolute-names --only-values -n user.shareuplift.note '{}'",
        m.path("held.txt").display()
    ));
    assert!(xattr.starts_with("checked out"), "{xattr}");
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 22: column validation refuses a file at the commit: one clear failure, not ten
/// retries; other files go on.
#[test]
fn column_validation_fails_once_with_the_explanation() {
    let (emu, m) = setup("");
    emu.set_field(r#"{"validation_pattern": "*.csv"}"#);
    let csv = emu.dir.path().join("data.csv");
    write_file(&csv, b"a,b\n1,2\n");
    let txt = emu.dir.path().join("notes.txt");
    write_file(&txt, b"fine");
    copy_in(&m, &csv);
    copy_in(&m, &txt);
    let failed = m.wait_state("data.csv", "failed", Duration::from_secs(60));
    let err = failed["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("library requires columns") && err.contains("relax the rule"),
        "{failed:#}"
    );
    assert!(failed["attempts"].as_u64().unwrap() <= 2, "{failed:#}");
    assert_eq!(fired(&emu, "validation_failed"), 1, "{}", emu.stats());
    m.wait_state("notes.txt", "done", Duration::from_secs(60));
    assert!(emu.item("data.csv").is_none());
    assert!(
        !spool_files(&m.spool).is_empty(),
        "the refused file is kept"
    );
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 11: createUploadSession answers 400 `invalidRequest` while more sessions are open
/// than the service takes: a 40-file rsync ends all done.
#[test]
fn load_400s_end_all_done() {
    let (emu, m) = setup("");
    emu.set_field(r#"{"max_open_sessions": 3}"#);
    let src = emu.dir.path().join("batch");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        random_file(&src.join(format!("f{i:02}.bin")), 20_000 + i * 1000, i);
    }
    sh(&format!(
        "rsync -r '{}/' '{}/'",
        src.display(),
        m.path("").display()
    ));
    let st = m.settle(Duration::from_secs(240));
    assert_eq!(st["totals"]["failed"], 0, "{st:#}");
    assert_eq!(emu.file_paths().len(), 40, "{st:#}");
    for i in 0..40 {
        let name = format!("f{i:02}.bin");
        let item = emu.item(&name).unwrap();
        assert_eq!(
            item["quickXorHash"].as_str(),
            Some(qxh(&src.join(&name)).as_str())
        );
    }
    assert!(fired(&emu, "load_400") > 0, "{}", emu.stats());
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 23: a delete of a locked file (423 `accessDenied`, then 403 with inner
/// `resourceLocked`) completes once the lock is gone, the file gone from the mount at once; a
/// rename of a locked file (409 with inner `resourceLocked`) is refused with EBUSY and says
/// why in `.status`, and works once the lock is gone.
#[test]
fn locked_delete_completes_and_locked_rename_says_why() {
    let emu = Emu::start(None);
    emu.set_field(LATENCY);
    emu.seed("held.docx", b"held by a colleague".to_vec());
    emu.seed("other.docx", b"also held".to_vec());
    emu.seed("move.docx", b"to be renamed".to_vec());
    let m = Mount::start(&emu, "");
    assert!(m.path("held.docx").exists());
    // Delete, 423 with the accessDenied body of ODI#912.
    emu.set_field(
        r#"{"locked_name": "held.docx", "locked_secs": 6, "locked_shape": "access_denied"}"#,
    );
    let t = Instant::now();
    sh(&format!("rm '{}'", m.path("held.docx").display()));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "rm waited for the lock"
    );
    assert!(!m.path("held.docx").exists());
    assert!(!sh(&format!("ls '{}'", m.path("").display())).contains("held.docx"));
    let waiting = m.wait_state("held.docx", "retrying", Duration::from_secs(10));
    assert!(
        waiting["error"]
            .as_str()
            .unwrap_or_default()
            .contains("locked in SharePoint"),
        "{waiting:#}"
    );
    assert!(emu.item("held.docx").is_some(), "still there while locked");
    let done = m.wait_state("held.docx", "done", Duration::from_secs(60));
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "deleted before the lock ended"
    );
    assert_eq!(
        done["note"],
        "deleted in SharePoint once the lock was released"
    );
    assert!(emu.item("held.docx").is_none());
    // Delete, 403 with inner resourceLocked.
    emu.set_field(
        r#"{"locked_name": "other.docx", "locked_secs": 3, "locked_shape": "forbidden"}"#,
    );
    sh(&format!("rm '{}'", m.path("other.docx").display()));
    m.wait_state("other.docx", "done", Duration::from_secs(60));
    assert!(emu.item("other.docx").is_none());
    // Rename, 409 with inner resourceLocked: EBUSY, and `.status` says why.
    emu.set_field(r#"{"locked_name": "move.docx", "locked_secs": 4, "locked_shape": "conflict"}"#);
    let t = Instant::now();
    let (ok, out) = sh_status(&format!(
        "mv '{}' '{}'",
        m.path("move.docx").display(),
        m.path("moved.docx").display()
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("Device or resource busy"), "{out}");
    let status = m.status_text();
    assert!(
        status.contains("rename move.docx -> moved.docx refused")
            && status.contains("try again once it is closed"),
        "{status}"
    );
    assert!(m.path("move.docx").exists());
    while t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
    }
    sh(&format!(
        "mv '{}' '{}'",
        m.path("move.docx").display(),
        m.path("moved.docx").display()
    ));
    assert!(emu.item("moved.docx").is_some() && emu.item("move.docx").is_none());
    assert!(fired(&emu, "locked") >= 3, "{}", emu.stats());
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 13: the drive's quota is read before a big upload: a file that cannot fit fails at
/// once (no byte sent, data kept); without a reported quota the 507 at the final PUT is one
/// clear failure.
#[test]
fn quota_read_before_a_big_upload_refuses_early() {
    let (emu, m) = setup("");
    emu.set_faults(r#"{"quota_bytes": 3000000}"#);
    let big = emu.dir.path().join("big.bin");
    random_file(&big, 8 * 1024 * 1024, 3);
    let before = emu.stats();
    copy_in(&m, &big);
    let failed = m.wait_state("big.bin", "failed", Duration::from_secs(60));
    let err = failed["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("not enough room in SharePoint"),
        "{failed:#}"
    );
    let after = emu.stats();
    assert_eq!(
        after["fragment_puts"], before["fragment_puts"],
        "no byte sent"
    );
    assert_eq!(after["sessions_created"], before["sessions_created"]);
    assert!(!spool_files(&m.spool).is_empty(), "data kept");
    // A drive without a quota object: not checked before; SharePoint refuses at the end.
    emu.set_field(r#"{"drive_quota_absent": true}"#);
    std::thread::sleep(Duration::from_secs(11)); // past the shared quota reading
    m.control("retry big.bin").unwrap();
    wait_until(
        "the retried upload to fail",
        Duration::from_secs(60),
        || {
            m.upload("big.bin")
                .is_some_and(|u| u["state"] == "failed" && u["error"] != failed["error"])
        },
    );
    let u: Value = m.upload("big.bin").unwrap();
    assert!(
        u["error"]
            .as_str()
            .unwrap_or_default()
            .contains("quota exceeded (507)"),
        "{u:#}"
    );
    assert_eq!(
        emu.stats()["sessions_created"],
        after["sessions_created"].as_u64().unwrap() + 1
    );
    assert!(emu.item("big.bin").is_none());
    assert_no_violations(&emu);
    m.unmount();
}

/// Entry 12: a slow commit (the final fragment answered seconds later) is waited for: one
/// session, nothing sent again.
#[test]
fn slow_commit_is_one_session() {
    let (emu, m) = setup("");
    emu.set_field(r#"{"commit_delay_secs": 4}"#);
    let src = emu.dir.path().join("slow.bin");
    random_file(&src, 2_500_000, 9);
    let before = emu.stats();
    let t = Instant::now();
    copy_in(&m, &src);
    m.wait_state("slow.bin", "done", Duration::from_secs(60));
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "the commit was not slow"
    );
    let after = emu.stats();
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!(delta("sessions_created"), 1);
    assert_eq!(delta("fragment_puts"), 1);
    assert_eq!(server_bytes(&emu, "slow.bin"), fs::read(&src).unwrap());
    assert_no_violations(&emu);
    m.unmount();
}
