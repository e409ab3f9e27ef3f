//! A small blocking HTTP/1.1 server on `std::net::TcpListener`, one thread per connection.
//!
//! Why not tiny_http: the emulator must be able to read *part* of a request body, keep those
//! bytes, and then reset the connection without sending any response, exactly as a client
//! sees a failing SharePoint front end; and it must pace body reads for bandwidth limits. This
//! layer gives handlers the body as a `Read` ([`BodyReader`]) and lets them answer
//! [`Reply::Drop`]. Invariants: requests need `Content-Length` (chunked bodies get 411 and a
//! close); keep-alive is the default; whatever body a handler leaves unread is drained before
//! the response (so clients that send whole bodies before reading still see the answer),
//! unless it is larger than [`DRAIN_MAX`] or the handler asked to close, in which case the
//! response carries `Connection: close` and the rest is never read. Listens on whatever listener it is given (the emulator binds 127.0.0.1).
//!
//! Stalls and cuts (field knobs, `stall.rs`, `read_faults.rs`): a handler can hold a request
//! without reading its body ([`BodyReader::hold`]), and a response can carry an
//! [`Interrupt`]: silence before the status line or after part of the body, for a while or
//! until the client gives up (closes), optionally followed by a reset instead of the rest.
//! Holding watches the socket with `poll(POLLRDHUP)`, so it ends the moment the client closes
//! and never reads the client's bytes; no hold lasts longer than [`MAX_HOLD`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Unread body bytes drained after a response is decided; above it the connection closes.
pub const DRAIN_MAX: u64 = 256 * 1024 * 1024;
const MAX_HEADER_LINE: u64 = 16 * 1024;
const MAX_HEADERS: usize = 100;
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a stall holds a connection ("forever" = until the client closes, or this).
pub const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Raw (still percent-encoded) path, without the query.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub content_length: u64,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response body.
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes from the file's current position.
    File(File, u64),
}

/// A response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub close: bool,
    /// Silence (and perhaps a reset) somewhere in this response (field knobs).
    pub interrupt: Option<Interrupt>,
}

/// Where a response stops, for how long, and whether it then resets instead of finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupt {
    /// Body bytes sent before the silence; `None`: nothing, not even the status line.
    pub after: Option<u64>,
    /// How long the silence lasts; `None`: until the client closes (at most [`MAX_HOLD`]).
    pub hold: Option<Duration>,
    /// Reset the connection after the silence instead of sending the rest.
    pub cut: bool,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The time was up and the client is still there.
    Elapsed,
    /// The client closed (or reset) the connection.
    Closed,
}

/// Stay silent on `stream` for `hold` (`None`: until the client closes, at most
/// [`MAX_HOLD`]), watching for the client closing without reading anything it sent.
pub fn hold(stream: &TcpStream, hold: Option<Duration>) -> Held {
    let limit = hold.unwrap_or(MAX_HOLD).min(MAX_HOLD);
    let end = Instant::now() + limit;
    loop {
        let now = Instant::now();
        if now >= end {
            return Held::Elapsed;
        }
        let wait = (end - now).min(Duration::from_millis(200));
        if peer_closed(stream, wait) {
            return Held::Closed;
        }
    }
}

/// Whether the peer closed or reset `stream`, waiting up to `wait` for it.
fn peer_closed(stream: &TcpStream, wait: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let mut fds = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd for the lifetime of the call.
        let n = unsafe { libc::poll(&mut fds, 1, wait.as_millis() as libc::c_int) };
        n > 0 && fds.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        std::thread::sleep(wait);
        false
    }
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            close: false,
            interrupt: None,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut r = Response::new(status);
        r.headers
            .push(("Content-Type".into(), "application/json".into()));
        r.body = Body::Bytes(value.to_string().into_bytes());
        r
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// What a handler decided.
pub enum Reply {
    Respond(Response),
    /// Reset the connection without any response.
    Drop,
}

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

impl BodyReader<'_> {
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

/// Serves one request at a time per connection.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request, body: &mut BodyReader<'_>) -> Reply;
}

/// A running listener; [`Server::shutdown`] stops accepting and resets open connections.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(
        listener: TcpListener,
        handler: Arc<dyn Handler>,
        limiter: Arc<RateLimiter>,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread = std::thread::Builder::new()
            .name("emu-accept".into())
            .spawn(move || accept_loop(listener, handler, limiter, stop2, conns2))?;
        Ok(Server {
            addr,
            stop,
            conns,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for s in conns.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    limiter: Arc<RateLimiter>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::debug!("emulator accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = stream.try_clone() {
            conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, clone);
        }
        let (h, l, c) = (handler.clone(), limiter.clone(), conns.clone());
        let spawned = std::thread::Builder::new()
            .name("emu-conn".into())
            .spawn(move || {
                serve_connection(stream, &*h, &l);
                c.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            });
        if let Err(e) = spawned {
            log::warn!("emulator could not spawn a connection thread: {e}");
            conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }
}

/// Reset (RST) rather than close (FIN): the client sees "connection reset".
fn reset(stream: &TcpStream) {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a valid, owned socket descriptor with a correctly sized
        // `linger` value; failure only means a FIN instead of an RST.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &lg as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_connection(stream: TcpStream, handler: &dyn Handler, limiter: &RateLimiter) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let _ = reader.get_ref().set_read_timeout(Some(IDLE_TIMEOUT));
        let (req, keep_alive) = match read_head(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(HeadError::Io) => return,
            Err(HeadError::Bad(status, msg)) => {
                let mut resp = Response::json(
                    status,
                    &serde_json::json!({"error":{"code":"invalidRequest","message":msg}}),
                );
                resp.close = true;
                let _ = write_response(&mut writer, resp, true, false, limiter);
                return;
            }
        };
        let _ = reader.get_ref().set_read_timeout(Some(BODY_TIMEOUT));
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = BodyReader {
            inner: &mut reader,
            remaining: req.content_length,
            limiter,
            read_total: 0,
            broken: false,
        };
        let reply = handler.handle(&req, &mut body);
        let mut resp = match reply {
            Reply::Drop => {
                reset(reader.get_ref());
                return;
            }
            Reply::Respond(r) => r,
        };
        if body.broken {
            return;
        }
        let unread = body.remaining;
        if unread > 0 {
            if unread <= DRAIN_MAX && !resp.close {
                let mut rest = (&mut reader).take(unread);
                match io::copy(&mut rest, &mut io::sink()) {
                    Ok(n) if n == unread => {}
                    _ => return,
                }
            } else {
                resp.close = true;
            }
        }
        let close = resp.close || !keep_alive;
        let head = req.method == "HEAD";
        if write_response(&mut writer, resp, close, head, limiter).is_err() || close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

enum HeadError {
    Io,
    Bad(u16, &'static str),
}

fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>, HeadError> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_HEADER_LINE)
        .read_until(b'\n', &mut line)
        .map_err(|_| HeadError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(HeadError::Bad(431, "header line too long"));
    }
    let s = String::from_utf8(line).map_err(|_| HeadError::Bad(400, "header not UTF-8"))?;
    Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()))
}

/// Read a request head. `Ok(None)` on a clean close between requests.
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Option<(Request, bool)>, HeadError> {
    let mut line = match read_line(reader)? {
        Some(l) => l,
        None => return Ok(None),
    };
    // Tolerate stray blank lines between requests.
    while line.is_empty() {
        line = match read_line(reader)? {
            Some(l) => l,
            None => return Ok(None),
        };
    }
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(HeadError::Bad(400, "malformed request line")),
    };
    let mut headers = Vec::new();
    loop {
        let l = read_line(reader)?.ok_or(HeadError::Io)?;
        if l.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HeadError::Bad(431, "too many headers"));
        }
        let (n, v) = l
            .split_once(':')
            .ok_or(HeadError::Bad(400, "malformed header"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if get("transfer-encoding").is_some() {
        return Err(HeadError::Bad(411, "Content-Length required"));
    }
    let content_length = match get("content-length") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| HeadError::Bad(400, "bad Content-Length"))?,
        None => 0,
    };
    let conn = get("connection").map(|v| v.to_ascii_lowercase());
    let keep_alive = match version {
        "HTTP/1.1" => conn.as_deref() != Some("close"),
        "HTTP/1.0" => conn.as_deref() == Some("keep-alive"),
        _ => return Err(HeadError::Bad(505, "HTTP version not supported")),
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (
            p.to_string(),
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect(),
        ),
        None => (target.to_string(), Vec::new()),
    };
    Ok(Some((
        Request {
            method: method.to_string(),
            path,
            query,
            headers,
            content_length,
        },
        keep_alive,
    )))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

fn write_response(
    w: &mut TcpStream,
    resp: Response,
    close: bool,
    head_only: bool,
    limiter: &RateLimiter,
) -> io::Result<()> {
    let len = match &resp.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, n) => *n,
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    head.push_str(&format!(
        "Date: {}\r\nContent-Length: {len}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    ));
    for (n, v) in &resp.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let interrupt = resp.interrupt;
    let closed = || io::Error::new(io::ErrorKind::ConnectionAborted, "client gave up");
    // Silence before the status line.
    if let Some(i) = interrupt.filter(|i| i.after.is_none()) {
        if hold(w, i.hold) == Held::Closed {
            return Err(closed());
        }
        if i.cut {
            reset(w);
            return Err(closed());
        }
    }
    // Silence after `pause_at` body bytes (never when the body is empty or not sent).
    let pause_at = interrupt
        .and_then(|i| i.after)
        .filter(|_| !head_only)
        .map(|a| a.min(len));
    let mut out = io::BufWriter::with_capacity(64 * 1024, &mut *w);
    out.write_all(head.as_bytes())?;
    if head_only {
        return out.flush();
    }
    // Only file bodies (downloads) are paced by the bandwidth limit, as before.
    let (mut src, paced): (Box<dyn Read>, bool) = match resp.body {
        Body::Bytes(b) => (Box::new(io::Cursor::new(b)), false),
        Body::File(f, n) => (Box::new(f.take(n)), true),
    };
    let mut buf = vec![0u8; if paced { limiter.chunk() } else { 64 * 1024 }];
    let mut sent = 0u64;
    let mut paused = false;
    loop {
        if let (Some(at), Some(i), false) = (pause_at, interrupt, paused) {
            if sent == at {
                paused = true;
                out.flush()?;
                let stream = out.get_ref();
                if hold(stream, i.hold) == Held::Closed {
                    return Err(closed());
                }
                if i.cut {
                    reset(stream);
                    return Err(closed());
                }
            }
        }
        if sent == len {
            break;
        }
        let mut want = buf.len() as u64;
        if let (Some(at), false) = (pause_at, paused) {
            want = want.min(at - sent).max(1);
        }
        let want = want.min(len - sent) as usize;
        let k = src.read(&mut buf[..want])?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than announced",
            ));
        }
        out.write_all(&buf[..k])?;
        if paced {
            limiter.consume(k);
        }
        sent += k as u64;
    }
    out.flush()
}
