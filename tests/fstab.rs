//! mount(8) and fstab (issue 11): `mount -t fuse.shareuplift CONFIG DIR -o opts` and an fstab
//! line mounted with `mount --fstab FILE DIR`, run in a private mount namespace (`unshare -m`)
//! so the host's mounts and /etc/fstab are untouched. Each mount returns once ready (the
//! binary daemonizes), takes a file, and `umount` ends the daemon; a wrong config makes
//! `mount` fail with one line. `umount` drains: a file still uploading when `umount` returns
//! is committed by the daemon before it exits (`unmount_drain`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Tests here run one at a time. A private mount namespace (`unshare -m`) made while another
/// test's FUSE mount exists gets a copy of that mount, and the copy keeps the FUSE connection
/// alive after `fusermount3 -u` in the host namespace: the other test's process would go on
/// serving instead of seeing its unmount.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn running_with(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
            })
        })
        .unwrap_or(false)
}

/// Run `script` in a private mount namespace. mount(8) runs helpers with a fixed PATH
/// (`/usr/local/sbin:/usr/local/bin:…`), so scripts bind the test's bin dir (holding a
/// `shareuplift` symlink to the built binary) over /usr/local/bin — inside the namespace only.
fn unshare(script: &str) -> (bool, String) {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", script])
        .output()
        .expect("unshare");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn mount_t_and_fstab_line_upload_and_umount() {
    let _serial = serial();
    // 4 MB/s: the 8 MiB file takes ~2 s, so it is still uploading when `umount` returns.
    let emu = Emu::start(Some(r#"{"bandwidth_bytes_per_sec": 4000000}"#));
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    for d in ["bin", "m1", "m2"] {
        std::fs::create_dir(t.join(d)).expect("mkdir");
    }
    std::os::unix::fs::symlink(bin(), t.join("bin/shareuplift")).expect("symlink");
    // Both configs say `unmount_drain = 0` (config_for); m1's `-o unmount_drain=60` wins.
    for (name, spool) in [("c1.toml", "s1"), ("c2.toml", "s2")] {
        std::fs::write(t.join(name), config_for(&emu.info, &t.join(spool), "")).expect("cfg");
    }
    let big = t.join("big.bin");
    random_file(&big, 8 << 20, 11);
    let fstab = t.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test fstab\n{} {} fuse.shareuplift _netdev,nofail,allow_other,x-systemd.automount,chunk_size=320KiB,workers=2 0 0\n",
            t.join("c2.toml").display(),
            t.join("m2").display()
        ),
    )
    .expect("fstab");
    let script = format!(
        r#"set -e
export PATH={t}/bin:$PATH
mount --bind {t}/bin /usr/local/bin
mount -t fuse.shareuplift {t}/c1.toml {t}/m1 -o rw,allow_other,default_permissions,_netdev,nofail,workers=2,status_retention=60,uid=0,gid=0,umask=022,file_mode=0644,log_file={t}/m1.log,unmount_drain=60
grep -q " {t}/m1 " /proc/self/mountinfo
echo via-mount-t > {t}/m1/a.txt
shareuplift wait --timeout 30 {t}/m1/a.txt
cp {t}/big.bin {t}/m1/big.bin
umount {t}/m1
mount --fstab {t}/fstab {t}/m2
echo via-fstab > {t}/m2/b.txt
shareuplift wait --timeout 30 {t}/m2/b.txt
umount {t}/m2
echo finished
"#,
        t = t.display()
    );
    let (ok, out) = unshare(&script);
    assert!(ok && out.contains("finished"), "{out}");
    // umount ended both daemons; the first one after uploading what was still queued.
    let deadline = Instant::now() + Duration::from_secs(45);
    for m in ["m1", "m2"] {
        let needle = t.join(m).to_string_lossy().into_owned();
        while running_with(&needle) {
            assert!(
                Instant::now() < deadline,
                "daemon for {m} still running; m1.log:\n{}",
                std::fs::read_to_string(t.join("m1.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (rel, size) in [("a.txt", 12), ("b.txt", 10), ("big.bin", 8 << 20)] {
        let item = emu
            .item(rel)
            .unwrap_or_else(|| panic!("{rel} not uploaded: {out}"));
        assert_eq!(item["size"], size, "{rel}");
    }
    assert_eq!(
        emu.item("big.bin").expect("big.bin")["quickXorHash"],
        qxh(&big).as_str(),
        "big.bin content"
    );
    let log = std::fs::read_to_string(t.join("m1.log")).unwrap_or_default();
    assert!(
        log.contains("unmount drain: uploading what is queued")
            && log.contains("unmount drain: every queued upload finished"),
        "the daemon did not drain after umount:\n{log}"
    );
    assert!(
        log.contains("spool empty"),
        "spool not empty after the drain:\n{log}"
    );
    assert_no_violations(&emu);
}

#[test]
fn wrong_config_or_option_fails_mount_with_one_line() {
    let _serial = serial();
    let emu = Emu::start(None);
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    std::fs::create_dir(t.join("bin")).expect("mkdir");
    std::fs::create_dir(t.join("m")).expect("mkdir");
    std::os::unix::fs::symlink(bin(), t.join("bin/shareuplift")).expect("symlink");
    let bad = config_for(&emu.info, &t.join("s"), "").replace(&emu.info.password, "nope");
    std::fs::write(t.join("bad.toml"), bad).expect("cfg");
    std::fs::write(t.join("good.toml"), config_for(&emu.info, &t.join("s"), "")).expect("cfg");
    for (cfg, opts, want) in [
        ("missing.toml", "allow_other", "missing.toml"),
        ("bad.toml", "allow_other", "sign"),
        ("good.toml", "frobnicate=1", "unknown mount option"),
        ("good.toml", "ro", "read-only"),
    ] {
        let script = format!(
            "mount --bind {t}/bin /usr/local/bin; mount -t fuse.shareuplift {t}/{cfg} {t}/m -o {opts} 2>&1; echo \"rc=$?\"",
            t = t.display()
        );
        let (_, out) = unshare(&script);
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines
                .last()
                .is_some_and(|l| *l != "rc=0" && l.starts_with("rc=")),
            "{cfg} {opts}: mount succeeded?\n{out}"
        );
        assert_eq!(lines.len(), 2, "{cfg} {opts}: not one line:\n{out}");
        assert!(
            lines[0].starts_with("shareuplift: ") && lines[0].to_lowercase().contains(want),
            "{cfg} {opts}: {out}"
        );
        assert!(!out.contains("nope"), "password in the message: {out}");
    }
    assert!(!Path::new(&t.join("m/.status")).exists());
}

/// The unmount drain is bounded: with `unmount_drain = 3` and a file that needs ~16 s, the
/// process exits ~3 s after `fusermount3 -u`, names what it left, and the next mount finishes
/// it from the kept session. A SIGTERM during a (long) drain stops it at once.
#[test]
fn unmount_drain_is_bounded_and_a_signal_cuts_it_short() {
    let _serial = serial();
    let (emu, _keep, spool, m, src) = unmount_while_uploading(2_000_000, 3, 32 << 20);
    let t0 = Instant::now();
    let (st, log) = m.wait_exit(Duration::from_secs(30));
    let took = t0.elapsed();
    assert!(st.success(), "{st:?}\n{log}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "exited after {took:?}\n{log}"
    );
    assert!(
        log.contains("unmount drain: uploading what is queued")
            && log.contains("unmount drain: 3 s passed")
            && log.contains("big.bin")
            && log.contains("left in the spool"),
        "{log}"
    );
    assert!(
        emu.item("big.bin").is_none(),
        "committed within 3 s at 2 MB/s?"
    );

    // The next mount resumes the kept session and finishes at full speed.
    emu.set_faults("{}");
    let m2 = Mount::restart(&emu, &spool, "unmount_drain = 60\nchunk_size = \"320KiB\"");
    m2.wait_state("big.bin", "done", Duration::from_secs(60));
    assert_eq!(
        emu.item("big.bin").expect("big.bin")["quickXorHash"],
        qxh(&src)
    );

    // SIGTERM while draining: out at once.
    emu.set_faults(r#"{"bandwidth_bytes_per_sec": 2000000}"#);
    std::fs::copy(&src, m2.path("again.bin")).expect("cp");
    m2.wait_uploaded("again.bin", 1, Duration::from_secs(30));
    sh(&format!("fusermount3 -u {}", m2.dir.display()));
    std::thread::sleep(Duration::from_millis(1500));
    let pid = m2.pid() as i32;
    // Still running (not a zombie): the drain holds it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    assert!(
        matches!(state, Some("S" | "R")),
        "exited before the drain was over: {stat}"
    );
    let t0 = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (st, log) = m2.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st:?}\n{log}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{log}");
    assert!(
        log.contains("unmount drain stopped by a signal") && log.contains("again.bin"),
        "{log}"
    );
    assert_no_violations(&emu);
}

/// `umount && mount` of the same spool: the new mount waits for the process still draining
/// (it says so in the spool's lock file), then serves; the drained file is in SharePoint.
#[test]
fn a_new_mount_waits_for_a_spool_still_draining() {
    let _serial = serial();
    let (emu, _keep, spool, m, src) = unmount_while_uploading(4_000_000, 60, 12 << 20);
    let t0 = Instant::now();
    let m2 = Mount::restart(&emu, &spool, "unmount_drain = 60");
    let waited = t0.elapsed();
    let (st, log) = m.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st:?}\n{log}");
    assert!(log.contains("every queued upload finished"), "{log}");
    let log2 = m2.log_text();
    assert!(
        log2.contains("finishing its uploads after an unmount; waiting"),
        "waited {waited:?}\n{log2}"
    );
    assert_eq!(
        emu.item("big.bin").expect("big.bin")["quickXorHash"],
        qxh(&src)
    );
    std::fs::write(m2.path("after.txt"), b"second mount serves").expect("write");
    m2.wait_state("after.txt", "done", Duration::from_secs(30));
    assert_no_violations(&emu);
}

/// An emulator limited to `bandwidth` bytes/s, a mount with `unmount_drain = drain` on a spool
/// that outlives it, a `size`-byte `big.bin` copied in and partly uploaded, then
/// `fusermount3 -u`. Returns (emulator, the directory keeping spool and source, spool, the
/// unmounted but still running mount, the source file).
fn unmount_while_uploading(
    bandwidth: u64,
    drain: u64,
    size: u64,
) -> (
    Emu,
    tempfile::TempDir,
    std::path::PathBuf,
    Mount,
    std::path::PathBuf,
) {
    let emu = Emu::start(Some(&format!(
        r#"{{"bandwidth_bytes_per_sec": {bandwidth}}}"#
    )));
    let keep = tempfile::tempdir().expect("tempdir");
    let spool = keep.path().join("spool");
    let m = Mount::start_on(
        &emu,
        &spool,
        &format!("unmount_drain = {drain}\nchunk_size = \"320KiB\""),
    );
    let src = keep.path().join("big.bin");
    random_file(&src, size, drain);
    std::fs::copy(&src, m.path("big.bin")).expect("cp");
    m.wait_uploaded("big.bin", 1, Duration::from_secs(30));
    sh(&format!("fusermount3 -u {}", m.dir.display()));
    (emu, keep, spool, m, src)
}
