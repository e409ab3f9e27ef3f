//! SharePoint naming rules (reference §6), checked before anything reaches the spool or the
//! server, so a refused name fails at `create`/`mkdir`/`rename` with a clear errno instead of
//! as a failed upload minutes later.
//!
//! Length limits: a component may have at most [`MAX_NAME_BYTES`] (255) bytes — POSIX
//! `NAME_MAX`, what `statfs` reports as `f_namelen` and what `pathconf` tells programs — and is
//! refused with ENAMETOOLONG at create, mkdir, rename *and* lookup (so a lookup of an
//! over-long name is ENAMETOOLONG, not ENOENT). SharePoint's own limit is on the whole
//! decoded server-relative path, [`MAX_PATH_CHARS`] (400) characters, which the mount's base
//! folder counts towards ([`check_path_len`]); it has no separate per-name limit below that
//! (its 255-character "file name" limit in the UI is looser than 255 bytes for non-ASCII).
//!
//! Also how names compare, from `crate::collation` (the one place SharePoint's rule is
//! written): the inode table keys paths by [`fold`] (case and Unicode normal form: an NFD name
//! from macOS or `tar` is the same entry, the same inode, as the server's NFC one), and a new
//! name whose [`collation_key`] another entry of the folder already has (`Mærsk.txt` beside
//! `Maersk.txt`) is refused at create, mkdir and rename (`local_names.rs`).
//!
//! Local-only names ([`is_local_only`]): the owner, lock and cache files applications make
//! for themselves. They live in the mount and the spool, readable and writable, and are never
//! uploaded (`local_names.rs`). The list, and why each is on it:
//! - `~$*`: Microsoft Office's owner files (`~$report.docx`, written when a document is opened,
//!   deleted when it is closed). SharePoint refuses names starting with `~$`.
//! - `desktop.ini`: Windows Explorer's folder settings. SharePoint refuses the name.
//! - `Thumbs.db`: Windows Explorer's thumbnail cache; `.DS_Store`: macOS Finder's folder
//!   settings; `._*`: macOS AppleDouble files (a file's Finder metadata on a share without
//!   streams). SharePoint accepts them, but they are pure app litter: the OneDrive clients do
//!   not upload them either, and the app writes them again whenever it needs them.
//! - `.~lock.*#`: LibreOffice's lock files (written at open, deleted at close). SharePoint
//!   accepts them (older configurations refuse the `#`); a lock file in SharePoint would only
//!   tell colleagues about a lock that exists on this machine.
//!
//! Not on the list, because SharePoint accepts them and they become documents: Office's
//! `~WRL0001.tmp` / `~WRD0001.tmp` save files (renamed over the document; as `*.tmp` names they
//! settle before upload, `upload::temp_names`), and any other `~name`.

use crate::protocol::{MAX_NAME_BYTES, MAX_PATH_CHARS};

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// Not allowed by SharePoint; the text says why.
    Invalid(String),
    /// The full path would exceed [`MAX_PATH_CHARS`].
    TooLong(usize),
    /// One component has more than [`MAX_NAME_BYTES`] bytes (this many).
    ComponentTooLong(usize),
}

const BAD_CHARS: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];
const RESERVED: &[&str] = &[".lock", "con", "prn", "aux", "nul", "desktop.ini"];

/// Check the length of one path component, the only check a lookup makes.
pub fn check_name_len(name: &str) -> Result<(), NameProblem> {
    if name.len() > MAX_NAME_BYTES {
        return Err(NameProblem::ComponentTooLong(name.len()));
    }
    Ok(())
}

/// Check one path component. `at_library_root` enables the `forms` rule.
pub fn check_name(name: &str, at_library_root: bool) -> Result<(), NameProblem> {
    check_name_len(name)?;
    let invalid = |why: String| Err(NameProblem::Invalid(why));
    if name.is_empty() || name == "." || name == ".." {
        return invalid(format!("\"{name}\" is not a file name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| BAD_CHARS.contains(c) || c.is_control())
    {
        return invalid(format!(
            "\"{}\" contains {:?}, which SharePoint does not allow (\" * : < > ? / \\ |)",
            name.escape_debug(),
            c
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return invalid(format!("\"{name}\" starts or ends with a space"));
    }
    if name.ends_with('.') {
        return invalid(format!("\"{name}\" ends with a dot"));
    }
    let lower = name.to_lowercase();
    let stem = lower.split('.').next().unwrap_or("");
    let device = |s: &str| {
        (s.starts_with("com") || s.starts_with("lpt"))
            && s.len() == 4
            && s.as_bytes()[3].is_ascii_digit()
    };
    if RESERVED.contains(&lower.as_str()) || device(&lower) || (device(stem) && stem != lower) {
        return invalid(format!("\"{name}\" is a reserved name in SharePoint"));
    }
    if ["con", "prn", "aux", "nul"].contains(&stem) && lower.len() > stem.len() {
        return invalid(format!("\"{name}\" is a reserved name in SharePoint"));
    }
    if lower.starts_with("~$") {
        return invalid(format!(
            "\"{name}\" starts with ~$, which SharePoint refuses"
        ));
    }
    if lower.contains("_vti_") {
        return invalid(format!(
            "\"{name}\" contains _vti_, which SharePoint refuses"
        ));
    }
    if at_library_root && lower == "forms" {
        return invalid("\"forms\" is reserved at the root of a library".into());
    }
    Ok(())
}

/// Check the full server-relative length of `prefix/relative` (the mount's folder path inside
/// the site plus the path inside the mount).
pub fn check_path_len(base_chars: usize, relative: &str) -> Result<(), NameProblem> {
    let total = base_chars + 1 + relative.chars().count();
    if total > MAX_PATH_CHARS {
        return Err(NameProblem::TooLong(total));
    }
    Ok(())
}

/// The lookup key of a path: SharePoint compares names without case and without regard to
/// Unicode normal form (`crate::collation::fold`).
pub fn fold(path: &str) -> String {
    crate::collation::fold(path)
}

/// SharePoint's collation key of a path: paths with one key cannot coexist on the server
/// (`crate::collation::key`).
pub fn collation_key(path: &str) -> String {
    crate::collation::key(path)
}

/// Whether a file named `name` is an application's owner, lock or cache file, kept in the
/// mount only and never uploaded (module documentation). Pure.
pub fn is_local_only(name: &str) -> bool {
    let lower = name.to_lowercase();
    name.starts_with("~$")
        || lower == "desktop.ini"
        || lower == "thumbs.db"
        || lower == ".ds_store"
        || (name.starts_with("._") && name.len() > 2)
        || (name.starts_with(".~lock.") && name.ends_with('#'))
}

/// `parent/name`, with `""` as the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Parent path and last component of a path.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_names() {
        for n in [
            "a.txt",
            "Report 2024.docx",
            "naïve café.pdf",
            ".name.XyZ123",
            "COM10",
            "a..b",
            "forms",
        ] {
            assert_eq!(check_name(n, false), Ok(()), "{n}");
        }
    }

    #[test]
    fn refused_names() {
        for n in [
            "a:b",
            "a*b",
            "q?",
            "x|y",
            "back\\slash",
            "quote\"",
            "<x>",
            " lead",
            "trail ",
            "dot.",
            ".lock",
            "CON",
            "con.txt",
            "Nul",
            "com1",
            "LPT9.log",
            "desktop.ini",
            "~$doc.docx",
            "a_vti_b",
            "",
            ".",
            "..",
            "tab\there",
        ] {
            assert!(
                matches!(check_name(n, false), Err(NameProblem::Invalid(_))),
                "{n:?}"
            );
        }
        assert!(check_name("Forms", true).is_err());
    }

    #[test]
    fn component_length_is_counted_in_bytes() {
        assert_eq!(check_name(&"a".repeat(MAX_NAME_BYTES), false), Ok(()));
        assert_eq!(
            check_name(&"a".repeat(MAX_NAME_BYTES + 1), false),
            Err(NameProblem::ComponentTooLong(256))
        );
        // 128 two-byte characters: 256 bytes.
        assert_eq!(
            check_name_len(&"é".repeat(128)),
            Err(NameProblem::ComponentTooLong(256))
        );
        assert_eq!(check_name_len(&"é".repeat(127)), Ok(()));
    }

    #[test]
    fn path_length() {
        assert!(check_path_len(30, &"a".repeat(369)).is_ok());
        assert_eq!(
            check_path_len(30, &"a".repeat(370)),
            Err(NameProblem::TooLong(401))
        );
    }

    #[test]
    fn split_join_fold() {
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("a", "x"), "a/x");
        assert_eq!(fold("Docs/ÄB.txt"), "docs/äb.txt");
        assert_eq!(fold("Cafe\u{301}/X"), fold("café/x"));
        assert_eq!(collation_key("Mærsk.txt"), collation_key("maersk.TXT"));
    }

    #[test]
    fn local_only_names() {
        for (name, local) in [
            ("~$report.docx", true),
            ("~$", true),
            ("desktop.ini", true),
            ("Desktop.INI", true),
            ("Thumbs.db", true),
            (".DS_Store", true),
            ("._report.docx", true),
            (".~lock.budget.ods#", true),
            // SharePoint accepts these and they become documents: uploaded.
            ("~WRL0001.tmp", false),
            ("~report.docx", false),
            ("report.docx", false),
            ("._", false),
            (".~lock.budget.ods", false),
            ("my desktop.ini.txt", false),
            ("Thumbs.db.bak", false),
        ] {
            assert_eq!(is_local_only(name), local, "{name}");
        }
    }
}
