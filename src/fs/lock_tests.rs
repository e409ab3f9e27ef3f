//! Lock-rule tests of the core: what a FUSE call must never wait for.

use std::time::{Duration, Instant};

use super::tests::rig;
use super::*;

/// A slow spool disk (every sync of one file's data and record takes a second more) under a
/// worker uploading that file: `close()` of other files, which writes their records, returns
/// in milliseconds. The record lock is per file and no fsync is done under it, nor under the
/// core or queue locks.
#[test]
fn close_does_not_wait_for_a_workers_record_sync_of_another_file() {
    let r = rig(Duration::ZERO);
    let (_, slow) = r.fs.create(ROOT_INO, "slow.bin", libc::O_WRONLY).unwrap();
    r.fs.write(slow.fh, 0, &vec![7u8; 3 << 20]).unwrap();
    let data: Vec<_> = std::fs::read_dir(r.spool_dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|x| x != "json"))
        .collect();
    assert_eq!(data.len(), 1, "{data:?}");
    crate::spool::slow_disk::slow_down(&data[0], Duration::from_secs(1));
    r.fs.release(slow.fh).unwrap();
    // The worker is now syncing slow.bin's spool file and records, one slow sync after another.
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    for i in 0..8 {
        let t = Instant::now();
        r.write_file(ROOT_INO, &format!("quick{i}.txt"), b"quick");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        slowest < Duration::from_millis(300),
        "a create/write/close waited {slowest:?} for another file's sync"
    );
    r.settle();
    assert_eq!(r.remote.content("slow.bin").map(|c| c.len()), Some(3 << 20));
}
