//! What SharePoint does to some files after their upload is committed, as the emulator's
//! `enrich` and `corrupt_commits` field knobs (`field.rs`).
//!
//! - **Enrichment** (`enrich: true`): SharePoint rewrites Office Open XML, OpenDocument and PDF
//!   files in a document library to embed column metadata, so the stored size and quickXorHash
//!   differ from what the client sent while the file stays a valid document. The emulator
//!   imitates it without parsing the document: a ZIP package (OOXML/ODF) gets its end-of-central-
//!   directory comment extended (the package still opens), a PDF gets a comment line appended
//!   after `%%EOF` (readers ignore it). Only names with those extensions whose bytes open with the
//!   format's signature are touched, as on the service.
//! - **Corruption** (`corrupt_commits: true`): the first byte of every committed file is
//!   inverted: same size, different hash, for tests of a real mismatch.
//!
//! Both act on the session's complete temp file just before it becomes the item's content;
//! the caller re-hashes it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Added by the emulator's enrichment.
const MARK: &[u8] = b" enriched by the SharePoint emulator";

/// Extensions SharePoint enriches; `true` for ZIP packages, `false` for PDF.
const ENRICHED: &[(&str, bool)] = &[
    ("docx", true),
    ("docm", true),
    ("dotx", true),
    ("dotm", true),
    ("xlsx", true),
    ("xlsm", true),
    ("xltx", true),
    ("xltm", true),
    ("pptx", true),
    ("pptm", true),
    ("potx", true),
    ("potm", true),
    ("ppsx", true),
    ("ppsm", true),
    ("odt", true),
    ("ods", true),
    ("odp", true),
    ("pdf", false),
];

/// End-of-central-directory record: signature, fixed part, longest comment.
const EOCD_SIG: &[u8] = b"PK\x05\x06";
const EOCD_LEN: u64 = 22;
const MAX_COMMENT: u64 = 65_535;

/// Rewrite `path` (the content of an item named `name`) as SharePoint's enrichment would.
/// Returns whether it changed the file.
pub fn enrich(path: &Path, name: &str) -> io::Result<bool> {
    let Some(zip) = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .and_then(|e| ENRICHED.iter().find(|(x, _)| *x == e).map(|(_, z)| *z))
    else {
        return Ok(false);
    };
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 5];
    if len < head.len() as u64 {
        return Ok(false);
    }
    f.read_exact_at(&mut head, 0)?;
    if zip && head.starts_with(b"PK\x03\x04") {
        extend_zip_comment(&mut f, len)?;
        Ok(true)
    } else if !zip && head.starts_with(b"%PDF-") {
        f.seek(SeekFrom::End(0))?;
        f.write_all(b"\n%")?;
        f.write_all(MARK)?;
        f.write_all(b"\n")?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Extend the ZIP comment in the end-of-central-directory record, or append the mark when
/// the package has none (or its comment is full).
fn extend_zip_comment(f: &mut File, len: u64) -> io::Result<()> {
    let tail_len = len.min(EOCD_LEN + MAX_COMMENT);
    let mut tail = vec![0u8; tail_len as usize];
    f.seek(SeekFrom::Start(len - tail_len))?;
    f.read_exact(&mut tail)?;
    let eocd = tail
        .windows(EOCD_SIG.len())
        .rposition(|w| w == EOCD_SIG)
        .filter(|&i| i as u64 + EOCD_LEN <= tail_len);
    if let Some(i) = eocd {
        let at = len - tail_len + i as u64;
        let comment = u64::from(u16::from_le_bytes([tail[i + 20], tail[i + 21]]));
        let new_len = comment + MARK.len() as u64;
        if new_len <= MAX_COMMENT {
            // The comment runs to the end of the file in a well-formed package.
            f.set_len(at + EOCD_LEN + comment)?;
            f.write_all_at(&(new_len as u16).to_le_bytes(), at + 20)?;
            f.write_all_at(MARK, at + EOCD_LEN + comment)?;
            return Ok(());
        }
    }
    f.seek(SeekFrom::End(0))?;
    f.write_all(MARK)
}

/// Invert the first byte of `path` (same size, different content).
pub fn corrupt(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    if f.read_at(&mut b, 0)? == 1 {
        f.write_all_at(&[!b[0]], 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, data).unwrap();
        (d, p)
    }

    /// A minimal ZIP: one local header stand-in, then an empty EOCD with no comment.
    fn zip_bytes() -> Vec<u8> {
        let mut v = b"PK\x03\x04body".to_vec();
        v.extend_from_slice(EOCD_SIG);
        v.extend_from_slice(&[0u8; 18]);
        v
    }

    #[test]
    fn zip_comment_grows_and_stays_well_formed() {
        let orig = zip_bytes();
        let (_d, p) = tmp(&orig);
        assert!(enrich(&p, "Report.DOCX").unwrap());
        let after = std::fs::read(&p).unwrap();
        assert_eq!(after.len(), orig.len() + MARK.len());
        let i = orig.len() - EOCD_LEN as usize;
        assert_eq!(&after[..i + 20], &orig[..i + 20]);
        assert_eq!(
            u16::from_le_bytes([after[i + 20], after[i + 21]]) as usize,
            MARK.len()
        );
        assert!(after.ends_with(MARK));
    }

    #[test]
    fn pdf_gets_a_trailing_comment_and_others_are_left_alone() {
        let (_d, p) = tmp(b"%PDF-1.7\n%%EOF\n");
        assert!(enrich(&p, "scan.pdf").unwrap());
        assert!(std::fs::read(&p).unwrap().len() > 15);
        for (name, data) in [
            ("a.bin", zip_bytes()),
            ("a.docx", b"not a zip".to_vec()),
            ("a.pdf", zip_bytes()),
        ] {
            let (_d, p) = tmp(&data);
            assert!(!enrich(&p, name).unwrap(), "{name}");
            assert_eq!(std::fs::read(&p).unwrap(), data, "{name}");
        }
    }

    #[test]
    fn corrupt_keeps_the_size() {
        let (_d, p) = tmp(b"abc");
        corrupt(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), vec![!b'a', b'b', b'c']);
    }
}
