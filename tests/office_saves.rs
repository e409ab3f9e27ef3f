//! Office-style saves (issue 16): Word and Excel write an owner file `~$report.docx` when they
//! open a document, save by writing `~WRL0001.tmp`, renaming the original away to
//! `~WRL0002.tmp`, renaming the new file over the original name, deleting the old one, and
//! delete the owner file at close. Through the mount directly, and through `smbclient` against
//! a Samba share of the mount (the usual way Windows desktops use a Linux mount): afterwards
//! SharePoint holds exactly the new document, byte for byte, and nothing else.
//!
//! The Samba test needs `smbd` and `smbclient` (`scripts/install-deps.sh` installs them). It
//! writes a private `smb.conf` (its own port on 127.0.0.1, lock, state, cache and log
//! directories in a temp dir, one guest share whose path is the mount), runs `smbd` in the
//! foreground as root, and kills it at the end.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const OWNER: &str = "~$report.docx";

/// A document-sized file with recognisable content.
fn document(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let p = dir.join(name);
    random_file(&p, 300 * 1024 + seed, seed);
    p
}

#[test]
fn office_save_sequence_through_the_mount_leaves_only_the_new_document() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let v1 = document(emu.dir.path(), "v1.docx", 1);
    let v2 = document(emu.dir.path(), "v2.docx", 2);
    fs::create_dir(m.path("team")).unwrap();
    fs::copy(&v1, m.path("team/report.docx")).unwrap();
    m.settle(Duration::from_secs(60));
    // Word opens the document: the owner file.
    write_file(&m.path(&format!("team/{OWNER}")), &[0x41; 162]);
    // Word saves.
    fs::copy(&v2, m.path("team/~WRL0001.tmp")).unwrap();
    fs::rename(m.path("team/report.docx"), m.path("team/~WRL0002.tmp")).unwrap();
    fs::rename(m.path("team/~WRL0001.tmp"), m.path("team/report.docx")).unwrap();
    fs::remove_file(m.path("team/~WRL0002.tmp")).unwrap();
    // The document stays open a while: the owner file is there, local only.
    assert_eq!(
        fs::read(m.path(&format!("team/{OWNER}"))).unwrap().len(),
        162
    );
    assert!(m.status_json()["local_only"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p == "team/~$report.docx")));
    // Word closes the document.
    fs::remove_file(m.path(&format!("team/{OWNER}"))).unwrap();
    m.settle(Duration::from_secs(60));
    assert_eq!(emu.file_paths(), vec!["team/report.docx"]);
    assert_eq!(
        emu.item("team/report.docx").unwrap()["quickXorHash"],
        qxh(&v2).as_str()
    );
    assert_eq!(
        fs::read(m.path("team/report.docx")).unwrap(),
        fs::read(&v2).unwrap()
    );
    assert_no_violations(&emu);
}

/// A Samba server sharing one folder as guest on 127.0.0.1; killed on drop.
struct Samba {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn smbd_binary() -> PathBuf {
    for p in ["/usr/sbin/smbd", "/usr/local/sbin/smbd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("smbd is not installed: run scripts/install-deps.sh (installs samba and smbclient)");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Samba {
    fn start(share: &Path) -> Samba {
        let smbd = smbd_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["lock", "state", "cache", "private", "pid", "ncalrpc"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let port = free_port();
        let conf = d.join("smb.conf");
        fs::write(
            &conf,
            format!(
                "[global]\n\
                 server role = standalone server\n\
                 smb ports = {port}\n\
                 interfaces = 127.0.0.1\n\
                 bind interfaces only = yes\n\
                 lock directory = {d}/lock\n\
                 state directory = {d}/state\n\
                 cache directory = {d}/cache\n\
                 private dir = {d}/private\n\
                 pid directory = {d}/pid\n\
                 ncalrpc dir = {d}/ncalrpc\n\
                 log file = {d}/smbd.log\n\
                 log level = 1\n\
                 map to guest = Bad User\n\
                 guest account = root\n\
                 load printers = no\n\
                 printing = bsd\n\
                 printcap name = /dev/null\n\
                 disable spoolss = yes\n\
                 disable netbios = yes\n\
                 store dos attributes = no\n\
                 ea support = no\n\
                 map archive = no\n\
                 kernel oplocks = no\n\
                 kernel share modes = no\n\
                 posix locking = no\n\
                 [share]\n\
                 path = {share}\n\
                 guest ok = yes\n\
                 guest only = yes\n\
                 read only = no\n\
                 force user = root\n",
                d = d.display(),
                share = share.display()
            ),
        )
        .expect("write smb.conf");
        let log = fs::File::create(d.join("smbd.out")).expect("log");
        let child = Command::new(smbd)
            .args(["--foreground", "--no-process-group", "--debug-stdout"])
            .arg(format!("--configfile={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn smbd");
        let s = Samba { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smbd did not listen on {port}:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn log(&self) -> String {
        let d = self.dir.path();
        format!(
            "{}\n{}",
            fs::read_to_string(d.join("smbd.out")).unwrap_or_default(),
            fs::read_to_string(d.join("smbd.log")).unwrap_or_default()
        )
    }

    /// Run `smbclient -c COMMANDS` against the share; panics with its output on failure.
    fn client(&self, cwd: &Path, commands: &str) -> String {
        let out = Command::new("smbclient")
            .arg("//127.0.0.1/share")
            .args(["-p", &self.port.to_string(), "-N", "-c", commands])
            .current_dir(cwd)
            .output()
            .expect("smbclient (run scripts/install-deps.sh)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("NT_STATUS_"),
            "smbclient -c '{commands}' failed:\n{text}\nsmbd:\n{}",
            tail(&self.log(), 30)
        );
        text
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn office_save_sequence_through_a_samba_share_of_the_mount() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "allow_other = true\n");
    let work = emu.dir.path().join("client");
    fs::create_dir_all(&work).unwrap();
    document(&work, "v1.docx", 3);
    document(&work, "v2.docx", 4);
    write_file(&work.join("owner"), &[0x41; 162]);
    let smb = Samba::start(&m.dir);
    // A plain copy and a folder, as Explorer makes them.
    smb.client(&work, "mkdir team; put v1.docx team\\report.docx");
    m.settle(Duration::from_secs(60));
    assert_eq!(
        emu.item("team/report.docx").unwrap()["quickXorHash"],
        qxh(&work.join("v1.docx")).as_str()
    );
    // Word opens the document and saves it.
    smb.client(
        &work,
        "cd team; put owner ~$report.docx; put v2.docx ~WRL0001.tmp; \
         rename report.docx ~WRL0002.tmp; rename ~WRL0001.tmp report.docx; \
         del ~WRL0002.tmp",
    );
    let listing = smb.client(&work, "cd team; ls");
    assert!(listing.contains("~$report.docx"), "{listing}");
    // Word closes it.
    smb.client(&work, "cd team; del ~$report.docx");
    m.settle(Duration::from_secs(60));
    assert_eq!(emu.file_paths(), vec!["team/report.docx"]);
    assert_eq!(
        emu.item("team/report.docx").unwrap()["quickXorHash"],
        qxh(&work.join("v2.docx")).as_str()
    );
    // Read back through Samba: byte-identical.
    smb.client(&work, "cd team; get report.docx back.docx");
    assert_eq!(
        fs::read(work.join("back.docx")).unwrap(),
        fs::read(work.join("v2.docx")).unwrap()
    );
    drop(smb);
    assert_no_violations(&emu);
}
