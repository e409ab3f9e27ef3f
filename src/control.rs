//! The client side of a running mount's control surface, for the `retry`, `discard`, `drain`,
//! `bwlimit` and `wait` subcommands: find the mount root of a path, write commands to its hidden
//! `.control` file, and poll its `.status.json`.
//!
//! Nothing here talks to SharePoint or to the mount process directly: `.control` and
//! `.status.json` are plain files of the mount, so these commands work from any script and
//! with the permissions of the mount itself.
//!
//! `wait` semantics, per path: still `queued`/`uploading`/`retrying` → keep waiting; any
//! `failed` or `incomplete` entry → failed (exit 1, the reason printed); else a `done` entry
//! → done. A path with no entry at all is done if it exists in the mount and still has no
//! entry after a grace period (`GRACE`): the kernel sends the last release of a file (which
//! queues its upload) shortly after `close` returns, so right after `cp` the entry may not
//! exist yet; after that, a path without entry is one whose upload finished longer ago than
//! `status_retention`, or was never written, or is a done upload the summary form of a big
//! status no longer lists (`upload::status_summary`: it lists every active and failed entry;
//! while it counts queued ones without listing them, `queued_not_listed`, such a path is
//! still waited for). Without paths (or with the mount root), wait
//! until nothing is queued, uploading or retrying; exit 1 if anything is failed/incomplete.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fs::{ControlCommand, CONTROL_NAME, STATUS_JSON_NAME, STATUS_NAME};

/// How long a path may have no status entry before it counts as done.
const GRACE: Duration = Duration::from_secs(2);
/// Poll interval of `wait`.
const POLL: Duration = Duration::from_millis(200);

/// How `wait` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    Done,
    /// `(path, reason)` of every failed or incomplete upload.
    Failed(Vec<(String, String)>),
    TimedOut(Vec<String>),
}

/// The absolute form of `p` without following the last component.
fn absolute(p: &Path) -> std::io::Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(p)
}

/// The mount root holding `path` (the nearest ancestor with [`STATUS_JSON_NAME`] and
/// [`CONTROL_NAME`])
/// and `path` relative to it (`""` for the root itself).
pub fn locate(path: &Path) -> Result<(PathBuf, String), String> {
    let abs = absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cur: Option<&Path> = Some(abs.as_path());
    while let Some(dir) = cur {
        if dir.join(CONTROL_NAME).exists() && dir.join(STATUS_JSON_NAME).is_file() {
            let rel = abs
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().trim_matches('/').to_string())
                .unwrap_or_default();
            return Ok((dir.to_path_buf(), rel));
        }
        cur = dir.parent();
    }
    Err(format!(
        "{} is not inside a shareuplift mount",
        path.display()
    ))
}

/// Write one command, as a line of the `.control` grammar, to the mount's `.control`.
pub fn send(root: &Path, cmd: &ControlCommand) -> Result<(), String> {
    let line = cmd.line();
    let ctl = root.join(CONTROL_NAME);
    let mut f = OpenOptions::new()
        .write(true)
        .open(&ctl)
        .map_err(|e| format!("{}: {e}", ctl.display()))?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            format!("{line}: no failed or incomplete upload with that path")
        } else {
            format!("{line}: {e}")
        }
    })
}

/// `shareuplift bwlimit MOUNTPOINT LIMIT`: check the value here, write it to the mount's
/// `.control`, and return the `.status` line that shows the limit now in force. Errors carry
/// the exit code: 2 for a bad value or a path outside a mount, 1 when the write fails.
pub fn set_bwlimit(mountpoint: &Path, value: &str) -> Result<String, (u8, String)> {
    let cmd = ControlCommand::parse(&format!("bwlimit {value}")).map_err(|e| (2, e))?;
    let (root, _) = locate(mountpoint).map_err(|e| (2, e))?;
    send(&root, &cmd).map_err(|e| (1, e))?;
    let shown = std::fs::read_to_string(root.join(STATUS_NAME)).unwrap_or_default();
    Ok(shown
        .lines()
        .find(|l| l.starts_with("bandwidth limit:"))
        .unwrap_or("bandwidth limit: off")
        .to_string())
}

fn read_status(root: &Path) -> Result<Value, String> {
    let p = root.join(STATUS_JSON_NAME);
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

fn uploads(st: &Value) -> Vec<Value> {
    st["uploads"].as_array().cloned().unwrap_or_default()
}

fn is_busy(state: &str) -> bool {
    matches!(state, "queued" | "uploading" | "retrying")
}

fn is_kept(state: &str) -> bool {
    matches!(state, "failed" | "incomplete")
}

fn reason(u: &Value) -> String {
    format!(
        "{}: {}",
        u["state"].as_str().unwrap_or("?"),
        u["error"].as_str().unwrap_or("no reason given")
    )
}

/// Block until the uploads of `rels` (paths relative to `root`; empty: the whole mount) are
/// done or failed, or `timeout` passes.
pub fn wait(
    root: &Path,
    rels: &[String],
    timeout: Option<Duration>,
) -> Result<WaitOutcome, String> {
    wait_observed(root, rels, timeout, &mut |_| {})
}

/// [`wait`], handing every status it reads to `observe` first (`wait --progress`,
/// `crate::watch::WaitProgress`).
pub fn wait_observed(
    root: &Path,
    rels: &[String],
    timeout: Option<Duration>,
    observe: &mut dyn FnMut(&Value),
) -> Result<WaitOutcome, String> {
    let start = Instant::now();
    loop {
        let st = read_status(root)?;
        observe(&st);
        let ups = uploads(&st);
        // Summary form with a long backlog: some queued uploads are counted, not listed; a
        // path without an entry may be one of them.
        let unlisted_queued = st["queued_not_listed"].as_u64().unwrap_or(0) > 0;
        let mut pending = Vec::new();
        let mut failed = Vec::new();
        if rels.is_empty() {
            for u in &ups {
                let path = u["path"].as_str().unwrap_or("").to_string();
                let state = u["state"].as_str().unwrap_or("");
                if is_busy(state) {
                    pending.push(path);
                } else if is_kept(state) {
                    failed.push((path, reason(u)));
                }
            }
            // Give a just-closed file time to be queued.
            if pending.is_empty() && (start.elapsed() < GRACE || unlisted_queued) {
                pending.push(String::new());
            }
        } else {
            for rel in rels {
                let mine: Vec<&Value> = ups
                    .iter()
                    .filter(|u| {
                        u["path"]
                            .as_str()
                            .is_some_and(|p| p.to_lowercase() == rel.to_lowercase())
                    })
                    .collect();
                let busy = mine
                    .iter()
                    .any(|u| is_busy(u["state"].as_str().unwrap_or("")));
                let kept = mine
                    .iter()
                    .find(|u| is_kept(u["state"].as_str().unwrap_or("")));
                if busy {
                    pending.push(rel.clone());
                } else if let Some(u) = kept {
                    failed.push((rel.clone(), reason(u)));
                } else if mine.is_empty() {
                    if start.elapsed() < GRACE || unlisted_queued {
                        pending.push(rel.clone());
                    } else if !root.join(rel).exists() {
                        failed.push((rel.clone(), "no such file in the mount".into()));
                    }
                }
            }
        }
        if pending.is_empty() {
            return Ok(if failed.is_empty() {
                WaitOutcome::Done
            } else {
                WaitOutcome::Failed(failed)
            });
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return Ok(WaitOutcome::TimedOut(pending));
        }
        std::thread::sleep(POLL);
    }
}
