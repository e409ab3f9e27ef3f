//! The HTTP/1.1 wire format: reading a request head (line and header limits, `Content-Length`
//! required, keep-alive by version and `Connection`) and writing a response, whole or with
//! its [`super::Interrupt`] (silence before the status line or after part of the body, then
//! perhaps a reset), file bodies paced by the rate limiter.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::SystemTime;

use super::body::RateLimiter;
use super::hold::{hold, reset, Held};
use super::{Body, Request, Response};

const MAX_HEADER_LINE: u64 = 16 * 1024;
const MAX_HEADERS: usize = 100;

pub(super) enum HeadError {
    Io,
    Bad(u16, &'static str),
}

pub(super) fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>, HeadError> {
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
pub(super) fn read_head(
    reader: &mut BufReader<TcpStream>,
) -> Result<Option<(Request, bool)>, HeadError> {
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

pub(super) fn reason(status: u16) -> &'static str {
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

pub(super) fn write_response(
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
