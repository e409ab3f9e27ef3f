//! The summary form of `.status` (issue 19): above [`StatusLimits::summary_at`] entries, the
//! status lists every active, waiting, failed and incomplete upload but only the last
//! [`StatusLimits::listed_done`] done ones, and sums up the rest in a [`DoneSummary`]; the
//! full list stays available in `.status.all` / `.status.all.json` (`shareuplift status
//! --all`). Also the bounds on what the registry retains (`max_done`).
//!
//! Invariants: the summary never hides an entry that needs the user or is still moving (only
//! `done` ones are summed up), so a script waiting for "nothing queued, uploading or retrying"
//! and `shareuplift wait` read the same answer from either form; `totals.done` counts every
//! retained done entry, listed or not. Pure data and rendering: no lock, no I/O.

use std::fmt::Write as _;

use serde::Serialize;

use super::status::human_bytes;

/// Where the full list is, as named in the summary.
pub const FULL_LIST_NAME: &str = ".status.all.json";

/// How much the status registry keeps and lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLimits {
    /// Above this many entries, `.status` switches to the summary form.
    pub summary_at: usize,
    /// Done entries retained at most (the oldest go first), besides the time retention.
    pub max_done: usize,
}

impl Default for StatusLimits {
    fn default() -> Self {
        StatusLimits {
            summary_at: 1000,
            max_done: 10_000,
        }
    }
}

impl StatusLimits {
    /// Done entries listed one by one in the summary form: the most recently finished, at most
    /// 100 (and at most half the threshold, so a small threshold still shows the form).
    pub fn listed_done(&self) -> usize {
        (self.summary_at / 2).clamp(1, 100)
    }
}

/// The done uploads of a summary-form status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoneSummary {
    /// Done entries retained now (`totals.done`), listed or not.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// How many of them `uploads` lists (the most recently finished).
    pub listed: u64,
    /// Done since the mount started, including those no longer retained.
    pub since_start: u64,
    pub bytes_since_start: u64,
    /// The virtual file with every retained entry.
    pub full_list: &'static str,
}

impl DoneSummary {
    /// The table's line: `done: 12345 (1.2 GiB), the last 100 listed; 20000 (2.0 GiB) since
    /// the mount started; all: .status.all`.
    pub fn line(&self) -> String {
        let mut out = format!(
            "done: {} ({}), the last {} listed",
            self.count,
            human_bytes(self.bytes),
            self.listed
        );
        let _ = write!(
            out,
            "; {} ({}) since the mount started; all of them: {} or `shareuplift status --all`",
            self.since_start,
            human_bytes(self.bytes_since_start),
            self.full_list.trim_end_matches(".json")
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_done_follows_the_threshold() {
        assert_eq!(StatusLimits::default().listed_done(), 100);
        let small = StatusLimits {
            summary_at: 20,
            max_done: 50,
        };
        assert_eq!(small.listed_done(), 10);
        let tiny = StatusLimits {
            summary_at: 0,
            max_done: 1,
        };
        assert_eq!(tiny.listed_done(), 1);
    }

    #[test]
    fn summary_line() {
        let s = DoneSummary {
            count: 12_345,
            bytes: 3 * 1024 * 1024,
            listed: 100,
            since_start: 20_000,
            bytes_since_start: 5 * 1024 * 1024,
            full_list: FULL_LIST_NAME,
        };
        assert_eq!(
            s.line(),
            "done: 12345 (3.0 MiB), the last 100 listed; 20000 (5.0 MiB) since the mount \
             started; all of them: .status.all or `shareuplift status --all`"
        );
    }
}
