//! Running like a system service (issue 11): systemd's notify protocol (`READY=1` only once
//! the mount answers, `STATUS=`, `STOPPING=1` at SIGTERM), `--daemon` (returns once ready,
//! exit code says whether the mount came up), `--log-file` reopened on SIGHUP, and journald
//! output (`<N>` prefixes, no timestamps) when `$JOURNAL_STREAM` names stderr.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Setup {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
}

fn setup(emu: &Emu, extra: &str) -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mnt");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        config_for(&emu.info, &tmp.path().join("spool"), extra),
    )
    .expect("config");
    Setup { tmp, dir, config }
}

fn mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

fn wait_unmounted(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while mounted(dir) {
        assert!(Instant::now() < deadline, "still mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the process whose command line mentions `needle`.
fn pid_with_arg(needle: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) && pid != std::process::id() as i32 {
            return Some(pid);
        }
    }
    None
}

#[test]
fn notify_ready_after_the_mount_answers_then_stopping_at_sigterm() {
    let emu = Emu::start(None);
    let s = setup(&emu, "");
    let sock_path = s.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let log = s.tmp.path().join("mount.log");
    let mut child = Command::new(bin())
        .args(["-v", "mount", "--config"])
        .arg(&s.config)
        .arg(&s.dir)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");

    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    // At the moment READY arrives the mount must already serve requests.
    let answers = mounted(&s.dir) && std::fs::metadata(s.dir.join(".status")).is_ok();
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first message: {first:?}"
    );
    assert!(answers, "READY=1 before the mount answered");
    assert!(first.contains("STATUS=idle"), "{first:?}");

    write_file(&s.dir.join("a.txt"), b"hello");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut msgs = Vec::new();
    while Instant::now() < deadline {
        let n = sock.recv(&mut buf).expect("status");
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        msgs.push(m.clone());
        if m.contains("done") {
            break;
        }
    }
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("1 done")),
        "{msgs:?}"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("stopping");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    let st = child.wait().expect("wait");
    assert!(st.success(), "{st}");
    wait_unmounted(&s.dir);
}

#[test]
fn daemon_returns_once_ready_and_reopens_its_log_on_sighup() {
    let emu = Emu::start(None);
    let s = setup(&emu, "");
    let log = s.tmp.path().join("shareuplift.log");
    let t0 = Instant::now();
    let out = Command::new(bin())
        .arg("mount")
        .arg("--daemon")
        .arg("--log-file")
        .arg(&log)
        .arg("--config")
        .arg(&s.config)
        .arg(&s.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    // Returned means ready: the mount answers now, without waiting.
    assert!(mounted(&s.dir), "not mounted when --daemon returned");
    std::fs::metadata(s.dir.join(".status")).expect("mount answers");
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("ready:"), "{text}");

    let pid = pid_with_arg(&s.dir.to_string_lossy()).expect("daemon pid");
    let rotated = s.tmp.path().join("shareuplift.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened")) {
        assert!(Instant::now() < deadline, "log not reopened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still mounted after SIGHUP, and working.
    write_file(&s.dir.join("b.txt"), b"after rotation");
    sh(&format!(
        "{} wait --timeout 30 '{}'",
        bin(),
        s.dir.join("b.txt").display()
    ));
    assert!(emu.item("b.txt").is_some());
    // The unit's ExecStop: drain, and return only once the mount is gone.
    sh(&format!(
        "{} drain --timeout 60 '{}'",
        bin(),
        s.dir.display()
    ));
    assert!(
        !mounted(&s.dir),
        "drain --timeout returned while still mounted"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("spool empty")) {
        assert!(Instant::now() < deadline, "no spool report in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemon_with_a_wrong_password_fails_with_one_line() {
    let emu = Emu::start(None);
    let s = setup(&emu, "");
    let cfg = std::fs::read_to_string(&s.config).expect("read");
    let cfg = cfg.replace(&emu.info.password, "wrong-password");
    std::fs::write(&s.config, cfg).expect("write");
    let out = Command::new(bin())
        .args(["mount", "--daemon", "--config"])
        .arg(&s.config)
        .arg(&s.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("shareuplift:"))
        .collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(!err.contains("wrong-password"), "{err}");
    assert!(!mounted(&s.dir));
}

#[test]
fn journald_lines_have_priorities_and_no_timestamps() {
    let emu = Emu::start(None);
    let s = setup(&emu, "");
    let log = s.tmp.path().join("journal.txt");
    let f = std::fs::File::create(&log).expect("log");
    let meta = f.metadata().expect("meta");
    let mut child = Command::new(bin())
        .args(["mount", "--config"])
        .arg(&s.config)
        .arg(&s.dir)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready:")) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    sh(&format!("fusermount3 -u '{}'", s.dir.display()));
    assert!(child.wait().expect("wait").success());
    let text = std::fs::read_to_string(&log).expect("read");
    for line in text.lines() {
        assert!(
            line.starts_with("<6>") || line.starts_with("<4>") || line.starts_with("<3>"),
            "{line:?} in\n{text}"
        );
        assert!(!line.contains("INFO"), "{line}");
    }
    assert!(text.contains("<6>mounted at"), "{text}");
}
