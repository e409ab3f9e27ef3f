//! Real-mount tests of SharePoint's own habits against the built-in emulator: metadata
//! enrichment of Office/PDF files after upload (`done`, flagged `server_modified`), real
//! hash mismatches (still `failed`), locked files (423) and in-place edits that meet a newer
//! version on the server (412 → a conflict copy beside it).

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// Bytes shaped like an OOXML package: a ZIP local header, some content, and an
/// end-of-central-directory record without a comment.
fn office_bytes(size: usize, seed: u8) -> Vec<u8> {
    let mut v = b"PK\x03\x04".to_vec();
    v.extend((0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    v.extend_from_slice(b"PK\x05\x06");
    v.extend_from_slice(&[0u8; 18]);
    v
}

#[test]
fn enriched_docx_is_done_and_flagged_server_modified() {
    let emu = Emu::start(None);
    emu.set_field(r#"{"enrich": true}"#);
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("Report.docx");
    write_file(&src, &office_bytes(700_000, 7));
    let pdf = emu.dir.path().join("scan.pdf");
    write_file(&pdf, b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n");
    sh(&format!(
        "cp {} {} {}",
        src.display(),
        pdf.display(),
        m.path("").display()
    ));

    for (name, local) in [("Report.docx", &src), ("scan.pdf", &pdf)] {
        let done = m.wait_state(name, "done", Duration::from_secs(60));
        assert_eq!(done["server_modified"], true, "{done:#}");
        assert_eq!(
            done["note"], "modified by SharePoint after upload",
            "{done:#}"
        );
        let item = emu.item(name).expect("stored");
        let sent = fs::metadata(local).unwrap().len();
        assert_ne!(
            item["size"].as_u64().unwrap(),
            sent,
            "the emulator enriched {name}"
        );
        assert_ne!(item["quickXorHash"].as_str().unwrap(), qxh(local));
    }
    let text = m.status_text();
    assert!(
        text.contains("note: modified by SharePoint after upload"),
        "{text}"
    );
    // Released: nothing stays in the spool.
    wait_spool_empty(&m.spool, Duration::from_secs(10));
    m.unmount();
}

#[test]
fn corrupted_files_still_fail() {
    let emu = Emu::start(None);
    // A corruption of a .bin, or of an Office file that is no longer a package, must not
    // pass for enrichment.
    emu.set_field(r#"{"corrupt_commits": true}"#);
    let m = Mount::start(&emu, "");
    let bin = emu.dir.path().join("data.bin");
    random_file(&bin, 500_000, 3);
    let docx = emu.dir.path().join("broken.docx");
    write_file(&docx, &office_bytes(400_000, 9));
    sh(&format!(
        "cp {} {} {}",
        bin.display(),
        docx.display(),
        m.path("").display()
    ));
    for name in ["data.bin", "broken.docx"] {
        let failed = m.wait_state(name, "failed", Duration::from_secs(60));
        let err = failed["error"].as_str().unwrap_or_default();
        assert!(err.starts_with("hash mismatch"), "{name}: {failed:#}");
        assert_eq!(failed["server_modified"], false, "{failed:#}");
    }
    // Failed jobs hold their spool files.
    assert!(!spool_files(&m.spool).is_empty());
    m.unmount();
}

/// A file locked (423) for 30 s (issue 9), far longer than `max_attempts` tries with backoff
/// would last, is waited for, shown as locked, and ends `done` without a manual retry.
#[test]
fn locked_file_waits_and_ends_done() {
    let emu = Emu::start(None);
    emu.set_field(r#"{"locked_name": "held.txt", "locked_secs": 30}"#);
    let m = Mount::start(&emu, "max_attempts = 2");
    let src = emu.dir.path().join("held.txt");
    random_file(&src, 200_000, 5);
    let t = std::time::Instant::now();
    sh(&format!("cp {} {}", src.display(), m.path("").display()));
    let retrying = m.wait_state("held.txt", "retrying", Duration::from_secs(20));
    assert_eq!(
        retrying["error"], "file is locked (checked out or open in another app)",
        "{retrying:#}"
    );
    let text = m.status_text();
    assert!(text.contains("file is locked"), "{text}");
    let done = m.wait_state("held.txt", "done", Duration::from_secs(120));
    assert!(
        t.elapsed() >= Duration::from_secs(29),
        "done before the lock ended"
    );
    assert!(done["attempts"].as_u64().unwrap() > 2, "{done:#}");
    let item = emu.item("held.txt").expect("stored");
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src));
    assert!(
        emu.stats()["errors_injected"].as_u64().unwrap() > 2,
        "more 423s than max_attempts: {}",
        emu.stats()
    );
    m.unmount();
}

/// The raw content of `rel` in SharePoint (the emulator's admin API).
fn server_bytes(emu: &Emu, rel: &str) -> Vec<u8> {
    let url = format!("{}/files/Documents/{FOLDER}/{rel}", emu.info.admin_url);
    let r = reqwest::blocking::get(&url).expect("GET admin file");
    assert!(r.status().is_success(), "GET {rel}: {}", r.status());
    r.bytes().expect("body").to_vec()
}

/// Open `rel` in the mount for an in-place edit (read-write, no O_TRUNC), write `patch` at
/// byte 0, run `meanwhile` while it is still open, then close it.
fn edit_in_place(m: &Mount, rel: &str, patch: &[u8], meanwhile: impl FnOnce()) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path(rel))
        .expect("open for an in-place edit");
    f.write_all_at(patch, 0).expect("write in place");
    meanwhile();
    drop(f);
}

/// A colleague saves a newer version while the file is open here for an in-place edit: both
/// versions end in SharePoint, theirs under the name, ours beside it as a conflict copy, and
/// `.status` names both; the mount shows both files.
#[test]
fn in_place_edit_of_a_file_changed_meanwhile_saves_a_conflict_copy() {
    let emu = Emu::start(None);
    let v1 = b"first line\nsecond line\n".to_vec();
    let colleague = b"the colleague's newer version\n".to_vec();
    emu.seed("report.txt", v1.clone());
    let m = Mount::start(&emu, "");
    assert_eq!(fs::read(m.path("report.txt")).unwrap(), v1);
    edit_in_place(&m, "report.txt", b"FIRST", || {
        emu.seed("report.txt", colleague.clone());
    });
    let done = m.wait_state("report.txt", "done", Duration::from_secs(60));
    let copy = done["conflict_copy"]
        .as_str()
        .unwrap_or_else(|| panic!("no conflict copy: {done:#}"))
        .to_string();
    assert!(
        copy.starts_with("report (conflict ") && copy.ends_with(").txt"),
        "{copy}"
    );
    let mut ours = v1.clone();
    ours[..5].copy_from_slice(b"FIRST");
    assert_eq!(
        server_bytes(&emu, "report.txt"),
        colleague,
        "theirs untouched"
    );
    assert_eq!(server_bytes(&emu, &copy), ours, "ours beside it");
    assert_eq!(
        emu.file_paths(),
        vec![copy.clone(), "report.txt".to_string()]
    );
    let note = done["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("conflict: changed in SharePoint meanwhile") && note.contains(&copy),
        "{done:#}"
    );
    let text = m.status_text();
    assert!(
        text.contains("report.txt") && text.contains(&format!("saved as \"{copy}\"")),
        "{text}"
    );
    // The mount shows both: the colleague's version under the name, ours as the copy.
    let mut listed: Vec<String> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    listed.sort();
    assert_eq!(listed, vec![copy.clone(), "report.txt".to_string()]);
    assert_eq!(fs::read(m.path("report.txt")).unwrap(), colleague);
    assert_eq!(fs::read(m.path(&copy)).unwrap(), ours);
    wait_spool_empty(&m.spool, Duration::from_secs(10));
    assert_no_violations(&emu);
    m.unmount();
}

/// Nobody changed the file: the in-place edit simply replaces it (if-match succeeds), no
/// copy. An O_TRUNC rewrite replaces by intent even when the server's file changed.
#[test]
fn in_place_edit_of_an_unchanged_file_replaces_it() {
    let emu = Emu::start(None);
    let v1 = b"0123456789\n".to_vec();
    emu.seed("notes.txt", v1.clone());
    emu.seed("plain.txt", b"old plain\n".to_vec());
    let m = Mount::start(&emu, "");
    edit_in_place(&m, "notes.txt", b"AB", || {});
    let done = m.wait_state("notes.txt", "done", Duration::from_secs(60));
    assert!(done["conflict_copy"].is_null(), "{done:#}");
    assert!(done["note"].is_null(), "{done:#}");
    assert_eq!(server_bytes(&emu, "notes.txt"), b"AB23456789\n".to_vec());

    let f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("plain.txt"))
        .expect("open O_TRUNC");
    emu.seed("plain.txt", b"colleague\n".to_vec());
    std::io::Write::write_all(&mut &f, b"rewritten\n").unwrap();
    drop(f);
    let done = m.wait_state("plain.txt", "done", Duration::from_secs(60));
    assert!(done["conflict_copy"].is_null(), "{done:#}");
    assert_eq!(server_bytes(&emu, "plain.txt"), b"rewritten\n".to_vec());
    assert_eq!(
        emu.file_paths(),
        vec!["notes.txt".to_string(), "plain.txt".to_string()]
    );
    m.unmount();
}

/// An editor's or rsync's atomic save (write a temp file, rename it over the original): if
/// the original was read from the server and a colleague changed it before the rename, the
/// new content goes beside it as a conflict copy; unchanged, it simply replaces it.
#[test]
fn rename_over_a_file_changed_meanwhile_saves_a_conflict_copy() {
    let emu = Emu::start(None);
    emu.seed("keep.txt", b"keep v1\n".to_vec());
    emu.seed("doc.txt", b"doc v1\n".to_vec());
    // No change-feed polls: the mount's view of doc.txt is the one it read.
    let m = Mount::start(&emu, "poll_interval = 0");

    assert_eq!(fs::read(m.path("keep.txt")).unwrap(), b"keep v1\n");
    fs::write(m.path(".keep.txt.new"), b"keep v2 (ours)\n").unwrap();
    fs::rename(m.path(".keep.txt.new"), m.path("keep.txt")).unwrap();
    let done = m.wait_state("keep.txt", "done", Duration::from_secs(60));
    assert!(done["conflict_copy"].is_null(), "{done:#}");
    assert_eq!(server_bytes(&emu, "keep.txt"), b"keep v2 (ours)\n".to_vec());

    assert_eq!(fs::read(m.path("doc.txt")).unwrap(), b"doc v1\n");
    fs::write(m.path(".doc.txt.new"), b"doc v2 (ours)\n").unwrap();
    emu.seed("doc.txt", b"doc v2 (colleague)\n".to_vec());
    fs::rename(m.path(".doc.txt.new"), m.path("doc.txt")).unwrap();
    let done = m.wait_state("doc.txt", "done", Duration::from_secs(60));
    let copy = done["conflict_copy"]
        .as_str()
        .unwrap_or_else(|| panic!("no conflict copy: {done:#}"))
        .to_string();
    assert!(copy.starts_with("doc (conflict "), "{copy}");
    assert_eq!(
        server_bytes(&emu, "doc.txt"),
        b"doc v2 (colleague)\n".to_vec()
    );
    assert_eq!(server_bytes(&emu, &copy), b"doc v2 (ours)\n".to_vec());
    assert_eq!(
        emu.file_paths(),
        vec![copy.clone(), "doc.txt".to_string(), "keep.txt".to_string()]
    );
    assert_eq!(
        fs::read(m.path("doc.txt")).unwrap(),
        b"doc v2 (colleague)\n"
    );
    m.unmount();
}
