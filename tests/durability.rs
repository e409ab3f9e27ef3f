//! Real-mount tests of issue 3, "Never lose a byte": `kill -9` and SIGTERM mid-upload with
//! resumption from the server's offset, files open at a crash kept as `incomplete`, every
//! fault class of the issue against the emulator, bounded retries with `failed` kept in the
//! spool, `.control` retry/discard, `shareuplift wait`, `spool_max` ENOSPC, drain and the fsync
//! barrier. Each test mounts `shareuplift mount` on a spool directory it owns.

mod common;

use std::fs;
use std::io::Write;
use std::process::Command;
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
