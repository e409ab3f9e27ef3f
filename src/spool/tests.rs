//! Tests of the spool directory and its records.

use super::*;

#[test]
fn private_locked_unique() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("spool");
    let spool = Spool::open(&root).unwrap();
    let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let (a, _) = spool.new_file().unwrap();
    let (b, _) = spool.new_file().unwrap();
    assert_ne!(a, b);
    assert_eq!(
        fs::metadata(&a).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(spool.existing_files().unwrap().len(), 2);
    let second = Spool::open(&root).unwrap_err();
    assert!(second.to_string().contains("in use"), "{second}");
    drop(spool);
    Spool::open(&root).unwrap();
    assert!(disk_space(tmp.path()).unwrap().total_bytes > 0);
}

#[test]
fn records_are_rewritten_in_place_and_shrink_cleanly() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path()).unwrap();
    let (data, _) = spool.new_file().unwrap();
    let mut rec = SpoolRecord::new("a/b.txt", RecordState::Sealed, 3, SystemTime::now());
    rec.error = Some("x".repeat(500));
    save_record(&data, &rec).unwrap();
    let ino = fs::metadata(record_path(&data)).unwrap().ino();
    rec.error = None;
    save_record_fast(&data, &rec).unwrap();
    assert_eq!(load_record(&data).unwrap().unwrap().error, None);
    assert_eq!(
        fs::metadata(record_path(&data)).unwrap().ino(),
        ino,
        "rewritten in place, no new inode"
    );
    update_record(&data, |r| r.acked = 7).unwrap();
    assert_eq!(load_record(&data).unwrap().unwrap().acked, 7);
    // Larger than a page: replaced through a temp file and a rename; still loads.
    rec.error = Some("y".repeat(5000));
    save_record(&data, &rec).unwrap();
    assert_eq!(
        load_record(&data).unwrap().unwrap().error.unwrap().len(),
        5000
    );
    rec.error = None;
    save_record(&data, &rec).unwrap();
    assert_eq!(load_record(&data).unwrap().unwrap().error, None);
    assert!(!record_path(&data).with_extension("json.tmp").exists());
}

#[test]
fn open_waiting_waits_for_the_holder_to_let_go() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("spool");
    let held = Spool::open(&root).unwrap();
    let pid = fs::read_to_string(root.join("lock")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
    // Still serving: refused after the grace, however long the wait allowed.
    let t0 = std::time::Instant::now();
    let e = Spool::open_waiting(&root, std::time::Duration::from_secs(10)).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    assert!(t0.elapsed() < UNMOUNT_GRACE + std::time::Duration::from_secs(1));
    held.mark_draining();
    let e = Spool::open_waiting(&root, std::time::Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(held);
    });
    let start = std::time::Instant::now();
    Spool::open_waiting(&root, std::time::Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_millis(250));
    t.join().unwrap();
}

#[test]
fn records_round_trip_privately() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path()).unwrap();
    let (data, _) = spool.new_file().unwrap();
    assert_eq!(load_record(&data).unwrap(), None);
    let mut rec = SpoolRecord {
        path: "Docs/a b.bin".into(),
        state: RecordState::Sealed,
        size: 10,
        mtime_secs: 0,
        mtime_nanos: 0,
        attempts: 2,
        error: None,
        session_url: Some("http://127.0.0.1/upload/x?tempauth=SECRET".into()),
        session_expires: Some(1),
        acked: crate::protocol::FRAGMENT_UNIT,
        content_hash: None,
        fingerprint: Fingerprint::of(&data).ok(),
        may_hold_session: true,
        base_etag: Some("\"{item-7},3\"".into()),
    };
    let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123);
    rec.set_mtime(t);
    save_record(&data, &rec).unwrap();
    assert_eq!(load_record(&data).unwrap().unwrap(), rec);
    assert_eq!(rec.mtime(), t);
    let mode = fs::metadata(record_path(&data))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!format!("{rec:?}").contains("SECRET"));
    // existing_files lists data files only, not records.
    assert_eq!(spool.existing_files().unwrap(), vec![data.clone()]);
    remove_spooled(&data);
    assert!(spool.existing_files().unwrap().is_empty());
    assert!(!record_path(&data).exists());
}

/// Records written before `base_etag` existed still load (as "replace by intent").
#[test]
fn old_records_without_base_etag_load() {
    let old = r#"{"path":"a.bin","state":"sealed","size":3,"mtime_secs":5,"mtime_nanos":0}"#;
    let rec: SpoolRecord = serde_json::from_str(old).unwrap();
    assert_eq!(rec.base_etag, None);
    assert_eq!(rec.path, "a.bin");
    let json = serde_json::to_string(&rec).unwrap();
    assert!(!json.contains("base_etag"), "{json}");
}

/// Every 202's `expirationDateTime` reaches the record (same write as the acked bytes),
/// so a restart sees the session's latest expiry, not the one from its creation.
#[test]
fn record_keeps_the_latest_session_expiry() {
    use crate::upload::JobStore;
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path()).unwrap();
    let (data, _) = spool.new_file().unwrap();
    let rec = SpoolRecord::new("a.bin", RecordState::Sealed, 10, SystemTime::UNIX_EPOCH);
    save_record(&data, &rec).unwrap();
    let job = crate::upload::UploadJob::new("a.bin".into(), data.clone(), 10, UNIX_EPOCH);
    let at = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(s);
    let session = crate::remote::UploadSession {
        url: crate::redact::SecretUrl::new("http://127.0.0.1/upload/x?tempauth=T".to_string()),
        expires: Some(at(1_000)),
    };
    SpoolStore.session(&job, Some(&session));
    let load = || load_record(&data).unwrap().unwrap();
    assert_eq!(load().session().unwrap().expires, Some(at(1_000)));
    SpoolStore.acked_until(&job, 5, Some(at(2_000)));
    let r = load();
    assert_eq!(r.acked, 5);
    assert_eq!(r.session().unwrap().expires, Some(at(2_000)));
    // An answer without an expiry keeps the last one known.
    SpoolStore.acked_until(&job, 8, None);
    let r = load();
    assert_eq!(r.acked, 8);
    assert_eq!(r.session().unwrap().expires, Some(at(2_000)));
    assert_eq!(r.session().unwrap().url, session.url);
}
