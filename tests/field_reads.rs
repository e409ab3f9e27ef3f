//! Real-mount tests of how SharePoint's reads, listings, stalls and sign-in refusals go wrong
//! (issue 17; field-reference entries 18, 19, 20, 24), one emulator knob at a time: what the
//! user sees through `ls`, `cat`, `cmp`, `dd`, `cp`, `.status` and the log.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Seed a file in the drive root (outside the mount folder).
fn seed_drive_root(emu: &Emu, name: &str, data: Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/files/Documents/{name}", emu.info.admin_url))
        .body(data)
        .send()
        .expect("seed");
    assert!(r.status().is_success());
}

fn field_faults(emu: &Emu) -> Value {
    emu.stats()["read_faults"].clone()
}

fn ls(dir: &Path) -> (bool, Vec<String>, String) {
    let (ok, out) = sh_status(&format!("ls -1 '{}' 2>&1", dir.display()));
    let names = if ok {
        out.lines().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    (ok, names, out)
}

/// `cat` a mount file: its bytes must be the original's, or a prefix of them with an error.
fn cat_is_right_or_error(mounted: &Path, original: &[u8]) -> bool {
    let out = std::process::Command::new("cat")
        .arg(mounted)
        .output()
        .expect("cat");
    assert!(
        original.starts_with(&out.stdout),
        "{}: other bytes than the file's ({} bytes read)",
        mounted.display(),
        out.stdout.len()
    );
    if out.status.success() {
        assert_eq!(out.stdout.len(), original.len(), "{}", mounted.display());
    }
    out.status.success()
}

#[test]
fn a_next_link_gone_astray_is_never_mixed_into_a_listing() {
    let emu = Emu::start(None);
    let mut want: Vec<String> = (0..450).map(|i| format!("f{i:03}.txt")).collect();
    for n in &want {
        emu.seed(&format!("big/{n}"), b"in big".to_vec());
    }
    // The drive root holds files of its own (the page the wrong link brings).
    for i in 0..260 {
        seed_drive_root(&emu, &format!("root-{i:03}.txt"), b"in root".to_vec());
    }
    want.sort();
    emu.set_field(r#"{"children_page_max":200,"children_next_link_to_root":true}"#);
    let m = Mount::start(&emu, "");
    let (ok, names, out) = ls(&m.path("big"));
    if ok {
        assert_eq!(names, want, "a listing is exactly the folder's items");
    } else {
        assert!(out.contains("Input/output error"), "{out}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("root-")),
        "root's files mixed in"
    );
    let log = m.log_text();
    assert!(log.contains("went astray"), "{}", tail(&log, 20));
    assert!(field_faults(&emu)["next_links_to_root"].as_u64() >= Some(2));
    // The fault stops: exactly the items.
    emu.set_field(r#"{"children_next_link_to_root":false}"#);
    let (ok, names, out) = ls(&m.path("big"));
    assert!(ok, "{out}");
    assert_eq!(names, want);
    // The drive root itself is unaffected by the knob (its first page links correctly).
    assert_no_violations(&emu);
}

#[test]
fn reads_through_cut_downloads_and_html_pages_are_right_or_fail() {
    let emu = Emu::start(None);
    let local = tempfile::tempdir().unwrap();
    let names = [
        "cut.bin",
        "cut-dd.bin",
        "html.bin",
        "always.bin",
        "range.bin",
    ];
    let mut data = std::collections::HashMap::new();
    for (i, n) in names.iter().enumerate() {
        let p = local.path().join(n);
        random_file(&p, 5 << 20, 100 + i as u64);
        emu.seed_file(n, &p);
        data.insert(*n, fs::read(&p).unwrap());
    }
    let m = Mount::start(&emu, "");
    // A download cut mid-body: the read resumes from the byte it had.
    emu.set_field(r#"{"download_cut_rate":0.5}"#);
    assert!(
        cat_is_right_or_error(&m.path("cut.bin"), &data["cut.bin"]),
        "cut downloads are resumed: {}",
        tail(&m.log_text(), 20)
    );
    let mounted = m.path("cut-dd.bin");
    let out = std::process::Command::new("dd")
        .arg(format!("if={}", mounted.display()))
        .args(["bs=1M", "skip=2", "count=2", "status=none"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout == data["cut-dd.bin"][2 << 20..4 << 20],
        "dd skip=2"
    );
    assert!(field_faults(&emu)["downloads_cut"].as_u64() >= Some(2));
    // An HTML page answered 200: never file data; asked again, the file comes.
    emu.set_field(r#"{"download_cut_rate":0,"download_html_rate":0.5}"#);
    assert!(cat_is_right_or_error(
        &m.path("html.bin"),
        &data["html.bin"]
    ));
    // Always the page: an error, not 397 bytes of HTML or 4 of 5 MiB.
    emu.set_field(r#"{"download_html_rate":0,"download_html_name":"always.bin"}"#);
    assert!(!cat_is_right_or_error(
        &m.path("always.bin"),
        &data["always.bin"]
    ));
    assert!(
        m.log_text().contains("HTML page"),
        "{}",
        tail(&m.log_text(), 20)
    );
    assert!(field_faults(&emu)["html_pages"].as_u64() >= Some(3));
    // Range ignored: the ranged read is still right.
    emu.set_field(r#"{"download_html_name":null,"download_ignore_range":true}"#);
    let out = std::process::Command::new("dd")
        .arg(format!("if={}", m.path("range.bin").display()))
        .args(["bs=1M", "skip=3", "count=1", "status=none"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout == data["range.bin"][3 << 20..4 << 20],
        "Range ignored"
    );
    assert!(field_faults(&emu)["ranges_ignored"].as_u64() >= Some(1));
}

#[test]
fn a_fifth_of_every_kind_stalling_costs_seconds_not_minutes() {
    // A session whose createUploadSession answer stalled after it was made holds its path
    // until it expires: short-lived sessions keep that wait inside the test's bound.
    let emu = Emu::start(Some(r#"{"session_ttl_secs": 10}"#));
    for i in 0..200 {
        emu.seed(&format!("seeded/s{i:03}.txt"), b"seeded".to_vec());
    }
    let m = Mount::start(&emu, "idle_timeout = 6\nsession_idle_secs = 10\n");
    // Forever (until the client gives up), before headers and mid-body alternately.
    emu.set_field(r#"{"stall_rate":0.2,"stall_secs":null,"stall_phase":"mixed"}"#);
    let started = Instant::now();
    let (ok, names, out) = ls(&m.path("seeded"));
    let took = started.elapsed();
    assert!(ok, "{out}");
    assert_eq!(names.len(), 200, "{out}");
    assert!(took < Duration::from_secs(30), "first ls took {took:?}");
    eprintln!("first ls of 200 files through stalls: {took:?}");

    let local = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..20 {
        let p = local.path().join(format!("small-{i:02}.bin"));
        random_file(&p, 200 * 1024, 500 + i);
        files.push(p);
    }
    // Uploads: every kind but createUploadSession stalls (a lost createUploadSession answer
    // leaves a session holding the path until it expires: the worker's stale-session wait,
    // covered by the upload tests, not a stall this test can bound).
    emu.set_field(
        r#"{"stall_kinds":["fragment_put","upload_url_other","item_get","list_children",
             "token","content_get","mkdir","patch","delete","delta","simple_upload"]}"#,
    );
    let big = local.path().join("big.bin");
    random_file(&big, 30 << 20, 999);
    files.push(big);
    let started = Instant::now();
    for p in &files {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        sh(&format!(
            "cp '{}' '{}'",
            p.display(),
            m.path(&name).display()
        ));
    }
    let st = m.settle(Duration::from_secs(120));
    let took = started.elapsed();
    for p in &files {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let item = emu
            .item(&name)
            .unwrap_or_else(|| panic!("{name} not uploaded: {:?}\n{st:#}", emu.file_paths()));
        assert_eq!(
            item["quickXorHash"].as_str(),
            Some(qxh(p).as_str()),
            "{name}"
        );
    }
    let ff = field_faults(&emu);
    eprintln!("20 files + 30 MiB through stalls: {took:?}; {ff}");
    assert!(
        // Both phases were met, several times (the spread is deterministic per kind, so
        // the split between them follows the request mix).
        ff["stalls_head"].as_u64() >= Some(2)
            && ff["stalls_body"].as_u64() >= Some(2)
            && ff["stalls_head"].as_u64().unwrap_or(0) + ff["stalls_body"].as_u64().unwrap_or(0)
                >= 6,
        "{ff}"
    );
    assert!(
        took < Duration::from_secs(45),
        "uploads took {took:?} through {ff}\n{}",
        tail(&m.log_text(), 30)
    );
    assert_no_violations(&emu);
}

#[test]
fn conditional_access_at_start_up_is_one_clear_line() {
    let emu = Emu::start(None);
    emu.set_field(r#"{"token_refusal":53003}"#);
    let (_, log) = Mount::try_start(&emu, "startup_timeout = 5\n", &[])
        .map(|_| ())
        .expect_err("the mount must not start");
    assert!(
        log.contains(
            "sign-in blocked by a Conditional Access policy (AADSTS53003): ask your admin to \
             allow this device/app"
        ),
        "{log}"
    );
    assert!(
        emu.stats()["read_faults"]["token_refusals"].as_u64() == Some(1),
        "one attempt: {}",
        emu.stats()
    );
}

/// Wait until `.status` says `needle`; returns the text.
fn wait_status(m: &Mount, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = m.status_text();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`{needle}` never in .status:\n{text}\nlog:\n{}",
            tail(&m.log_text(), 20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn conditional_access_at_refresh_pauses_with_one_line_and_no_storm() {
    // Tokens live 6 s: the next upload after that needs a refresh.
    let emu = Emu::start(Some(r#"{"access_token_ttl_secs": 6}"#));
    let m = Mount::start(&emu, "");
    emu.set_field(r#"{"token_refusal":50076}"#);
    std::thread::sleep(Duration::from_secs(7));
    write_file(&m.path("after-mfa.txt"), b"needs a token");
    let line = "sign-in needs multi-factor authentication (AADSTS50076)";
    let status = wait_status(&m, line, Duration::from_secs(30));
    assert!(status.contains("device_code"), "{status}");
    let tokens = emu.stats()["by_kind"]["token"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let later = emu.stats()["by_kind"]["token"].as_u64().unwrap();
    assert_eq!(later, tokens, "no token request while blocked");
    let log = m.log_text();
    let said = log
        .lines()
        .filter(|l| l.contains(line) && !l.contains(" DEBUG "))
        .count();
    assert_eq!(said, 1, "logged once (above debug):\n{}", tail(&log, 30));
    assert!(emu.item("after-mfa.txt").is_none());
    let st = m.status_json();
    let up = st["uploads"][0]["state"].as_str().unwrap_or("");
    assert_ne!(up, "failed", "the upload waits, it does not fail: {st:#}");
}

#[test]
fn graph_refusing_valid_tokens_pauses_with_one_line_and_no_storm() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    emu.set_field(r#"{"graph_refuses_tokens":true}"#);
    write_file(&m.path("located.txt"), b"from a blocked network");
    let status = wait_status(
        &m,
        "Microsoft Graph refuses freshly issued sign-ins",
        Duration::from_secs(30),
    );
    assert!(status.contains("Conditional Access"), "{status}");
    let refusals = field_faults(&emu)["graph_refusals"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        field_faults(&emu)["graph_refusals"].as_u64().unwrap(),
        refusals,
        "no request while blocked"
    );
    assert!(emu.stats()["by_kind"]["token"].as_u64() <= Some(3));
}
