//! Real-mount tests that the mount behaves like a filesystem `rsync -a`, `cp -a`, `mv`, `rm -r`
//! and applications saving documents can rely on: final names only, mtimes preserved, a second
//! rsync transfers nothing, reads return what SharePoint holds, bad names get clear errnos.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

const MIB: u64 = 1024 * 1024;

/// Relative path → (size, quickXorHash, mtime secs) of every file under `root`.
fn local_tree(root: &Path) -> BTreeMap<String, (u64, String, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.insert(
                    rel,
                    (fs::metadata(&p).unwrap().len(), qxh(&p), mtime_secs(&p)),
                );
            }
        }
    }
    out
}

/// The same for the emulator's files under `prefix/`.
fn remote_tree(emu: &Emu, prefix: &str) -> BTreeMap<String, (u64, String, i64)> {
    emu.items()
        .into_iter()
        .filter(|i| i["folder"] != true)
        .filter_map(|i| {
            let rel = i["rel"]
                .as_str()?
                .strip_prefix(&format!("{prefix}/"))?
                .to_string();
            Some((
                rel,
                (
                    i["size"].as_u64().unwrap(),
                    i["quickXorHash"].as_str().unwrap_or_default().to_string(),
                    rfc3339_secs(i["mtime"].as_str().unwrap()),
                ),
            ))
        })
        .collect()
}

fn make_tree(root: &Path) {
    let names = [
        "plain",
        "with space",
        "naïve café",
        "Ünïcödé ✓",
        "report (1)",
    ];
    let mut n = 0u64;
    for a in 0..3 {
        for b in 0..3 {
            let dir = root
                .join(format!("level{a} {}", names[a]))
                .join(format!("sub{b}"))
                .join("leaf");
            fs::create_dir_all(&dir).unwrap();
            for c in 0..23 {
                n += 1;
                let size = match n {
                    1 => 0,
                    2 | 3 => 50 * MIB,
                    4..=8 => 3 * MIB + n * 1000,
                    _ => (n * 7919) % 200_000,
                };
                let p = dir.join(format!("{} {c}.dat", names[c % names.len()]));
                random_file(&p, size, n);
                // Distinct, old mtimes: rsync must carry them.
                let t = 1_600_000_000 + n as i64 * 3600;
                sh(&format!("touch -d @{t} '{}'", p.display()));
            }
        }
    }
    assert!(n >= 200);
}

#[test]
fn rsync_tree_lands_once_with_mtimes_and_second_run_is_empty() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("src");
    make_tree(&src);
    let dst = m.path("dst");
    let out = sh(&format!(
        "rsync -a --stats '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    assert!(
        out.contains("Number of regular files transferred: 207"),
        "{out}"
    );
    m.settle(Duration::from_secs(300));

    let want = local_tree(&src);
    let got = remote_tree(&emu, "dst");
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "unexpected remote files: {extra:?}");
    assert_eq!(got.len(), want.len(), "file count");
    for (rel, w) in &want {
        assert_eq!(got.get(rel), Some(w), "{rel}");
    }
    // No rsync temp names (".name.XXXXXX") exist in SharePoint.
    let temps: Vec<String> = emu
        .file_paths()
        .into_iter()
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with('.')))
        .collect();
    assert!(temps.is_empty(), "temp names left: {temps:?}");
    let puts_before = emu.stats()["sessions_created"].as_u64().unwrap();

    let again = sh(&format!(
        "rsync -a --stats '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    assert!(
        again.contains("Number of regular files transferred: 0"),
        "{again}"
    );
    m.settle(Duration::from_secs(60));
    assert_eq!(
        emu.stats()["sessions_created"].as_u64().unwrap(),
        puts_before
    );

    // --inplace and --append on a changed / grown file.
    let f = src.join("level0 plain/sub0/leaf/plain 0.dat");
    random_file(&f, 100_000, 999);
    sh(&format!(
        "rsync -a --inplace '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    let mut data = fs::read(&f).unwrap();
    data.extend_from_slice(b"appended tail");
    fs::write(&f, &data).unwrap();
    sh(&format!(
        "rsync -a --append '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    m.settle(Duration::from_secs(60));
    let item = emu.item("dst/level0 plain/sub0/leaf/plain 0.dat").unwrap();
    assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&f));
    assert_no_violations(&emu);
}

#[test]
fn editor_and_libreoffice_saves_leave_only_final_documents() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    fs::create_dir(m.path("docs")).unwrap();
    // First version, uploaded.
    write_file(&m.path("docs/notes.txt"), b"version 1\n");
    m.settle(Duration::from_secs(30));
    // Editor pattern: write a temp file, fsync, rename over the original — twice in a row,
    // the second while the first may still be uploading.
    for v in 2..=3 {
        let tmp = m.path("docs/.notes.txt.swp");
        let f = fs::File::create(&tmp).unwrap();
        use std::io::Write;
        (&f).write_all(format!("version {v}\n").as_bytes()).unwrap();
        f.sync_all().unwrap();
        drop(f);
        fs::rename(&tmp, m.path("docs/notes.txt")).unwrap();
    }
    // LibreOffice pattern: lock file, write to a temp name, rename, remove the lock.
    write_file(&m.path("docs/.~lock.report.odt#"), b"lock");
    write_file(&m.path("docs/lu1234abcd.tmp"), b"odt content v1");
    fs::rename(m.path("docs/lu1234abcd.tmp"), m.path("docs/report.odt")).unwrap();
    fs::remove_file(m.path("docs/.~lock.report.odt#")).unwrap();
    m.settle(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(emu.file_paths(), vec!["docs/notes.txt", "docs/report.odt"]);
    assert_eq!(
        fs::read_to_string(m.path("docs/notes.txt")).unwrap(),
        "version 3\n"
    );
    // A fresh mount reads SharePoint's content.
    drop(m);
    let m2 = Mount::start(&emu, "");
    assert_eq!(
        fs::read_to_string(m2.path("docs/notes.txt")).unwrap(),
        "version 3\n"
    );
    assert_eq!(
        fs::read_to_string(m2.path("docs/report.odt")).unwrap(),
        "odt content v1"
    );
}

#[test]
fn mv_rm_r_and_cp_a_work() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let src = emu.dir.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for (i, p) in ["a/one.txt", "a/b/two.txt", "three.txt"].iter().enumerate() {
        random_file(&src.join(p), 10_000 + i as u64, i as u64);
        sh(&format!("touch -d @1500000000 '{}'", src.join(p).display()));
    }
    sh(&format!(
        "cp -a '{}/.' '{}'",
        src.display(),
        m.dir.display()
    ));
    m.settle(Duration::from_secs(60));
    for p in ["a/one.txt", "a/b/two.txt", "three.txt"] {
        let item = emu.item(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(
            rfc3339_secs(item["mtime"].as_str().unwrap()),
            1_500_000_000,
            "{p}"
        );
        assert_eq!(item["quickXorHash"].as_str().unwrap(), qxh(&src.join(p)));
    }
    // mv of an uploaded file and of a folder.
    sh(&format!(
        "mv '{}' '{}'",
        m.path("three.txt").display(),
        m.path("a/3.txt").display()
    ));
    sh(&format!(
        "mv '{}' '{}'",
        m.path("a").display(),
        m.path("renamed").display()
    ));
    // mv of a file right after writing it (still pending).
    write_file(&m.path("fresh.txt"), b"fresh");
    sh(&format!(
        "mv '{}' '{}'",
        m.path("fresh.txt").display(),
        m.path("renamed/fresh2.txt").display()
    ));
    m.settle(Duration::from_secs(60));
    assert_eq!(
        emu.file_paths(),
        vec![
            "renamed/3.txt",
            "renamed/b/two.txt",
            "renamed/fresh2.txt",
            "renamed/one.txt"
        ]
    );
    assert_eq!(
        sh(&format!("cat '{}'", m.path("renamed/fresh2.txt").display())),
        "fresh"
    );
    // rm -r of a folder.
    sh(&format!("rm -r '{}'", m.path("renamed/b").display()));
    assert!(emu.item("renamed/b").is_none() && emu.item("renamed/b/two.txt").is_none());
    // rmdir of a non-empty folder is refused.
    let (ok, out) = sh_status(&format!("rmdir '{}'", m.path("renamed").display()));
    assert!(!ok && out.contains("not empty"), "{out}");
    // unlink of an uploaded file deletes it in SharePoint.
    fs::remove_file(m.path("renamed/one.txt")).unwrap();
    assert!(emu.item("renamed/one.txt").is_none());
    assert_no_violations(&emu);
}

#[test]
fn seeded_remote_files_read_back_identical() {
    let emu = Emu::start(None);
    let src = emu.dir.path().join("seed.bin");
    random_file(&src, 300 * MIB, 42);
    emu.seed_file("seeded/big file.bin", &src);
    emu.seed("seeded/small.txt", b"hello from SharePoint\n".to_vec());
    let m = Mount::start(&emu, "");
    let ls = sh(&format!("ls -l '{}'", m.path("seeded").display()));
    assert!(ls.contains("314572800"), "{ls}");
    let want = sh(&format!("sha256sum < '{}'", src.display()));
    let got = sh(&format!(
        "sha256sum < '{}'",
        m.path("seeded/big file.bin").display()
    ));
    assert_eq!(got, want);
    sh(&format!(
        "cmp '{}' '{}'",
        src.display(),
        m.path("seeded/big file.bin").display()
    ));
    assert_eq!(
        sh(&format!("cat '{}'", m.path("seeded/small.txt").display())),
        "hello from SharePoint\n"
    );
    // Modify in place: the remote file is fetched into the spool, patched, uploaded again.
    sh(&format!(
        "printf 'PATCH' | dd of='{}' bs=1 seek=6 conv=notrunc status=none",
        m.path("seeded/small.txt").display()
    ));
    m.settle(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sh(&format!("cat '{}'", m.path("seeded/small.txt").display())),
        "hello PATCHSharePoint\n"
    );
    let item = emu.item("seeded/small.txt").unwrap();
    assert_eq!(item["size"], 22);
    // Appending to a remote file.
    sh(&format!(
        "echo more >> '{}'",
        m.path("seeded/small.txt").display()
    ));
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.item("seeded/small.txt").unwrap()["size"], 27);
}

#[test]
fn bad_names_and_paths_get_errnos_and_the_rest_uploads() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    for bad in ["a:b.txt", "what?.txt", "CON", "trailing.", "x_vti_y"] {
        let (ok, out) = sh_status(&format!("touch '{}'", m.path(bad).display()));
        assert!(!ok && out.contains("Invalid argument"), "{bad}: {out}");
    }
    let long = "d".repeat(200);
    fs::create_dir(m.path(&long)).unwrap();
    let (ok, out) = sh_status(&format!(
        "touch '{}/{}'",
        m.path(&long).display(),
        "f".repeat(220)
    ));
    assert!(!ok && out.contains("File name too long"), "{out}");
    let (ok, out) = sh_status(&format!("mkdir '{}'", m.path("bad|dir").display()));
    assert!(!ok && out.contains("Invalid argument"), "{out}");
    // cp of a tree containing bad names: the good files still land.
    let src = emu.dir.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    write_file(&src.join("good.txt"), b"good");
    write_file(&src.join("bad*.txt"), b"bad");
    write_file(&src.join("also good.txt"), b"also");
    let (ok, out) = sh_status(&format!(
        "cp -r '{}/.' '{}'",
        src.display(),
        m.dir.display()
    ));
    assert!(!ok && out.contains("Invalid argument"), "{out}");
    // Links and special files are refused.
    let (ok, out) = sh_status(&format!("ln -s good.txt '{}'", m.path("link").display()));
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (ok, out) = sh_status(&format!(
        "ln '{}' '{}'",
        m.path("good.txt").display(),
        m.path("hard").display()
    ));
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (ok, _) = sh_status(&format!("mkfifo '{}'", m.path("fifo").display()));
    assert!(!ok);
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.file_paths(), vec!["also good.txt", "good.txt"]);
    // The failures are logged with their reason.
    let log = m.log_text();
    assert!(
        log.contains("invalid SharePoint name"),
        "{}",
        tail(&log, 20)
    );
    // statfs reports the spool's capacity.
    let df = sh(&format!(
        "df -B1 --output=size '{}' | tail -1",
        m.dir.display()
    ));
    assert!(df.trim().parse::<u64>().unwrap() > 0, "{df}");
}

#[test]
fn names_are_case_insensitive() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    write_file(&m.path("Report.TXT"), b"first");
    m.settle(Duration::from_secs(30));
    // Another case addresses the same item.
    assert_eq!(fs::read_to_string(m.path("report.txt")).unwrap(), "first");
    write_file(&m.path("report.txt"), b"second");
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.file_paths(), vec!["Report.TXT"]);
    assert_eq!(fs::read_to_string(m.path("REPORT.txt")).unwrap(), "second");
    let ls = sh(&format!("ls '{}'", m.dir.display()));
    assert_eq!(ls.trim(), "Report.TXT");
}

#[test]
fn large_folders_truncate_limits_and_attributes() {
    let emu = Emu::start(None);
    // A folder with more children than one Graph page (1,000) lists completely.
    for i in 0..1203 {
        emu.seed(&format!("many/f{i:04}.txt"), format!("{i}").into_bytes());
    }
    // Seeded before the mount: a colleague's later change shows within `poll_interval`.
    emu.seed("t.txt", b"0123456789".to_vec());
    let m = Mount::start(&emu, "");
    let n = sh(&format!("ls '{}' | wc -l", m.path("many").display()));
    assert_eq!(n.trim(), "1203");
    assert_eq!(
        fs::read_to_string(m.path("many/f1202.txt")).unwrap(),
        "1202"
    );

    // truncate of a remote file uploads a new version.
    sh(&format!("truncate -s 4 '{}'", m.path("t.txt").display()));
    m.settle(Duration::from_secs(30));
    assert_eq!(emu.item("t.txt").unwrap()["size"], 4);
    assert_eq!(fs::read_to_string(m.path("t.txt")).unwrap(), "0123");
    // utimens of an uploaded file patches its mtime; chmod and chown are accepted.
    sh(&format!(
        "touch -d @1400000000 '{}'",
        m.path("t.txt").display()
    ));
    assert_eq!(
        rfc3339_secs(emu.item("t.txt").unwrap()["mtime"].as_str().unwrap()),
        1_400_000_000
    );
    sh(&format!(
        "chmod 600 '{}' && chown 0:0 '{}'",
        m.path("t.txt").display(),
        m.path("t.txt").display()
    ));
    // Files over 250 GB are refused with EFBIG, at truncate and at write.
    let (ok, out) = sh_status(&format!(
        "truncate -s 251G '{}'",
        m.path("huge.bin").display()
    ));
    assert!(!ok && out.contains("File too large"), "{out}");
    let (ok, out) = sh_status(&format!(
        "dd if=/dev/zero of='{}' bs=1 count=1 seek=250000000000 status=none",
        m.path("huge2.bin").display()
    ));
    assert!(!ok && out.contains("File too large"), "{out}");
}
