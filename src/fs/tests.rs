//! Filesystem-core tests without a kernel: the core driven directly, against the strict
//! in-memory remote and a real spool directory, with the upload queue running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::remote::memory::{stand_in_file_hash, Call, MemoryRemote};
use crate::upload::QueueConfig;

struct Rig {
    fs: Fs,
    remote: Arc<MemoryRemote>,
    spool_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

fn rig(delay: Duration) -> Rig {
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
    fn write_file(&self, parent: u64, name: &str, data: &[u8]) -> u64 {
        let (attr, o) = self.fs.create(parent, name, libc::O_WRONLY).unwrap();
        assert_eq!(self.fs.write(o.fh, 0, data).unwrap() as usize, data.len());
        self.fs.release(o.fh).unwrap();
        attr.ino
    }

    fn settle(&self) {
        assert!(self.fs.queue().wait_idle(Duration::from_secs(10)));
    }

    fn spool_files(&self) -> usize {
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
    r.fs.setattr(ino, None, Some(when), None).unwrap();
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
