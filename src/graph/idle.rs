//! Idle timeouts (field-reference entry 20: requests that connect and then move nothing):
//! the pieces that turn "no byte moved for a while" into a transport error the caller already
//! retries or resumes from, on top of the whole-request timeouts.
//!
//! - [`Progress`]: when a transfer last moved a byte, shared between the request body that is
//!   being sent (`transfer.rs`), the answer being read, and a watchdog. [`stalled`] is the
//!   pure rule: before the body is all handed over, or once the answer has started, nothing
//!   may stall longer than the idle timeout; between the last body byte and the first byte of
//!   the answer the server may take `answer_wait` (a final fragment's commit takes longer).
//! - [`BoundedReader`]: a response body read with reqwest's per-read timeout (reqwest's
//!   blocking `timeout` applies afresh to every read: an idle timeout) plus a whole-request
//!   deadline checked between reads and a size limit; errors name what stalled, never the URL.
//!
//! No locks: atomics only.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::remote::RemoteError;

/// Whether a transfer with no byte moved for `quiet` counts as stalled. Pure.
///
/// `body_done`: every request body byte was handed to the connection; `answered`: the
/// answer's status line is in.
pub fn stalled(
    quiet: Duration,
    body_done: bool,
    answered: bool,
    idle: Duration,
    answer_wait: Duration,
) -> bool {
    if body_done && !answered {
        quiet >= answer_wait
    } else {
        quiet >= idle
    }
}

/// When a transfer last moved a byte (shared by the body, the answer and the watchdog).
#[derive(Debug)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds after `origin` of the latest movement.
    last_ms: AtomicU64,
    /// Request body bytes handed to the connection.
    sent: AtomicU64,
    body_done: AtomicBool,
    answered: AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            body_done: AtomicBool::new(false),
            answered: AtomicBool::new(false),
        }
    }
}

impl Progress {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Some bytes of the request body were taken by the connection.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The whole request body was handed over; the answer wait starts now.
    pub fn body_done(&self) {
        self.body_done.store(true, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The answer's status line, or bytes of its body, arrived.
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Request body bytes handed over so far.
    pub fn sent_bytes(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `Some(what stalled)` when nothing moved for too long (see [`stalled`]).
    pub fn overdue(&self, idle: Duration, answer_wait: Duration) -> Option<String> {
        let quiet = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        );
        let body_done = self.body_done.load(Ordering::Relaxed);
        let answered = self.answered.load(Ordering::Relaxed);
        if !stalled(quiet, body_done, answered, idle, answer_wait) {
            return None;
        }
        Some(if answered {
            format!("the answer stalled (no data for {} s)", quiet.as_secs())
        } else if body_done {
            format!(
                "no answer {} s after the last byte was sent",
                quiet.as_secs()
            )
        } else {
            format!(
                "the upload stalled after {} bytes (no progress for {} s)",
                self.sent_bytes(),
                quiet.as_secs()
            )
        })
    }
}

/// A response body with a whole-request deadline and a size limit on top of the per-read
/// (idle) timeout of the reader underneath.
pub struct BoundedReader<R> {
    inner: R,
    deadline: Instant,
    left: u64,
    /// Bytes read so far.
    pub read: u64,
}

impl<R: Read> BoundedReader<R> {
    pub fn new(inner: R, deadline: Instant, limit: u64) -> Self {
        BoundedReader {
            inner,
            deadline,
            left: limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the whole-request time is up",
            ));
        }
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// A body read error as a transport error: its kind and what was read, never its text's URL.
pub fn body_error(what: &str, read: u64, e: &io::Error) -> RemoteError {
    let kind = match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "stalled".to_string(),
        k => format!("{k}"),
    };
    RemoteError::Transport(format!("{what}: interrupted after {read} bytes ({kind})"))
}

/// Read a whole (small) body: per-read idle timeout underneath, `deadline` for the whole,
/// at most `limit` bytes (more is an error).
pub fn read_all<R: Read>(
    inner: R,
    deadline: Instant,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RemoteError> {
    let mut r = BoundedReader::new(inner, deadline, limit.saturating_add(1));
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| body_error(what, r.read, &e))?;
    if out.len() as u64 > limit {
        return Err(RemoteError::Protocol(format!(
            "{what}: answer larger than {limit} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_rule() {
        let s = Duration::from_secs;
        let (idle, wait) = (s(30), s(90));
        // (quiet, body_done, answered) → stalled
        let table = [
            (s(29), false, false, false),
            (s(30), false, false, true), // sending, nothing taken for idle
            (s(60), true, false, false), // waiting for the answer: commit may take a while
            (s(90), true, false, true),
            (s(30), true, true, true), // reading the answer: idle again
            (s(29), true, true, false),
        ];
        for (quiet, done, answered, want) in table {
            assert_eq!(
                stalled(quiet, done, answered, idle, wait),
                want,
                "{quiet:?} {done} {answered}"
            );
        }
    }

    #[test]
    fn progress_names_what_stalled() {
        let p = Progress::default();
        assert_eq!(
            p.overdue(Duration::from_secs(60), Duration::from_secs(60)),
            None
        );
        p.sent(1000);
        let why = p.overdue(Duration::ZERO, Duration::from_secs(60)).unwrap();
        assert!(why.contains("after 1000 bytes"), "{why}");
        p.body_done();
        assert_eq!(p.overdue(Duration::ZERO, Duration::from_secs(60)), None);
        let why = p.overdue(Duration::ZERO, Duration::ZERO).unwrap();
        assert!(why.contains("no answer"), "{why}");
        p.answered();
        let why = p.overdue(Duration::ZERO, Duration::from_secs(60)).unwrap();
        assert!(why.contains("answer stalled"), "{why}");
    }

    /// A reader that yields `chunks` then fails as a timed-out socket would.
    struct Script(Vec<io::Result<Vec<u8>>>);
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            match self.0.remove(0) {
                Ok(v) => {
                    buf[..v.len()].copy_from_slice(&v);
                    Ok(v.len())
                }
                Err(e) => Err(e),
            }
        }
    }

    #[test]
    fn bounded_reader_limits_and_reports() {
        let far = Instant::now() + Duration::from_secs(60);
        let ok = Script(vec![Ok(b"abc".to_vec()), Ok(b"de".to_vec())]);
        assert_eq!(read_all(ok, far, 10, "x").unwrap(), b"abcde");
        let big = Script(vec![Ok(b"abc".to_vec()), Ok(b"de".to_vec())]);
        assert!(matches!(
            read_all(big, far, 4, "x"),
            Err(RemoteError::Protocol(_))
        ));
        let stall = Script(vec![
            Ok(b"abc".to_vec()),
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "https://secret/u?x",
            )),
        ]);
        let err = read_all(stall, far, 10, "listing").unwrap_err().to_string();
        assert!(err.contains("after 3 bytes (stalled)"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let past = Instant::now() - Duration::from_millis(1);
        let late = Script(vec![Ok(b"abc".to_vec())]);
        let err = read_all(late, past, 10, "x").unwrap_err().to_string();
        assert!(err.contains("stalled"), "{err}");
    }
}
