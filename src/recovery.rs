//! Recovery at mount: what the spool holds from an earlier run (a crash, `kill -9`, a clean
//! shutdown with uploads pending) is put back before the filesystem is served.
//!
//! Per data file, by its record:
//! - `sealed` (closed, upload pending or under way): shown in the mount and queued again. If
//!   the data file still has the size and fingerprint recorded at seal, the job carries the
//!   recorded session, and the worker resumes it from the server's `nextExpectedRanges`;
//!   otherwise (or with no session) it starts a new session from byte 0 (after checking that
//!   the earlier run had not committed it already). A data file whose size differs from the
//!   record is kept as `failed` ("spool file changed"), never uploaded as is. A recorded
//!   session that is not resumed (the data file changed) is handed to the job to cancel. A
//!   record that says a createUploadSession may have been sent (`may_hold_session`) but holds
//!   no session marks the job `unrecorded_session`: the previous run may have died between
//!   the server creating a session and the record write, and that session holds the path
//!   until it expires (the worker waits for it on 409, and says so in `.status`).
//! - `sealed` with a name that looks like an interrupted temp file ([`looks_like_temp_name`]:
//!   rsync's `.NAME.XXXXXX`, `NAME~`, `*.tmp`, `.~lock.NAME#`, `.NAME.swp`): closed, but the
//!   rename that would have given it its real name never came because the mount died. It is
//!   held — shown in the mount and in `.status` as `incomplete` with [`HELD_TEMP`], kept in
//!   the spool, not uploaded — until the user says `retry PATH` (upload it under that name)
//!   or `discard PATH`. Held for as long as the spool keeps it, because no later event can
//!   tell us the tool is done with it: rsync's next run writes a new temp file and renames
//!   that, so uploading the old one would only put a stray temp name into SharePoint. Only
//!   files recovered at mount are held; in a running mount temp files are uploaded as any
//!   (the write-back delay lets the rename happen first).
//! - `failed`: shown in the mount and in `.status` as failed with its reason; kept.
//! - `incomplete` (open for writing when the process died, or a write failed): never uploaded
//!   as if complete; kept and shown in `.status` as `incomplete` with its path.
//! - no record, or an unreadable one (a crash between creating the file and its first record):
//!   an empty file is removed (nothing to lose); otherwise it is kept as `incomplete` under
//!   `lost+found/NAME`, so it can be retried (uploaded there) or discarded.
//!
//! A file under a local-only name (an application's owner or lock file, `~$report.docx`:
//! `fs::names::is_local_only`), whatever its record, is removed: it was never to be uploaded,
//! and the application that wrote it is gone with the mount.
//!
//! Records without a data file and temporary record files are removed. Nothing here talks to
//! the network: the workers do, after the mount is up.

use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::fs::Fs;
use crate::spool::{load_record, record_path, Fingerprint, RecordState, Spool, SpoolRecord};
use crate::upload::status::UploadState;
use crate::upload::{Resume, UploadJob};

/// What recovery found, for the log and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sealed files queued with their earlier session.
    pub resumed: usize,
    /// Sealed files queued for a new session.
    pub restarted: usize,
    pub failed: usize,
    pub incomplete: usize,
    /// Sealed files held back because their name looks like an interrupted temp file (also
    /// counted in `incomplete`).
    pub held: usize,
    /// Queued files whose previous run may have left an unrecorded session open.
    pub unrecorded_sessions: usize,
    /// Empty orphans and stray records removed.
    pub removed: usize,
}

/// The reason shown for files that were open for writing when the process stopped.
pub const NOT_CLOSED: &str =
    "not closed when the mount stopped; kept in the spool, not uploaded (retry or discard)";

/// The reason shown for a recovered file that looks like an interrupted temp file.
pub const HELD_TEMP: &str = "held: looks like an interrupted temp file \
     (discard with shareuplift discard PATH, or shareuplift retry PATH to upload it)";

pub use crate::upload::temp_names::looks_like_temp_name;

/// Re-queue and show everything the spool holds. Call before serving the mount.
pub fn recover(fs: &Fs, spool: &Spool) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    remove_stray_records(spool.data_dir(), &mut report);
    let files = match spool.existing_files() {
        Ok(f) => f,
        Err(e) => {
            warn!("cannot list the spool: {e}");
            return report;
        }
    };
    for data in files {
        recover_one(fs, &data, &mut report);
    }
    if report != RecoveryReport::default() {
        info!(
            "spool recovery: {} resumed, {} restarted ({} may have an unrecorded session), \
             {} failed, {} incomplete ({} held temp files), {} removed",
            report.resumed,
            report.restarted,
            report.unrecorded_sessions,
            report.failed,
            report.incomplete,
            report.held,
            report.removed
        );
    }
    report
}

fn recover_one(fs: &Fs, data: &Path, report: &mut RecoveryReport) {
    let len = std::fs::metadata(data).map(|m| m.len()).unwrap_or(0);
    let rec = match load_record(data) {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) if len == 0 => {
            crate::spool::remove_spooled(data);
            report.removed += 1;
            return;
        }
        other => {
            let name = data
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let why = match other {
                Err(e) => format!("spool record unreadable ({e}); path unknown"),
                _ => "no spool record; path unknown".to_string(),
            };
            let mut rec = SpoolRecord::new(
                &format!("lost+found/{name}"),
                RecordState::Incomplete,
                len,
                std::time::SystemTime::now(),
            );
            rec.error = Some(why);
            if let Err(e) = crate::spool::save_record(data, &rec) {
                warn!("cannot record orphan spool file {}: {e}", data.display());
            }
            keep(fs, data, &rec, len, UploadState::Incomplete, report);
            return;
        }
    };
    if crate::fs::names::is_local_only(rec.path.rsplit('/').next().unwrap_or(&rec.path)) {
        info!("{}: local-only file dropped from the spool", rec.path);
        crate::spool::remove_spooled(data);
        report.removed += 1;
        return;
    }
    match rec.state {
        RecordState::Incomplete => {
            let reason = rec.error.clone().unwrap_or_else(|| NOT_CLOSED.to_string());
            let mut rec = rec;
            rec.error = Some(reason);
            keep(fs, data, &rec, len, UploadState::Incomplete, report);
        }
        RecordState::Failed => adopt_kept(fs, data, &rec, len, UploadState::Failed, report),
        RecordState::Sealed if len != rec.size => {
            let mut rec = rec;
            rec.error = Some(format!(
                "spool file changed: {len} bytes, {} when it was closed",
                rec.size
            ));
            rec.state = RecordState::Failed;
            let _ = crate::spool::save_record(data, &rec);
            adopt_kept(fs, data, &rec, len, UploadState::Failed, report);
        }
        RecordState::Sealed if is_temp_path(&rec.path) => {
            let mut rec = rec;
            rec.error = Some(HELD_TEMP.to_string());
            report.held += 1;
            adopt_kept(fs, data, &rec, len, UploadState::Incomplete, report);
        }
        RecordState::Sealed => {
            let same = rec.fingerprint.is_some() && Fingerprint::of(data).ok() == rec.fingerprint;
            let session = if same { rec.session() } else { None };
            let stale = if same { None } else { rec.session() };
            let unrecorded_session = rec.may_hold_session && rec.session_url.is_none();
            if unrecorded_session {
                report.unrecorded_sessions += 1;
            }
            if session.is_some() {
                report.resumed += 1;
            } else {
                report.restarted += 1;
            }
            info!(
                "{}: recovered from the spool ({} bytes, {})",
                rec.path,
                rec.size,
                match (session.is_some(), unrecorded_session) {
                    (true, _) => "resuming its upload session",
                    (false, true) => "new upload session; the previous run may have left one open",
                    (false, false) => "new upload session",
                }
            );
            fs.adopt_spooled(
                &rec.path,
                data.to_path_buf(),
                rec.size,
                rec.mtime(),
                true,
                None,
            );
            let mut job =
                UploadJob::new(rec.path.clone(), data.to_path_buf(), rec.size, rec.mtime())
                    .with_base_etag(rec.base_etag.clone());
            job.resume = Some(Resume {
                session,
                unrecorded_session,
                stale,
            });
            fs.queue().submit(job);
        }
    }
}

/// Whether the last component of a mount-relative path looks like a temp file.
fn is_temp_path(path: &str) -> bool {
    looks_like_temp_name(path.rsplit('/').next().unwrap_or(path))
}

/// Show a kept file (failed, or held back) in the mount, with its reason, and keep it in the
/// queue's set of kept jobs in `state`.
fn adopt_kept(
    fs: &Fs,
    data: &Path,
    rec: &SpoolRecord,
    len: u64,
    state: UploadState,
    report: &mut RecoveryReport,
) {
    fs.adopt_spooled(
        &rec.path,
        data.to_path_buf(),
        len,
        rec.mtime(),
        false,
        rec.error.clone(),
    );
    keep(fs, data, rec, len, state, report);
}

fn keep(
    fs: &Fs,
    data: &Path,
    rec: &SpoolRecord,
    len: u64,
    state: UploadState,
    report: &mut RecoveryReport,
) {
    let reason = rec.error.clone().unwrap_or_default();
    if state == UploadState::Failed {
        report.failed += 1;
    } else {
        report.incomplete += 1;
    }
    warn!(
        "{}: kept in the spool as {}: {reason}",
        rec.path,
        state.as_str()
    );
    let job = UploadJob::new(rec.path.clone(), data.to_path_buf(), len, rec.mtime());
    fs.queue().keep(job, state, &reason);
}

/// Remove records whose data file is gone and leftover temporary records.
fn remove_stray_records(dir: &Path, report: &mut RecoveryReport) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p: PathBuf = entry.path();
        let name = p.to_string_lossy();
        let stray = if name.ends_with(".json.tmp") {
            true
        } else if name.ends_with(".json") {
            let data = p.with_extension("data");
            record_path(&data) == p && !data.exists()
        } else {
            false
        };
        if stray && std::fs::remove_file(&p).is_ok() {
            report.removed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_paths() {
        assert!(is_temp_path("Docs/sub/.big.bin.XyZ123"));
        assert!(!is_temp_path(".hidden.XyZ123/big.bin"));
    }
}
