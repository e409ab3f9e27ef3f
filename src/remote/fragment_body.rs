//! The body of one upload-session fragment PUT, read from the spool file as it is sent:
//! `len` bytes at `offset`, handed out in pieces of at most [`PIECE`] bytes, so an upload
//! holds a few pieces in memory whatever the fragment size and no fragment is ever copied
//! whole (issue 19). A body can be sent again (each [`FragmentBody::pieces`] starts afresh
//! from the file), which is what a retry of the same range needs.
//!
//! Each piece passes the pace first (`upload::byte_pace`: the mount-wide bandwidth limit's
//! hook; blocking, on the caller's thread). The sender (`graph/transfer.rs`) notes when the
//! connection took each piece and whether the file could not be read; the upload worker reads
//! that afterwards ([`FragmentBody::send_log`]) to size the next fragment
//! (`upload::fragment_size`) and to tell a spool read error from a network one.
//!
//! Test doubles read a body whole with [`FragmentBody::to_vec`]; tests build bodies from
//! bytes ([`FragmentBody::bytes`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::upload::byte_pace::{BytePace, NoPace};

/// Largest piece handed to the connection at once (and read from the file at once).
pub const PIECE: usize = 256 * 1024;

/// Where the bytes come from.
#[derive(Clone)]
enum Source {
    /// The spool file: bytes `offset..offset + len` of it.
    File(Arc<File>),
    /// Bytes in memory (tests, small callers): the whole fragment.
    Bytes(Bytes),
}

/// What happened while a body was sent (the latest send only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendLog {
    /// Pieces the connection took, with the time between one and the next.
    pub gaps: Vec<Duration>,
    /// When the sender handed over the last piece.
    pub finished: Option<Instant>,
    /// The body could not be read (the spool file changed or failed): not a network error.
    pub local_error: Option<String>,
}

/// One fragment's bytes; see the module documentation.
#[derive(Clone)]
pub struct FragmentBody {
    source: Source,
    offset: u64,
    len: u64,
    pace: Arc<dyn BytePace>,
    log: Arc<Mutex<SendLog>>,
}

impl std::fmt::Debug for FragmentBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragmentBody")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl FragmentBody {
    /// Bytes `offset..offset + len` of `file`.
    pub fn file(file: Arc<File>, offset: u64, len: u64) -> Self {
        FragmentBody {
            source: Source::File(file),
            offset,
            len,
            pace: Arc::new(NoPace),
            log: Arc::default(),
        }
    }

    /// `data` as the bytes of the file from `offset` on.
    pub fn bytes(offset: u64, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        FragmentBody {
            offset,
            len: data.len() as u64,
            source: Source::Bytes(data),
            pace: Arc::new(NoPace),
            log: Arc::default(),
        }
    }

    /// The same body, each piece passing `pace` first.
    pub fn with_pace(mut self, pace: Arc<dyn BytePace>) -> Self {
        self.pace = pace;
        self
    }

    /// First byte of the fragment in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes in the fragment.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, from the first byte: each paced, then read.
    pub fn pieces(&self) -> Pieces<'_> {
        Pieces { body: self, at: 0 }
    }

    /// The whole body in memory (test doubles only: it is what streaming avoids).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for piece in self.pieces() {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// A new send starts: forget the previous one's log.
    pub fn start_send(&self) {
        *self.lock() = SendLog::default();
    }

    /// The connection took a piece `gap` after the previous one (or after the start).
    pub fn note_piece(&self, gap: Duration) {
        self.lock().gaps.push(gap);
    }

    /// The last piece was handed over.
    pub fn note_finished(&self, at: Instant) {
        self.lock().finished = Some(at);
    }

    /// The body could not be read.
    pub fn note_local_error(&self, error: String) {
        self.lock().local_error = Some(error);
    }

    /// What the latest send saw.
    pub fn send_log(&self) -> SendLog {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SendLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read `n` bytes at `at` (relative to the fragment).
    fn read(&self, at: u64, n: usize) -> io::Result<Bytes> {
        match &self.source {
            Source::Bytes(b) => {
                // at + n ≤ len = b.len(), both in range.
                let start = at as usize;
                Ok(b.slice(start..start + n))
            }
            Source::File(f) => {
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, self.offset + at).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::new(e.kind(), "spool file changed: shorter than its size")
                    } else {
                        io::Error::new(e.kind(), format!("cannot read spool file: {e}"))
                    }
                })?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

/// The pieces of a body, in order; see [`FragmentBody::pieces`].
pub struct Pieces<'a> {
    body: &'a FragmentBody,
    at: u64,
}

impl Pieces<'_> {
    /// Bytes not yet handed out.
    pub fn remaining(&self) -> u64 {
        self.body.len - self.at
    }
}

impl Iterator for Pieces<'_> {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        let left = self.remaining();
        if left == 0 {
            return None;
        }
        // ≤ PIECE, so it fits in usize.
        let n = left.min(PIECE as u64) as usize;
        self.body.pace.take(n as u64);
        match self.body.read(self.at, n) {
            Ok(b) => {
                self.at += n as u64;
                Some(Ok(b))
            }
            Err(e) => {
                // Nothing more after an error.
                self.at = self.body.len;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting(AtomicU64, AtomicU64);
    impl BytePace for Counting {
        fn take(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::SeqCst);
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn temp_file(data: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        Arc::new(f)
    }

    #[test]
    fn a_file_range_comes_in_paced_pieces() {
        let data: Vec<u8> = (0..(3 * PIECE + 100)).map(|i| (i % 251) as u8).collect();
        let file = temp_file(&data);
        let pace = Arc::new(Counting(AtomicU64::new(0), AtomicU64::new(0)));
        let body = FragmentBody::file(file, 7, (2 * PIECE + 5) as u64).with_pace(pace.clone());
        let pieces: Vec<Bytes> = body.pieces().map(|p| p.unwrap()).collect();
        assert_eq!(
            pieces.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![PIECE, PIECE, 5]
        );
        assert_eq!(body.to_vec().unwrap(), &data[7..7 + 2 * PIECE + 5]);
        // Paced twice over (pieces, then to_vec), piece by piece.
        assert_eq!(pace.0.load(Ordering::SeqCst), 2 * (2 * PIECE + 5) as u64);
        assert_eq!(pace.1.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn a_short_file_is_a_local_error_and_ends_the_pieces() {
        let file = temp_file(&[1u8; 10]);
        let body = FragmentBody::file(file, 5, 10);
        let got: Vec<_> = body.pieces().collect();
        assert_eq!(got.len(), 1);
        let err = got.into_iter().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("spool file changed"), "{err}");
    }

    #[test]
    fn bytes_bodies_and_the_log() {
        let body = FragmentBody::bytes(100, vec![9u8; PIECE + 1]);
        assert_eq!((body.offset(), body.len()), (100, PIECE as u64 + 1));
        assert_eq!(body.pieces().count(), 2);
        body.note_piece(Duration::from_millis(3));
        body.note_local_error("x".into());
        assert_eq!(body.send_log().gaps.len(), 1);
        body.start_send();
        assert_eq!(body.send_log(), SendLog::default());
    }
}
