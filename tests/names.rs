//! Names SharePoint folds together and names that stay in the mount (issue 16; field
//! reference entries 15–17), on a real mount against the emulator: `Mærsk.txt` beside
//! `Maersk.txt` is refused at once and never replaces the other file — whether the mount knew
//! the other name or met it only at upload —, an NFD name is the same file as the server's NFC
//! one, and application owner and lock files (`~$report.docx`, `.DS_Store`, …) are listed and
//! readable in the mount, never uploaded, shown in `.status` as local only, and gone at
//! unmount.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;

const NFC_CAFE: &str = "Caf\u{e9}.txt";
const NFD_CAFE: &str = "Cafe\u{301}.txt";

/// The change feed polled rarely: a file created in SharePoint after a listing stays unknown
/// to the mount until it uploads into it.
const QUIET_FEED: &str = "poll_interval = 3600\n";

#[test]
fn a_similar_name_is_refused_at_once_and_the_other_file_kept() {
    let emu = Emu::start(None);
    emu.seed("docs/Maersk.txt", b"theirs".to_vec());
    emu.seed("docs/Stra\u{df}e.txt", b"street".to_vec());
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("mine.txt");
    write_file(&src, b"mine");
    sh(&format!("ls '{}' >/dev/null", m.path("docs").display()));
    // cp into the other spelling: EEXIST for that file, nothing sent.
    let (ok, out) = sh_status(&format!(
        "cp '{}' '{}'",
        src.display(),
        m.path("docs/M\u{e6}rsk.txt").display()
    ));
    assert!(!ok && out.contains("File exists"), "{out}");
    let (ok, out) = sh_status(&format!("mkdir '{}'", m.path("docs/STRASSE.txt").display()));
    assert!(!ok && out.contains("File exists"), "{out}");
    write_file(&m.path("docs/other.txt"), b"other");
    let (ok, out) = sh_status(&format!(
        "mv '{}' '{}'",
        m.path("docs/other.txt").display(),
        m.path("docs/M\u{c6}RSK.txt").display()
    ));
    // The mount answers EEXIST (the log says "name clashes"); how mv words an EEXIST from
    // rename(2) depends on what it saw of the target meanwhile: "File exists", or, as POSIX
    // also allows EEXIST for a non-empty directory target, "cannot overwrite directory".
    assert!(
        !ok && (out.contains("File exists") || out.contains("cannot overwrite directory")),
        "{out}\n{}",
        tail(&m.log_text(), 60)
    );
    assert!(
        m.log_text()
            .contains("rename other.txt -> M\u{c6}RSK.txt: name clashes with Maersk.txt"),
        "{}",
        tail(&m.log_text(), 30)
    );
    // The same spelling in another case is the same file, as in SharePoint.
    assert_eq!(
        fs::read(m.path("docs/maersk.TXT")).unwrap(),
        b"theirs",
        "case-insensitive lookup"
    );
    let status = m.status_text();
    assert!(
        status.contains("docs/M\u{e6}rsk.txt: name clashes with Maersk.txt"),
        "{status}"
    );
    assert!(
        status.contains("name clashes with Stra\u{df}e.txt"),
        "{status}"
    );
    assert!(m.log_text().contains("name clashes with Maersk.txt"));
    m.settle(Duration::from_secs(30));
    assert_eq!(
        emu.file_paths(),
        vec!["docs/Maersk.txt", "docs/Stra\u{df}e.txt", "docs/other.txt"]
    );
    assert_eq!(emu.item("docs/Maersk.txt").unwrap()["size"], 6);
    assert_no_violations(&emu);
}

#[test]
fn a_clash_met_only_at_upload_fails_at_once_keeps_the_data_and_replaces_nothing() {
    let emu = Emu::start(None);
    // conflict = replace (the default): even so, the other file is never overwritten.
    let m = Mount::start(&emu, QUIET_FEED);
    fs::create_dir(m.path("docs")).unwrap();
    write_file(&m.path("docs/first.txt"), b"first");
    m.settle(Duration::from_secs(30));
    sh(&format!("ls '{}' >/dev/null", m.path("docs").display()));
    // Someone creates Maersk.txt in SharePoint; the mount's listing does not have it.
    emu.seed("docs/Maersk.txt", b"theirs".to_vec());
    let src = emu.dir.path().join("mine.txt");
    write_file(&src, b"my own content");
    sh(&format!(
        "cp '{}' '{}'",
        src.display(),
        m.path("docs/M\u{e6}rsk.txt").display()
    ));
    let u = m.wait_state("docs/M\u{e6}rsk.txt", "failed", Duration::from_secs(60));
    assert_eq!(u["attempts"], 1, "failed at once: {u:#}");
    let err = u["error"].as_str().unwrap_or_default();
    assert!(err.contains("name clashes with Maersk.txt"), "{err}");
    assert!(m.status_text().contains("name clashes with Maersk.txt"));
    // Nothing replaced; our data still readable from the spool.
    let theirs = emu.item("docs/Maersk.txt").unwrap();
    assert_eq!(theirs["size"], 6);
    assert_eq!(
        fs::read(m.path("docs/M\u{e6}rsk.txt")).unwrap(),
        b"my own content"
    );
    assert_eq!(emu.file_paths(), vec!["docs/Maersk.txt", "docs/first.txt"]);
    // The fix the message names: rename the file; it is uploaded under the new name.
    fs::rename(
        m.path("docs/M\u{e6}rsk.txt"),
        m.path("docs/M\u{e6}rsk (mine).txt"),
    )
    .unwrap();
    m.wait_state(
        "docs/M\u{e6}rsk (mine).txt",
        "done",
        Duration::from_secs(60),
    );
    assert_eq!(emu.item("docs/M\u{e6}rsk (mine).txt").unwrap()["size"], 14);
    assert_eq!(emu.item("docs/Maersk.txt").unwrap()["size"], 6);
    assert_no_violations(&emu);
}

#[test]
fn nfd_and_nfc_spellings_are_one_file() {
    let emu = Emu::start(None);
    emu.seed(&format!("docs/{NFC_CAFE}"), b"server".to_vec());
    let m = Mount::start(&emu, "");
    // A lookup of the NFD spelling finds the NFC item: one inode, one entry.
    let a = fs::metadata(m.path(&format!("docs/{NFD_CAFE}"))).unwrap();
    let b = fs::metadata(m.path(&format!("docs/{NFC_CAFE}"))).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        fs::read(m.path(&format!("docs/{NFD_CAFE}"))).unwrap(),
        b"server"
    );
    let names: Vec<String> = fs::read_dir(m.path("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec![NFC_CAFE.to_string()]);
    // Writing through the NFD spelling (tar, macOS) replaces the server's NFC item.
    write_file(&m.path(&format!("docs/{NFD_CAFE}")), b"from a mac");
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.file_paths(), vec![format!("docs/{NFC_CAFE}")]);
    assert_eq!(emu.item(&format!("docs/{NFC_CAFE}")).unwrap()["size"], 10);

    // Entry 16: a tenant that stores names NFC lists an NFD upload NFC; still one file.
    emu.set_field(r#"{"nfc_names": true}"#);
    let nfd_new = "A\u{30a}sa.txt";
    let nfc_new = "\u{c5}sa.txt";
    write_file(&m.path(&format!("docs/{nfd_new}")), b"nfd upload");
    m.settle(Duration::from_secs(30));
    let mut want = vec![format!("docs/{NFC_CAFE}"), format!("docs/{nfc_new}")];
    want.sort();
    assert_eq!(emu.file_paths(), want);
    drop(m);
    let m = Mount::start(&emu, "");
    let a = fs::metadata(m.path(&format!("docs/{nfd_new}"))).unwrap();
    let b = fs::metadata(m.path(&format!("docs/{nfc_new}"))).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        fs::read(m.path(&format!("docs/{nfd_new}"))).unwrap(),
        b"nfd upload"
    );
    assert_no_violations(&emu);
}

/// Names apps make for themselves, and the local-only rules around them.
const LOCAL_ONLY: &[&str] = &[
    "~$report.docx",
    "desktop.ini",
    "Thumbs.db",
    ".DS_Store",
    "._report.docx",
    ".~lock.report.odt#",
];

#[test]
fn local_only_names_are_listed_and_readable_never_uploaded_and_gone_at_unmount() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    fs::create_dir(m.path("docs")).unwrap();
    write_file(&m.path("docs/report.docx"), b"the document");
    for name in LOCAL_ONLY {
        write_file(&m.path(&format!("docs/{name}")), name.as_bytes());
    }
    // Appended to after close, as an app updating its lock file would.
    sh(&format!(
        "echo more >> '{}'",
        m.path("docs/~$report.docx").display()
    ));
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.file_paths(), vec!["docs/report.docx"]);
    let mut listed: Vec<String> = fs::read_dir(m.path("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = LOCAL_ONLY.iter().map(|s| s.to_string()).collect();
    want.push("report.docx".into());
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(
        fs::read_to_string(m.path("docs/~$report.docx")).unwrap(),
        "~$report.docxmore\n"
    );
    let st = m.status_json();
    let local: Vec<&str> = st["local_only"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(local.len(), LOCAL_ONLY.len(), "{st:#}");
    assert!(local.contains(&"docs/~$report.docx"), "{st:#}");
    assert!(
        st["open_for_writing"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "local-only files do not hold `wait`: {st:#}"
    );
    assert!(m
        .status_text()
        .contains("local only, never uploaded: docs/"));
    // A user's own file with a name SharePoint refuses still gets EINVAL.
    let (ok, out) = sh_status(&format!("touch '{}'", m.path("docs/a:b.txt").display()));
    assert!(!ok && out.contains("Invalid argument"), "{out}");
    // A file SharePoint has cannot become local only; a local-only one renamed to an
    // ordinary name is uploaded.
    let (ok, out) = sh_status(&format!(
        "mv '{}' '{}'",
        m.path("docs/report.docx").display(),
        m.path("docs/~$gone.docx").display()
    ));
    // EINVAL (mv words it as "a subdirectory of itself"); the log says why.
    assert!(!ok, "{out}");
    assert!(
        m.log_text().contains("would stop it reaching SharePoint"),
        "{}",
        tail(&m.log_text(), 10)
    );
    fs::rename(m.path("docs/Thumbs.db"), m.path("docs/thumbs-kept.db")).unwrap();
    m.settle(Duration::from_secs(30));
    assert_eq!(
        emu.file_paths(),
        vec!["docs/report.docx", "docs/thumbs-kept.db"]
    );
    fs::remove_file(m.path("docs/desktop.ini")).unwrap();
    // Unmount: the local-only files leave the spool; a new mount does not show them.
    let spool = m.spool.clone();
    let status = m.unmount();
    assert!(status.success());
    let left = spool_files(&spool);
    assert!(left.is_empty(), "spool keeps {left:?}");
    let m2 = Mount::start(&emu, "");
    assert!(!m2.path("docs/~$report.docx").exists());
    assert_eq!(
        emu.file_paths(),
        vec!["docs/report.docx", "docs/thumbs-kept.db"]
    );
    assert_no_violations(&emu);
}

#[test]
fn local_only_files_left_by_a_crash_are_dropped_at_the_next_mount() {
    let emu = Emu::start(None);
    let spool = emu.dir.path().join("spool");
    let m = Mount::start_on(&emu, &spool, "");
    write_file(&m.path("~$budget.xlsx"), b"owner");
    write_file(&m.path("budget.xlsx"), b"sheet");
    m.settle(Duration::from_secs(30));
    m.kill9();
    let m = Mount::restart(&emu, &spool, "");
    m.settle(Duration::from_secs(30));
    assert!(!m.path("~$budget.xlsx").exists());
    assert!(
        m.log_text()
            .contains("~$budget.xlsx: local-only file dropped"),
        "{}",
        tail(&m.log_text(), 20)
    );
    assert_eq!(emu.file_paths(), vec!["budget.xlsx"]);
    assert!(spool_files(&spool).is_empty());
}

#[test]
fn legacy_name_rules_fail_the_upload_with_the_servers_reason() {
    let emu = Emu::start(None);
    emu.set_field(r#"{"legacy_name_rules": true}"#);
    let m = Mount::start(&emu, "");
    write_file(&m.path("100%.txt"), b"percent");
    write_file(&m.path("plain.txt"), b"plain");
    let u = m.wait_state("100%.txt", "failed", Duration::from_secs(60));
    let err = u["error"].as_str().unwrap_or_default();
    assert!(err.contains("names cannot contain # or %"), "{err}");
    assert_eq!(u["attempts"], 1, "a refused name is not retried: {u:#}");
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.file_paths(), vec!["plain.txt"]);
    assert_eq!(fs::read(m.path("100%.txt")).unwrap(), b"percent");
}
