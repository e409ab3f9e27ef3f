//! Request bodies: [`BodyReader`], the body as a `Read` limited to `Content-Length` (it
//! notes a client that went away mid-body), and [`RateLimiter`], the bandwidth limit shared by
//! body reads and download writes over all connections.

use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::hold::{hold, Held};

/// Shared pacing of body reads and download writes (bytes per second over all connections).
pub struct RateLimiter {
    rate: AtomicU64,
    next_free: Mutex<Instant>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            rate: AtomicU64::new(0),
            next_free: Mutex::new(Instant::now()),
        }
    }
}

impl RateLimiter {
    pub fn set_rate(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
    }

    /// Largest chunk to move at once (small under low limits so pacing stays smooth).
    pub fn chunk(&self) -> usize {
        match self.rate.load(Ordering::Relaxed) {
            0 => 64 * 1024,
            r => (r / 20).clamp(512, 64 * 1024) as usize,
        }
    }

    /// Account for `n` bytes moved; sleeps so the total rate stays under the limit.
    pub fn consume(&self, n: usize) {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 || n == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(n as f64 / rate as f64);
        let until = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = if *next > now { *next } else { now };
            *next = start + cost;
            *next
        };
        let now = Instant::now();
        if until > now {
            std::thread::sleep(until - now);
        }
    }
}

/// The request body as a stream, limited to `Content-Length`, paced by the rate limiter.
pub struct BodyReader<'a> {
    inner: &'a mut BufReader<TcpStream>,
    remaining: u64,
    limiter: &'a RateLimiter,
    read_total: u64,
    broken: bool,
}

impl<'a> BodyReader<'a> {
    /// A reader of the `remaining` body bytes of the request being served on `inner`.
    pub(super) fn new(
        inner: &'a mut BufReader<TcpStream>,
        remaining: u64,
        limiter: &'a RateLimiter,
    ) -> BodyReader<'a> {
        BodyReader {
            inner,
            remaining,
            limiter,
            read_total: 0,
            broken: false,
        }
    }

    /// The client closed or failed during the body: the connection is unusable.
    pub(super) fn broken(&self) -> bool {
        self.broken
    }

    /// Body bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Body bytes read by the handler so far.
    pub fn read_total(&self) -> u64 {
        self.read_total
    }

    /// Hold the request without reading its body (a stall): see [`hold`].
    pub fn hold(&self, d: Option<Duration>) -> Held {
        hold(self.inner.get_ref(), d)
    }

    /// Read the whole (small) body; refuses bodies over `max`.
    pub fn read_all(&mut self, max: u64) -> io::Result<Vec<u8>> {
        if self.remaining > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        let mut v = Vec::with_capacity(self.remaining as usize);
        self.read_to_end(&mut v)?;
        Ok(v)
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.limiter.chunk())
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                self.broken = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed during body",
                ));
            }
            Ok(n) => n,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        self.remaining -= n as u64;
        self.read_total += n as u64;
        self.limiter.consume(n);
        Ok(n)
    }
}
