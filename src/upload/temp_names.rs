//! Names of the temporary files that tools write and then rename into place: rsync's
//! `.NAME.XXXXXX`, editor backups and swap files, LibreOffice's lock files. Pure name checks,
//! used by recovery (a temp file found in the spool after a crash is held, not uploaded) and
//! by the queue (a file renamed from such a name to its final one is complete: its upload need
//! not sit out the rest of the write-back delay).

/// Whether a file name (the last path component) looks like the temporary file of a save
/// that renames into place: rsync's `.NAME.XXXXXX` (six letters or digits, from mkstemp),
/// editor backups `NAME~`, `NAME.tmp` (any case), LibreOffice's `.~lock.NAME#` and vim's
/// `.NAME.swp`. Pure.
pub fn looks_like_temp_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if name.len() > 1 && name.ends_with('~') {
        return true;
    }
    if lower.len() > 4 && lower.ends_with(".tmp") {
        return true;
    }
    if name.starts_with(".~lock.") && name.ends_with('#') {
        return true;
    }
    let Some(hidden) = name.strip_prefix('.') else {
        return false;
    };
    if lower.len() > 5 && lower.ends_with(".swp") {
        return true;
    }
    // rsync: "." + NAME + "." + 6 alphanumerics, NAME non-empty.
    match hidden.rsplit_once('.') {
        Some((stem, suffix)) => {
            !stem.is_empty()
                && suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        for (name, temp) in [
            // rsync: "." NAME "." 6 alphanumerics
            (".f22.dat.Jp3Svo", true),
            (".report.pdf.a1B2c3", true),
            (".x.000000", true),
            (".f22.dat.Jp3Sv", false),   // 5 characters
            (".f22.dat.Jp3Svo7", false), // 7 characters
            (".f22.dat.Jp3-vo", false),  // not alphanumeric
            ("f22.dat.Jp3Svo", false),   // not hidden
            ("..abcdef", false),         // no NAME
            (".bashrc", false),
            (".config.backup", true), // ambiguous: looks like rsync's, held to be safe
            // editors
            ("notes.txt~", true),
            ("~", false),
            ("data.tmp", true),
            ("DATA.TMP", true),
            (".tmp", false),
            ("tmp", false),
            ("template.tmpl", false),
            (".~lock.budget.ods#", true),
            (".~lock.budget.ods", false),
            (".notes.txt.swp", true),
            ("notes.swp", false),
            // ordinary
            ("f22.dat", false),
            ("archive.tar.gz", false),
            ("photo.JPEG", false),
        ] {
            assert_eq!(looks_like_temp_name(name), temp, "{name}");
        }
    }
}
