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
//!
//! Parts: `mod.rs` the request and response types, the server, its accept loop and the
//! per-connection loop; `wire.rs` request heads in, responses out; `body.rs` the body reader
//! and the rate limiter; `hold.rs` silences and resets.

mod body;
mod hold;
mod wire;

pub use body::{BodyReader, RateLimiter};
pub use hold::{hold, Held, Interrupt, MAX_HOLD};

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hold::reset;
use wire::{read_head, write_response, HeadError};

/// Unread body bytes drained after a response is decided; above it the connection closes.
pub const DRAIN_MAX: u64 = 256 * 1024 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

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
        let mut body = BodyReader::new(&mut reader, req.content_length, limiter);
        let reply = handler.handle(&req, &mut body);
        let mut resp = match reply {
            Reply::Drop => {
                reset(reader.get_ref());
                return;
            }
            Reply::Respond(r) => r,
        };
        if body.broken() {
            return;
        }
        let unread = body.remaining();
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
