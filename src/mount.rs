//! Running a mount: builds the remote, spool, upload queue and filesystem core from a
//! validated configuration, mounts, and waits for unmount or a signal.
//!
//! Start-up: the spool is locked, then `recovery` re-queues what an earlier run left there
//! (resuming upload sessions) before the filesystem is served.
//!
//! Service: `service` sends systemd `READY=1` once the mount answers, `STATUS=` with the
//! queue summary, and `STOPPING=1` at SIGINT/SIGTERM or a drain.
//!
//! Shutdown: SIGINT/SIGTERM/SIGHUP unmount the filesystem (SIGHUP only reopens the log file
//! when there is one, `--log-file`); an external `fusermount3 -u` or
//! `umount` ends the session the same way. Either way the upload queue is stopped (the
//! fragment in flight ends or is cut off, no new one starts, each job's session stays in its
//! spool record) and the process exits 0; the next mount resumes those sessions.
//!
//! Drain: SIGUSR1, or `drain` written to `MOUNT/.control`, refuses new writes (EACCES), waits
//! until the queue has nothing queued or uploading (failed and incomplete uploads stay in the
//! spool), then unmounts and exits 0. A SIGTERM during a drain unmounts at once.

use std::path::Path;
use std::sync::Arc;

use log::{error, info};

use crate::config::MountConfig;
use crate::fs::{Fs, FsOptions};
use crate::fuse::FuseAdapter;
use crate::graph::{GraphConfig, GraphRemote};
use crate::remote::Remote;
use crate::spool::{Spool, SpoolStore};
use crate::upload::{QueueConfig, UploadQueue};

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
    }
}

/// Mount and serve until unmounted or signalled.
pub fn run(cfg: MountConfig, mountpoint: &Path) -> Result<(), MountError> {
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

    let spool = Spool::open(&cfg.spool_dir)
        .map_err(|e| MountError(format!("spool_dir {}: {e}", cfg.spool_dir.display())))?;
    let leftovers = spool.existing_files().map(|v| v.len()).unwrap_or(0);
    if leftovers > 0 {
        info!(
            "{leftovers} spool file(s) from an earlier run are kept in {}",
            spool.data_dir().display()
        );
    }
    let remote: Arc<dyn Remote> =
        Arc::new(GraphRemote::connect(graph_config(&cfg)).map_err(|e| MountError(e.to_string()))?);
    info!("connected to {} ({})", cfg.site_url, cfg.folder_url);

    let mut qcfg = QueueConfig::new(
        Arc::new(|p: &Path| crate::quickxor::quickxor_file(p)),
        Arc::new(SpoolStore),
    );
    qcfg.workers = cfg.workers;
    qcfg.small_file_workers = cfg.small_file_workers;
    qcfg.chunk_size = cfg.chunk_size;
    qcfg.conflict = cfg.conflict;
    qcfg.max_attempts = cfg.max_attempts;
    qcfg.retention = cfg.status_retention;
    qcfg.session_idle = cfg.session_idle;
    qcfg.locked_wait = cfg.locked_wait;
    qcfg.write_back_delay = std::time::Duration::from_secs(1);
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
    fuse_cfg.n_threads = Some(4);

    let mut session = fuser::Session::new(
        FuseAdapter::with_ownership(fs.clone(), cfg.ownership),
        mountpoint,
        &fuse_cfg,
    )
    .map_err(|e| MountError(format!("cannot mount at {}: {e}", mountpoint.display())))?;
    let mut unmounter = session.unmount_callable();
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
                            Ok(sig) => {
                                info!("signal {sig}: unmounting");
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
    ready_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    fs.shutdown();
    info!("unmounted {}", mountpoint.display());
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
