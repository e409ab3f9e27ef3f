//! The reason shown when SharePoint refuses an upload because another item of the folder has
//! a name its collation treats as the same (409 `similarRelationshipNameAlreadyExists`, field
//! reference entry 15): `Mærsk.txt` uploaded beside `Maersk.txt`, created there after the
//! mount last listed the folder. The failure is permanent (`retry::classify`: `NameClash` →
//! fail), the spool keeps the data, and nothing is replaced, whatever the conflict behaviour.
//!
//! SharePoint does not say which name the new one clashes with, so the worker asks for the
//! folder's listing (one request, on the worker thread, only on this rare path) and names the
//! item whose collation key (`crate::collation`) is the file's.

use crate::remote::Remote;

/// The one-line reason for a clash refused at upload of `path` (mount-relative).
pub fn clash_reason(remote: &dyn Remote, path: &str) -> String {
    let (parent, leaf) = match path.rsplit_once('/') {
        Some((p, l)) => (p, l),
        None => ("", path),
    };
    let other = match remote.list(parent) {
        Ok(items) => items
            .into_iter()
            .find(|it| crate::collation::clash(&it.name, leaf))
            .map(|it| it.name),
        Err(e) => {
            log::debug!("{path}: listing the folder to name the clash: {e}");
            None
        }
    };
    format!(
        "name clashes with {}, which SharePoint treats as the same name (æ = ae, œ = oe, \
         ß = ss, accents); kept in the spool: rename the file to upload it",
        other.as_deref().unwrap_or("another item in SharePoint")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::memory::MemoryRemote;
    use crate::remote::Conflict;

    #[test]
    fn names_the_other_item() {
        let r = MemoryRemote::default();
        r.mkdir("d").unwrap();
        r.upload_small("d/Maersk.txt", b"theirs", Conflict::Replace, None)
            .unwrap();
        let why = clash_reason(&r, "d/M\u{e6}rsk.txt");
        assert!(
            why.starts_with("name clashes with Maersk.txt, which"),
            "{why}"
        );
        assert_eq!(
            why,
            crate::upload::status::sanitize_error(&why),
            "fits .status"
        );
        let why = clash_reason(&r, "elsewhere/M\u{e6}rsk.txt");
        assert!(why.starts_with("name clashes with another item"), "{why}");
    }
}
