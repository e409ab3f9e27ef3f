//! Running a mount: builds the remote, spool, upload queue and filesystem core from a
//! validated configuration, mounts, and waits for unmount or a signal.
//!
//! Start-up: the spool is locked, then `recovery` re-queues what an earlier run left there
//! (resuming upload sessions) before the filesystem is served.
//!
//! Requests: every request of the mount passes one limiter and one throttle gate
//! (`upload::limiter::Pacer`): the Graph remote is wrapped once here and that same remote is
//! handed to the filesystem core (FUSE-side calls, the change feed, the upload listener) and
//! to the upload queue, so a `Retry-After` or the budget's pace holds for all of them.
//!
//! Bandwidth: one `upload::bwlimit::BwLimit` (the `bwlimit` key) is made here and handed to
//! the filesystem core (`.status` shows it, `.control` changes it) and to the queue, whose
//! fragment bodies pass every piece through it (`QueueConfig::pace`).
//!
//! Service: `service` sends systemd `READY=1` once the mount answers, `STATUS=` with the
//! queue summary, and `STOPPING=1` at SIGINT/SIGTERM or a drain.
//!
//! Shutdown: SIGINT/SIGTERM/SIGHUP unmount the filesystem (SIGHUP only reopens the log file
//! when there is one, `--log-file`) and stop at once: the upload queue is stopped (the
//! fragment in flight ends or is cut off, no new one starts, each job's session stays in its
//! spool record) and the process exits 0; the next mount resumes those sessions.
//!
//! Unmount drain: an external `umount` or `fusermount3 -u` ends the session too, but then the
//! process keeps uploading what is queued for at most `unmount_drain` (default 30 s; 0: stop
//! at once as above), logging what it waits for every few seconds, and exits as soon as the
//! queue is idle. Nothing new can arrive (the filesystem is gone), so this only finishes work
//! already accepted. A SIGINT/SIGTERM during it stops at once; when the time is up the queue is
//! stopped as above. The bound exists because `umount` is often part of a shutdown that will
//! not wait for ever; whatever is left is named in the log and resumes at the next mount.
//!
//! Drain: SIGUSR1, or `drain` written to `MOUNT/.control`, refuses new writes (EACCES), waits
//! until the queue has nothing queued or uploading (failed and incomplete uploads stay in the
//! spool), then unmounts and exits 0. A SIGTERM during a drain unmounts at once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::config::MountConfig;
use crate::fs::{Fs, FsOptions};
use crate::fuse::FuseAdapter;
use crate::graph::{GraphConfig, GraphRemote};
use crate::remote::Remote;
use crate::spool::{Spool, SpoolStore};
use crate::upload::bwlimit::BwLimit;
use crate::upload::clock::SystemClock;
use crate::upload::limiter::Pacer;
use crate::upload::status::{human_bytes, StatusSnapshot};
use crate::upload::{QueueConfig, UploadQueue};

/// How often the unmount drain logs (and tells systemd) what it still waits for.
const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(5);
/// Paths named in one drain log line; the rest are counted.
const DRAIN_NAMES: usize = 5;

/// A start-up or runtime failure, as one line for the user.
#[derive(Debug)]
pub struct MountError(pub String);

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server-relative path of the mounted folder, for the 400-character rule.
pub fn folder_server_path(folder_url: &str) -> String {
    let path = match url::Url::parse(folder_url) {
        Ok(u) => u.path().to_string(),
        Err(_) => folder_url.to_string(),
    };
    percent_encoding::percent_decode_str(&path)
        .decode_utf8_lossy()
        .trim_end_matches('/')
        .to_string()
}

pub fn graph_config(cfg: &MountConfig) -> GraphConfig {
    GraphConfig {
        graph_url: cfg.graph_url.clone(),
        authority_url: cfg.authority_url.clone(),
        graph_scope: cfg.graph_scope.clone(),
        auth: cfg.auth,
        certificate_file: cfg.certificate_file.clone(),
        certificate_key_file: cfg.certificate_key_file.clone(),
        ca_file: cfg.ca_file.clone(),
        state_dir: cfg.state_dir.clone(),
        tenant: cfg.tenant.clone(),
        client_id: cfg.client_id.clone(),
        client_secret: cfg.client_secret.clone(),
        username: cfg.username.clone(),
        password: cfg.password.clone(),
        site_url: cfg.site_url.clone(),
        folder_url: cfg.folder_url.clone(),
        timeout: std::time::Duration::from_secs(60),
        startup_timeout: cfg.startup_timeout,
        idle_timeout: cfg.idle_timeout,
    }
}

/// How much longer than its own `unmount_drain` a mount waits for a spool still held by an
/// earlier process of the same configuration (that one's drain plus its exit).
const SPOOL_WAIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Malloc arenas the mount process uses (glibc). The default, 8 per core, lets each of the
/// mount's threads (FUSE, workers, runtime) keep its own heap of freed small blocks: at
/// 20,000 files in one folder that was 109 MiB peak RSS against 63 MiB with two (issue 19).
const MALLOC_ARENAS: i32 = 2;

/// Bound the malloc arenas (see [`MALLOC_ARENAS`]); before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Mount and serve until unmounted or signalled.
pub fn run(cfg: MountConfig, mountpoint: &Path) -> Result<(), MountError> {
    limit_malloc_arenas();
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(MountError(format!(
                "mount point {} is not a directory",
                mountpoint.display()
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError(format!(
                "{} is a stale mount of a process that died; run `fusermount3 -u {}` first",
                mountpoint.display(),
                mountpoint.display()
            )))
        }
        Err(e) => {
            return Err(MountError(format!(
                "mount point {}: {e}",
                mountpoint.display()
            )))
        }
    }
    // Block the shutdown signals before any thread starts, so every thread inherits the
    // mask and only the signal thread receives them.
    let sigset = block_signals();

    // An earlier mount of this spool may still be draining after its unmount.
    let spool = Spool::open_waiting(&cfg.spool_dir, cfg.unmount_drain + SPOOL_WAIT_MARGIN)
        .map_err(|e| MountError(format!("spool_dir {}: {e}", cfg.spool_dir.display())))?;
    let leftovers = spool.existing_files().map(|v| v.len()).unwrap_or(0);
    if leftovers > 0 {
        info!(
            "{leftovers} spool file(s) from an earlier run are kept in {}",
            spool.data_dir().display()
        );
    }
    let graph =
        Arc::new(GraphRemote::connect(graph_config(&cfg)).map_err(|e| MountError(e.to_string()))?);
    let (hints, sign_in) = (graph.rate_hints(), graph.sign_in());
    info!("connected to {} ({})", cfg.site_url, cfg.folder_url);
    // One limiter and one throttle gate for every request of the mount: the filesystem's own
    // (FUSE-side lookups, listings, reads; the change feed; the upload listener) and the
    // upload queue's. FUSE threads are its interactive lane: refused locally inside a
    // Retry-After window instead of waiting (`upload/limiter.rs`).
    let pacer = Pacer::new(
        cfg.workers.max(1) + cfg.small_file_workers,
        Arc::new(SystemClock),
    );
    let remote: Arc<dyn Remote> = Arc::new(pacer.wrap_with_hints(graph, hints));

    let mut qcfg = QueueConfig::new(
        Arc::new(|p: &Path| crate::quickxor::quickxor_file(p)),
        Arc::new(SpoolStore),
    );
    qcfg.workers = cfg.workers;
    qcfg.small_file_workers = cfg.small_file_workers;
    qcfg.chunk_size = cfg.chunk_size;
    qcfg.adapt_fragments = !cfg.chunk_size_fixed;
    qcfg.conflict = cfg.conflict;
    qcfg.max_attempts = cfg.max_attempts;
    qcfg.retention = cfg.status_retention;
    qcfg.status_limits = crate::upload::status_summary::StatusLimits {
        summary_at: cfg.status_summary_at,
        max_done: cfg.status_max_done,
    };
    qcfg.session_idle = cfg.session_idle;
    qcfg.locked_wait = cfg.locked_wait;
    qcfg.write_back_delay = cfg.write_back_delay;
    qcfg.pacer = Some(pacer);
    qcfg.sign_in = sign_in;
    // Every drive this client mounts is a SharePoint library (team sites and OneDrive for
    // Business alike), and SharePoint enriches Office and PDF files in all of them.
    qcfg.enriches_files = true;
    // One bandwidth limit for every upload worker, shown and changed through the filesystem.
    let bwlimit = Arc::new(BwLimit::new(cfg.bwlimit.clone()));
    if let Some(bw) = bwlimit.status() {
        info!("{}", bw.line());
    }
    // Every 256 KiB piece of every fragment body passes `BwLimit::take`.
    qcfg.pace = bwlimit.clone();
    let queue_remote = remote.clone();
    let spool = Arc::new(spool);
    let fs = Arc::new(Fs::new(
        remote,
        spool.clone(),
        move |listener| UploadQueue::start(queue_remote, qcfg, listener),
        FsOptions {
            base_path_chars: folder_server_path(&cfg.folder_url).chars().count(),
            replace_by_upload: cfg.conflict == crate::remote::Conflict::Replace,
            spool_max: cfg.spool_max,
            fsync_barrier: cfg.fsync_barrier,
            poll_interval: cfg.poll_interval,
            dir_cache_time: cfg.dir_cache_time,
            bwlimit: Some(bwlimit.clone()),
            ..FsOptions::default()
        },
    ));
    crate::recovery::recover(&fs, &spool);

    let options = vec![
        fuser::MountOption::FSName("shareuplift".into()),
        fuser::MountOption::Subtype("shareuplift".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    let acl = if cfg.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = options;
    fuse_cfg.acl = acl;
    fuse_cfg.n_threads = Some(cfg.fuse_threads);

    let mut session = fuser::Session::new(
        FuseAdapter::with_ownership(fs.clone(), cfg.ownership),
        mountpoint,
        &fuse_cfg,
    )
    .map_err(|e| MountError(format!("cannot mount at {}: {e}", mountpoint.display())))?;
    let mut unmounter = session.unmount_callable();
    // Remote changes from the change feed reach the kernel's caches at once.
    fs.set_kernel_cache(Box::new(crate::fuse::KernelNotifier(session.notifier())));
    // systemd (Type=notify) and --daemon: READY once the session below answers.
    let notifier = crate::service::Notifier::from_env();
    let ready_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let status_fs = fs.clone();
    crate::service::watch_ready(
        mountpoint.to_path_buf(),
        notifier.clone(),
        move || status_fs.status_snapshot().totals,
        ready_stop.clone(),
    )
    .map_err(|e| MountError(format!("cannot start readiness thread: {e}")))?;
    let (sig_tx, sig_rx) = crossbeam_channel::unbounded::<i32>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Some(sig) = wait_signal(&sigset) {
                if sig_tx.send(sig).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| MountError(format!("cannot start signal thread: {e}")))?;
    let drain_rx = fs.drain_requests();
    let ctl_fs = fs.clone();
    // Set by the unmounter on SIGINT/SIGTERM: no unmount drain, or stop the one running.
    let stop_now = Arc::new(AtomicBool::new(false));
    // Set once the session has ended: a signal then needs no unmount call.
    let session_over = Arc::new(AtomicBool::new(false));
    let (stop_tx, over_rx) = (stop_now.clone(), session_over.clone());
    let drain_notifier = notifier.clone();
    std::thread::Builder::new()
        .name("unmounter".into())
        .spawn(move || {
            let mut draining = false;
            let mut announced = false;
            // Consecutive idle checks while draining: two, so a file closed just before
            // the drain (its release still on the way) is queued and waited for.
            let mut idle_checks = 0;
            loop {
                if draining {
                    // Checks are spaced out so that a release still on its way (a file closed
                    // just before the drain) is seen, and the `.control` writer has closed.
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    match sig_rx.try_recv() {
                        Ok(libc::SIGUSR1) | Err(_) => {}
                        Ok(libc::SIGHUP) if crate::logging::reopen_log() => {}
                        Ok(sig) => {
                            info!("signal {sig}: unmounting");
                            stop_tx.store(true, Ordering::SeqCst);
                            notifier.notify("STOPPING=1");
                            break;
                        }
                    }
                } else {
                    crossbeam_channel::select! {
                        recv(sig_rx) -> sig => match sig {
                            Ok(libc::SIGUSR1) => draining = true,
                            Ok(libc::SIGHUP) if crate::logging::reopen_log() => {
                                info!("SIGHUP: log file reopened");
                            }
                            Ok(sig) if over_rx.load(Ordering::SeqCst) => {
                                info!("signal {sig}: stopping the unmount drain");
                                stop_tx.store(true, Ordering::SeqCst);
                                return;
                            }
                            Ok(sig) => {
                                info!("signal {sig}: unmounting");
                                stop_tx.store(true, Ordering::SeqCst);
                                notifier.notify("STOPPING=1");
                                break;
                            }
                            Err(_) => return,
                        },
                        recv(drain_rx) -> _ => draining = true,
                    }
                    continue;
                }
                if !announced {
                    announced = true;
                    ctl_fs.request_drain();
                    notifier.notify("STOPPING=1\nSTATUS=draining: waiting for the upload queue");
                    info!("draining: new writes refused; waiting for the queue");
                }
                let idle = ctl_fs.open_writers() == 0
                    && ctl_fs
                        .queue()
                        .wait_idle(std::time::Duration::from_millis(200));
                idle_checks = if idle { idle_checks + 1 } else { 0 };
                if idle_checks >= 2 {
                    info!("drained: unmounting");
                    break;
                }
            }
            // The mount may be busy for a moment (the `.control` write that asked for the
            // drain is still open): try for a while.
            for attempt in 0..50 {
                match unmounter.unmount() {
                    Ok(()) => return,
                    Err(e) if attempt < 49 => {
                        log::debug!("unmount: {e}; trying again");
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => error!("unmount failed: {e}"),
                }
            }
        })
        .map_err(|e| MountError(format!("cannot start unmount thread: {e}")))?;
    info!("mounted at {}", mountpoint.display());
    let result = session.run();
    session_over.store(true, Ordering::SeqCst);
    ready_stop.store(true, Ordering::Relaxed);
    info!("unmounted {}", mountpoint.display());
    if !cfg.unmount_drain.is_zero() && !stop_now.load(Ordering::SeqCst) {
        spool.mark_draining();
        drain_after_unmount(&fs, cfg.unmount_drain, &stop_now, &drain_notifier);
    }
    // No worker stays asleep in the bandwidth limit while the queue stops.
    bwlimit.release();
    fs.shutdown();
    // What the next mount will pick up (failed, incomplete, or not yet uploaded files).
    match spool.existing_files() {
        Ok(left) if !left.is_empty() => info!(
            "{} file(s) left in the spool {} for the next mount",
            left.len(),
            spool.data_dir().display()
        ),
        Ok(_) => info!("spool empty: everything is in SharePoint"),
        Err(e) => log::warn!("cannot list the spool: {e}"),
    }
    result.map_err(|e| MountError(format!("filesystem session ended with an error: {e}")))
}

/// The unmount drain: keep the workers uploading until the queue is idle, `limit` passes or
/// `stop` is set (a signal), logging what is left every [`DRAIN_REPORT_EVERY`].
fn drain_after_unmount(
    fs: &Fs,
    limit: Duration,
    stop: &AtomicBool,
    notifier: &crate::service::Notifier,
) {
    if fs.queue().wait_idle(Duration::ZERO) {
        return;
    }
    let start = Instant::now();
    let left = pending_summary(&fs.status_snapshot());
    info!(
        "unmount drain: uploading what is queued before exiting, at most {} s \
         (unmount_drain): {left}",
        limit.as_secs()
    );
    notifier.notify(&format!("STATUS=unmounted, finishing uploads: {left}"));
    let mut next_report = start + DRAIN_REPORT_EVERY;
    loop {
        if fs.queue().wait_idle(Duration::from_millis(200)) {
            info!(
                "unmount drain: every queued upload finished after {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        if stop.load(Ordering::SeqCst) {
            let left = pending_summary(&fs.status_snapshot());
            info!("unmount drain stopped by a signal; unfinished: {left}");
            return;
        }
        let now = Instant::now();
        if now >= start + limit {
            let left = pending_summary(&fs.status_snapshot());
            warn!(
                "unmount drain: {} s passed (unmount_drain); unfinished, resumed at the next \
                 mount: {left}",
                limit.as_secs()
            );
            return;
        }
        if now >= next_report {
            next_report = now + DRAIN_REPORT_EVERY;
            let left = pending_summary(&fs.status_snapshot());
            info!("unmount drain: waiting for {left}");
            notifier.notify(&format!("STATUS=unmounted, finishing uploads: {left}"));
        }
    }
}

/// `2 upload(s), 150.0 MiB left: a.bin, b.bin` — what a drain still waits for (queued,
/// uploading, retrying), the first [`DRAIN_NAMES`] paths named.
fn pending_summary(snap: &StatusSnapshot) -> String {
    let busy: Vec<&str> = snap
        .uploads
        .iter()
        .filter(|u| !u.state.is_finished())
        .map(|u| u.path.as_str())
        .collect();
    let mut out = format!(
        "{} upload(s), {} left",
        busy.len(),
        human_bytes(snap.totals.bytes_pending)
    );
    if !busy.is_empty() {
        out.push_str(": ");
        out.push_str(&busy[..busy.len().min(DRAIN_NAMES)].join(", "));
        if busy.len() > DRAIN_NAMES {
            out.push_str(&format!(" and {} more", busy.len() - DRAIN_NAMES));
        }
    }
    out
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> Option<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait on a set of blocked signals.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    (rc == 0).then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_summary_names_busy_uploads_only() {
        use crate::upload::status::{UploadState, UploadStatus};
        let mut ups: Vec<UploadStatus> = (0..7)
            .map(|i| UploadStatus::queued(format!("f{i}.bin"), 1024 * 1024))
            .collect();
        ups[0].state = UploadState::Done;
        ups[1].state = UploadState::Uploading;
        ups[1].uploaded = 512 * 1024;
        ups[2].state = UploadState::Failed;
        let snap = StatusSnapshot::new(ups, None);
        assert_eq!(
            pending_summary(&snap),
            "5 upload(s), 4.5 MiB left: f1.bin, f3.bin, f4.bin, f5.bin, f6.bin"
        );
        let mut more: Vec<UploadStatus> = (0..8)
            .map(|i| UploadStatus::queued(format!("g{i}"), 1))
            .collect();
        more[0].state = UploadState::Retrying;
        assert!(pending_summary(&StatusSnapshot::new(more, None)).ends_with("g4 and 3 more"));
        assert_eq!(
            pending_summary(&StatusSnapshot::new(Vec::new(), None)),
            "0 upload(s), 0 B left"
        );
    }

    #[test]
    fn server_path_of_folder() {
        for (input, want) in [
            (
                "https://c.sharepoint.com/sites/T/Shared%20Documents/Up/",
                "/sites/T/Shared Documents/Up",
            ),
            (
                "/sites/T/Shared Documents/Up",
                "/sites/T/Shared Documents/Up",
            ),
        ] {
            assert_eq!(folder_server_path(input), want);
        }
    }
}
