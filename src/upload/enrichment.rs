//! SharePoint's metadata "enrichment": after an upload to a SharePoint document library, the
//! service rewrites Office Open XML (docx/xlsx/pptx and their macro and template variants),
//! OpenDocument (odt/ods/odp) and PDF files to embed the library's column values, so the
//! committed item's size and quickXorHash no longer match what was sent. This module decides
//! whether a hash mismatch is that rewrite (the upload is then `done`, flagged
//! `server_modified`) or a real corruption (the job stays `failed`).
//!
//! The rule is deliberately narrow: the remote must be a SharePoint library
//! (`QueueConfig::enriches_files`), the name must have one of the enriched extensions, and both the
//! bytes sent and the bytes committed must open with the format's signature (a ZIP local
//! header for OOXML/ODF, `%PDF-` for PDF). A `.bin`, a `.txt`, or an Office file whose
//! committed bytes are no longer a ZIP still fails. Pure logic, no I/O: the worker reads the
//! heads and calls [`is_enrichment`].

/// What `.status` says of an upload SharePoint rewrote after the commit.
pub const SERVER_MODIFIED: &str = "modified by SharePoint after upload";

/// Bytes of each side's head the check needs (the longest signature).
pub const HEAD_BYTES: usize = 5;

/// The container formats SharePoint enriches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OOXML and ODF: ZIP packages.
    Zip,
    Pdf,
}

/// Extensions (lower case) SharePoint rewrites, with their container format.
const ENRICHED: &[(&str, Format)] = &[
    ("docx", Format::Zip),
    ("docm", Format::Zip),
    ("dotx", Format::Zip),
    ("dotm", Format::Zip),
    ("xlsx", Format::Zip),
    ("xlsm", Format::Zip),
    ("xltx", Format::Zip),
    ("xltm", Format::Zip),
    ("pptx", Format::Zip),
    ("pptm", Format::Zip),
    ("potx", Format::Zip),
    ("potm", Format::Zip),
    ("ppsx", Format::Zip),
    ("ppsm", Format::Zip),
    ("odt", Format::Zip),
    ("ods", Format::Zip),
    ("odp", Format::Zip),
    ("pdf", Format::Pdf),
];

/// The enriched format of a path's name, by extension (case-insensitive).
pub fn format_of(path: &str) -> Option<Format> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    let ext = ext.to_ascii_lowercase();
    ENRICHED.iter().find(|(e, _)| *e == ext).map(|(_, f)| *f)
}

/// Whether `head` opens with the signature of `format`.
pub fn has_signature(format: Format, head: &[u8]) -> bool {
    match format {
        Format::Zip => head.starts_with(b"PK\x03\x04"),
        Format::Pdf => head.starts_with(b"%PDF-"),
    }
}

/// A hash mismatch on `path` is SharePoint's enrichment: an enriched type whose sent and
/// committed bytes both carry the format's signature.
pub fn is_enrichment(path: &str, local_head: &[u8], remote_head: &[u8]) -> bool {
    format_of(path).is_some_and(|f| has_signature(f, local_head) && has_signature(f, remote_head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        let cases = [
            ("a.docx", Some(Format::Zip)),
            ("dir/Report.XLSM", Some(Format::Zip)),
            ("slides.pptx", Some(Format::Zip)),
            ("notes.odt", Some(Format::Zip)),
            ("scan.pdf", Some(Format::Pdf)),
            ("data.bin", None),
            ("archive.zip", None),
            ("readme.txt", None),
            (".pdf", None),
            ("docx", None),
            ("x.docx/inner.bin", None),
        ];
        for (path, want) in cases {
            assert_eq!(format_of(path), want, "{path}");
        }
    }

    #[test]
    fn enrichment_needs_both_signatures() {
        let zip = b"PK\x03\x04rest";
        let pdf = b"%PDF-1.7";
        assert!(is_enrichment("a.docx", zip, zip));
        assert!(is_enrichment("a.pdf", pdf, pdf));
        // Committed bytes are no longer the format: corruption, not enrichment.
        assert!(!is_enrichment("a.docx", zip, b"garbage"));
        // What was sent was not the format either.
        assert!(!is_enrichment("a.docx", b"hello", zip));
        assert!(!is_enrichment("a.pdf", zip, zip));
        // Not an enriched type at all.
        assert!(!is_enrichment("a.bin", zip, zip));
        assert!(!is_enrichment("a.docx", b"", b""));
    }
}
