//! Progress you can watch: `shareuplift status --watch MOUNT` and `shareuplift wait --progress
//! PATH…`. This module owns the model read from a mount's `.status.json` ([`View`], one [`Row`]
//! per upload entry), its plain-line renderings (for logs, pipes and scripts: [`row_line`],
//! [`PlainTracker`]) and the sums a `wait` shows ([`WaitTracker`], [`Tally`]), all pure and
//! tested here; `live` runs them against a mount, with `indicatif` bars on a terminal.
//!
//! Invariants: everything shown comes from `.status.json`, a plain file of the mount read with
//! the caller's permissions; nothing here talks to SharePoint or to the mount process. The JSON
//! field names are the contract documented in `upload::status` (`path, state, size, uploaded,
//! rate_bytes_per_sec, eta_secs, error`, `totals`, `paused`, `throttled_until`,
//! `open_for_writing`); a missing field reads as absent/zero, so an older mount still shows.
//! Error texts are already sanitised by the mount (no URLs beyond scheme and host). Plain output
//! has no escape codes and is printed when a state changes and at most every [`PLAIN_EVERY`]
//! while only byte counts move, so a log of a multi-hour upload stays readable.
//!
//! Limits: live views read `.status.json` every [`REDRAW`] (about twice a second: smooth enough
//! for a bar, cheap for the mount, which renders the file at each open). `uploaded` is the
//! bytes acknowledged in the *current* upload session, so a bar can step back when a session is
//! replaced; the view shows what the mount says rather than hiding that.

mod live;

pub use live::{stdout_is_terminal, watch, WaitProgress, WatchEnd};

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::upload::status::{human_bytes, human_secs};

/// Interval between reads of `.status.json` (and redraws) in every live view.
pub const REDRAW: Duration = Duration::from_millis(500);
/// Longest gap between plain lines while bytes move but no state changes.
pub const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// How long `--until-idle` ignores an idle mount at start: the kernel queues a file's upload
/// just after `close` returns, so right after `cp` the mount may not list it yet (as `wait`).
pub const START_GRACE: Duration = Duration::from_secs(2);
/// Most characters of a path shown in front of a bar (the end of the path is kept).
const NAME_CHARS: usize = 32;
/// Most characters of the rate/ETA text after a bar.
const MSG_CHARS: usize = 24;
/// Columns of a bar line that are neither name, bar nor message: brackets, bytes, percent.
const BAR_FIXED_COLS: usize = 31;

/// Columns a bar keeps, where the terminal is wide enough.
const MIN_BAR: usize = 10;

/// `(name, message)` widths for a terminal `cols` wide: a fifth for the name, a quarter for
/// the message (both bounded), the rest for the bar; the message, then the name, shrink so
/// the bar keeps `MIN_BAR` columns (an 80-column terminal still shows one).
pub(crate) fn bar_layout(cols: usize) -> (usize, usize) {
    let mut name = (cols / 5).clamp(10, NAME_CHARS);
    let mut msg = (cols / 4).clamp(12, MSG_CHARS);
    let too_wide = |n: usize, m: usize| n + m + BAR_FIXED_COLS + MIN_BAR > cols;
    while too_wide(name, msg) && msg > 12 {
        msg -= 1;
    }
    while too_wide(name, msg) && name > 10 {
        name -= 1;
    }
    (name, msg)
}

/// One upload entry of `.status.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub path: String,
    pub state: String,
    pub size: u64,
    pub uploaded: u64,
    pub rate: Option<u64>,
    pub eta_secs: Option<u64>,
    pub error: Option<String>,
}

impl Row {
    fn from_value(u: &Value) -> Row {
        Row {
            path: u["path"].as_str().unwrap_or("").to_string(),
            state: u["state"].as_str().unwrap_or("").to_string(),
            size: u["size"].as_u64().unwrap_or(0),
            uploaded: u["uploaded"].as_u64().unwrap_or(0),
            rate: u["rate_bytes_per_sec"].as_u64(),
            eta_secs: u["eta_secs"].as_u64(),
            error: u["error"].as_str().map(str::to_string),
        }
    }

    /// Uploading or retrying: shown with a bar.
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "uploading" | "retrying")
    }

    /// Queued, uploading or retrying: the mount still works on it.
    pub fn is_busy(&self) -> bool {
        self.state == "queued" || self.is_active()
    }

    /// Done, failed or incomplete: nothing happens without the user.
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "done" | "failed" | "incomplete")
    }

    /// Bytes counted as sent: all of them once done.
    pub fn bytes_done(&self) -> u64 {
        if self.state == "done" {
            self.size
        } else {
            self.uploaded.min(self.size)
        }
    }

    /// Whole percent, rounded down; 100 only when done (as `.status`).
    pub fn percent(&self) -> u64 {
        percent(self.bytes_done(), self.size, self.state == "done")
    }

    /// `rate, eta` text for a bar or a line (`-` parts left out).
    fn rate_eta(&self) -> String {
        let mut out = String::new();
        if let Some(r) = self.rate.filter(|r| *r > 0) {
            out.push_str(&format!("{}/s", human_bytes(r)));
        }
        if let Some(e) = self.eta_secs.filter(|_| self.is_active()) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&format!("eta {}", human_secs(e)));
        }
        out
    }
}

fn percent(done: u64, total: u64, complete: bool) -> u64 {
    if complete {
        return 100;
    }
    if total == 0 {
        return 0;
    }
    ((u128::from(done) * 100) / u128::from(total)).min(99) as u64
}

/// Everything the watch shows, from one read of `.status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Every entry, in the mount's display order.
    pub rows: Vec<Row>,
    pub queued: u64,
    pub uploading: u64,
    pub retrying: u64,
    pub done: u64,
    pub failed: u64,
    pub incomplete: u64,
    pub bytes_pending: u64,
    pub rate: u64,
    /// Files written through the mount and still open (not yet queued).
    pub open_for_writing: u64,
    /// Why the whole queue waits for the user.
    pub paused: Option<String>,
    /// RFC 3339 time the service's throttling lifts, if it throttles now.
    pub throttled_until: Option<String>,
}

impl View {
    pub fn parse(text: &str) -> Result<View, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(View::from_value(&v))
    }

    pub fn from_value(st: &Value) -> View {
        let t = &st["totals"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        View {
            rows: st["uploads"]
                .as_array()
                .map(|a| a.iter().map(Row::from_value).collect())
                .unwrap_or_default(),
            queued: n("queued"),
            uploading: n("uploading"),
            retrying: n("retrying"),
            done: n("done"),
            failed: n("failed"),
            incomplete: n("incomplete"),
            bytes_pending: n("bytes_pending"),
            rate: n("rate_bytes_per_sec"),
            open_for_writing: st["open_for_writing"]
                .as_array()
                .map_or(0, |a| a.len() as u64),
            paused: st["paused"].as_str().map(str::to_string),
            throttled_until: st["throttled_until"].as_str().map(str::to_string),
        }
    }

    /// Nothing queued, uploading, retrying or open for writing.
    pub fn is_idle(&self) -> bool {
        self.queued + self.uploading + self.retrying + self.open_for_writing == 0
    }

    /// Failed or incomplete uploads are listed.
    pub fn has_kept(&self) -> bool {
        self.failed + self.incomplete > 0
    }

    /// Rows with a bar (uploading, retrying).
    pub fn active(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.is_active())
    }

    /// The last entry of each path (a path may be listed done and queued again).
    fn last_by_path(&self) -> BTreeMap<String, &Row> {
        self.rows
            .iter()
            .map(|r| (r.path.to_lowercase(), r))
            .collect()
    }

    /// The one-line summary: counts, pending bytes and rate, then paused/throttled.
    pub fn summary_line(&self) -> String {
        let mut out = format!(
            "{} uploading, {} queued, {} done, {} failed",
            self.uploading, self.queued, self.done, self.failed
        );
        if self.retrying > 0 {
            out.push_str(&format!(", {} retrying", self.retrying));
        }
        if self.incomplete > 0 {
            out.push_str(&format!(", {} incomplete", self.incomplete));
        }
        if self.open_for_writing > 0 {
            out.push_str(&format!(", {} open for writing", self.open_for_writing));
        }
        if self.bytes_pending > 0 {
            out.push_str(&format!("; {} pending", human_bytes(self.bytes_pending)));
            if self.rate > 0 {
                out.push_str(&format!(" at {}/s", human_bytes(self.rate)));
            }
        }
        if let Some(why) = &self.paused {
            out.push_str(&format!("; paused: {why}"));
        }
        if let Some(until) = &self.throttled_until {
            out.push_str(&format!("; throttled until {until}"));
        }
        out
    }

    /// A cheap fingerprint of what counts as a change of state for plain output.
    fn state_key(&self) -> String {
        let mut key = format!(
            "{} {} {} {} {} {} {} {:?} {}",
            self.queued,
            self.uploading,
            self.retrying,
            self.done,
            self.failed,
            self.incomplete,
            self.open_for_writing,
            self.paused,
            self.throttled_until.is_some()
        );
        for (path, r) in self.last_by_path() {
            key.push('\n');
            key.push_str(&path);
            key.push(' ');
            key.push_str(&r.state);
        }
        key
    }
}

/// `PATH: STATE UPLOADED/SIZE bytes (P%)[ RATE/s][, eta T][ — error]`: exact byte counts, so
/// scripts can follow them.
pub fn row_line(r: &Row) -> String {
    let mut out = format!(
        "  {}: {} {}/{} bytes ({}%)",
        one_line(&r.path),
        r.state,
        r.bytes_done(),
        r.size,
        r.percent()
    );
    let re = r.rate_eta();
    if !re.is_empty() {
        out.push(' ');
        out.push_str(&re);
    }
    if let Some(e) = &r.error {
        if !r.is_active() || r.state == "retrying" {
            out.push_str(&format!(" — {}", one_line(e)));
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The end of `path` in at most `max` characters.
fn short_name(path: &str, max: usize) -> String {
    let n = path.chars().count();
    if n <= max {
        return one_line(path);
    }
    let tail: String = path.chars().skip(n - (max.max(2) - 1)).collect();
    format!("…{}", one_line(&tail))
}

/// Decides which plain lines to print for each new [`View`] (pure: the time is passed in).
#[derive(Debug, Default)]
pub struct PlainTracker {
    last_key: Option<String>,
    last_bytes: Option<(u64, u64)>,
    last_print: Option<Instant>,
    /// State of each path (lowercase) at the last print.
    last_states: BTreeMap<String, String>,
}

impl PlainTracker {
    /// The lines to print for `view` at `now` (empty: nothing worth a line). A print is a
    /// summary line, then a line per uploading/retrying file and per file that finished
    /// since the last print; finished files already listed at the first print are not.
    pub fn lines(&mut self, view: &View, now: Instant) -> Vec<String> {
        let key = view.state_key();
        let bytes = (
            view.bytes_pending,
            view.active().map(|r| r.uploaded).sum::<u64>(),
        );
        let changed = self.last_key.as_deref() != Some(key.as_str());
        let moved = self.last_bytes != Some(bytes)
            && self
                .last_print
                .is_none_or(|t| now.duration_since(t) >= PLAIN_EVERY);
        if !changed && !moved {
            return Vec::new();
        }
        let first = self.last_key.is_none();
        let mut out = vec![view.summary_line()];
        let now_states: BTreeMap<String, String> = view
            .last_by_path()
            .into_iter()
            .map(|(p, r)| (p, r.state.clone()))
            .collect();
        for r in &view.rows {
            let lc = r.path.to_lowercase();
            let newly_finished = r.is_finished()
                && !first
                && now_states.get(&lc) == Some(&r.state)
                && self.last_states.get(&lc) != Some(&r.state);
            if r.is_active() || newly_finished {
                out.push(row_line(r));
            }
        }
        self.last_key = Some(key);
        self.last_bytes = Some(bytes);
        self.last_print = Some(now);
        self.last_states = now_states;
        out
    }
}

/// What a `wait` waits on, summed over its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub files: u64,
    pub files_done: u64,
    pub bytes: u64,
    pub bytes_done: u64,
    pub rate: u64,
}

impl Tally {
    /// `wait: F/N files, B/T bytes (P%)[ at R/s]`.
    pub fn line(&self) -> String {
        let mut out = format!(
            "wait: {}/{} files, {}/{} bytes ({}%)",
            self.files_done,
            self.files,
            self.bytes_done,
            self.bytes,
            percent(
                self.bytes_done,
                self.bytes,
                self.files > 0 && self.files_done == self.files
            )
        );
        if self.rate > 0 {
            out.push_str(&format!(" at {}/s", human_bytes(self.rate)));
        }
        out
    }
}

/// The files a `wait` tracks: the paths it was given, or (for a whole mount) every path seen
/// queued, uploading or retrying since it started.
#[derive(Debug, Clone, Default)]
pub struct WaitTracker {
    whole_mount: bool,
    /// Lowercase paths (SharePoint names are case-insensitive).
    tracked: BTreeSet<String>,
    /// Size of each tracked path when last listed: a path listed before and no longer (its
    /// done entry left the summary form's list, or the retention) counts as done.
    seen: BTreeMap<String, u64>,
}

impl WaitTracker {
    /// `rels` relative to the mount root; empty: the whole mount.
    pub fn new(rels: &[String]) -> Self {
        WaitTracker {
            whole_mount: rels.is_empty(),
            tracked: rels.iter().map(|r| r.to_lowercase()).collect(),
            seen: BTreeMap::new(),
        }
    }

    /// Sum the tracked files of `view`. A tracked path with no entry that had one before
    /// counts as done (see `seen`). One never listed (not queued yet, or
    /// finished longer ago than the retention) counts as one file of unknown (0) size.
    pub fn tally(&mut self, view: &View) -> Tally {
        if self.whole_mount {
            for r in view.rows.iter().filter(|r| r.is_busy()) {
                self.tracked.insert(r.path.to_lowercase());
            }
        }
        let last = view.last_by_path();
        let mut t = Tally::default();
        for p in &self.tracked {
            t.files += 1;
            let Some(r) = last.get(p) else {
                if let Some(size) = self.seen.get(p) {
                    t.files_done += 1;
                    t.bytes += size;
                    t.bytes_done += size;
                }
                continue;
            };
            self.seen.insert(p.clone(), r.size);
            t.bytes += r.size;
            t.bytes_done += r.bytes_done();
            if r.state == "done" {
                t.files_done += 1;
            }
            if r.is_active() {
                t.rate += r.rate.unwrap_or(0);
            }
        }
        t
    }
}

/// The header of the live view, `MOUNT — SUMMARY`, fitted to `cols` characters: the mount path
/// shrinks to `…/LAST` first, then goes; the summary is cut with `…` only as a last resort, so
/// the line never wraps (a wrapped header makes indicatif redraw it on every tick). Pure.
pub fn header_line(root: &str, summary: &str, cols: usize) -> String {
    let len = |s: &str| s.chars().count();
    let full = format!("{root} — {summary}");
    if len(&full) <= cols {
        return full;
    }
    let last = root.rsplit('/').find(|p| !p.is_empty()).unwrap_or(root);
    let short = format!("…/{last} — {summary}");
    if len(&short) <= cols {
        return short;
    }
    if len(summary) <= cols {
        return summary.to_string();
    }
    let cut: String = summary.chars().take(cols.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_fits_the_terminal() {
        let sum = "2 uploading, 0 queued, 0 done, 0 failed; 140.0 MiB pending at 16.7 MiB/s";
        let root = "/tmp/shareuplift-demo.XYZ/mnt";
        assert_eq!(header_line(root, sum, 200), format!("{root} — {sum}"));
        assert_eq!(header_line(root, sum, 90), format!("…/mnt — {sum}"));
        assert_eq!(header_line(root, sum, 75), sum);
        let cut = header_line(root, sum, 40);
        assert_eq!(cut.chars().count(), 40);
        assert!(
            cut.starts_with("2 uploading") && cut.ends_with('…'),
            "{cut}"
        );
    }

    fn status(rows: &[(&str, &str, u64, u64)], paused: Option<&str>) -> Value {
        let uploads: Vec<Value> = rows
            .iter()
            .map(|(p, s, size, up)| {
                serde_json::json!({
                    "path": p, "state": s, "size": size, "uploaded": up, "attempts": 1,
                    "error": null,
                    "rate_bytes_per_sec": if *s == "uploading" { Some(1_048_576u64) } else { None },
                    "eta_secs": if *s == "uploading" { Some(7u64) } else { None },
                })
            })
            .collect();
        let count = |st: &str| rows.iter().filter(|r| r.1 == st).count();
        let pending: u64 = rows
            .iter()
            .filter(|r| matches!(r.1, "queued" | "uploading" | "retrying"))
            .map(|r| r.2 - r.3)
            .sum();
        let mut v = serde_json::json!({
            "uploads": uploads,
            "throttled_until": null,
            "totals": {
                "queued": count("queued"), "uploading": count("uploading"),
                "retrying": count("retrying"), "done": count("done"),
                "failed": count("failed"), "incomplete": count("incomplete"),
                "bytes_pending": pending,
                "rate_bytes_per_sec": 1_048_576 * count("uploading") as u64,
            },
        });
        if let Some(p) = paused {
            v["paused"] = Value::String(p.into());
        }
        v
    }

    #[test]
    fn model_from_json_has_rows_counts_and_pause() {
        let text = status(
            &[
                ("a.bin", "uploading", 100, 40),
                ("b.bin", "queued", 50, 0),
                ("c.bin", "done", 10, 10),
            ],
            Some("sign-in needed: run shareuplift login"),
        )
        .to_string();
        let v = View::parse(&text).expect("parse");
        assert_eq!(v.rows.len(), 3);
        assert_eq!((v.uploading, v.queued, v.done, v.failed), (1, 1, 1, 0));
        assert_eq!(v.bytes_pending, 110);
        assert_eq!(
            v.active().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["a.bin"]
        );
        assert_eq!(v.rows[0].rate, Some(1_048_576));
        assert!(!v.is_idle());
        let s = v.summary_line();
        assert!(
            s.starts_with("1 uploading, 1 queued, 1 done, 0 failed"),
            "{s}"
        );
        assert!(s.contains("110 B pending at 1.0 MiB/s"), "{s}");
        assert!(
            s.ends_with("paused: sign-in needed: run shareuplift login"),
            "{s}"
        );
    }

    #[test]
    fn missing_fields_read_as_absent() {
        let v = View::parse(r#"{"uploads":[{"path":"x"}]}"#).expect("parse");
        assert_eq!(v.rows[0].size, 0);
        assert!(v.is_idle());
        assert!(View::parse("not json").is_err());
        let open = View::parse(r#"{"uploads":[],"open_for_writing":["a"]}"#).expect("parse");
        assert!(!open.is_idle(), "a file still open is not idle");
    }

    #[test]
    fn row_lines_carry_exact_bytes_percent_rate_and_eta() {
        let v = View::from_value(&status(
            &[("Docs/a.bin", "uploading", 200, 50), ("b", "done", 9, 0)],
            None,
        ));
        assert_eq!(
            row_line(&v.rows[0]),
            "  Docs/a.bin: uploading 50/200 bytes (25%) 1.0 MiB/s, eta 7s"
        );
        // Done counts every byte even if the session counter was reset.
        assert_eq!(row_line(&v.rows[1]), "  b: done 9/9 bytes (100%)");
        let almost = Row {
            uploaded: 199,
            ..v.rows[0].clone()
        };
        assert_eq!(almost.percent(), 99, "100 % only when committed");
        let failed = Row {
            state: "failed".into(),
            error: Some("quota\nexceeded".into()),
            rate: None,
            ..v.rows[0].clone()
        };
        assert_eq!(
            row_line(&failed),
            "  Docs/a.bin: failed 50/200 bytes (25%) — quota?exceeded"
        );
    }

    #[test]
    fn plain_lines_on_change_and_every_few_seconds() {
        let t0 = Instant::now();
        let mut tr = PlainTracker::default();
        let old_done = ("old.txt", "done", 5, 5);
        let s1 = View::from_value(&status(&[old_done, ("a", "uploading", 100, 10)], None));
        let l1 = tr.lines(&s1, t0);
        assert_eq!(l1.len(), 2, "{l1:?}: summary and the uploading file only");
        assert!(l1[1].contains("a: uploading 10/100"), "{l1:?}");
        // Same state, bytes moved, too soon: nothing; later: a line.
        let s2 = View::from_value(&status(&[old_done, ("a", "uploading", 100, 30)], None));
        assert!(tr.lines(&s2, t0 + Duration::from_millis(500)).is_empty());
        let l2 = tr.lines(&s2, t0 + PLAIN_EVERY);
        assert!(l2[1].contains("30/100"), "{l2:?}");
        // Nothing moved at all: nothing, however long.
        assert!(tr.lines(&s2, t0 + PLAIN_EVERY * 5).is_empty());
        // A state change prints at once, with the file that finished.
        let s3 = View::from_value(&status(&[old_done, ("a", "done", 100, 0)], None));
        let l3 = tr.lines(&s3, t0 + PLAIN_EVERY * 5 + Duration::from_millis(1));
        assert_eq!(l3.len(), 2, "{l3:?}");
        assert!(l3[0].starts_with("0 uploading, 0 queued, 2 done"), "{l3:?}");
        assert_eq!(l3[1], "  a: done 100/100 bytes (100%)");
        // Pausing is a change.
        let s4 = View::from_value(&status(&[old_done, ("a", "done", 100, 0)], Some("sign-in")));
        let l4 = tr.lines(&s4, t0 + PLAIN_EVERY * 5 + Duration::from_millis(2));
        assert_eq!(l4.len(), 1);
        assert!(l4[0].ends_with("paused: sign-in"), "{l4:?}");
        assert!(l4.iter().all(|l| !l.contains('\x1b')), "no escape codes");
    }

    #[test]
    fn wait_tally_sums_given_paths_case_insensitively() {
        let mut w = WaitTracker::new(&["A.bin".into(), "b.bin".into(), "none".into()]);
        let v = View::from_value(&status(
            &[
                ("a.bin", "uploading", 100, 25),
                ("b.bin", "done", 50, 0),
                ("other", "uploading", 1000, 1),
            ],
            None,
        ));
        let t = w.tally(&v);
        assert_eq!((t.files, t.files_done), (3, 1));
        assert_eq!((t.bytes, t.bytes_done), (150, 75));
        assert_eq!(t.rate, 1_048_576);
        assert_eq!(t.line(), "wait: 1/3 files, 75/150 bytes (50%) at 1.0 MiB/s");
    }

    #[test]
    fn whole_mount_tally_keeps_files_seen_busy() {
        let mut w = WaitTracker::new(&[]);
        let v1 = View::from_value(&status(
            &[("old", "done", 7, 7), ("a", "uploading", 100, 50)],
            None,
        ));
        let t1 = w.tally(&v1);
        assert_eq!((t1.files, t1.bytes, t1.bytes_done), (1, 100, 50));
        let v2 = View::from_value(&status(
            &[
                ("old", "done", 7, 7),
                ("a", "done", 100, 0),
                ("b", "queued", 10, 0),
            ],
            None,
        ));
        let t2 = w.tally(&v2);
        assert_eq!(
            (t2.files, t2.files_done, t2.bytes, t2.bytes_done),
            (2, 1, 110, 100)
        );
        assert_eq!(t2.line(), "wait: 1/2 files, 100/110 bytes (90%)");
    }

    #[test]
    fn tally_counts_a_path_that_left_the_list_as_done() {
        // Summary form: a done entry no longer listed (only the last done ones are).
        let mut w = WaitTracker::new(&[]);
        let v1 = View::from_value(&status(&[("a", "uploading", 100, 50)], None));
        assert_eq!(w.tally(&v1).files_done, 0);
        let v2 = View::from_value(&status(&[("b", "queued", 10, 0)], None));
        let t = w.tally(&v2);
        assert_eq!(
            (t.files, t.files_done, t.bytes, t.bytes_done),
            (2, 1, 110, 100)
        );
    }

    #[test]
    fn short_names_keep_the_end() {
        assert_eq!(short_name("a/b.txt", NAME_CHARS), "a/b.txt");
        let long = format!("{}/end.bin", "x".repeat(80));
        let s = short_name(&long, NAME_CHARS);
        assert_eq!(s.chars().count(), NAME_CHARS);
        assert!(s.starts_with('…') && s.ends_with("/end.bin"));
        assert_eq!(short_name(&long, 12).chars().count(), 12);
    }

    #[test]
    fn bar_layout_leaves_room_for_the_bar() {
        for (cols, want) in [
            (80, (16, 20)),
            (150, (30, 24)),
            (300, (32, 24)),
            (40, (10, 12)),
        ] {
            assert_eq!(bar_layout(cols), want, "{cols}");
        }
        for cols in [64, 72, 80, 100] {
            let (n, m) = bar_layout(cols);
            assert!(
                cols - n - m - BAR_FIXED_COLS >= MIN_BAR,
                "{cols}: ({n}, {m})"
            );
        }
        assert_eq!(
            bar_layout(64),
            (11, 12),
            "the message, then the name shrink"
        );
    }
}
