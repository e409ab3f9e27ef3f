//! Progress you can watch (issue 11): `status --watch --until-idle` and `wait --progress` run
//! with stdout piped (not a terminal) during a real upload through the mount, on an emulator
//! capped at 3 MB/s so the upload takes a few seconds. Their plain lines must show the byte
//! count rising and end at done, without escape codes; `status --watch` without
//! `--until-idle` ends by itself when the mount goes away.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SIZE: u64 = 16 << 20;

fn spawn(args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shareuplift")
}

/// Wait for `child` at most `t`; kill it (and fail) past that.
fn finish(mut child: Child, t: Duration, what: &str) -> Output {
    let deadline = Instant::now() + t;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what} did not exit:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The first number of each "N/M bytes" in the lines that contain `marker`.
fn byte_counts(text: &str, marker: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let before = l.split(" bytes").next()?;
            let pair = before.rsplit(' ').next()?;
            let (a, b) = pair.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

#[test]
fn watch_and_wait_progress_print_rising_plain_lines() {
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 3000000}"#));
    let m = Mount::start(&emu, "chunk_size = \"320KiB\"");
    let src = tempfile::NamedTempFile::new().expect("tmp");
    random_file(src.path(), SIZE, 7);
    std::fs::copy(src.path(), m.path("big.bin")).expect("cp");
    let root = m.dir.to_string_lossy().into_owned();
    let file = m.path("big.bin").to_string_lossy().into_owned();
    let watch = spawn(&["status", "--watch", "--until-idle", &root]);
    let wait = spawn(&["wait", "--progress", "--timeout", "120", &file]);
    let w = finish(watch, Duration::from_secs(120), "status --watch");
    let p = finish(wait, Duration::from_secs(120), "wait --progress");
    let wtext = String::from_utf8_lossy(&w.stdout).into_owned();
    let ptext = String::from_utf8_lossy(&p.stdout).into_owned();
    let both = format!("status --watch:\n{wtext}\nwait --progress:\n{ptext}");
    println!("{both}");
    assert!(w.status.success(), "watch exit {:?}\n{both}", w.status);
    assert!(p.status.success(), "wait exit {:?}\n{both}", p.status);
    assert!(
        !both.contains('\x1b'),
        "escape codes in piped output:\n{both}"
    );

    // status --watch: the file's bytes rise while uploading, then one line says done.
    let up: Vec<u64> = byte_counts(&wtext, "big.bin: uploading")
        .into_iter()
        .map(|(n, total)| {
            assert_eq!(total, SIZE, "{both}");
            n
        })
        .collect();
    assert!(
        up.windows(2).all(|w| w[0] <= w[1]),
        "not rising: {up:?}\n{both}"
    );
    let distinct: std::collections::BTreeSet<u64> = up.iter().copied().collect();
    assert!(
        distinct.len() >= 2 && distinct.iter().any(|n| *n > 0 && *n < SIZE),
        "too few progress lines: {up:?}\n{both}"
    );
    let last_file_line = wtext
        .lines()
        .rfind(|l| l.contains("big.bin:"))
        .expect("a line for big.bin");
    assert_eq!(
        last_file_line,
        format!("  big.bin: done {SIZE}/{SIZE} bytes (100%)"),
        "{both}"
    );
    let last = wtext.lines().last().unwrap_or("");
    assert!(
        wtext
            .lines()
            .any(|l| l.starts_with("0 uploading, 0 queued, 1 done, 0 failed")),
        "no idle summary (last line {last:?}):\n{both}"
    );

    // wait --progress: one total, rising, ending at all bytes and done.
    let totals = byte_counts(&ptext, "wait: ");
    assert!(totals.len() >= 3, "too few wait lines:\n{both}");
    assert!(
        totals.windows(2).all(|w| w[0].0 <= w[1].0),
        "wait bytes not rising: {totals:?}\n{both}"
    );
    assert!(
        totals
            .iter()
            .any(|(n, t)| *t == SIZE && *n > 0 && *n < SIZE),
        "no partial progress in wait lines:\n{both}"
    );
    let plast = ptext.lines().last().unwrap_or("");
    assert_eq!(
        plast,
        format!("wait: 1/1 files, {SIZE}/{SIZE} bytes (100%) — done"),
        "{both}"
    );
    assert_eq!(
        emu.item("big.bin").expect("uploaded")["size"],
        SIZE,
        "{both}"
    );

    // Without --until-idle the watch runs until the mount goes away.
    let watch = spawn(&["status", "--watch", &root]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(m.unmount().success());
    let w = finish(
        watch,
        Duration::from_secs(10),
        "status --watch after unmount",
    );
    let text = String::from_utf8_lossy(&w.stdout);
    assert!(w.status.success(), "{text}");
    assert!(text.trim_end().ends_with("is gone"), "{text}");
    assert_no_violations(&emu);
}

#[test]
fn watch_of_a_path_outside_a_mount_fails() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(bin())
        .args(["status", "--watch", "--until-idle"])
        .arg(tmp.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not inside a shareuplift mount"), "{err}");
    let out = Command::new(bin())
        .args(["status", "--until-idle"])
        .arg(tmp.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "--until-idle needs --watch");
}
