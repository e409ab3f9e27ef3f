//! Per-file state through extended attributes (`user.shareuplift.*`, issue 11) and quiet
//! errnos for operations the filesystem does not support (ioctl, foreign xattrs), on a real
//! mount against the emulator, read with `getfattr`/`setfattr` as a script would.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// `getfattr --only-values -n NAME PATH`, or `None` when the attribute is absent.
fn xattr(path: &std::path::Path, name: &str) -> Option<String> {
    let (ok, out) = sh_status(&format!(
        "getfattr --absolute-names --only-values -n {name} '{}' 2>&1",
        path.display()
    ));
    ok.then_some(out)
}

#[test]
fn state_goes_queued_uploading_done_with_url_and_hash() {
    // 6 MiB at 1.5 MB/s: several seconds of `uploading` after the 1 s write-back delay.
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 1500000}"#));
    let m = Mount::start(&emu, "chunk_size = \"320KiB\"");
    let src = emu.dir.path().join("big.bin");
    random_file(&src, 6 << 20, 11);
    std::fs::create_dir(m.path("Docs")).expect("mkdir");
    sh(&format!(
        "cp '{}' '{}'",
        src.display(),
        m.path("Docs/big.bin").display()
    ));

    let file = m.path("Docs/big.bin");
    let mut states: Vec<String> = Vec::new();
    let mut uploaded_seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = xattr(&file, "user.shareuplift.state").unwrap_or_else(|| "<none>".into());
        if let Some(u) = xattr(&file, "user.shareuplift.uploaded") {
            uploaded_seen.push(u.trim().parse().expect("uploaded is a number"));
        }
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "done" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never done; states {states:?}\n{}",
            tail(&m.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pos = |s: &str| states.iter().position(|x| x == s);
    let (q, u, d) = (pos("queued"), pos("uploading"), pos("done"));
    assert!(
        q.is_some() && u.is_some() && q < u && u < d,
        "states seen: {states:?}"
    );
    assert!(
        uploaded_seen.iter().any(|&b| b > 0 && b < 6 << 20),
        "no partial progress seen: {uploaded_seen:?}"
    );

    // Once done: the item's web URL and hash, as the emulator has them.
    let item = emu.item("Docs/big.bin").expect("item in emulator");
    let want_url = item["webUrl"].as_str().expect("webUrl").to_string();
    assert!(want_url.starts_with("http"), "{want_url}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = loop {
        if let Some(u) = xattr(&file, "user.shareuplift.url") {
            break u;
        }
        assert!(Instant::now() < deadline, "no url attribute");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(url, want_url);
    assert_eq!(
        xattr(&file, "user.shareuplift.quickxorhash").as_deref(),
        Some(qxh(&src).as_str())
    );
    assert_eq!(
        xattr(&file, "user.shareuplift.uploaded").as_deref(),
        Some((6u64 << 20).to_string().as_str())
    );
    let dump = sh(&format!(
        "getfattr --absolute-names -d '{}'",
        file.display()
    ));
    for name in ["state=\"done\"", "uploaded=", "url=", "quickxorhash="] {
        assert!(dump.contains(&format!("user.shareuplift.{name}")), "{dump}");
    }
    assert!(!dump.contains("user.shareuplift.error"), "{dump}");

    // Folders and virtual files have nothing extra; a file in SharePoint is `done`.
    let dir_dump = sh(&format!(
        "getfattr --absolute-names -d '{}'",
        m.path("Docs").display()
    ));
    assert!(!dir_dump.contains("user.shareuplift"), "{dir_dump}");
    let status_dump = sh(&format!(
        "getfattr --absolute-names -d '{}'",
        m.path(".status").display()
    ));
    assert!(!status_dump.contains("user.shareuplift"), "{status_dump}");
    let _ = m.unmount();
}

#[test]
fn unsupported_operations_answer_quietly_with_the_right_errno() {
    let emu = Emu::start(None);
    emu.seed("seeded.txt", b"from SharePoint".to_vec());
    let m = Mount::start(&emu, "");
    let f = m.path("seeded.txt");

    // Unknown attributes: ENODATA; setting or removing any: ENOTSUP.
    let (ok, out) = sh_status(&format!("getfattr -n user.other '{}' 2>&1", f.display()));
    assert!(!ok && out.contains("No such attribute"), "{out}");
    let (ok, out) = sh_status(&format!(
        "getfattr -n security.selinux '{}' 2>&1",
        f.display()
    ));
    assert!(!ok && out.contains("No such attribute"), "{out}");
    for cmd in [
        "setfattr -n user.tag -v x",
        "setfattr -n user.shareuplift.state -v done",
        "setfattr -x user.shareuplift.state",
    ] {
        let (ok, out) = sh_status(&format!("{cmd} '{}' 2>&1", f.display()));
        assert!(
            !ok && out.contains("Operation not supported"),
            "{cmd}: {out}"
        );
    }
    // A file this mount never uploaded, but SharePoint has: done, with its URL.
    assert_eq!(xattr(&f, "user.shareuplift.state").as_deref(), Some("done"));
    let want = emu.item("seeded.txt").expect("item")["webUrl"]
        .as_str()
        .expect("webUrl")
        .to_string();
    assert_eq!(xattr(&f, "user.shareuplift.url"), Some(want));

    // ioctl (TCGETS from Python's open, which asks isatty) is ENOTTY; the file reads fine.
    let py = format!(
        "import os, json\n\
         fd = os.open('{status}', os.O_RDONLY)\n\
         assert not os.isatty(fd)\n\
         os.close(fd)\n\
         json.load(open('{status}'))\n\
         f = open('{file}', 'rb', buffering=0); f.read(); f.close()\n\
         print('ok')",
        status = m.path(".status.json").display(),
        file = f.display()
    );
    let out = sh(&format!("python3 -c \"{py}\""));
    assert_eq!(out.trim(), "ok");
    let (ok, out) = sh_status(&format!("stty -F '{}' 2>&1", f.display()));
    assert!(!ok && out.contains("Inappropriate ioctl"), "{out}");

    std::thread::sleep(Duration::from_millis(200));
    let log = m.log_text();
    assert!(
        !log.contains("Not Implemented"),
        "fuser warning in the log:\n{log}"
    );
    assert!(!log.contains("WARN"), "warnings in the log:\n{log}");
    let _ = m.unmount();
}
