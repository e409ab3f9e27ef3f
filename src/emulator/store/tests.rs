//! Unit tests of the store: SharePoint's naming rules and tree operations (create, commit,
//! conflicts, rename, delete) persisted and reopened.

use std::fs;

use super::*;

#[test]
fn names() {
    for ok in ["a.txt", "Report 2024.docx", "x", "con.d", "~a", "forms2"] {
        assert!(validate_name(ok, true).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "a:b",
        "a*b",
        "a?",
        " a",
        "a ",
        "a.",
        "CON",
        "com1",
        "lpt9",
        ".lock",
        "desktop.ini",
        "~$doc.docx",
        "x_vti_y",
        "a|b",
        "a\\b",
    ] {
        assert!(validate_name(bad, false).is_err(), "{bad}");
    }
    assert!(validate_name("Forms", true).is_err());
    assert!(validate_name("Forms", false).is_ok());
}

#[test]
fn tree_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let root = s.drives[0].root_id.clone();
    let up = s.resolve(&root, &["uploads".into()]).unwrap().clone();
    assert_eq!(up.name, "Uploads");
    let f = s.create_folder(&up.id, "Docs", Conflict::Fail).unwrap();
    assert!(s.create_folder(&up.id, "DOCS", Conflict::Fail).is_err());
    let r = s.create_folder(&up.id, "docs", Conflict::Rename).unwrap();
    assert_eq!(r.name, "docs 1");
    let tmp = s.tmp_dir().join("t");
    fs::write(&tmp, b"hello").unwrap();
    let it = s
        .commit_file(NewFile {
            parent_id: &f.id,
            name: "A.txt",
            conflict: Conflict::Replace,
            tmp: &tmp,
            size: 5,
            qxh: "h".into(),
            fs_created: None,
            fs_modified: Some(1000),
            quota: None,
        })
        .unwrap();
    fs::write(&tmp, b"hi").unwrap();
    let again = s
        .commit_file(NewFile {
            parent_id: &f.id,
            name: "a.TXT",
            conflict: Conflict::Replace,
            tmp: &tmp,
            size: 2,
            qxh: "h2".into(),
            fs_created: None,
            fs_modified: None,
            quota: None,
        })
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.name.as_str()),
        (it.id.as_str(), "A.txt")
    );
    assert_eq!(fs::read(s.blob_path(&it.id)).unwrap(), b"hi");
    assert_eq!(s.path_segments(&it.id), vec!["Uploads", "Docs", "A.txt"]);
    s.patch(&it.id, Some("b.txt"), Some(&up.id), Some(5), None)
        .unwrap();
    assert!(s
        .resolve(&root, &["Uploads".into(), "B.TXT".into()])
        .is_some());
    assert!(s.patch(&f.id, None, Some(&f.id), None, None).is_err());
    assert!(s.delete(&up.id));
    assert!(!s.blob_path(&it.id).exists());
    let snap = s.snapshot();
    drop(s);
    write_atomic(&dir.path().join("meta.json"), &snap).unwrap();
    let s2 = Store::open(dir.path()).unwrap();
    assert!(s2.resolve(&root, &["Uploads".into()]).is_none());
}
