//! Shared mounts (issue 11): with `allow_other`, the `uid`, `gid`, `umask`, `file_mode` and
//! `dir_mode` options decide what other local users may do, enforced by the kernel
//! (`default_permissions`). Checked as `nobody` with `runuser`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

/// Run `cmd` as nobody; (success, output).
fn as_nobody(cmd: &str) -> (bool, String) {
    sh_status(&format!("runuser -u nobody -- sh -c \"{cmd}\" 2>&1"))
}

fn open_parent(m: &Mount) {
    // The harness's temp dir is 0700: let nobody walk to the mount point.
    let parent = m.dir.parent().expect("parent");
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).expect("chmod");
}

#[test]
fn umask_077_and_uid_keep_other_users_out() {
    let emu = Emu::start(None);
    emu.seed("Docs/report.txt", b"confidential".to_vec());
    let m = Mount::start(
        &emu,
        "allow_other = true\nuid = 1000\ngid = 1000\numask = \"077\"",
    );
    open_parent(&m);
    let f = m.path("Docs/report.txt");
    let meta = std::fs::metadata(&f).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::metadata(m.path("Docs")).expect("stat").mode() & 0o7777,
        0o700
    );
    let (ok, out) = as_nobody(&format!("cat '{}'", f.display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let (ok, out) = as_nobody(&format!("ls '{}'", m.dir.display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let (ok, out) = as_nobody(&format!("echo x > '{}'", m.path("new.txt").display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let _ = m.unmount();
}

#[test]
fn modes_let_other_users_read_but_not_write() {
    let emu = Emu::start(None);
    emu.seed("shared.txt", b"for everyone".to_vec());
    let m = Mount::start(
        &emu,
        "allow_other = true\nfile_mode = \"0644\"\ndir_mode = 0o755",
    );
    open_parent(&m);
    let f = m.path("shared.txt");
    let (ok, out) = as_nobody(&format!("cat '{}'", f.display()));
    assert!(ok && out.contains("for everyone"), "{out}");
    let (ok, out) = as_nobody(&format!("echo x >> '{}'", f.display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let _ = m.unmount();
}
