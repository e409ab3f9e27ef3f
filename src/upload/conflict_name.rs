//! The name a conflicting edit is saved under: `report (conflict 2026-12-02 013000).docx`,
//! beside the file a colleague changed on the server while we edited it in place.
//!
//! Rules: the time is UTC, to the second (the user compares it with SharePoint's version
//! history, which shows minutes); the marker goes before the extension so the copy still
//! opens with the same application (a leading dot is not an extension: `.profile` →
//! `.profile (conflict …)`); when that name is taken too, a counter follows the time
//! (`… 013000 2).docx`, `… 3)`, …). A name is kept within `protocol::MAX_NAME_BYTES` by
//! shortening the stem (on a character boundary), never the marker or the extension, so two
//! copies of one file still differ and sort together.

use std::time::SystemTime;

use crate::protocol::MAX_NAME_BYTES;

/// `name` with the conflict marker for `when` and, from 2 on, a `counter`.
pub fn conflict_name_nth(name: &str, when: SystemTime, counter: u32) -> String {
    let (stem, ext) = split_ext(name);
    let stamp = stamp_utc(when);
    let marker = if counter >= 2 {
        format!(" (conflict {stamp} {counter})")
    } else {
        format!(" (conflict {stamp})")
    };
    let room = MAX_NAME_BYTES.saturating_sub(marker.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}{ext}", &stem[..cut])
}

/// `name (conflict YYYY-MM-DD HHMMSS).ext` for `when` (UTC).
pub fn conflict_name(name: &str, when: SystemTime) -> String {
    conflict_name_nth(name, when, 1)
}

/// `("report", ".docx")`; no extension for a leading dot or none at all.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// `2026-12-02 013000`.
fn stamp_utc(when: SystemTime) -> String {
    let t = time::OffsetDateTime::from(when);
    format!(
        "{:04}-{:02}-{:02} {:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-12-02 01:30:00 UTC.
    fn when() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_175_000)
    }

    #[test]
    fn names() {
        let cases = [
            ("report.docx", 1, "report (conflict 2026-12-02 013000).docx"),
            (
                "report.docx",
                2,
                "report (conflict 2026-12-02 013000 2).docx",
            ),
            (
                "archive.tar.gz",
                1,
                "archive.tar (conflict 2026-12-02 013000).gz",
            ),
            ("README", 1, "README (conflict 2026-12-02 013000)"),
            (".profile", 1, ".profile (conflict 2026-12-02 013000)"),
            (
                "Übersicht.pdf",
                3,
                "Übersicht (conflict 2026-12-02 013000 3).pdf",
            ),
        ];
        for (name, n, want) in cases {
            assert_eq!(conflict_name_nth(name, when(), n), want, "{name} #{n}");
        }
        assert_eq!(
            conflict_name("a.txt", when()),
            conflict_name_nth("a.txt", when(), 1)
        );
    }

    #[test]
    fn long_names_keep_marker_and_extension() {
        let name = format!("{}.docx", "ä".repeat(200)); // 405 bytes
        let got = conflict_name_nth(&name, when(), 12);
        assert!(got.len() <= MAX_NAME_BYTES, "{} bytes", got.len());
        assert!(
            got.ends_with(" (conflict 2026-12-02 013000 12).docx"),
            "{got}"
        );
        assert!(got.starts_with("ää"));
    }
}
