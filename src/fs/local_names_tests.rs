//! Core tests (no kernel) of `local_names`: clashing names refused at create, mkdir and
//! rename; local-only files kept in the spool, never submitted, shown in `.status`, uploaded
//! once renamed to an ordinary name, dropped at shutdown; NFD and NFC spellings one node.

use std::time::Duration;

use super::tests::rig;
use super::*;
use crate::remote::memory::Call;

fn creates(r: &super::tests::Rig) -> usize {
    r.remote
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Create { .. }))
        .count()
}

#[test]
fn clashing_names_are_refused_with_eexist_and_noted() {
    let r = rig(Duration::ZERO);
    r.write_file(ROOT_INO, "Maersk.txt", b"theirs");
    r.settle();
    let e =
        r.fs.create(ROOT_INO, "M\u{e6}rsk.txt", libc::O_WRONLY)
            .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    assert!(
        e.to_string().starts_with("name clashes with Maersk.txt"),
        "{e}"
    );
    let e = r.fs.mkdir(ROOT_INO, "M\u{c6}RSK.TXT").unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    r.write_file(ROOT_INO, "other.txt", b"x");
    let e =
        r.fs.rename(ROOT_INO, "other.txt", ROOT_INO, "M\u{e6}rsk.txt")
            .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    // The node itself may take another spelling of its own name.
    r.fs.rename(ROOT_INO, "Maersk.txt", ROOT_INO, "M\u{e6}rsk.txt")
        .unwrap();
    let snap = r.fs.status_snapshot();
    assert!(
        snap.refused_names
            .iter()
            .any(|l| l == "M\u{e6}rsk.txt: name clashes with Maersk.txt (SharePoint treats the two names as one: case, accents written composed or decomposed, æ = ae, œ = oe, ß = ss); choose another name"),
        "{:?}",
        snap.refused_names
    );
}

#[test]
fn nfd_and_nfc_are_one_node() {
    let r = rig(Duration::ZERO);
    let ino = r.write_file(ROOT_INO, "Caf\u{e9}.txt", b"one");
    r.settle();
    assert_eq!(r.fs.lookup(ROOT_INO, "Cafe\u{301}.txt").unwrap().ino, ino);
    let again = r.write_file(ROOT_INO, "CAFE\u{301}.txt", b"two");
    assert_eq!(again, ino);
    r.settle();
    assert_eq!(
        r.remote.content("Caf\u{e9}.txt").as_deref(),
        Some(&b"two"[..])
    );
}

#[test]
fn local_only_files_stay_in_the_spool_until_renamed_or_shutdown() {
    let r = rig(Duration::ZERO);
    let owner = r.write_file(ROOT_INO, "~$doc.docx", b"owner");
    r.write_file(ROOT_INO, ".DS_Store", b"finder");
    r.settle();
    assert_eq!(creates(&r), 0, "never uploaded");
    assert_eq!(r.fs.getattr(owner).unwrap().size, 5);
    let snap = r.fs.status_snapshot();
    assert_eq!(snap.local_only, vec![".DS_Store", "~$doc.docx"]);
    assert!(snap.open_for_writing.is_empty());
    // A file on its way to SharePoint cannot become local only.
    r.write_file(ROOT_INO, "real.txt", b"real");
    r.settle();
    let e =
        r.fs.rename(ROOT_INO, "real.txt", ROOT_INO, "~$real.txt")
            .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    // Renamed to an ordinary name: uploaded.
    r.fs.rename(ROOT_INO, "~$doc.docx", ROOT_INO, "doc.docx")
        .unwrap();
    r.settle();
    assert_eq!(r.remote.content("doc.docx").as_deref(), Some(&b"owner"[..]));
    assert_eq!(r.spool_files(), 2, "the .DS_Store data file and its record");
    r.fs.shutdown();
    assert_eq!(r.spool_files(), 0);
}
