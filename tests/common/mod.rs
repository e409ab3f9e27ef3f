//! Shared harness for real-mount tests: an in-process emulator on 127.0.0.1, the
//! `shareuplift mount` binary started on a fresh temp mount point with an RAII guard that
//! unmounts on drop, and helpers that read the emulator's admin API and the mount's
//! `.status.json`.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shareuplift::emulator::{Emulator, EmulatorInfo, EmulatorOptions};

/// The folder the emulator's `folder_url` points at, inside the Documents library.
pub const FOLDER: &str = "Uploads";

pub struct Emu {
    emu: Option<Emulator>,
    pub info: EmulatorInfo,
    pub dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Emu {
    pub fn start(faults: Option<&str>) -> Emu {
        let dir = tempfile::tempdir().expect("tempdir");
        let emu = Emulator::start(EmulatorOptions {
            data_dir: dir.path().join("emu"),
            port: 0,
            faults_json: faults.map(str::to_string),
            ..Default::default()
        })
        .expect("start emulator");
        let info = emu.info().clone();
        Emu {
            emu: Some(emu),
            info,
            dir,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    fn admin(&self, path: &str) -> Value {
        let url = format!("{}/{path}", self.info.admin_url);
        self.http
            .get(&url)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Every stored item, keyed by path relative to the mount folder.
    pub fn items(&self) -> Vec<Value> {
        let prefix = format!("{FOLDER}/");
        self.admin("items")["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i["drive"] == "Documents")
            .filter_map(|mut i| {
                let p = i["path"].as_str()?.to_string();
                let rel = p.strip_prefix(&prefix)?.to_string();
                i["rel"] = Value::String(rel);
                Some(i)
            })
            .collect()
    }

    /// The item at `rel` (relative to the mount folder), compared case-insensitively.
    pub fn item(&self, rel: &str) -> Option<Value> {
        self.items()
            .into_iter()
            .find(|i| i["rel"].as_str().map(|r| r.eq_ignore_ascii_case(rel)) == Some(true))
    }

    pub fn violations(&self) -> Vec<Value> {
        self.admin("violations")["violations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn stats(&self) -> Value {
        self.admin("stats")
    }

    /// `POST {admin}/{path}` with a JSON body; panics unless it succeeds.
    pub fn admin_post(&self, path: &str, json: &str) {
        let url = format!("{}/{path}", self.info.admin_url);
        let r = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(json.to_string())
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(
            r.status().is_success(),
            "POST {path} {json}: {}",
            r.status()
        );
    }

    pub fn set_faults(&self, json: &str) {
        self.admin_post("faults", json);
    }

    /// Merge `json` into the emulator's field knobs (`POST /_admin/field`).
    pub fn set_field(&self, json: &str) {
        self.admin_post("field", json);
    }

    /// Store a file directly in the emulator (not through the mount).
    pub fn seed(&self, rel: &str, data: Vec<u8>) {
        let url = format!("{}/files/Documents/{FOLDER}/{rel}", self.info.admin_url);
        let r = self.http.put(&url).body(data).send().expect("seed");
        assert!(r.status().is_success(), "seed {rel}: {}", r.status());
    }

    pub fn stop(&mut self) {
        if let Some(e) = self.emu.take() {
            e.stop();
        }
    }
}

/// A running `shareuplift mount`; unmounted and killed on drop.
pub struct Mount {
    child: Option<Child>,
    pub dir: PathBuf,
    pub spool: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
    _tmp: tempfile::TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shareuplift")
}

/// The config text for the emulator, plus `extra` TOML lines. Unless `extra` sets
/// `unmount_drain`, it is 0: the tests unmount to stop (durability, crash, outage tests rely on
/// an unmount leaving the queue as it is), and those that test the drain set it.
pub fn config_for(info: &EmulatorInfo, spool: &Path, extra: &str) -> String {
    let drain = if extra.contains("unmount_drain") {
        ""
    } else {
        "unmount_drain = 0\n"
    };
    format!(
        "site_url = \"{}\"\nfolder_url = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n\
         client_id = \"{}\"\ntenant = \"{}\"\ngraph_url = \"{}\"\nauthority_url = \"{}\"\n\
         spool_dir = \"{}\"\n{drain}{extra}\n",
        info.site_url,
        info.folder_url,
        info.username,
        info.password,
        info.client_id,
        info.tenant,
        info.graph_url,
        info.authority_url,
        spool.display()
    )
}

fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

impl Mount {
    /// Mount with the emulator's credentials and `extra` config lines.
    pub fn start(emu: &Emu, extra: &str) -> Mount {
        Self::try_start(emu, extra, &[]).unwrap_or_else(|(_, log)| panic!("mount failed:\n{log}"))
    }

    /// Start; `Err((status, log))` if the process exits before mounting.
    pub fn try_start(emu: &Emu, extra: &str, args: &[&str]) -> Result<Mount, (ExitStatus, String)> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = tmp.path().join("spool");
        Self::start_with(emu, extra, args, tmp, spool)
    }

    /// Start again on the same spool directory (after a crash or unmount).
    pub fn restart(emu: &Emu, spool: &Path, extra: &str) -> Mount {
        let tmp = tempfile::tempdir().expect("tempdir");
        Self::start_with(emu, extra, &[], tmp, spool.to_path_buf())
            .unwrap_or_else(|(_, log)| panic!("mount failed:\n{log}"))
    }

    fn start_with(
        emu: &Emu,
        extra: &str,
        args: &[&str],
        tmp: tempfile::TempDir,
        spool: PathBuf,
    ) -> Result<Mount, (ExitStatus, String)> {
        let dir = tmp.path().join("mnt");
        fs::create_dir_all(&dir).expect("mkdir mnt");
        let config = tmp.path().join("config.toml");
        fs::write(&config, config_for(&emu.info, &spool, extra)).expect("write config");
        let log = tmp.path().join("mount.log");
        let logf = fs::File::create(&log).expect("log");
        let child = Command::new(bin())
            .arg("-v")
            .arg("mount")
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf)
            .spawn()
            .expect("spawn shareuplift");
        let mut m = Mount {
            child: Some(child),
            dir,
            spool,
            log,
            config,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if is_mounted(&m.dir) {
                return Ok(m);
            }
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    m.child = None;
                    return Err((st, m.log_text()));
                }
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear:\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn status_json(&self) -> Value {
        let text = fs::read_to_string(self.path(".status.json")).expect("read .status.json");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad .status.json ({e}): {text}"))
    }

    pub fn status_text(&self) -> String {
        fs::read_to_string(self.path(".status")).expect("read .status")
    }

    /// The status entry for `rel`, if any.
    pub fn upload(&self, rel: &str) -> Option<Value> {
        self.status_json()["uploads"]
            .as_array()
            .and_then(|a| a.iter().rev().find(|u| u["path"] == rel).cloned())
    }

    /// Wait until no upload is queued, uploading or retrying; returns the last status.
    pub fn settle(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status_json();
            let busy = st["uploads"].as_array().is_some_and(|a| {
                a.iter().any(|u| {
                    matches!(
                        u["state"].as_str(),
                        Some("queued" | "uploading" | "retrying")
                    )
                })
            }) || st["open_for_writing"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if !busy {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "uploads did not settle: {st:#}\nlog:\n{}",
                tail(&self.log_text(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for `rel` to reach `state` (done/failed); panics on timeout.
    pub fn wait_state(&self, rel: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(u) = self.upload(rel) {
                if u["state"] == state {
                    return u;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{rel} never reached {state}: {:#}\nlog:\n{}",
                self.status_json(),
                tail(&self.log_text(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Unmount cleanly and wait for the process; returns its exit status.
    pub fn unmount(mut self) -> ExitStatus {
        fusermount(&self.dir, false);
        let mut child = self.child.take().expect("running");
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// SIGKILL the process (a crash) and clean the stale mount.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        fusermount(&self.dir, true);
    }

    /// Send a signal and wait for exit.
    pub fn signal(mut self, sig: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let st = wait_timeout(&mut child, Duration::from_secs(30));
        fusermount(&self.dir, true);
        st
    }
}

fn wait_timeout(child: &mut Child, t: Duration) -> ExitStatus {
    let deadline = Instant::now() + t;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            fusermount(&self.dir, false);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            fusermount(&self.dir, true);
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Write `size` pseudo-random bytes (xorshift, seeded) to `path` without holding them in
/// memory.
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let f = fs::File::create(path).expect("create");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = ((size - off) as usize).min(buf.len());
        for chunk in buf[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        f.write_all_at(&buf[..n], off).expect("write");
        off += n as u64;
    }
    f.sync_all().ok();
}

pub fn write_file(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).expect("create");
    f.write_all(data).expect("write");
}

/// quickXorHash of a local file, with the client's implementation.
pub fn qxh(path: &Path) -> String {
    shareuplift::quickxor::quickxor_file(path).expect("hash")
}

/// Run a shell command, panicking with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Assert the emulator saw no protocol violation.
pub fn assert_no_violations(emu: &Emu) {
    let v = emu.violations();
    assert!(v.is_empty(), "protocol violations: {v:#?}");
}

/// Lazy unmount if still mounted; silent.
fn quiet_unmount(dir: &Path) -> bool {
    fusermount(dir, true)
}

/// `fusermount3 -u` (`-uz` when `lazy`) if `dir` is still mounted: a guard unmounting what
/// is already gone would only print "Invalid argument" into the test output.
fn fusermount(dir: &Path, lazy: bool) -> bool {
    if !is_mounted(dir) {
        return true;
    }
    Command::new("fusermount3")
        .arg(if lazy { "-uz" } else { "-u" })
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Emu {
    /// Seed a file in the emulator from a local file, streamed.
    pub fn seed_file(&self, rel: &str, path: &Path) {
        let url = format!("{}/files/Documents/{FOLDER}/{rel}", self.info.admin_url);
        let f = fs::File::open(path).expect("open seed");
        let len = f.metadata().expect("stat seed").len();
        let r = self
            .http
            .put(&url)
            .body(reqwest::blocking::Body::sized(f, len))
            .send()
            .expect("seed");
        assert!(r.status().is_success(), "seed {rel}: {}", r.status());
    }

    /// Relative paths of all files (not folders) under the mount folder, sorted.
    pub fn file_paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .items()
            .into_iter()
            .filter(|i| i["folder"] != true)
            .filter_map(|i| i["rel"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }
}

/// mtime of a local file, whole seconds since the epoch.
pub fn mtime_secs(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).expect("stat").mtime()
}

/// Seconds since the epoch of an RFC 3339 UTC time as the emulator prints it.
pub fn rfc3339_secs(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("bad time {s}: {e}"))
        .unix_timestamp()
}

/// Run a shell command and return (success, stdout+stderr).
pub fn sh_status(cmd: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("bash");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ---- Durability helpers (issue 3) ----

impl Mount {
    /// Start on a spool directory the test owns (so it survives `kill9`/`signal`, which drop
    /// the mount's own temp directory).
    pub fn start_on(emu: &Emu, spool: &Path, extra: &str) -> Mount {
        Self::restart(emu, spool, extra)
    }

    /// Write one command line to the mount's `.control`.
    pub fn control(&self, line: &str) -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.path(".control"))?;
        f.write_all(format!("{line}\n").as_bytes())
    }

    /// Wait until `pred(uploaded bytes of rel)` holds; panics on timeout.
    pub fn wait_uploaded(&self, rel: &str, min: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(u) = self.upload(rel) {
                let n = u["uploaded"].as_u64().unwrap_or(0);
                if n >= min {
                    return n;
                }
                assert_ne!(u["state"], "done", "{rel} finished before the fault point");
            }
            assert!(
                Instant::now() < deadline,
                "{rel} never reached {min} bytes: {:#}",
                self.status_json()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the process to exit by itself (after a drain); returns its status and log.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let st = wait_timeout(&mut child, timeout);
        fusermount(&self.dir, true);
        (st, self.log_text())
    }
}

/// Spool data files (and records) left in `spool`.
pub fn spool_files(spool: &Path) -> Vec<PathBuf> {
    fs::read_dir(spool.join("data"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Wait until the spool directory holds no data file or record.
pub fn wait_spool_empty(spool: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = spool_files(spool);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "spool files left: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An access token for the emulator's test user (password grant, the Graph scope), as the
/// protocol tests use it to talk to the emulator directly.
pub fn password_token(http: &reqwest::blocking::Client, info: &EmulatorInfo) -> String {
    let r = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            info.authority_url, info.tenant
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", info.client_id.as_str()),
            ("username", info.username.as_str()),
            ("password", info.password.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .expect("token request");
    assert_eq!(r.status(), 200);
    r.json::<Value>().expect("token json")["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}
