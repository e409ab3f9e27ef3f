//! How the emulated SharePoint compares names, and the name rules that differ between
//! tenants (field reference, entries 15–17). The store files each child under
//! [`crate::collation::key`] (SharePoint's collation, written once for the mount and the
//! emulator) and asks here what a request naming an occupied key gets.
//!
//! Entry 15 (the default, as the service documents and reports it, ODI#856, #977): names with
//! one collation key cannot coexist in a folder. The *same spelling* (equal ignoring case:
//! SharePoint is case-insensitive and keeps the stored case) keeps the usual semantics of
//! `conflictBehavior` (replace, fail, rename). A *different spelling* with the same key —
//! `Mærsk.txt` over `Maersk.txt`, or an NFD name over its NFC form — is refused whatever the
//! conflict behaviour: 409 `nameAlreadyExists` with inner `similarRelationshipNameAlreadyExists`
//! ([`similar_name`]), on createUploadSession, a simple upload, a commit, a folder create and a
//! rename or move onto it. A GET (or any request addressing an item by path) with the other
//! spelling answers 404 "incompatible with a similar name" ([`incompatible_name`]).
//!
//! Entry 16, knob `nfc_names` (default off: the service keeps the form it was sent, rclone#8634
//! reports NFD and NFC names both stored): names are stored composed (NFC), so an NFD upload
//! is listed NFC, and a request naming the NFD form finds the NFC item.
//!
//! Entry 17, knob `legacy_name_rules` (default off; some tenants, older configurations, the
//! support article "Invalid file names and file types in OneDrive and SharePoint"): folder
//! names beginning with `~`, names ending `_files`, and names containing `#` or `%` are refused
//! with 400 `invalidRequest` ([`NameRules::check`]).

use std::borrow::Cow;

use super::errors::ApiError;
use super::field::FieldConfig;

/// The name rules of the emulated tenant, from the field knobs (`FieldConfig::nfc_names`,
/// `FieldConfig::legacy_name_rules`); the store keeps a copy, set with the knobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameRules {
    /// Entry 16: store (and look up) names in NFC.
    pub nfc_names: bool,
    /// Entry 17: the extra refusals of older configurations.
    pub legacy_name_rules: bool,
}

impl NameRules {
    pub fn of(cfg: &FieldConfig) -> NameRules {
        NameRules {
            nfc_names: cfg.nfc_names,
            legacy_name_rules: cfg.legacy_name_rules,
        }
    }

    /// `name` as the store keeps it (and as a request's name is compared): NFC under
    /// `nfc_names`, else unchanged.
    pub fn stored<'a>(&self, name: &'a str) -> Cow<'a, str> {
        if self.nfc_names {
            crate::collation::nfc(name)
        } else {
            Cow::Borrowed(name)
        }
    }

    /// Entry 17's extra refusals, when `legacy_name_rules` is on.
    pub fn check(&self, name: &str, folder: bool) -> Result<(), ApiError> {
        if !self.legacy_name_rules {
            return Ok(());
        }
        let why = if folder && name.starts_with('~') {
            "folder names cannot begin with ~"
        } else if name.to_lowercase().ends_with("_files") {
            "names cannot end with _files"
        } else if name.contains(['#', '%']) {
            "names cannot contain # or %"
        } else {
            return Ok(());
        };
        Err(ApiError::bad_request(format!(
            "Invalid name '{name}': {why}"
        )))
    }
}

/// The key the store files a child under: SharePoint's collation.
pub fn child_key(name: &str) -> String {
    crate::collation::key(name)
}

/// Whether a stored name and a requested one (already in stored form) are the same spelling:
/// equal ignoring case.
pub fn same_spelling(stored: &str, requested: &str) -> bool {
    stored.to_lowercase() == requested.to_lowercase()
}

/// 409 for a name that collides with a differently spelt one (entry 15). Like SharePoint's,
/// the answer does not say which name it collides with.
pub fn similar_name() -> ApiError {
    ApiError::new(
        409,
        "nameAlreadyExists",
        "An item with the same name already exists under the parent",
    )
    .inner("similarRelationshipNameAlreadyExists")
}

/// 404 for a path naming an item by a spelling other than the stored one (entry 15).
pub fn incompatible_name() -> ApiError {
    ApiError::not_found(
        "The specified item name is incompatible with a similar name on an existing item.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_and_keys() {
        assert!(same_spelling("Maersk.txt", "MAERSK.TXT"));
        assert!(!same_spelling("Maersk.txt", "M\u{e6}rsk.txt"));
        assert_eq!(child_key("Maersk.txt"), child_key("M\u{e6}rsk.txt"));
        assert!(!same_spelling("Caf\u{e9}", "Cafe\u{301}"));
        let nfc = NameRules {
            nfc_names: true,
            ..NameRules::default()
        };
        assert!(same_spelling("Caf\u{e9}", &nfc.stored("Cafe\u{301}")));
        assert_eq!(NameRules::default().stored("Cafe\u{301}"), "Cafe\u{301}");
    }

    #[test]
    fn legacy_rules_only_with_the_knob() {
        let off = NameRules::default();
        let on = NameRules {
            legacy_name_rules: true,
            ..NameRules::default()
        };
        for (name, folder) in [
            ("~tmp", true),
            ("page_files", true),
            ("Page_FILES", false),
            ("a#b.txt", false),
            ("100%.txt", false),
        ] {
            assert!(off.check(name, folder).is_ok(), "{name}");
            assert_eq!(
                on.check(name, folder).map_err(|e| e.status),
                Err(400),
                "{name}"
            );
        }
        for (name, folder) in [("~WRL0001.tmp", false), ("a~b", true), ("files", true)] {
            assert!(on.check(name, folder).is_ok(), "{name}");
        }
        let e = similar_name();
        assert_eq!(
            (e.status, e.inner),
            (409, Some("similarRelationshipNameAlreadyExists"))
        );
        assert!(incompatible_name()
            .message
            .contains("incompatible with a similar name"));
    }

    /// The store refuses a differently spelt name of an occupied key, on every create path,
    /// whatever the conflict behaviour; the same spelling keeps its semantics.
    #[test]
    fn store_refuses_similar_names_everywhere() {
        use super::super::store::{NewFile, Store};
        use crate::remote::Conflict;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let root = s.drives[0].root_id.clone();
        let up = s.resolve(&root, &["Uploads".into()]).unwrap().id.clone();
        let put = |s: &mut Store, name: &str, conflict: Conflict| {
            let tmp = s.tmp_dir().join("t");
            std::fs::write(&tmp, b"x").unwrap();
            s.commit_file(NewFile {
                parent_id: &up,
                name,
                conflict,
                tmp: &tmp,
                size: 1,
                qxh: "h".into(),
                fs_created: None,
                fs_modified: None,
                quota: None,
            })
        };
        let theirs = put(&mut s, "Maersk.txt", Conflict::Fail).unwrap();
        for conflict in [Conflict::Replace, Conflict::Rename, Conflict::Fail] {
            assert_eq!(
                put(&mut s, "M\u{e6}rsk.txt", conflict).unwrap_err(),
                similar_name()
            );
            assert_eq!(
                s.precheck_file(&up, "M\u{c6}RSK.txt", conflict)
                    .unwrap_err(),
                similar_name()
            );
            assert_eq!(
                s.create_folder(&up, "M\u{e6}rsk.txt", conflict)
                    .unwrap_err(),
                similar_name()
            );
        }
        // Same spelling, other case: replace keeps the item and its stored name.
        let again = put(&mut s, "maersk.TXT", Conflict::Replace).unwrap();
        assert_eq!(
            (again.id.as_str(), again.name.as_str()),
            (theirs.id.as_str(), "Maersk.txt")
        );
        // Rename (and move) onto it.
        let other = put(&mut s, "other.txt", Conflict::Fail).unwrap();
        assert_eq!(
            s.patch(&other.id, Some("M\u{e6}rsk.txt"), None, None, None)
                .unwrap_err(),
            similar_name()
        );
        // An item may take another spelling of its own name.
        assert!(s
            .patch(&theirs.id, Some("MAERSK.txt"), None, None, None)
            .is_ok());
        // GET by the other spelling: 404 "incompatible with a similar name".
        let segs = |n: &str| vec!["Uploads".to_string(), n.to_string()];
        assert_eq!(
            s.resolve_request(&root, &segs("M\u{e6}rsk.txt"))
                .unwrap_err(),
            incompatible_name()
        );
        assert_eq!(
            s.resolve_request(&root, &segs("maersk.txt")).unwrap().id,
            theirs.id
        );
        assert_eq!(
            s.resolve_request(&root, &segs("nothing"))
                .unwrap_err()
                .status,
            404
        );
        // NFD over NFC is another spelling by default (entry 16 off) ...
        let cafe = put(&mut s, "Caf\u{e9}", Conflict::Fail).unwrap();
        assert_eq!(
            put(&mut s, "Cafe\u{301}", Conflict::Replace).unwrap_err(),
            similar_name()
        );
        // ... and the same name, stored NFC, with `nfc_names`.
        s.set_name_rules(NameRules {
            nfc_names: true,
            ..NameRules::default()
        });
        let same = put(&mut s, "Cafe\u{301}", Conflict::Replace).unwrap();
        assert_eq!(
            (same.id.as_str(), same.name.as_str()),
            (cafe.id.as_str(), "Caf\u{e9}")
        );
        let new = put(&mut s, "A\u{30a}sa", Conflict::Fail).unwrap();
        assert_eq!(new.name, "\u{c5}sa");
        assert_eq!(
            s.resolve_request(&root, &segs("A\u{30a}sa")).unwrap().id,
            new.id
        );
    }
}
