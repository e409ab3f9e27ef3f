//! The live views of `status --watch` and `wait --progress`: read `.status.json` every
//! [`REDRAW`], and draw either `indicatif` bars (stdout is a terminal: a summary line and one
//! bar per uploading file under a `MultiProgress`, or one bar for a wait) or the plain lines of
//! the parent module (anything else). Only this file writes escape codes, and only to a
//! terminal; a closed stdout ends a watch quietly and never panics a wait.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::{
    bar_layout, header_line, row_line, short_name, PlainTracker, Tally, View, WaitTracker,
    PLAIN_EVERY, REDRAW, START_GRACE,
};
use crate::fs::STATUS_JSON_NAME;
use crate::upload::status::human_bytes;

/// How `status --watch` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The mount went away (`.status.json` could not be read any more).
    MountGone,
    /// `--until-idle`: nothing pending; `kept` if failed or incomplete uploads are listed.
    Idle { kept: bool },
}

fn read_view(root: &Path) -> Result<View, std::io::Error> {
    let text = std::fs::read_to_string(root.join(STATUS_JSON_NAME))?;
    View::parse(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Is stdout a terminal (bars) or a pipe/file (plain lines)?
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// The width of the terminal on stdout.
fn term_cols() -> usize {
    usize::from(console::Term::stdout().size().1)
}

/// The per-file bar for a terminal `cols` wide, and the name width it leaves. Every part but
/// the bar has a fixed width, so the bars line up and fill the line.
fn bar_style(cols: usize) -> (ProgressStyle, usize) {
    let (name, msg) = bar_layout(cols);
    let template = format!(
        "{{prefix:{name}!}} [{{wide_bar:.cyan/blue}}] {{bytes:>10}}/{{total_bytes:<10}} \
         {{percent:>3}}% {{msg:<{msg}!}}"
    );
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    (style, name)
}

fn line_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// `status --watch`: a live view of the mount at `root` until it goes away or, with
/// `until_idle`, until nothing is pending. `Err` if `.status.json` cannot be read at start.
pub fn watch(root: &Path, until_idle: bool) -> Result<WatchEnd, String> {
    let p = root.join(STATUS_JSON_NAME);
    let first = read_view(root).map_err(|e| format!("{}: {e}", p.display()))?;
    if stdout_is_terminal() {
        watch_terminal(root, until_idle, first)
    } else {
        watch_plain(root, until_idle, first)
    }
}

/// Should `--until-idle` stop at `view`?
fn stop_idle(until_idle: bool, start: Instant, view: &View) -> bool {
    until_idle && view.is_idle() && start.elapsed() >= START_GRACE
}

fn watch_plain(root: &Path, until_idle: bool, first: View) -> Result<WatchEnd, String> {
    let start = Instant::now();
    let mut tracker = PlainTracker::default();
    let mut view = first;
    let mut out = std::io::stdout().lock();
    loop {
        for line in tracker.lines(&view, Instant::now()) {
            // A closed pipe (`| head`) ends the watch like a gone mount.
            if writeln!(out, "{line}").is_err() {
                return Ok(WatchEnd::MountGone);
            }
        }
        let _ = out.flush();
        if stop_idle(until_idle, start, &view) {
            return Ok(WatchEnd::Idle {
                kept: view.has_kept(),
            });
        }
        std::thread::sleep(REDRAW);
        view = match read_view(root) {
            Ok(v) => v,
            Err(_) => {
                let _ = writeln!(out, "mount {} is gone", root.display());
                return Ok(WatchEnd::MountGone);
            }
        };
    }
}

fn watch_terminal(root: &Path, until_idle: bool, first: View) -> Result<WatchEnd, String> {
    let start = Instant::now();
    let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(4));
    let header = mp.add(ProgressBar::new_spinner().with_style(line_style()));
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut cols = term_cols();
    let (mut style, mut name_chars) = bar_style(cols);
    let mut view = first;
    let end = loop {
        header.set_message(header_line(
            &root.display().to_string(),
            &view.summary_line(),
            cols,
        ));
        let last = view.last_by_path();
        let now_cols = term_cols();
        if now_cols != cols {
            // The terminal was resized: lay the bars out again.
            cols = now_cols;
            (style, name_chars) = bar_style(cols);
            for (key, bar) in &bars {
                let path = last.get(key).map_or(key.as_str(), |r| r.path.as_str());
                bar.set_style(style.clone());
                bar.set_prefix(short_name(path, name_chars));
            }
        }
        let mut seen = BTreeSet::new();
        for r in view.active() {
            let key = r.path.to_lowercase();
            seen.insert(key.clone());
            let bar = bars.entry(key).or_insert_with(|| {
                mp.add(
                    ProgressBar::new(r.size)
                        .with_style(style.clone())
                        .with_prefix(short_name(&r.path, name_chars)),
                )
            });
            bar.set_length(r.size);
            bar.set_position(r.bytes_done());
            let mut msg = r.rate_eta();
            if r.state == "retrying" {
                msg = format!("retrying: {}", r.error.as_deref().unwrap_or("waiting"));
            }
            bar.set_message(msg);
        }
        let gone: Vec<String> = bars
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(bar) = bars.remove(&key) {
                bar.finish_and_clear();
                mp.remove(&bar);
                if let Some(r) = last.get(&key).filter(|r| !r.is_active()) {
                    let _ = mp.println(row_line(r).trim_start());
                }
            }
        }
        if stop_idle(until_idle, start, &view) {
            break WatchEnd::Idle {
                kept: view.has_kept(),
            };
        }
        std::thread::sleep(REDRAW);
        view = match read_view(root) {
            Ok(v) => v,
            Err(_) => break WatchEnd::MountGone,
        };
    };
    for bar in bars.values() {
        bar.finish_and_clear();
    }
    let last = match end {
        WatchEnd::MountGone => format!("{} — mount gone", root.display()),
        WatchEnd::Idle { .. } => header_line(
            &root.display().to_string(),
            &format!("idle: {}", view.summary_line()),
            term_cols(),
        ),
    };
    header.finish_with_message(last);
    Ok(end)
}

/// The progress display of `wait --progress`: one bar (terminal) or plain `wait:` lines,
/// fed with every status the wait reads. Several mounts are waited on in turn; the bar
/// keeps counting across them.
pub struct WaitProgress {
    bar: Option<ProgressBar>,
    tracker: WaitTracker,
    /// Tallies of the mounts already waited on.
    before: Tally,
    last: Tally,
    last_line: Option<(Tally, Instant)>,
}

impl WaitProgress {
    pub fn new() -> Self {
        let bar = stdout_is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout_with_hz(4));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{wide_bar:.cyan/blue}] {bytes:>10}/{total_bytes:<10} {percent:>3}% {msg:<28!}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix("wait");
            b
        });
        WaitProgress {
            bar,
            tracker: WaitTracker::new(&[]),
            before: Tally::default(),
            last: Tally::default(),
            last_line: None,
        }
    }

    /// Start on the next mount's paths (`rels` empty: all of it).
    pub fn begin(&mut self, rels: &[String]) {
        self.before = self.total();
        self.last = Tally::default();
        self.tracker = WaitTracker::new(rels);
    }

    fn total(&self) -> Tally {
        Tally {
            files: self.before.files + self.last.files,
            files_done: self.before.files_done + self.last.files_done,
            bytes: self.before.bytes + self.last.bytes,
            bytes_done: self.before.bytes_done + self.last.bytes_done,
            rate: self.last.rate,
        }
    }

    /// One status read during the wait.
    pub fn observe(&mut self, status: &Value) {
        self.last = self.tracker.tally(&View::from_value(status));
        let t = self.total();
        match &self.bar {
            Some(bar) => {
                bar.set_length(t.bytes);
                bar.set_position(t.bytes_done);
                let mut msg = format!("{}/{} files", t.files_done, t.files);
                if t.rate > 0 {
                    msg.push_str(&format!(", {}/s", human_bytes(t.rate)));
                }
                bar.set_message(msg);
            }
            None => {
                let due = match &self.last_line {
                    None => true,
                    Some((prev, at)) => {
                        (prev.files_done, prev.files) != (t.files_done, t.files)
                            || (prev.bytes_done != t.bytes_done && at.elapsed() >= PLAIN_EVERY)
                    }
                };
                if due {
                    // A closed pipe is not worth failing the wait for.
                    let _ = writeln!(std::io::stdout(), "{}", t.line());
                    self.last_line = Some((t, Instant::now()));
                }
            }
        }
    }

    /// The wait ended: `ok` if everything it waited on is done.
    pub fn finish(&self, ok: bool) {
        let t = self.total();
        let word = if ok { "done" } else { "stopped" };
        match &self.bar {
            Some(bar) => bar.abandon_with_message(format!(
                "{}/{} files — {word}",
                if ok { t.files } else { t.files_done },
                t.files
            )),
            None => {
                let mut t = t;
                if ok {
                    // Files without an entry count as done once `wait` says so.
                    t.files_done = t.files;
                    t.bytes_done = t.bytes;
                }
                let _ = writeln!(std::io::stdout(), "{} — {word}", t.line());
            }
        }
    }
}

impl Default for WaitProgress {
    fn default() -> Self {
        Self::new()
    }
}
