//! Running as a system service: systemd's notify protocol, readiness, and the hand-off to a
//! parent waiting for `--daemon` (or `mount(8)`) to report whether the mount came up.
//!
//! - [`Notifier`] writes `sd_notify` datagrams (`READY=1`, `STATUS=…`, `STOPPING=1`) to
//!   `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) with a plain
//!   `UnixDatagram`; without the variable every call is a no-op. Failures are logged at debug
//!   level and never stop the mount (systemd then times the unit out, which is its signal).
//! - Readiness means *the mount answers*: [`watch_ready`] runs on its own thread, started after
//!   the FUSE session is created, and declares the mount ready only once `statfs` of the mount
//!   point reports a FUSE filesystem and a `stat` of it (a request our session must serve)
//!   succeeds. Only then is `READY=1` sent and the daemon parent released.
//! - `STATUS=` carries a one-line queue summary ([`status_line`]), refreshed every
//!   [`STATUS_EVERY`] — often enough for `systemctl status`, rare enough to cost nothing.
//! - The daemon hand-off ([`set_ready_pipe`], [`signal_ready`]) is a pipe inherited from the
//!   parent (`daemon`): one byte written at readiness, then closed. A child that dies
//!   first closes it without the byte, and the parent reports failure.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::upload::status::Totals;

/// How often `STATUS=` is refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// `f_type` of a FUSE filesystem (`FUSE_SUPER_MAGIC`, linux/magic.h).
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// How long readiness is waited for before giving up (the mount is then reported failed).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// An `sd_notify` sender; a no-op without `$NOTIFY_SOCKET`.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<String>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`, as systemd sets it for `Type=notify` units.
    pub fn from_env() -> Notifier {
        Notifier {
            target: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send one datagram of newline-separated `KEY=value` assignments.
    pub fn notify(&self, msg: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = send_datagram(target, msg.as_bytes()) {
            debug!("sd_notify {}: {e}", msg.lines().next().unwrap_or(""));
        }
    }
}

fn send_datagram(target: &str, msg: &[u8]) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(msg, &addr)?;
    } else {
        sock.send_to(msg, target)?;
    }
    Ok(())
}

/// The queue summary for `STATUS=`: counts that are not zero, bytes still to send.
pub fn status_line(t: &Totals) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (t.uploading, "uploading"),
        (t.retrying, "retrying"),
        (t.queued, "queued"),
        (t.failed, "failed"),
        (t.incomplete, "incomplete"),
        (t.done, "done"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        return "idle".into();
    }
    let mut line = parts.join(", ");
    if t.bytes_pending > 0 {
        line.push_str(&format!("; {} left", human_bytes(t.bytes_pending)));
    }
    if t.rate_bytes_per_sec > 0 {
        line.push_str(&format!(" at {}/s", human_bytes(t.rate_bytes_per_sec)));
    }
    line
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The write end of the `--daemon` parent's pipe, if this process is a daemon child.
static READY_PIPE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Remember the pipe on which the waiting parent expects the ready byte.
pub fn set_ready_pipe(f: std::fs::File) {
    *READY_PIPE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
}

/// Tell the waiting parent (if any) that the mount serves, and close the pipe; then detach
/// from the parent's terminal: stdin and stdout become /dev/null, and stderr too when logs go
/// to a file (`--log-file`).
pub fn signal_ready() {
    let pipe = READY_PIPE.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut f) = pipe {
        if let Err(e) = f.write_all(b"R") {
            debug!("ready pipe: {e}");
        }
        drop(f);
        let mut fds = vec![0, 1];
        if crate::logging::logs_to_file() {
            fds.push(2);
        }
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            use std::os::fd::AsRawFd;
            for fd in fds {
                // SAFETY: dup2 onto the standard descriptors of our own process.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
    }
}

/// `--daemon`: fork; the child returns `Ok` and goes on to mount (in a new session), the
/// parent waits until the child reports readiness (exit 0) or dies (exit with its code, 1 if
/// it was killed). Must be called before any thread is started.
pub fn daemonize() -> Result<(), String> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 into an array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "--daemon: pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: each descriptor is owned by exactly one File from here on.
    let (mut read_end, write_end) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: no other thread exists yet (documented precondition), so fork is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "--daemon: fork: {}",
            std::io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        drop(read_end);
        // SAFETY: setsid in the child, which is not a process group leader.
        unsafe { libc::setsid() };
        set_ready_pipe(write_end);
        return Ok(());
    }
    drop(write_end);
    let mut byte = [0u8; 1];
    let ready = matches!(read_end.read(&mut byte), Ok(1)) && byte[0] == b'R';
    if ready {
        std::process::exit(0);
    }
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid on our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if rc == pid && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status).max(1)
    } else {
        1
    };
    std::process::exit(code)
}

/// Does the mount point answer as a FUSE filesystem?
pub fn mount_answers(mountpoint: &Path) -> bool {
    is_fuse(mountpoint) && std::fs::metadata(mountpoint).is_ok()
}

/// Wait until `mountpoint` is no longer a FUSE mount (a drain finished); false on timeout.
pub fn wait_unmounted(mountpoint: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_fuse(mountpoint) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_fuse(mountpoint: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs into a zeroed struct we own, on a NUL-terminated path.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == FUSE_SUPER_MAGIC
    }
}

/// Start the readiness thread: once the mount answers, send `READY=1` (with a first
/// `STATUS=`), release a `--daemon` parent, then refresh `STATUS=` with `status()` every
/// [`STATUS_EVERY`] until `stop` is set.
pub fn watch_ready(
    mountpoint: PathBuf,
    notifier: Notifier,
    status: impl Fn() -> Totals + Send + 'static,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    std::thread::Builder::new()
        .name("readiness".into())
        .spawn(move || {
            let deadline = Instant::now() + READY_TIMEOUT;
            while !mount_answers(&mountpoint) {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            info!("ready: {} answers", mountpoint.display());
            let mut last = status_line(&status());
            notifier.notify(&format!("READY=1\nSTATUS={last}"));
            signal_ready();
            if !notifier.enabled() {
                return;
            }
            loop {
                sleep_unless(&stop, STATUS_EVERY);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let line = status_line(&status());
                if line != last {
                    notifier.notify(&format!("STATUS={line}"));
                    last = line;
                }
            }
        })
        .map(|_| ())
}

fn sleep_unless(stop: &std::sync::atomic::AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let mut t = Totals::default();
        assert_eq!(status_line(&t), "idle");
        t.uploading = 1;
        t.queued = 2;
        t.done = 5;
        t.bytes_pending = 3 * 1024 * 1024;
        t.rate_bytes_per_sec = 1536;
        assert_eq!(
            status_line(&t),
            "1 uploading, 2 queued, 5 done; 3.0 MiB left at 1.5 KiB/s"
        );
        let t = Totals {
            failed: 1,
            ..Totals::default()
        };
        assert_eq!(status_line(&t), "1 failed");
    }

    #[test]
    fn notify_reaches_a_listening_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            target: Some(path.to_string_lossy().into_owned()),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
        // Abstract namespace.
        let name = format!("shareuplift-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abs = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        Notifier {
            target: Some(format!("@{name}")),
        }
        .notify("STOPPING=1");
        let len = abs.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
        // No socket: nothing happens.
        Notifier::default().notify("READY=1");
    }
}
