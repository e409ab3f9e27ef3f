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
//! Also the case-folding used for lookups: SharePoint names are case-insensitive and
//! case-preserving, so the inode table keys paths by [`fold`].

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

/// The lookup key of a path: SharePoint compares names case-insensitively.
pub fn fold(path: &str) -> String {
    path.to_lowercase()
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
    }
}
