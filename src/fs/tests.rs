//! Filesystem-core tests without a kernel: the core driven directly, against the strict
//! in-memory remote and a real spool directory, with the upload queue running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::remote::memory::{stand_in_file_hash, Call, MemoryRemote};
use crate::upload::QueueConfig;

pub(super) struct Rig {
    pub(super) fs: Fs,
    pub(super) remote: Arc<MemoryRemote>,
    pub(super) spool_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

pub(super) fn rig(delay: Duration) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let spool_dir = tmp.path().join("spool");
    let spool = Arc::new(Spool::open(&spool_dir).unwrap());
    let remote = Arc::new(MemoryRemote::default());
    let r: Arc<dyn Remote> = remote.clone();
    let mut qcfg = QueueConfig::new(
        Arc::new(|p: &std::path::Path| stand_in_file_hash(p)),
        Arc::new(crate::spool::SpoolStore),
    );
    qcfg.workers = 2;
    qcfg.write_back_delay = delay;
    let qr = r.clone();
    let fs = Fs::new(
        r,
        spool,
        move |l| UploadQueue::start(qr, qcfg, l),
        FsOptions {
            base_path_chars: 36,
            ..FsOptions::default()
        },
    );
    Rig {
        fs,
        remote,
        spool_dir,
        _tmp: tmp,
    }
}

impl Rig {
    pub(super) fn write_file(&self, parent: u64, name: &str, data: &[u8]) -> u64 {
        let (attr, o) = self.fs.create(parent, name, libc::O_WRONLY).unwrap();
        assert_eq!(self.fs.write(o.fh, 0, data).unwrap() as usize, data.len());
        self.fs.release(o.fh).unwrap();
        attr.ino
    }

    pub(super) fn settle(&self) {
        assert!(self.fs.queue().wait_idle(Duration::from_secs(10)));
    }

    pub(super) fn spool_files(&self) -> usize {
        std::fs::read_dir(self.spool_dir.join("data"))
            .unwrap()
            .count()
    }

    fn sessions_for(&self, path: &str) -> usize {
        self.remote
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Create { path: p, .. } if p == path))
            .count()
    }
}

#[test]
fn written_file_uploads_on_release_and_leaves_no_spool() {
    let r = rig(Duration::ZERO);
    let ino = r.write_file(ROOT_INO, "a.txt", b"hello");
    assert_eq!(r.fs.getattr(ino).unwrap().size, 5);
    r.settle();
    assert_eq!(r.remote.content("a.txt").as_deref(), Some(&b"hello"[..]));
    assert_eq!(r.spool_files(), 0);
    // Reads now come from the remote.
    let o = r.fs.open(ino, libc::O_RDONLY).unwrap();
    assert_eq!(r.fs.read(o.fh, 1, 10).unwrap(), b"ello");
    r.fs.release(o.fh).unwrap();
}

#[test]
fn rename_within_the_write_back_delay_uploads_once_under_the_final_name() {
    let r = rig(Duration::from_millis(300));
    r.write_file(ROOT_INO, ".doc.txt.XyZ", b"content");
    r.fs.rename(ROOT_INO, ".doc.txt.XyZ", ROOT_INO, "doc.txt")
        .unwrap();
    r.settle();
    assert_eq!(
        r.remote.content("doc.txt").as_deref(),
        Some(&b"content"[..])
    );
    assert!(r.remote.content(".doc.txt.XyZ").is_none());
    assert_eq!(r.sessions_for(".doc.txt.XyZ"), 0);
    assert_eq!(r.sessions_for("doc.txt"), 1);
}

#[test]
fn utimens_after_close_is_sent_with_the_upload() {
    let r = rig(Duration::from_millis(300));
    let ino = r.write_file(ROOT_INO, "t.bin", &[7u8; 1000]);
    let when = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    r.fs.setattr(ino, None, None, Some(when), None).unwrap();
    r.settle();
    let item = r.remote.stat("t.bin").unwrap().unwrap();
    assert_eq!(item.mtime, when);
    assert_eq!(r.sessions_for("t.bin"), 1);
}

#[test]
fn unlink_of_a_pending_file_cancels_it() {
    let r = rig(Duration::from_millis(300));
    r.write_file(ROOT_INO, "gone.txt", b"x");
    r.fs.unlink(ROOT_INO, "gone.txt").unwrap();
    r.settle();
    assert!(r.remote.content("gone.txt").is_none());
    assert_eq!(r.spool_files(), 0);
    assert!(matches!(
        r.fs.lookup(ROOT_INO, "gone.txt"),
        Err(FsError::NotFound)
    ));
}

#[test]
fn refused_names_and_long_paths_fail_before_anything_is_spooled() {
    let r = rig(Duration::ZERO);
    for bad in ["a:b", "x?", "CON", "dot.", " lead"] {
        let e = r.fs.create(ROOT_INO, bad, libc::O_WRONLY).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{bad}");
    }
    let e = r.fs.mkdir(ROOT_INO, "a|b").unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let dir = r.fs.mkdir(ROOT_INO, &"d".repeat(200)).unwrap();
    let e =
        r.fs.create(dir.ino, &"f".repeat(170), libc::O_WRONLY)
            .unwrap_err();
    assert_eq!(e.errno(), libc::ENAMETOOLONG);
    assert_eq!(r.spool_files(), 0);
}

#[test]
fn names_are_case_insensitive_and_keep_their_case() {
    let r = rig(Duration::ZERO);
    r.write_file(ROOT_INO, "Report.TXT", b"one");
    r.settle();
    let a = r.fs.lookup(ROOT_INO, "report.txt").unwrap();
    let b = r.fs.lookup(ROOT_INO, "REPORT.txt").unwrap();
    assert_eq!(a.ino, b.ino);
    r.write_file(ROOT_INO, "report.txt", b"two");
    r.settle();
    assert_eq!(r.remote.content("Report.TXT").as_deref(), Some(&b"two"[..]));
    struct Names(Vec<String>);
    impl DirReplier for Names {
        fn add(&mut self, _: u64, _: u64, _: NodeKind, name: &str) -> bool {
            self.0.push(name.to_string());
            false
        }
    }
    let o = r.fs.opendir(ROOT_INO).unwrap();
    let mut names = Names(Vec::new());
    r.fs.readdir(o.fh, 0, &mut names).unwrap();
    assert_eq!(names.0, vec![".", "..", "Report.TXT"]);
}

#[test]
fn status_files_are_virtual_read_only_and_fresh() {
    let r = rig(Duration::from_secs(5));
    r.write_file(ROOT_INO, "queued.bin", b"abc");
    let attr = r.fs.lookup(ROOT_INO, ".status.json").unwrap();
    assert!(attr.volatile);
    let o = r.fs.open(attr.ino, libc::O_RDONLY).unwrap();
    assert!(o.direct_io);
    let text = String::from_utf8(r.fs.read(o.fh, 0, 1 << 20).unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["uploads"][0]["path"], "queued.bin");
    assert_eq!(v["uploads"][0]["state"], "queued");
    assert!(r.fs.open(attr.ino, libc::O_WRONLY).is_err());
    assert!(r.fs.unlink(ROOT_INO, ".status").is_err());
    assert!(r.fs.create(ROOT_INO, ".status", libc::O_WRONLY).is_err());
}

#[test]
fn renaming_a_folder_moves_its_pending_uploads() {
    let r = rig(Duration::from_millis(300));
    let d = r.fs.mkdir(ROOT_INO, "d").unwrap();
    let sub = r.fs.mkdir(d.ino, "sub").unwrap();
    r.write_file(d.ino, "f.txt", b"one");
    r.write_file(sub.ino, "g.txt", b"two");
    r.fs.rename(ROOT_INO, "d", ROOT_INO, "e").unwrap();
    r.settle();
    assert_eq!(r.remote.content("e/f.txt").as_deref(), Some(&b"one"[..]));
    assert_eq!(
        r.remote.content("e/sub/g.txt").as_deref(),
        Some(&b"two"[..])
    );
    assert!(
        r.remote.stat("d").unwrap().is_none(),
        "old folder recreated"
    );
    assert_eq!(r.sessions_for("d/f.txt") + r.sessions_for("d/sub/g.txt"), 0);
}

#[test]
fn a_write_past_spool_max_fails_and_marks_the_file_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(&tmp.path().join("spool")).unwrap());
    let r: Arc<dyn Remote> = Arc::new(MemoryRemote::default());
    let mut qcfg = QueueConfig::new(
        Arc::new(|p: &std::path::Path| stand_in_file_hash(p)),
        Arc::new(crate::spool::SpoolStore),
    );
    qcfg.write_back_delay = Duration::from_secs(5);
    let qr = r.clone();
    let fs = Fs::new(
        r,
        spool,
        move |l| UploadQueue::start(qr, qcfg, l),
        FsOptions {
            spool_max: Some(1000),
            ..FsOptions::default()
        },
    );
    let (_, o) = fs.create(ROOT_INO, "big.bin", libc::O_WRONLY).unwrap();
    assert_eq!(fs.write(o.fh, 0, &[0u8; 600]).unwrap(), 600);
    let e = fs.write(o.fh, 600, &[0u8; 600]).unwrap_err();
    assert!(matches!(e, FsError::NoSpace(_)), "{e:?}");
    assert_eq!(fs.records.broken_files().len(), 1);
    assert_eq!(fs.status_snapshot().spool.unwrap().limit_bytes, Some(1000));
    fs.release(o.fh).unwrap();
    // Kept as incomplete, never submitted.
    let snap = fs.status_snapshot();
    assert_eq!(snap.uploads.len(), 1);
    assert_eq!(snap.uploads[0].state.as_str(), "incomplete");
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn calls_of(r: &Rig, f: impl Fn(&Call) -> bool) -> usize {
    r.remote.calls().iter().filter(|c| f(c)).count()
}

#[test]
fn utimens_keeps_atime_and_mtime_apart_with_omit_and_64_bit_seconds() {
    let r = rig(Duration::from_secs(5));
    let ino = r.write_file(ROOT_INO, "t.bin", b"x");
    let before = r.fs.getattr(ino).unwrap();
    // atime only (mtime UTIME_OMIT): mtime unchanged.
    let a =
        r.fs.setattr(ino, None, Some(at(1_900_000_000)), None, None)
            .unwrap();
    assert_eq!(a.atime, at(1_900_000_000));
    assert_eq!(a.mtime, before.mtime);
    // mtime only (atime UTIME_OMIT): atime unchanged.
    let a =
        r.fs.setattr(ino, None, None, Some(at(1_950_000_000)), None)
            .unwrap();
    assert_eq!((a.atime, a.mtime), (at(1_900_000_000), at(1_950_000_000)));
    // y2038 and past 2^32 seconds (year 2106), and 2110.
    let a =
        r.fs.setattr(ino, None, Some(at(1 << 31)), Some(at(1 << 32)), None)
            .unwrap();
    assert_eq!((a.atime, a.mtime), (at(1 << 31), at(1 << 32)));
    let y2110 = at(4_418_064_000); // 2110-01-01T00:00:00Z
    r.fs.setattr(ino, None, None, Some(y2110), None).unwrap();
    r.settle();
    assert_eq!(r.remote.stat("t.bin").unwrap().unwrap().mtime, y2110);
    let a = r.fs.getattr(ino).unwrap();
    assert_eq!((a.atime, a.mtime), (at(1 << 31), y2110), "after upload");
}

#[test]
fn atime_of_an_uploaded_file_stays_in_the_mount() {
    let r = rig(Duration::ZERO);
    let ino = r.write_file(ROOT_INO, "up.txt", b"hello");
    r.fs.setattr(ino, None, None, Some(at(1_600_000_000)), None)
        .unwrap();
    r.settle();
    let sets = calls_of(&r, |c| matches!(c, Call::SetMtime { .. }));
    let a =
        r.fs.setattr(ino, None, Some(at(1_000_000_000)), None, None)
            .unwrap();
    assert_eq!(a.atime, at(1_000_000_000));
    assert_eq!(a.mtime, at(1_600_000_000));
    assert_eq!(calls_of(&r, |c| matches!(c, Call::SetMtime { .. })), sets);
    assert_eq!(
        r.remote.stat("up.txt").unwrap().unwrap().mtime,
        at(1_600_000_000)
    );
}

#[test]
fn uploaded_mtime_reads_back_to_the_second_and_pending_to_the_nanosecond() {
    let r = rig(Duration::from_millis(200));
    let ino = r.write_file(ROOT_INO, "ns.txt", b"abc");
    let fine = at(1_700_000_000) + Duration::from_nanos(123_456_789);
    r.fs.setattr(ino, None, None, Some(fine), None).unwrap();
    assert_eq!(r.fs.getattr(ino).unwrap().mtime, fine, "pending: as set");
    r.settle();
    let server = r.remote.stat("ns.txt").unwrap().unwrap().mtime;
    assert_eq!(
        r.fs.getattr(ino).unwrap().mtime,
        server,
        "uploaded: what SharePoint holds, as a fresh mount shows it"
    );
}

#[test]
fn every_change_sets_ctime_and_entries_change_their_folder() {
    let r = rig(Duration::from_secs(5));
    let nap = || std::thread::sleep(Duration::from_millis(5));
    let d = r.fs.mkdir(ROOT_INO, "d").unwrap();
    let t0 = r.fs.getattr(d.ino).unwrap();
    nap();
    let f = r.write_file(d.ino, "f.txt", b"one");
    let t1 = r.fs.getattr(d.ino).unwrap();
    assert!(t1.mtime > t0.mtime && t1.ctime > t0.ctime, "create");
    let c0 = r.fs.getattr(f).unwrap().ctime;
    nap();
    let o = r.fs.open(f, libc::O_WRONLY).unwrap();
    r.fs.write(o.fh, 3, b"two").unwrap();
    let c1 = r.fs.getattr(f).unwrap().ctime;
    assert!(c1 > c0, "write");
    nap();
    r.fs.setattr(f, Some(1), None, None, Some(o.fh)).unwrap();
    let c2 = r.fs.getattr(f).unwrap().ctime;
    assert!(c2 > c1, "truncate");
    r.fs.release(o.fh).unwrap();
    nap();
    r.fs.setattr(f, None, Some(at(5)), Some(at(5_000_000_000)), None)
        .unwrap();
    let c3 = r.fs.getattr(f).unwrap().ctime;
    assert!(c3 > c2, "utimens");
    assert!(
        c3 < at(5_000_000_000),
        "ctime is the time of the change, not the mtime set"
    );
    let e = r.fs.mkdir(ROOT_INO, "e").unwrap();
    let (d1, e1) = (r.fs.getattr(d.ino).unwrap(), r.fs.getattr(e.ino).unwrap());
    nap();
    r.fs.rename(d.ino, "f.txt", e.ino, "g.txt").unwrap();
    let (d2, e2) = (r.fs.getattr(d.ino).unwrap(), r.fs.getattr(e.ino).unwrap());
    assert!(
        d2.mtime > d1.mtime && d2.ctime > d1.ctime,
        "rename: old folder"
    );
    assert!(
        e2.mtime > e1.mtime && e2.ctime > e1.ctime,
        "rename: new folder"
    );
    assert!(
        r.fs.getattr(f).unwrap().ctime > c3,
        "rename: the file's ctime"
    );
    nap();
    r.fs.unlink(e.ino, "g.txt").unwrap();
    let e3 = r.fs.getattr(e.ino).unwrap();
    assert!(e3.mtime > e2.mtime && e3.ctime > e2.ctime, "unlink");
    let root1 = r.fs.getattr(ROOT_INO).unwrap();
    nap();
    r.fs.mkdir(ROOT_INO, "m").unwrap();
    let root2 = r.fs.getattr(ROOT_INO).unwrap();
    assert!(root2.mtime > root1.mtime, "mkdir");
    nap();
    r.fs.rmdir(ROOT_INO, "m").unwrap();
    assert!(r.fs.getattr(ROOT_INO).unwrap().mtime > root2.mtime, "rmdir");
}

#[test]
fn a_file_unlinked_while_open_stays_usable_and_is_never_uploaded() {
    let r = rig(Duration::ZERO);
    let (attr, o) = r.fs.create(ROOT_INO, "tmp.bin", libc::O_RDWR).unwrap();
    r.fs.write(o.fh, 0, b"hello ").unwrap();
    let reader = r.fs.open(attr.ino, libc::O_RDONLY).unwrap();
    r.fs.unlink(ROOT_INO, "tmp.bin").unwrap();
    assert!(matches!(
        r.fs.lookup(ROOT_INO, "tmp.bin"),
        Err(FsError::NotFound)
    ));
    r.fs.write(o.fh, 6, b"world").unwrap();
    assert_eq!(r.fs.read(o.fh, 0, 100).unwrap(), b"hello world");
    assert_eq!(r.fs.read(reader.fh, 0, 100).unwrap(), b"hello world");
    assert_eq!(r.fs.getattr(attr.ino).unwrap().size, 11, "fstat");
    assert_eq!(r.fs.getattr(attr.ino).unwrap().nlink, 0, "no name left");
    r.fs.setattr(attr.ino, Some(5), None, None, Some(o.fh))
        .unwrap();
    // A new file may take the name meanwhile; it is a different file.
    let other = r.write_file(ROOT_INO, "tmp.bin", b"new");
    assert_ne!(other, attr.ino);
    r.fs.release(o.fh).unwrap();
    assert_eq!(r.fs.read(reader.fh, 0, 100).unwrap(), b"hello");
    r.fs.release(reader.fh).unwrap();
    assert!(
        r.fs.getattr(attr.ino).is_err(),
        "forgotten at the last close"
    );
    r.settle();
    assert_eq!(r.remote.content("tmp.bin").as_deref(), Some(&b"new"[..]));
    assert_eq!(
        r.sessions_for("tmp.bin"),
        1,
        "only the new file was uploaded"
    );
    assert_eq!(r.spool_files(), 0);
}

#[test]
fn an_uploaded_file_unlinked_while_open_is_deleted_and_still_readable() {
    let r = rig(Duration::ZERO);
    let ino = r.write_file(ROOT_INO, "old.txt", b"server copy");
    r.settle();
    let o = r.fs.open(ino, libc::O_RDONLY).unwrap();
    let w = r.fs.open(ino, libc::O_WRONLY).unwrap(); // lazy: nothing copied yet
    r.fs.unlink(ROOT_INO, "old.txt").unwrap();
    assert!(
        r.remote.stat("old.txt").unwrap().is_none(),
        "deleted as today"
    );
    assert_eq!(r.fs.read(o.fh, 0, 100).unwrap(), b"server copy");
    r.fs.write(w.fh, 0, b"S").unwrap();
    assert_eq!(r.fs.read(w.fh, 0, 100).unwrap(), b"Server copy");
    r.fs.release(w.fh).unwrap();
    r.fs.release(o.fh).unwrap();
    r.settle();
    assert!(
        r.remote.stat("old.txt").unwrap().is_none(),
        "never re-uploaded"
    );
    assert_eq!(r.spool_files(), 0);
}

#[test]
fn names_over_255_bytes_are_enametoolong_everywhere() {
    let r = rig(Duration::ZERO);
    let long = "n".repeat(crate::protocol::MAX_NAME_BYTES + 1);
    let ok = "n".repeat(crate::protocol::MAX_NAME_BYTES);
    let errno = |e: FsError| e.errno();
    assert_eq!(
        errno(r.fs.create(ROOT_INO, &long, libc::O_WRONLY).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(r.fs.mkdir(ROOT_INO, &long).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(r.fs.lookup(ROOT_INO, &long).unwrap_err()),
        libc::ENAMETOOLONG
    );
    r.write_file(ROOT_INO, &ok, b"x");
    assert_eq!(
        errno(r.fs.rename(ROOT_INO, &ok, ROOT_INO, &long).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(r.fs.lookup(ROOT_INO, &ok).unwrap().size, 1);
}

#[test]
fn ftruncate_through_a_handle_created_with_mode_0_works() {
    let r = rig(Duration::ZERO);
    let (attr, o) =
        r.fs.create(ROOT_INO, "m0", libc::O_CREAT | libc::O_RDWR)
            .unwrap();
    let a =
        r.fs.setattr(attr.ino, Some(0), None, None, Some(o.fh))
            .unwrap();
    assert_eq!(a.size, 0);
    let a =
        r.fs.setattr(attr.ino, Some(7), None, None, Some(o.fh))
            .unwrap();
    assert_eq!(a.size, 7);
    r.fs.release(o.fh).unwrap();
    r.settle();
    assert_eq!(r.remote.content("m0").as_deref(), Some(&[0u8; 7][..]));
}

#[test]
fn lookups_are_answered_by_one_listing_and_new_folders_cost_no_round_trip() {
    let r = rig(Duration::ZERO);
    let requests = |r: &Rig| {
        r.remote
            .calls()
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Call::List { .. } | Call::Stat { .. } | Call::Mkdir { .. }
                )
            })
            .count()
    };
    for name in ["a", ".a.XyZ", "b", "c"] {
        assert!(matches!(
            r.fs.lookup(ROOT_INO, name),
            Err(FsError::NotFound)
        ));
    }
    assert_eq!(requests(&r), 1, "one listing answers every name");
    let dir = r.fs.mkdir(ROOT_INO, "new").unwrap();
    assert!(matches!(
        r.fs.lookup(dir.ino, "x.txt"),
        Err(FsError::NotFound)
    ));
    assert_eq!(requests(&r), 1, "mkdir and lookups in it: no request");
    r.write_file(dir.ino, "x.txt", b"data");
    r.settle();
    assert_eq!(r.remote.content("new/x.txt").as_deref(), Some(&b"data"[..]));
    let kinds: Vec<&str> = r
        .remote
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::Mkdir { .. } => Some("mkdir"),
            Call::Create { .. } => Some("create"),
            Call::Stat { .. } => Some("stat"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["mkdir", "create"],
        "folder once, before its file"
    );
}

/// Conflict-safe in-place edits (issue 9): a read-modify-write of a server file carries the
/// eTag it read; if a colleague saved meanwhile, ours goes beside it and the table shows
/// both, the original re-read from the server. An O_TRUNC rewrite replaces by intent.
#[test]
fn in_place_edit_meets_a_newer_server_version() {
    let r = rig(Duration::ZERO);
    let seed = |name: &str, data: &[u8]| {
        r.remote
            .upload_small(name, data, crate::remote::Conflict::Replace, None)
            .unwrap()
    };
    seed("a.txt", b"server v1");
    seed("b.txt", b"server b1");
    let a = r.fs.lookup(ROOT_INO, "a.txt").unwrap().ino;
    let b = r.fs.lookup(ROOT_INO, "b.txt").unwrap().ino;

    let o = r.fs.open(a, libc::O_RDWR).unwrap();
    r.fs.write(o.fh, 0, b"OURS").unwrap();
    seed("a.txt", b"colleague v2");
    r.fs.release(o.fh).unwrap();
    let o = r.fs.open(b, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    r.fs.write(o.fh, 0, b"rewritten").unwrap();
    seed("b.txt", b"colleague b2");
    r.fs.release(o.fh).unwrap();
    r.settle();

    assert_eq!(r.remote.content("a.txt"), Some(b"colleague v2".to_vec()));
    assert_eq!(r.remote.content("b.txt"), Some(b"rewritten".to_vec()));
    let copies: Vec<String> = r
        .remote
        .list("")
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n.contains("(conflict "))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = &copies[0];
    assert!(
        copy.starts_with("a (conflict ") && copy.ends_with(").txt"),
        "{copy}"
    );
    assert_eq!(r.remote.content(copy), Some(b"OURSer v1".to_vec()));
    // The table: the copy is a committed file; the original shows the server's version.
    let c = r.fs.lookup(ROOT_INO, copy).unwrap();
    assert_eq!(c.size, 9);
    assert_eq!(r.fs.getattr(a).unwrap().size, 12, "re-read from the server");
    let o = r.fs.open(a, libc::O_RDONLY).unwrap();
    assert_eq!(r.fs.read(o.fh, 0, 100).unwrap(), b"colleague v2");
    r.fs.release(o.fh).unwrap();
    assert_eq!(r.spool_files(), 0);
    let status = r.fs.status_snapshot();
    let entry = status.uploads.iter().find(|u| u.path == "a.txt").unwrap();
    assert_eq!(entry.conflict_copy.as_deref(), Some(copy.as_str()));
}

/// Deleted on the server while edited here: ours is saved as a conflict copy (the name is
/// not silently brought back) and the original name disappears from the mount.
#[test]
fn in_place_edit_of_a_file_deleted_meanwhile_keeps_ours_as_a_copy() {
    let r = rig(Duration::ZERO);
    r.remote
        .upload_small(
            "gone.txt",
            b"server v1",
            crate::remote::Conflict::Replace,
            None,
        )
        .unwrap();
    let ino = r.fs.lookup(ROOT_INO, "gone.txt").unwrap().ino;
    let o = r.fs.open(ino, libc::O_RDWR).unwrap();
    r.fs.write(o.fh, 9, b"+ours").unwrap();
    r.remote.delete("gone.txt").unwrap();
    r.fs.release(o.fh).unwrap();
    r.settle();
    let names: Vec<String> = r
        .remote
        .list("")
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("gone (conflict "), "{names:?}");
    assert_eq!(
        r.remote.content(&names[0]),
        Some(b"server v1+ours".to_vec())
    );
    assert!(matches!(
        r.fs.lookup(ROOT_INO, "gone.txt"),
        Err(FsError::NotFound)
    ));
    assert!(r.fs.lookup(ROOT_INO, &names[0]).is_ok());
}
