//! Crash soak (issue 12): the backup-job scenario, repeated. `rsync -a` of a mixed tree (one
//! big file and 200 small ones in 4 folders) into the mount; `kill -9` of the mount at a seeded
//! random moment; remount on the same spool; rsync again — `SOAK_ROUNDS` times (default 10);
//! then a last rsync and a wait for the queue. Under the emulator's one-open-session-per-path
//! rule (as OneDrive for Business), with a short session idle lifetime so that a session a
//! killed process never recorded expires within the test.
//!
//! Asserts at the end: every source file is in the emulator with its content hash; nothing is
//! `failed`; what is left in `.status` is only recovered temp files held back (then
//! discarded); no temp name in SharePoint; the emulator received at most one fragment (chunk)
//! per kill beyond the tree's size (nothing re-sent from zero); every upload session
//! is committed, cancelled or expired.
//!
//! Knobs (environment): `SOAK_SEED` (printed; set it to replay a run), `SOAK_ROUNDS`,
//! `SOAK_BIG_MIB` (64 here to keep CI under 3 min; `scripts/soak-crash.sh` uses 300) and
//! `SOAK_BW` (emulator bandwidth, bytes/s).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;
use shareuplift::recovery::looks_like_temp_name;

const MIB: u64 = 1024 * 1024;
/// Emulator session idle lifetime and the mount's `session_idle_secs`.
const SESSION_TTL: u64 = 15;
const WORKERS: u64 = 4;
const CHUNK: u64 = 10 * MIB;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The source tree: `big.bin` and 200 small files in `d0`..`d3`. Returns (relative path, path).
fn make_tree(root: &Path, big_mib: u64, rng: &mut StdRng) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    fs::create_dir_all(root).unwrap();
    let big = root.join("big.bin");
    random_file(&big, big_mib * MIB + 12_345, rng.gen());
    files.push(("big.bin".to_string(), big));
    for d in 0..4 {
        fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
        for i in 0..50 {
            let rel = format!("d{d}/f{i:02}.dat");
            let p = root.join(&rel);
            // 0 bytes to ~1.5 MiB, most small.
            let size = match rng.gen_range(0..10) {
                0 => 0,
                1..=6 => rng.gen_range(1..64 * 1024),
                _ => rng.gen_range(64 * 1024..3 * MIB / 2),
            };
            random_file(&p, size, rng.gen());
            files.push((rel, p));
        }
    }
    files
}

fn rsync(src: &Path, dst: &Path) -> std::process::Child {
    Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rsync")
}

fn stat(emu: &Emu, key: &str) -> u64 {
    emu.stats()[key].as_u64().unwrap_or(0)
}

#[test]
fn rsync_kill9_remount_rounds_end_complete() {
    let seed = env_u64(
        "SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let rounds = env_u64("SOAK_ROUNDS", 10);
    let big_mib = env_u64("SOAK_BIG_MIB", 64);
    let bw = env_u64("SOAK_BW", 12_000_000);
    println!("crash soak: SOAK_SEED={seed} rounds={rounds} big={big_mib} MiB bw={bw} B/s");
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();

    let emu = Emu::start(Some(&format!(
        r#"{{"bandwidth_bytes_per_sec": {bw}, "session_ttl_secs": {SESSION_TTL}}}"#
    )));
    let spool = emu.dir.path().join("spool");
    let src = emu.dir.path().join("src");
    let files = make_tree(&src, big_mib, &mut rng);
    let total: u64 = files
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();
    let extra = format!("session_idle_secs = {SESSION_TTL}\nworkers = {WORKERS}");

    // Kill moments: mostly while rsync writes or the queue uploads, sometimes later.
    let upload_secs = (total as f64 / bw as f64).max(1.0);
    let max_ms = ((upload_secs * 1000.0) / 2.0).clamp(1500.0, 6000.0) as u64;
    let mut kills = 0u64;
    for round in 0..rounds {
        let m = Mount::start_on(&emu, &spool, &extra);
        let dst = m.path("tree");
        let _ = fs::create_dir(&dst);
        let mut child = rsync(&src, &dst);
        let after = Duration::from_millis(rng.gen_range(50..max_ms));
        std::thread::sleep(after);
        let rsync_done = child.try_wait().ok().flatten().is_some();
        m.kill9();
        kills += 1;
        let _ = child.wait();
        println!(
            "round {round}: killed after {} ms (rsync {}), {} files stored, {} bytes received",
            after.as_millis(),
            if rsync_done { "done" } else { "running" },
            emu.file_paths().len(),
            stat(&emu, "fragment_bytes_received")
        );
    }

    // The last rsync, then the queue.
    let m = Mount::start_on(&emu, &spool, &extra);
    let dst = m.path("tree");
    let _ = fs::create_dir(&dst);
    let st = rsync(&src, &dst).wait().unwrap();
    assert!(st.success(), "last rsync: {st}");
    let status = m.settle(Duration::from_secs(120 + 2 * upload_secs as u64));

    // Nothing failed; what is left is only recovered temp files (held, or open at a kill).
    let mut leftovers = Vec::new();
    for u in status["uploads"].as_array().unwrap() {
        let path = u["path"].as_str().unwrap();
        let state = u["state"].as_str().unwrap();
        assert_ne!(state, "failed", "{u:#}\nlog:\n{}", tail(&m.log_text(), 40));
        if state != "done" {
            let name = path.rsplit('/').next().unwrap();
            assert!(state == "incomplete" && looks_like_temp_name(name), "{u:#}");
            leftovers.push(path.to_string());
        }
    }
    println!("left in the spool (temp files): {leftovers:?}");
    if !leftovers.is_empty() {
        m.control("discard --all").unwrap();
    }

    // Every source file identical in SharePoint, and nothing else (no temp names).
    let mut want: Vec<String> = files.iter().map(|(r, _)| format!("tree/{r}")).collect();
    want.sort();
    let stored = emu.file_paths();
    assert!(
        stored
            .iter()
            .all(|p| !looks_like_temp_name(p.rsplit('/').next().unwrap())),
        "temp names in SharePoint: {stored:?}"
    );
    assert_eq!(stored, want);
    for (rel, p) in &files {
        let item = emu.item(&format!("tree/{rel}")).unwrap();
        assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(p), "{rel}");
    }

    // Nothing sent twice beyond the fragments in flight at each kill.
    let received = stat(&emu, "fragment_bytes_received");
    let bound = total + kills * CHUNK;
    println!(
        "received {received} bytes for {total} ({:.2}x), bound {bound}; {} sessions created, \
         {} refused (path busy)",
        received as f64 / total as f64,
        stat(&emu, "sessions_created"),
        stat(&emu, "sessions_refused_path_busy")
    );
    assert!(received <= bound, "received {received} > {bound}");

    // Every session committed, cancelled or expired.
    let deadline = Instant::now() + Duration::from_secs(SESSION_TTL + 10);
    loop {
        let s = emu.stats();
        if s["open_sessions"].as_u64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "sessions left open: {s:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_no_violations(&emu);
    println!(
        "crash soak SOAK_SEED={seed}: passed in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
