//! Real-mount tests of big files at a distance (issue 19): with `chunk_size` unset, fragments
//! grow from 10 MiB when each costs a round trip and server time (emulator knobs
//! `latency_ms`, `fragment_server_ms`), `.status.json` shows the current fragment size, and
//! the file arrives identical; with PUTs dropped mid-body the upload still ends done and
//! identical.

mod common;

use std::time::Duration;

use common::*;

const MIB: u64 = 1024 * 1024;

/// 200 MiB at 100 ms per request and 100 ms of server time per fragment: far fewer PUTs
/// than 10 MiB fragments would take, the fragment size is shown while uploading, and the
/// file arrives byte-identical.
#[test]
fn fragments_grow_with_latency_and_status_shows_them() {
    let emu = Emu::start(None);
    emu.admin_post("field", r#"{"latency_ms": 100, "fragment_server_ms": 100}"#);
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("big.bin");
    random_file(&src, 200 * MIB, 19);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("big.bin").display()
    ));

    // Seen while uploading: the current fragment size, above the 10 MiB start at some point.
    let mut largest = 0;
    for _ in 0..600 {
        match m.upload("big.bin") {
            Some(u) if u["state"] == "done" => break,
            Some(u) => {
                if let Some(f) = u["fragment_bytes"].as_u64() {
                    assert_eq!(f % (320 * 1024), 0, "{u}");
                    largest = largest.max(f);
                }
            }
            None => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = m.wait_state("big.bin", "done", Duration::from_secs(300));
    assert_eq!(done["uploaded"], 200 * MIB);
    assert!(largest > 10 * MIB, "largest fragment seen {largest}");
    let item = emu.item("big.bin").expect("stored");
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    let puts = emu.stats()["fragment_puts"].as_u64().unwrap();
    assert!(puts < 15, "200 MiB took {puts} PUTs (20 at 10 MiB)");
    assert_no_violations(&emu);
    assert!(m.unmount().success());
}

/// A quarter of the fragment PUTs dropped after a random part of their body: the upload
/// resumes where the server stands each time, shrinks its fragments, and ends done and
/// identical, the emulator having received little more than the file.
#[test]
fn dropped_fragments_resume_and_resend_little() {
    let emu = Emu::start(Some(r#"{"seed": 5, "drop_rate": 0.25}"#));
    let m = Mount::start(&emu, "max_attempts = 50");
    let src = emu.dir.path().join("big.bin");
    random_file(&src, 120 * MIB, 7);
    sh(&format!(
        "cp {} {}",
        src.display(),
        m.path("big.bin").display()
    ));
    let done = m.wait_state("big.bin", "done", Duration::from_secs(300));
    assert_eq!(done["uploaded"], 120 * MIB);
    let item = emu.item("big.bin").expect("stored");
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    let stats = emu.stats();
    assert!(stats["drops"].as_u64().unwrap() > 0, "{stats}");
    let received = stats["fragment_bytes_received"].as_u64().unwrap();
    assert!(received <= 120 * MIB * 11 / 10, "received {received}");
    assert_no_violations(&emu);
    assert!(m.unmount().success());
}
