//! SharePoint's name comparison, written once: the mount's inode table, folder plan and queue
//! key paths by [`fold`]; the core refuses a name whose [`key`] another entry of the folder
//! already has; the upload worker names the clashing item after a 409; the emulator keys its
//! folders by [`key`]. Pure functions, no state.
//!
//! Two levels (field reference, entries 15 and 16):
//! - [`fold`]: **the same name**. SharePoint compares names without case, and a name written
//!   decomposed (NFD: macOS, some `tar` archives) is the same item as its composed form (NFC,
//!   what Windows and the web send). So `Café.txt` in either form and `café.TXT` are one item,
//!   one inode.
//! - [`key`]: **names that cannot live side by side**. SharePoint's collation goes further: it
//!   also treats the ligatures and foldings `æ`/`ae`, `œ`/`oe` and `ß`/`ss` as equal (ODI#856).
//!   Two names with the same key and a different fold are *different names* to the user
//!   (`Mærsk.txt` is not `Maersk.txt`) but SharePoint refuses the second one (409
//!   `nameAlreadyExists`, inner `similarRelationshipNameAlreadyExists`), and a GET by one
//!   spelling does not find the item stored under the other (404, "incompatible with a similar
//!   name", ODI#977). Only the pairs reported are folded; SharePoint's full collation is not
//!   published, so a clash this key misses is still caught at upload (the 409).
//!
//! Both apply to whole paths as well as to single names (`/` is unchanged by either).

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// The lookup key of a name or path: composed (NFC) and lowercased. Two names with the same
/// fold are the same item in SharePoint.
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    let lower = nfc(name).to_lowercase();
    // Lowercasing can decompose (`İ` → `i` + U+0307); compose again.
    nfc(&lower).into_owned()
}

/// SharePoint's collation key: [`fold`], then the ligatures and foldings the service treats as
/// equal (`æ` = `ae`, `œ` = `oe`, `ß` = `ss`). Names with one key cannot coexist in a folder.
pub fn key(name: &str) -> String {
    let folded = fold(name);
    if folded.is_ascii() {
        return folded;
    }
    let mut out = String::with_capacity(folded.len() + 4);
    for c in folded.chars() {
        match c {
            'æ' => out.push_str("ae"),
            'œ' => out.push_str("oe"),
            'ß' => out.push_str("ss"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `a` and `b` are different names (different [`fold`]) that SharePoint would not keep
/// side by side (the same [`key`]).
pub fn clash(a: &str, b: &str) -> bool {
    key(a) == key(b) && fold(a) != fold(b)
}

/// `name` composed (NFC); borrowed when it already is.
pub fn nfc(name: &str) -> std::borrow::Cow<'_, str> {
    if is_nfc_quick(name.chars()) == IsNormalized::Yes {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(name.nfc().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAFE_NFC: &str = "Caf\u{e9}.txt";
    const CAFE_NFD: &str = "Cafe\u{301}.txt";

    #[test]
    fn fold_is_case_and_normal_form() {
        for (a, b) in [
            ("Report.TXT", "report.txt"),
            (CAFE_NFC, CAFE_NFD),
            (CAFE_NFD, "CAF\u{c9}.TXT"),
            ("\u{c5}ngstr\u{f6}m", "A\u{30a}ngstro\u{308}m"),
            // CJK compatibility ideograph: NFC maps U+FA16 to U+732A (ODI#351).
            ("\u{fa16}", "\u{732a}"),
            ("Docs/\u{c4}B.txt", "docs/\u{e4}b.txt"),
        ] {
            assert_eq!(fold(a), fold(b), "{a:?} / {b:?}");
            assert_eq!(key(a), key(b), "{a:?} / {b:?}");
            assert!(!clash(a, b), "the same name, not a clash: {a:?} / {b:?}");
        }
        assert_eq!(fold(CAFE_NFD), "caf\u{e9}.txt");
        assert_ne!(fold("a.txt"), fold("b.txt"));
    }

    #[test]
    fn key_folds_the_reported_ligatures() {
        for (a, b) in [
            ("M\u{e6}rsk.txt", "Maersk.txt"),
            ("M\u{c6}RSK.txt", "maersk.TXT"),
            ("\u{153}uvre", "oeuvre"),
            ("C\u{152}UR", "coeur"),
            ("Stra\u{df}e", "Strasse"),
            ("STRA\u{1e9e}E", "strasse"),
            ("Dir/M\u{e6}rsk/x", "dir/maersk/X"),
        ] {
            assert_eq!(key(a), key(b), "{a:?} / {b:?}");
            assert_ne!(fold(a), fold(b), "{a:?} / {b:?}");
            assert!(clash(a, b) && clash(b, a), "{a:?} / {b:?}");
        }
        for (a, b) in [("Maersk.txt", "Marsk.txt"), ("ae", "a"), ("s", "\u{df}")] {
            assert_ne!(key(a), key(b), "{a:?} / {b:?}");
            assert!(!clash(a, b));
        }
    }

    #[test]
    fn nfc_borrows_composed_names() {
        assert!(matches!(nfc(CAFE_NFC), std::borrow::Cow::Borrowed(_)));
        assert_eq!(nfc(CAFE_NFD), CAFE_NFC);
    }
}
