//! Real-mount tests of the upload-on-close path against the built-in emulator: large files in
//! several fragments, nested trees, injected faults, `.status` transitions, and start-up
//! errors. Each test mounts its own filesystem with `shareuplift mount` and drives it with
//! `cp`, `mkdir -p`, `ls`.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1024 * 1024;

/// 300 MiB through `cp`: it returns before the (bandwidth-limited) upload ends, and the file
/// arrives byte-identical in several PUTs with no protocol violation. `chunk_size` set in the
/// configuration is a fixed fragment size (no sizing to the link).
#[test]
fn big_file_arrives_identical_and_cp_returns_first() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 150000000}"#));
    let m = Mount::start(&emu, "chunk_size = \"10MiB\"");
    let src = emu.dir.path().join("big.bin");
    random_file(&src, 300 * MIB, 1);
    fs::create_dir(m.path("Docs")).unwrap();

    let t = Instant::now();
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("Docs/").display()
    ));
    let cp_time = t.elapsed();
    let at_return = m
        .upload("Docs/big.bin")
        .expect("status entry right after cp");
    assert_ne!(
        at_return["state"], "done",
        "cp waited for the upload ({cp_time:?})"
    );

    let done = m.wait_state("Docs/big.bin", "done", Duration::from_secs(300));
    assert_eq!(done["size"], 300 * MIB);
    assert_eq!(done["uploaded"], 300 * MIB);
    let item = emu.item("Docs/big.bin").expect("stored");
    assert_eq!(item["size"], 300 * MIB);
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    let puts = emu.stats()["fragment_puts"].as_u64().unwrap();
    assert!(
        puts >= 30,
        "300 MiB in 10 MiB fragments needs >= 30 PUTs, saw {puts}"
    );
    assert_no_violations(&emu);
    // Read-back through the mount (now from SharePoint) matches too.
    sh(&format!(
        "cmp {} {}",
        src.display(),
        m.path("Docs/big.bin").display()
    ));
    // The spool is empty once SharePoint has committed.
    let left: Vec<_> = fs::read_dir(m.spool.join("data")).unwrap().collect();
    assert!(left.is_empty(), "spool files left: {left:?}");
    assert!(m.unmount().success());
}

/// `mkdir -p` and `cp -r` of 20 files in nested folders: all arrive and `ls` shows them.
#[test]
fn nested_tree_arrives_and_lists() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("tree");
    let mut files = Vec::new();
    for i in 0..20 {
        let rel = format!("d{}/sub{}/f{i}.dat", i % 3, i % 2);
        let p = src.join(&rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        random_file(&p, (i as u64) * 37_000 + 1, i as u64 + 10);
        files.push(rel);
    }
    sh(&format!("mkdir -p {}", m.path("Backup/2026/nov").display()));
    sh(&format!(
        "cp -r {}/. {}",
        src.display(),
        m.path("Backup/2026/nov").display()
    ));
    let st = m.settle(Duration::from_secs(120));
    for rel in &files {
        let remote = format!("Backup/2026/nov/{rel}");
        let item = emu
            .item(&remote)
            .unwrap_or_else(|| panic!("{remote} missing: {st:#}"));
        assert_eq!(
            item["quickXorHash"].as_str().unwrap(),
            qxh(&src.join(rel)),
            "{remote}"
        );
    }
    // A fresh mount lists what is in SharePoint.
    drop(m);
    let m2 = Mount::start(&emu, "");
    let listing = sh(&format!(
        "cd {} && find Backup -type f | sort",
        m2.dir.display()
    ));
    let mut want: Vec<String> = files
        .iter()
        .map(|f| format!("Backup/2026/nov/{f}"))
        .collect();
    want.sort();
    assert_eq!(listing.lines().collect::<Vec<_>>(), want);
    let ls = sh(&format!("ls {}", m2.path("Backup/2026/nov/d0").display()));
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        vec!["sub0", "sub1"]
    );
    assert_no_violations(&emu);
}

/// The same 300 MiB file under 10% 5xx, 5% dropped connections with partial acceptance and
/// 429s still arrives identical, with no protocol violation.
#[test]
fn big_file_survives_faults() {
    let emu = Emu::start(Some(
        r#"{"seed": 7, "error_rate": 0.10, "drop_rate": 0.05, "throttle_rate": 0.05, "retry_after_secs": 1}"#,
    ));
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("big.bin");
    random_file(&src, 300 * MIB, 2);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("big.bin").display()
    ));
    let done = m.wait_state("big.bin", "done", Duration::from_secs(600));
    let item = emu.item("big.bin").expect("stored");
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    let stats = emu.stats();
    assert!(stats["errors_injected"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["drops"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["throttled"].as_u64().unwrap() > 0, "{stats}");
    assert!(done["attempts"].as_u64().unwrap() > 1, "{done}");
    assert_no_violations(&emu);
}

/// `.status` / `.status.json` show queued → uploading (growing) → done, and a refused upload as
/// failed with its reason.
#[test]
fn status_shows_lifecycle_and_failure() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 20000000}"#));
    let m = Mount::start(&emu, "workers = 1\nchunk_size = \"1920KiB\"\n");
    let a = emu.dir.path().join("a.bin");
    let b = emu.dir.path().join("b.bin");
    random_file(&a, 60 * MIB, 3);
    random_file(&b, 4 * MIB, 4);
    sh(&format!(
        "cp {} {} {}",
        a.display(),
        b.display(),
        m.dir.display()
    ));

    let mut seen_b_queued = false;
    let mut a_progress = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = m.status_json();
        let find = |p: &str| {
            st["uploads"]
                .as_array()
                .and_then(|v| v.iter().find(|u| u["path"] == p).cloned())
        };
        if let Some(u) = find("a.bin") {
            if u["state"] == "uploading" {
                a_progress.push(u["uploaded"].as_u64().unwrap());
            }
            if u["state"] == "done" {
                break;
            }
        }
        if find("b.bin").is_some_and(|u| u["state"] == "queued") {
            seen_b_queued = true;
        }
        assert!(Instant::now() < deadline, "no progress: {st:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen_b_queued, "b.bin was never shown queued behind a.bin");
    assert!(
        a_progress.len() >= 3,
        "uploading seen {} times",
        a_progress.len()
    );
    assert!(
        a_progress.windows(2).all(|w| w[0] <= w[1]),
        "{a_progress:?}"
    );
    assert!(a_progress.first() < a_progress.last(), "{a_progress:?}");
    m.wait_state("b.bin", "done", Duration::from_secs(60));
    let table = m.status_text();
    assert!(table.contains("a.bin") && table.contains("done"), "{table}");

    // A permanently refused upload: the tenant is out of quota.
    emu.set_faults(r#"{"script": [{"on": "create_session", "status": 507, "count": 100}]}"#);
    let c = emu.dir.path().join("c.bin");
    random_file(&c, MIB, 5);
    sh(&format!("cp {} {}", c.display(), m.dir.display()));
    let failed = m.wait_state("c.bin", "failed", Duration::from_secs(60));
    let reason = failed["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(reason.contains("quota"), "reason: {failed}");
    let table = m.status_text();
    assert!(
        table.contains("c.bin") && table.contains("failed"),
        "{table}"
    );
    // The data stays in the spool.
    let kept: Vec<_> = fs::read_dir(m.spool.join("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "data"))
        .collect();
    assert_eq!(kept.len(), 1, "failed upload's spool file must be kept");
    assert!(emu.item("c.bin").is_none());
}

/// Bad credentials, a wrong site and a bad chunk size stop start-up with one line naming the
/// problem, and no secret appears in any log.
#[test]
fn startup_errors_are_one_line_and_secret_free() {
    let emu = Emu::start(None);
    // Both credential sets are in the config: `auth` picks the app's.
    let secret_lines = format!(
        "auth = \"client_secret\"\nclient_secret = \"{}\"\n",
        emu.info.client_secret
    );
    let cases = [
        ("password = \"wrong-password-123\"\n", "password"),
        (
            "site_url = \"https://emulator.sharepoint.test/sites/Nope\"\n",
            "site",
        ),
        ("chunk_size = \"100000\"\n", "chunk_size"),
        (
            "folder_url = \"/sites/Team/Shared Documents/NoSuchFolder\"\n",
            "folder",
        ),
    ];
    let mut logs = String::new();
    for (extra, needle) in cases {
        // Replace the key's good value with the bad one.
        let tmp = tempfile::tempdir().unwrap();
        let mut text = config_for(&emu.info, &tmp.path().join("spool"), "");
        let key = extra.split(' ').next().unwrap();
        text = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .collect::<Vec<_>>()
            .join("\n");
        text.push('\n');
        text.push_str(extra);
        let cfg = tmp.path().join("c.toml");
        fs::write(&cfg, text).unwrap();
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let out = std::process::Command::new(bin())
            .args(["-v", "mount", "--config"])
            .arg(&cfg)
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let last = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("shareuplift: "))
            .unwrap_or_else(|| panic!("no one-line error: {stderr}"));
        assert!(last.to_lowercase().contains(needle), "{extra}: {last}");
        logs.push_str(&stderr);
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    // A successful mount with uploads (app credentials), at debug level, leaks nothing.
    let m = Mount::start(&emu, &secret_lines);
    let f = emu.dir.path().join("x.bin");
    random_file(&f, 3 * MIB, 9);
    sh(&format!("cp {} {}", f.display(), m.dir.display()));
    m.wait_state("x.bin", "done", Duration::from_secs(60));
    logs.push_str(&m.log_text());
    logs.push_str(&m.status_text());
    for secret in [
        &emu.info.password,
        &emu.info.client_secret,
        &"wrong-password-123".to_string(),
    ] {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
    }
    assert!(
        !logs.contains("tempauth"),
        "an upload URL leaked into the logs"
    );
}
