//! Status of uploads, as shown in the virtual `.status` (human table) and `.status.json`: the
//! snapshot types and their two renderings. The live registry that produces snapshots is
//! `registry.rs`.
//!
//! Invariants: a snapshot is a plain value taken at one instant (rendering never locks
//! anything); error texts are sanitised before they are shown — one line, URLs reduced to
//! scheme and host (upload URLs are capabilities), bounded length. JSON field names are a
//! contract with scripts: `path, state, size, uploaded, attempts, error, rate_bytes_per_sec,
//! eta_secs` per upload, plus `throttled_until` and `totals` (and `bandwidth_limit` when a limit
//! is set); times are RFC 3339 UTC.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::status_summary::DoneSummary;
use crate::redact::redact_url;

/// Shown while a file SharePoint reports locked (423) is waited for.
pub const FILE_LOCKED: &str = "file is locked (checked out or open in another app)";

/// Shown (state `retrying`) while createUploadSession is refused with 409 because an earlier
/// upload session holds the path (issue 12; `retry::StaleSessionWait`).
pub const STALE_SESSION: &str = "an earlier upload session still holds this path";

/// The same, for a recovered file whose previous run may have opened a session it never
/// recorded (`Resume::unrecorded_session`).
pub const STALE_UNRECORDED_SESSION: &str = "an earlier upload session still holds this path \
     (opened by the previous run just before it stopped; waiting for it to expire)";

/// The note of an upload whose committed item has no quickXorHash yet (field reference entry
/// 14): done, checked again later (`pending_ops`).
pub const HASH_NOT_YET: &str =
    "not verified yet: SharePoint has not reported a quickXorHash (checked again later)";

/// The note once a late quickXorHash matched.
pub const HASH_VERIFIED_LATER: &str = "quickXorHash verified after the commit";

/// The note when SharePoint never reported a quickXorHash.
pub const HASH_NEVER: &str = "not verified: SharePoint reported no quickXorHash";

/// The note of an upload checked in after its commit (entry 21).
pub const CHECKED_IN: &str = "checked in (the library requires check-out)";

/// The note of an upload left checked out (entry 21), followed by why the check-in failed.
pub const CHECKED_OUT: &str =
    "checked out: only this mount's account sees it until it is checked in in SharePoint";

/// Shown (state `retrying`) while the delete of a file SharePoint reports locked waits
/// (entry 23, `pending_ops`).
pub const DELETE_LOCKED: &str = "deleted here; waiting: locked in SharePoint (checked out or \
     open in another app), deleted there once it is closed";

/// The note of such a delete once done.
pub const DELETED_LATER: &str = "deleted in SharePoint once the lock was released";

/// The note of a job saved as a conflict copy (`UploadStatus::conflict_copy`), followed by
/// `; saved as "NAME"`.
pub const CONFLICT_NOTE: &str = "conflict: changed in SharePoint meanwhile";

/// Lifecycle of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Waiting for a worker (or for an earlier upload of the same path to finish).
    Queued,
    Uploading,
    /// A request failed; waiting (backoff, throttle) or re-synchronising before retrying.
    Retrying,
    /// Committed and hash-checked.
    Done,
    /// Given up; the spool file is kept for `retry_failed`.
    Failed,
    /// Never closed (the process died while it was open for writing, or a write to the spool
    /// failed): kept in the spool, never uploaded unless the user asks (`retry`).
    Incomplete,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Queued => "queued",
            UploadState::Uploading => "uploading",
            UploadState::Retrying => "retrying",
            UploadState::Done => "done",
            UploadState::Failed => "failed",
            UploadState::Incomplete => "incomplete",
        }
    }

    /// Uploading or retrying.
    pub fn is_active(self) -> bool {
        matches!(self, UploadState::Uploading | UploadState::Retrying)
    }

    /// Done, failed or incomplete: nothing will happen without the user.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            UploadState::Done | UploadState::Failed | UploadState::Incomplete
        )
    }
}

/// One line of `.status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadStatus {
    pub path: String,
    pub state: UploadState,
    pub size: u64,
    /// Bytes the server has acknowledged in the current session.
    pub uploaded: u64,
    /// Tries started (see `retry` for the exact definition); 0 while queued the first time.
    pub attempts: u32,
    /// Last error, sanitised; kept after a successful retry until the job ends.
    pub error: Option<String>,
    /// Smoothed transfer rate while uploading.
    pub rate_bytes_per_sec: Option<u64>,
    /// Estimated seconds left at the current rate.
    pub eta_secs: Option<u64>,
    #[serde(serialize_with = "ser_opt_time")]
    pub started: Option<SystemTime>,
    #[serde(serialize_with = "ser_opt_time")]
    pub finished: Option<SystemTime>,
    /// Done, and SharePoint rewrote the file after the commit (metadata enrichment): the
    /// stored size and hash are the server's, not the bytes sent.
    pub server_modified: bool,
    /// What else the user should know about this upload (shown as `note:` in `.status`):
    /// the enrichment, or where a conflicting edit went.
    pub note: Option<String>,
    /// Done as a conflict copy: the file changed in SharePoint while it was edited here, so
    /// this content was saved beside it under this mount-relative path (and `path` holds the
    /// colleague's version, untouched).
    pub conflict_copy: Option<String>,
    /// The current fragment size of an uploading file (bytes per PUT; `fragment_size.rs`);
    /// absent from the JSON when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fragment_bytes: Option<u64>,
}

impl UploadStatus {
    /// A queued entry with nothing done yet.
    pub fn queued(path: impl Into<String>, size: u64) -> Self {
        UploadStatus {
            path: path.into(),
            state: UploadState::Queued,
            size,
            uploaded: 0,
            attempts: 0,
            error: None,
            rate_bytes_per_sec: None,
            eta_secs: None,
            started: None,
            finished: None,
            server_modified: false,
            note: None,
            conflict_copy: None,
            fragment_bytes: None,
        }
    }

    fn percent(&self) -> u64 {
        if self.state == UploadState::Done {
            return 100;
        }
        if self.size == 0 {
            return 0;
        }
        // Whole percent, rounded down, so 100 % means committed.
        ((u128::from(self.uploaded) * 100) / u128::from(self.size)).min(99) as u64
    }
}

/// Counts over a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub queued: usize,
    pub uploading: usize,
    pub retrying: usize,
    pub done: usize,
    pub failed: usize,
    pub incomplete: usize,
    /// Bytes still to send for queued, uploading and retrying entries.
    pub bytes_pending: u64,
    /// Sum of the rates of uploading entries.
    pub rate_bytes_per_sec: u64,
}

impl Totals {
    pub fn of(uploads: &[UploadStatus]) -> Totals {
        let mut t = Totals::default();
        for u in uploads {
            match u.state {
                UploadState::Queued => t.queued += 1,
                UploadState::Uploading => t.uploading += 1,
                UploadState::Retrying => t.retrying += 1,
                UploadState::Done => t.done += 1,
                UploadState::Failed => t.failed += 1,
                UploadState::Incomplete => t.incomplete += 1,
            }
            if !u.state.is_finished() {
                t.bytes_pending += u.size.saturating_sub(u.uploaded);
            }
            t.rate_bytes_per_sec += u.rate_bytes_per_sec.unwrap_or(0);
        }
        t
    }
}

/// Spool usage, filled in by the filesystem core (the queue does not own the spool).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpoolUsage {
    pub files: u64,
    pub bytes: u64,
    pub limit_bytes: Option<u64>,
}

/// Everything `.status` shows, at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusSnapshot {
    pub uploads: Vec<UploadStatus>,
    /// When the shared throttle gate opens, if Graph is throttling us now.
    #[serde(serialize_with = "ser_opt_time")]
    pub throttled_until: Option<SystemTime>,
    pub totals: Totals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolUsage>,
    /// Files written through the mount that are still open (not yet queued), by path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open_for_writing: Vec<String>,
    /// Why the whole queue waits for the user (e.g. `sign-in needed: run shareuplift login`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Files kept in the mount only, never uploaded (application owner and lock files such as
    /// `~$report.docx`), by path; filled in by the filesystem core.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_only: Vec<String>,
    /// Names recently refused at create, mkdir or rename, one line each (`PATH: why`), e.g.
    /// a name that clashes with another under SharePoint's collation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_names: Vec<String>,
    /// Recent operations the mount refused and why (a rename of a locked file, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
    /// The service refuses every request (503 for a minute and more: the app may be blocked,
    /// field reference entry 8): what it means and what to do, one line (`limiter.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The upload bandwidth limit in force, when one is configured or was set live
    /// (`bwlimit.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit: Option<super::bwlimit::BandwidthStatus>,
    /// Summary form (many entries): the done uploads `uploads` does not list
    /// (`status_summary.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_summary: Option<DoneSummary>,
    /// Summary form: queued uploads counted in `totals` but not listed (a long backlog; they
    /// are listed in turn as the queue moves).
    #[serde(skip_serializing_if = "is_zero")]
    pub queued_not_listed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A recent refusal worth a line in `.status` (`pending_ops`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    pub message: String,
}

impl StatusSnapshot {
    /// A snapshot of `uploads` (in display order), with totals computed.
    pub fn new(uploads: Vec<UploadStatus>, throttled_until: Option<SystemTime>) -> Self {
        let totals = Totals::of(&uploads);
        StatusSnapshot {
            uploads,
            throttled_until,
            totals,
            spool: None,
            open_for_writing: Vec::new(),
            paused: None,
            local_only: Vec::new(),
            refused_names: Vec::new(),
            notices: Vec::new(),
            blocked: None,
            bandwidth_limit: None,
            done_summary: None,
            queued_not_listed: 0,
        }
    }

    /// The human table.
    pub fn render_table(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "ShareUplift — {} queued, {} uploading, ",
            t.queued, t.uploading
        );
        if t.retrying > 0 {
            let _ = write!(out, "{} retrying, ", t.retrying);
        }
        if !self.open_for_writing.is_empty() {
            let _ = write!(out, "{} open for writing, ", self.open_for_writing.len());
        }
        let _ = write!(out, "{} done, {} failed", t.done, t.failed);
        if t.incomplete > 0 {
            let _ = write!(out, ", {} incomplete", t.incomplete);
        }
        if let Some(until) = self.throttled_until {
            let _ = write!(out, " — throttled until {}", clock_time_utc(until));
        }
        if let Some(why) = &self.paused {
            let _ = write!(out, " — paused, {why}");
        }
        if let Some(why) = &self.blocked {
            let _ = write!(out, " — {}", one_line(why));
        }
        out.push('\n');
        if let Some(bw) = &self.bandwidth_limit {
            let _ = writeln!(out, "{}", bw.line());
        }
        if t.bytes_pending > 0 {
            let _ = write!(out, "pending {}", human_bytes(t.bytes_pending));
            if t.rate_bytes_per_sec > 0 {
                let _ = write!(out, " at {}/s", human_bytes(t.rate_bytes_per_sec));
            }
            out.push('\n');
        }
        if let Some(spool) = &self.spool {
            let _ = write!(
                out,
                "spool {} in {} files",
                human_bytes(spool.bytes),
                spool.files
            );
            if let Some(limit) = spool.limit_bytes {
                let _ = write!(out, " (limit {})", human_bytes(limit));
            }
            out.push('\n');
        }
        if !self.local_only.is_empty() {
            let shown: Vec<String> = self
                .local_only
                .iter()
                .take(MAX_LISTED)
                .map(|p| one_line(p))
                .collect();
            let _ = write!(out, "local only, never uploaded: {}", shown.join(", "));
            if self.local_only.len() > MAX_LISTED {
                let _ = write!(out, " and {} more", self.local_only.len() - MAX_LISTED);
            }
            out.push('\n');
        }
        for line in &self.refused_names {
            let _ = writeln!(out, "refused: {}", sanitize_error(line));
        }
        if let Some(summary) = &self.done_summary {
            let _ = writeln!(out, "{}", summary.line());
        }
        if self.queued_not_listed > 0 {
            let _ = writeln!(
                out,
                "queued: {} more not listed (listed in turn as the queue moves)",
                self.queued_not_listed
            );
        }
        if self.uploads.is_empty() {
            out.push_str("no uploads\n");
            self.render_notices(&mut out);
            return out;
        }
        let _ = writeln!(
            out,
            "{:<9} {:>4}  {:>21}  {:>11}  {:>6}  {:>5}  PATH",
            "STATE", "DONE", "BYTES", "RATE", "ETA", "TRIES"
        );
        for u in &self.uploads {
            let bytes = format!("{} / {}", human_bytes(u.uploaded), human_bytes(u.size));
            let rate = u
                .rate_bytes_per_sec
                .map_or_else(|| "-".to_string(), |r| format!("{}/s", human_bytes(r)));
            let eta = u.eta_secs.map_or_else(|| "-".to_string(), human_secs);
            let _ = write!(
                out,
                "{:<9} {:>3}%  {:>21}  {:>11}  {:>6}  {:>5}  {}",
                u.state.as_str(),
                u.percent(),
                bytes,
                rate,
                eta,
                u.attempts,
                one_line(&u.path)
            );
            if let (UploadState::Uploading, Some(f)) = (u.state, u.fragment_bytes) {
                let _ = write!(out, "  fragment: {}", human_bytes(f));
            }
            if let Some(note) = &u.note {
                let _ = write!(out, "  note: {}", sanitize_error(note));
            }
            if let Some(err) = &u.error {
                let _ = write!(out, "  error: {}", sanitize_error(err));
            }
            out.push('\n');
        }
        self.render_notices(&mut out);
        out
    }

    fn render_notices(&self, out: &mut String) {
        for n in &self.notices {
            let _ = writeln!(
                out,
                "notice {}  {}",
                clock_time_utc(n.at),
                sanitize_error(&n.message)
            );
        }
    }

    /// `.status.json`.
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Longest error text shown.
const MAX_ERROR_CHARS: usize = 200;
/// Local-only paths named on the table's line.
const MAX_LISTED: usize = 10;

/// One line, no URL paths or queries, at most `MAX_ERROR_CHARS` characters.
pub fn sanitize_error(msg: &str) -> String {
    let words: Vec<String> = msg
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .map(|w| match w.find("://") {
            Some(i) => {
                // Keep any text before the URL (e.g. a quote or "url=").
                let start = w[..i]
                    .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '.' && c != '-')
                    .map_or(0, |j| j + 1);
                format!("{}{}", &w[..start], redact_url(&w[start..]))
            }
            None => w.to_string(),
        })
        .collect();
    let joined = words.join(" ");
    if joined.chars().count() > MAX_ERROR_CHARS {
        let mut cut: String = joined.chars().take(MAX_ERROR_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        joined
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `1.5 MiB`, `12 B`: binary units with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `42s`, `3m05s`, `2h07m`.
pub fn human_secs(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `21:33:05Z`.
pub(crate) fn clock_time_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!(
        "{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// RFC 3339 UTC, second precision: `2026-11-21T21:33:05Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match time::OffsetDateTime::from_unix_timestamp(secs as i64) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: u64 = 1024 * 1024;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn fixed() -> StatusSnapshot {
        // 2026-11-21T21:33:05Z = 1795296785
        let base = 1_795_296_785;
        let mut uploading = UploadStatus::queued("Docs/big.bin", 100 * MIB);
        uploading.state = UploadState::Uploading;
        uploading.uploaded = 42 * MIB;
        uploading.attempts = 1;
        uploading.rate_bytes_per_sec = Some(5 * MIB);
        uploading.eta_secs = Some(12);
        uploading.started = Some(at(base - 10));
        let mut failed = UploadStatus::queued("Docs/x.bin", 1024 * MIB);
        failed.state = UploadState::Failed;
        failed.attempts = 1;
        failed.error = Some("quota exceeded (507): quotaLimitReached".into());
        failed.started = Some(at(base - 100));
        failed.finished = Some(at(base - 99));
        let mut done = UploadStatus::queued("a.txt", 11);
        done.state = UploadState::Done;
        done.uploaded = 11;
        done.attempts = 2;
        let queued = UploadStatus::queued("Docs/q 1.bin", 3 * MIB);
        StatusSnapshot::new(vec![uploading, queued, failed, done], Some(at(base)))
    }

    #[test]
    fn table_rendering() {
        let want = "\
ShareUplift — 1 queued, 1 uploading, 1 done, 1 failed — throttled until 21:33:05Z
pending 61.0 MiB at 5.0 MiB/s
STATE     DONE                  BYTES         RATE     ETA  TRIES  PATH
uploading  42%   42.0 MiB / 100.0 MiB    5.0 MiB/s     12s      1  Docs/big.bin
queued      0%          0 B / 3.0 MiB            -       -      0  Docs/q 1.bin
failed      0%          0 B / 1.0 GiB            -       -      1  Docs/x.bin  error: quota exceeded (507): quotaLimitReached
done      100%            11 B / 11 B            -       -      2  a.txt
";
        assert_eq!(fixed().render_table(), want);
    }

    #[test]
    fn table_without_uploads_and_with_spool() {
        let mut s = StatusSnapshot::new(vec![], None);
        s.spool = Some(SpoolUsage {
            files: 2,
            bytes: 3 * MIB,
            limit_bytes: Some(1024 * MIB),
        });
        assert_eq!(
            s.render_table(),
            "ShareUplift — 0 queued, 0 uploading, 0 done, 0 failed\n\
             spool 3.0 MiB in 2 files (limit 1.0 GiB)\nno uploads\n"
        );
    }

    #[test]
    fn local_only_and_refused_names() {
        let mut s = StatusSnapshot::new(vec![], None);
        s.local_only = vec!["docs/~$report.docx".into(), ".DS_Store".into()];
        s.refused_names = vec!["M\u{e6}rsk.txt: name clashes with Maersk.txt".into()];
        assert_eq!(
            s.render_table(),
            "ShareUplift — 0 queued, 0 uploading, 0 done, 0 failed\n\
             local only, never uploaded: docs/~$report.docx, .DS_Store\n\
             refused: M\u{e6}rsk.txt: name clashes with Maersk.txt\nno uploads\n"
        );
        let v: serde_json::Value = serde_json::from_str(&s.render_json()).unwrap();
        assert_eq!(v["local_only"][0], "docs/~$report.docx");
        assert_eq!(
            v["refused_names"][0],
            "M\u{e6}rsk.txt: name clashes with Maersk.txt"
        );
        s.local_only = (0..12).map(|i| format!("~${i}")).collect();
        assert!(s.render_table().contains("~$9 and 2 more\n"));
    }

    #[test]
    fn json_rendering() {
        let v: serde_json::Value = serde_json::from_str(&fixed().render_json()).unwrap();
        let want = serde_json::json!({
            "uploads": [
                {"path": "Docs/big.bin", "state": "uploading", "size": 104857600u64,
                 "uploaded": 44040192u64, "attempts": 1, "error": null,
                 "rate_bytes_per_sec": 5242880u64, "eta_secs": 12,
                 "started": "2026-11-21T21:32:55Z", "finished": null,
                 "server_modified": false, "note": null, "conflict_copy": null},
                {"path": "Docs/q 1.bin", "state": "queued", "size": 3145728u64, "uploaded": 0,
                 "attempts": 0, "error": null, "rate_bytes_per_sec": null, "eta_secs": null,
                 "started": null, "finished": null,
                 "server_modified": false, "note": null, "conflict_copy": null},
                {"path": "Docs/x.bin", "state": "failed", "size": 1073741824u64, "uploaded": 0,
                 "attempts": 1, "error": "quota exceeded (507): quotaLimitReached",
                 "rate_bytes_per_sec": null, "eta_secs": null,
                 "started": "2026-11-21T21:31:25Z", "finished": "2026-11-21T21:31:26Z",
                 "server_modified": false, "note": null, "conflict_copy": null},
                {"path": "a.txt", "state": "done", "size": 11, "uploaded": 11, "attempts": 2,
                 "error": null, "rate_bytes_per_sec": null, "eta_secs": null,
                 "started": null, "finished": null,
                 "server_modified": false, "note": null, "conflict_copy": null}
            ],
            "throttled_until": "2026-11-21T21:33:05Z",
            "totals": {"queued": 1, "uploading": 1, "retrying": 0, "done": 1, "failed": 1,
                       "incomplete": 0,
                       "bytes_pending": 63963136u64, "rate_bytes_per_sec": 5242880u64}
        });
        assert_eq!(v, want);
        let empty: serde_json::Value =
            serde_json::from_str(&StatusSnapshot::default().render_json()).unwrap();
        assert_eq!(empty["throttled_until"], serde_json::Value::Null);
        assert!(empty.get("spool").is_none());
    }

    #[test]
    fn errors_are_sanitised() {
        for (input, want) in [
            ("plain", "plain"),
            ("two\nlines\r\n\there", "two lines here"),
            (
                "PUT https://t.sharepoint.com/up?tempauth=SECRET failed",
                "PUT https://t.sharepoint.com/… failed",
            ),
            ("url=\"http://h:1/x/y\"", "url=\"http://h:1/…"),
        ] {
            assert_eq!(sanitize_error(input), want);
        }
        let long = "x".repeat(500);
        assert_eq!(sanitize_error(&long).chars().count(), MAX_ERROR_CHARS);
    }

    #[test]
    fn units() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (10 * MIB, "10.0 MiB"),
            (5 * 1024 * 1024 * MIB, "5.0 TiB"),
        ] {
            assert_eq!(human_bytes(n), want);
        }
        for (s, want) in [(0, "0s"), (59, "59s"), (185, "3m05s"), (7620, "2h07m")] {
            assert_eq!(human_secs(s), want);
        }
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
    }
}
