//! Real-mount tests of the POSIX behaviour SharePoint can hold (issue 8): access times kept
//! in the mount and never uploaded, 64-bit modification times through the mount and in
//! SharePoint, and a file unlinked while open staying usable through its descriptor without
//! anything reaching SharePoint. The rest of the peer suite runs in `scripts/pjdfstest.sh`.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;

const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn touch_a_on_an_uploaded_file_keeps_its_sharepoint_mtime() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let p = m.path("a.txt");
    write_file(&p, b"hello");
    sh(&format!("touch -m -d @1600000000 '{}'", p.display()));
    m.settle(SETTLE);
    let item = emu.item("a.txt").expect("uploaded");
    assert_eq!(rfc3339_secs(item["mtime"].as_str().unwrap()), 1_600_000_000);
    let sessions = emu.stats()["sessions_created"].as_u64().unwrap();

    sh(&format!("touch -a -d @1000000000 '{}'", p.display()));
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.atime(), 1_000_000_000, "atime as set");
    assert_eq!(md.mtime(), 1_600_000_000, "mtime unchanged");
    m.settle(SETTLE);
    let item = emu.item("a.txt").unwrap();
    assert_eq!(
        rfc3339_secs(item["mtime"].as_str().unwrap()),
        1_600_000_000,
        "SharePoint's mtime unchanged by touch -a"
    );
    assert_eq!(emu.stats()["sessions_created"].as_u64().unwrap(), sessions);
    assert_eq!(fs::read(&p).unwrap(), b"hello");
    assert_no_violations(&emu);
}

#[test]
fn an_mtime_in_2110_shows_through_the_mount_and_in_sharepoint() {
    // 2110-01-01T00:00:00Z: past 2^32 seconds, where 32-bit and unsigned-32 clocks wrap.
    const Y2110: i64 = 4_418_064_000;
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let pending = m.path("pending.txt");
    write_file(&pending, b"set before the upload");
    sh(&format!("touch -d @{Y2110} '{}'", pending.display()));
    assert_eq!(fs::metadata(&pending).unwrap().mtime(), Y2110);
    m.settle(SETTLE);
    let uploaded = m.path("uploaded.txt");
    write_file(&uploaded, b"set after the upload");
    m.settle(SETTLE);
    sh(&format!("touch -d @{Y2110} '{}'", uploaded.display()));
    m.settle(SETTLE);
    for name in ["pending.txt", "uploaded.txt"] {
        let item = emu.item(name).expect("uploaded");
        assert_eq!(
            rfc3339_secs(item["mtime"].as_str().unwrap()),
            Y2110,
            "{name}"
        );
        assert_eq!(fs::metadata(m.path(name)).unwrap().mtime(), Y2110, "{name}");
    }
    // And a fresh mount, which knows only what SharePoint says.
    let spool = m.spool.clone();
    m.unmount();
    let m = Mount::restart(&emu, &spool, "");
    assert_eq!(fs::metadata(m.path("pending.txt")).unwrap().mtime(), Y2110);
    assert_no_violations(&emu);
}

#[test]
fn a_file_unlinked_while_open_is_usable_to_the_end_and_never_uploaded() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let p = m.path("scratch.tmp");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let first = vec![b'a'; 300_000];
    f.write_all(&first).unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists(), "the name is gone at once");
    let second = vec![b'b'; 200_000];
    f.write_all(&second).unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), 500_000, "fstat works");
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 500_000);
    assert!(back[..300_000].iter().all(|b| *b == b'a'));
    assert!(back[300_000..].iter().all(|b| *b == b'b'));
    drop(f);
    // Give the queue every chance to (wrongly) upload it.
    std::thread::sleep(Duration::from_millis(1500));
    m.settle(SETTLE);
    assert!(emu.item("scratch.tmp").is_none());
    assert_eq!(emu.stats()["sessions_created"].as_u64().unwrap(), 0);
    assert_eq!(emu.stats()["simple_uploads"].as_u64().unwrap(), 0);
    assert!(spool_files(&m.spool).is_empty(), "spool content discarded");
    assert!(fs::read_dir(m.path("")).unwrap().next().is_none());
    assert_no_violations(&emu);
}

#[test]
fn ftruncate_on_a_file_created_with_mode_0_works() {
    use std::os::unix::fs::OpenOptionsExt;
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(m.path("mode0"))
        .unwrap();
    f.set_len(0).unwrap();
    f.set_len(10).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 10);
    drop(f);
    m.settle(SETTLE);
    assert_eq!(emu.item("mode0").unwrap()["size"], 10);
}
