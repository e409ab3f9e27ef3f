//! Ranged downloads that never hand a reader the wrong bytes (field-reference entry 18) and
//! survive a connection cut mid-body.
//!
//! Every answer is checked before its body is used ([`check`], pure): 206 must carry a
//! `Content-Range` that starts at the byte asked for and ends where the request (or the file)
//! ends, with a matching `Content-Length`; 200 means the server ignored `Range` and sends the
//! whole file (its `Content-Length` is the file's size: the wanted slice is cut out of it);
//! `text/html` for a file whose name is not a web page is an error page, never file data;
//! 416 is the end of the file. A body cut short (reset, stall past the idle timeout, fewer
//! bytes than announced) keeps what arrived and asks again from the first missing byte, at
//! the pre-authenticated URL already known; attempts that move no byte are bounded
//! ([`MAX_FRUITLESS`]), and so is the whole read ([`MAX_ATTEMPTS`]); then the read fails
//! with a transport error (EIO) saying how far it got. Download URLs carry their own
//! credentials: they get no Authorization header and appear in logs only redacted.

use std::io::{self, Read};
use std::time::Instant;

use reqwest::blocking::Response;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::Method;

use super::api::GraphApi;
use super::http::error_from_response;
use super::idle::BoundedReader;
use crate::redact::SecretUrl;
use crate::remote::RemoteError;

/// Attempts in a row that move no byte before a read gives up.
pub const MAX_FRUITLESS: u32 = 3;
/// Attempts of one read in all (each after a cut resumes where the previous stopped).
pub const MAX_ATTEMPTS: u32 = 12;

/// What an answer's headers allow taking from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Body bytes to skip first (200: the server sent the file from its start).
    pub skip: u64,
    /// Body bytes that are the wanted data (0: the file ends before the offset).
    pub take: u64,
}

/// The headers of one answer that [`check`] looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub content_range: Option<&'a str>,
    pub content_length: Option<u64>,
}

/// Names whose content is legitimately served as `text/html`.
fn is_web_page(name: &str) -> bool {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    matches!(
        ext.as_deref(),
        Some("htm" | "html" | "xhtml" | "shtml" | "mht" | "mhtml" | "aspx" | "asp" | "hta")
    )
}

/// `bytes a-b/total` (`total` may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.trim().split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (a <= b && total.is_none_or(|t| b < t)).then_some((a, b, total))
}

/// Check an answer to `Range: bytes={offset}-{offset+len-1}` (`len` > 0) for a file named
/// `name`. `Ok(plan)` for 206/200/416 answers that fit the request; `Err(why)` for an answer
/// that must not reach a reader; other statuses are the caller's (`Err` with status).
pub fn check(offset: u64, len: u64, name: &str, head: Head<'_>) -> Result<Plan, String> {
    let html = head
        .content_type
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("text/html"));
    if html && !is_web_page(name) && matches!(head.status, 200 | 206) {
        return Err(format!(
            "the server answered {} with an HTML page ({} bytes) instead of the file",
            head.status,
            head.content_length
                .map_or_else(|| "unknown".to_string(), |n| n.to_string())
        ));
    }
    let want_end = offset + len - 1; // inclusive
    match head.status {
        206 => {
            let cr = head.content_range.ok_or("206 without Content-Range")?;
            let (a, b, total) =
                parse_content_range(cr).ok_or_else(|| format!("bad Content-Range {cr:?}"))?;
            let expected_end = total.map_or(want_end, |t| want_end.min(t - 1));
            if a != offset || b != expected_end {
                return Err(format!(
                    "Content-Range {cr:?} does not match the bytes asked for ({offset}-{want_end})"
                ));
            }
            let n = b - a + 1;
            if head.content_length.is_some_and(|cl| cl != n) {
                return Err(format!(
                    "Content-Length {} does not match Content-Range {cr:?}",
                    head.content_length.unwrap_or(0)
                ));
            }
            Ok(Plan { skip: 0, take: n })
        }
        // Range ignored: the whole file, whose size is the Content-Length.
        200 => match head.content_length {
            Some(size) => Ok(Plan {
                skip: offset.min(size),
                take: size.saturating_sub(offset).min(len),
            }),
            None => Ok(Plan {
                skip: offset,
                take: len,
            }),
        },
        416 => Ok(Plan { skip: 0, take: 0 }),
        s => Err(format!("status {s}")),
    }
}

/// Why one attempt ended.
enum Attempt {
    /// The plan was read whole.
    Done,
    /// Cut after `got` more bytes (kept); try again from there.
    Cut { got: u64, why: String },
}

/// Read `plan` from `resp` into `out`: skip, then take. A failure keeps what arrived.
fn read_plan<R: Read>(resp: R, plan: Plan, deadline: Instant, out: &mut Vec<u8>) -> Attempt {
    let mut body = BoundedReader::new(resp, deadline, plan.skip + plan.take);
    let mut skipped = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let before = out.len() as u64;
    loop {
        let got = out.len() as u64 - before;
        if got >= plan.take {
            return Attempt::Done;
        }
        let want = if skipped < plan.skip {
            (plan.skip - skipped).min(buf.len() as u64)
        } else {
            (plan.take - got).min(buf.len() as u64)
        } as usize;
        match body.read(&mut buf[..want]) {
            Ok(0) => {
                return Attempt::Cut {
                    got,
                    why: "the body ended early".into(),
                }
            }
            Ok(n) if skipped < plan.skip => skipped += n as u64,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let why = match e.kind() {
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "stalled".to_string(),
                    k => format!("{k}"),
                };
                return Attempt::Cut { got, why };
            }
        }
    }
}

/// A ranged download of `len` (> 0) bytes at `offset` of the file `name` whose Graph
/// `…/content` URL is `content_url`; fewer bytes only at the end of the file.
pub fn read_range(
    api: &GraphApi,
    content_url: &str,
    name: &str,
    context: &str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, RemoteError> {
    let timeouts = api.http.timeouts;
    let deadline = Instant::now() + timeouts.transfer;
    let mut out: Vec<u8> = Vec::with_capacity(len.min(16 << 20) as usize);
    // The pre-authenticated URL of the 302, reused to resume (valid for an hour).
    let mut location: Option<SecretUrl> = None;
    let (mut attempts, mut fruitless) = (0u32, 0u32);
    let mut last_problem = String::new();
    loop {
        let pos = offset + out.len() as u64;
        let left = len - out.len() as u64;
        if left == 0 {
            return Ok(out);
        }
        if attempts >= MAX_ATTEMPTS || fruitless >= MAX_FRUITLESS || Instant::now() >= deadline {
            log::warn!(
                "{context}: giving up at byte {pos} ({} of {len} bytes at {offset}) after \
                 {attempts} attempts: {last_problem}",
                out.len()
            );
            return Err(RemoteError::Transport(format!(
                "{context}: download failed at byte {pos} after {attempts} attempts \
                 ({last_problem})"
            )));
        }
        attempts += 1;
        if attempts > 1 {
            log::debug!("{context}: asking again from byte {pos} ({last_problem})");
        }
        let range = format!("bytes={pos}-{}", pos + left - 1);
        let resp = match fetch(api, content_url, &mut location, &range, context) {
            Ok(r) => r,
            Err(e @ RemoteError::Transport(_)) => {
                fruitless += 1;
                last_problem = e.to_string();
                continue;
            }
            Err(e) => return Err(e),
        };
        let header = |h| resp.headers().get(h).and_then(|v| v.to_str().ok());
        let head = Head {
            status: resp.status().as_u16(),
            content_type: header(CONTENT_TYPE),
            content_range: header(CONTENT_RANGE),
            content_length: header(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
        };
        let plan = match check(pos, left, name, head) {
            Ok(p) => p,
            Err(why) if matches!(head.status, 200 | 206) => {
                // Never file data; drop this link (the page may be the link's own error).
                log::warn!("{context}: {why}; not used as file data");
                location = None;
                fruitless += 1;
                last_problem = why;
                continue;
            }
            Err(_) => return Err(error_from_response(resp, context)),
        };
        if plan.take == 0 {
            return Ok(out); // the end of the file
        }
        match read_plan(resp, plan, deadline, &mut out) {
            Attempt::Done => {
                // A file shorter than asked ends here.
                if plan.take < left {
                    return Ok(out);
                }
            }
            Attempt::Cut { got, why } => {
                fruitless = if got == 0 { fruitless + 1 } else { 0 };
                last_problem = format!("cut after {got} bytes: {why}");
            }
        }
    }
}

/// One GET of `range`: at the known download URL, or through Graph's `…/content` and its
/// 302 (followed by hand, without the bearer token).
fn fetch(
    api: &GraphApi,
    content_url: &str,
    location: &mut Option<SecretUrl>,
    range: &str,
    context: &str,
) -> Result<Response, RemoteError> {
    let idle = api.http.timeouts.idle;
    if let Some(url) = location.as_ref() {
        let req = api
            .http
            .request(Method::GET, url.expose())
            .header(RANGE, range)
            .timeout(idle);
        let resp = api.http.send(req, &url.redacted())?;
        if !matches!(resp.status().as_u16(), 401 | 403 | 404 | 410) {
            return Ok(resp);
        }
        // The link expired: through Graph again.
        *location = None;
    }
    let resp = api.send(
        Method::GET,
        content_url,
        |r| r.header(RANGE, range),
        context,
    )?;
    if !resp.status().is_redirection() {
        return Ok(resp);
    }
    let target = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RemoteError::Protocol(format!("{context}: redirect without Location")))?;
    let target = url::Url::parse(content_url)
        .and_then(|b| b.join(target))
        .map_err(|_| RemoteError::Protocol("download redirect to an invalid URL".into()))?;
    let url = SecretUrl::new(target.as_str());
    let req = api
        .http
        .request(Method::GET, url.expose())
        .header(RANGE, range)
        .timeout(idle);
    let resp = api.http.send(req, &url.redacted())?;
    *location = Some(url);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(
        status: u16,
        ct: Option<&'a str>,
        cr: Option<&'a str>,
        cl: Option<u64>,
    ) -> Head<'a> {
        Head {
            status,
            content_type: ct,
            content_range: cr,
            content_length: cl,
        }
    }

    #[test]
    fn answers_are_checked_before_use() {
        let bin = Some("application/octet-stream");
        let html = Some("text/html; charset=utf-8");
        let ok = |skip, take| Ok(Plan { skip, take });
        // (offset, len, name, head) → plan or error (None: any error)
        type Row<'a> = (u64, u64, &'a str, Head<'a>, Option<Result<Plan, String>>);
        let table: Vec<Row> = vec![
            // 206 exactly as asked.
            (
                100,
                50,
                "a.bin",
                head(206, bin, Some("bytes 100-149/1000"), Some(50)),
                Some(ok(0, 50)),
            ),
            // 206 clamped at the end of the file.
            (
                990,
                50,
                "a.bin",
                head(206, bin, Some("bytes 990-999/1000"), Some(10)),
                Some(ok(0, 10)),
            ),
            // Unknown total.
            (
                0,
                10,
                "a.bin",
                head(206, bin, Some("bytes 0-9/*"), None),
                Some(ok(0, 10)),
            ),
            // 206 starting elsewhere, or shorter than asked, or lying about its length.
            (
                100,
                50,
                "a.bin",
                head(206, bin, Some("bytes 0-49/1000"), Some(50)),
                None,
            ),
            (
                100,
                50,
                "a.bin",
                head(206, bin, Some("bytes 100-120/1000"), Some(21)),
                None,
            ),
            (
                100,
                50,
                "a.bin",
                head(206, bin, Some("bytes 100-149/1000"), Some(397)),
                None,
            ),
            (100, 50, "a.bin", head(206, bin, None, Some(50)), None),
            (
                100,
                50,
                "a.bin",
                head(206, bin, Some("items 1-2"), Some(50)),
                None,
            ),
            // Range ignored: the slice of the whole file.
            (
                100,
                50,
                "a.bin",
                head(200, bin, None, Some(1000)),
                Some(ok(100, 50)),
            ),
            (
                990,
                50,
                "a.bin",
                head(200, bin, None, Some(1000)),
                Some(ok(990, 10)),
            ),
            (
                1000,
                50,
                "a.bin",
                head(200, bin, None, Some(1000)),
                Some(ok(1000, 0)),
            ),
            // An HTML page is never file data, whatever its length or status...
            (0, 4 << 20, "a.bin", head(200, html, None, Some(397)), None),
            (0, 100, "a.bin", head(200, html, None, Some(397)), None),
            (
                0,
                100,
                "a.bin",
                head(206, html, Some("bytes 0-99/397"), Some(100)),
                None,
            ),
            // ...unless the file is a web page.
            (
                0,
                100,
                "index.HTML",
                head(200, html, None, Some(397)),
                Some(ok(0, 100)),
            ),
            // Past the end.
            (
                2000,
                10,
                "a.bin",
                head(416, None, Some("bytes */1000"), None),
                Some(ok(0, 0)),
            ),
            // Anything else is the caller's error.
            (0, 10, "a.bin", head(503, html, None, None), None),
        ];
        for (offset, len, name, h, want) in table {
            let got = check(offset, len, name, h);
            match want {
                Some(w) => assert_eq!(got, w, "{offset}+{len} {name} {h:?}"),
                None => assert!(got.is_err(), "{offset}+{len} {name} {h:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
    }

    /// A body that yields `n` bytes then fails like a reset connection.
    struct Cut(u64);
    impl Read for Cut {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
            }
            let n = (buf.len() as u64).min(self.0).min(7) as usize;
            buf[..n].fill(b'x');
            self.0 -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_cut_body_keeps_what_arrived() {
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let mut out = b"ab".to_vec();
        // Skip 5 of the 20 bytes that come, keep 15, then the reset.
        match read_plan(Cut(20), Plan { skip: 5, take: 50 }, far, &mut out) {
            Attempt::Cut { got, why } => {
                assert_eq!(got, 15);
                assert!(why.contains("reset"), "{why}");
            }
            Attempt::Done => panic!("not done"),
        }
        assert_eq!(out.len(), 17);
        match read_plan(Cut(100), Plan { skip: 0, take: 30 }, far, &mut out) {
            Attempt::Done => assert_eq!(out.len(), 47),
            Attempt::Cut { why, .. } => panic!("{why}"),
        }
        // The whole-read deadline passed: a cut ("stalled"), nothing taken.
        let past = Instant::now() - std::time::Duration::from_millis(1);
        match read_plan(Cut(100), Plan { skip: 0, take: 30 }, past, &mut out) {
            Attempt::Cut { got, why } => assert_eq!((got, why.as_str()), (0, "stalled")),
            Attempt::Done => panic!("not done"),
        }
    }
}
