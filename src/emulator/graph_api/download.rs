//! Pre-authenticated download URLs: `GET …/content` mints a token valid for an hour and
//! redirects to `/download/{token}`, which serves the file without a bearer token (the token
//! is the capability), whole or one `Range` (416 when unsatisfiable), with the download
//! faults and read faults applied.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::time::{Duration, Instant};

use super::{method_not_allowed, not_found};
use crate::emulator::errors::ApiError;
use crate::emulator::faults::{Fault, Trigger};
use crate::emulator::http::{Body, Reply, Request, Response};
use crate::emulator::state::{lock, EmulatorState};
use crate::emulator::store::{random_string, ALNUM};

const DOWNLOAD_TTL: Duration = Duration::from_secs(3600);

/// The 302 to a fresh download URL of the file `item_id`.
pub(super) fn redirect(shared: &EmulatorState, item_id: String) -> Reply {
    let token = random_string(64, ALNUM);
    lock(&shared.downloads).insert(token.clone(), (item_id, Instant::now() + DOWNLOAD_TTL));
    Reply::Respond(
        Response::new(302).with_header("Location", format!("{}/download/{token}", shared.base_url)),
    )
}

/// A `Range` header that cannot be served: answer 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parse `Range: bytes=…` against `size` → Some((start, len)), None for "serve it all".
pub fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multipart ranges: serve the whole file
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        let n = n.min(size);
        return Ok(Some((size - n, n)));
    }
    let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
    if start >= size {
        return Err(Unsatisfiable);
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        let e: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if e < start {
            return Err(Unsatisfiable);
        }
        e.min(size - 1)
    };
    Ok(Some((start, end - start + 1)))
}

/// `GET /download/{token}` (no auth: the token is the capability).
pub fn handle_download(shared: &EmulatorState, req: &Request) -> Reply {
    let token = req.path.strip_prefix("/download/").unwrap_or("");
    let item_id = {
        let mut d = lock(&shared.downloads);
        let now = Instant::now();
        d.retain(|_, (_, exp)| *exp > now);
        d.get(token).map(|(id, _)| id.clone())
    };
    let Some(item_id) = item_id else {
        return Reply::Respond(
            ApiError::new(
                401,
                "unauthenticated",
                "The download link is invalid or expired.",
            )
            .to_response(),
        );
    };
    if req.method != "GET" && req.method != "HEAD" {
        return Reply::Respond(method_not_allowed().to_response());
    }
    match shared.decide(Trigger::Download).fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            shared.stat(|s| s.errors_injected += 1);
            return Reply::Respond(ApiError::injected(status, retry_after).to_response());
        }
        Fault::Drop { .. } => {
            shared.stat(|s| s.drops += 1);
            return Reply::Drop;
        }
        _ => {}
    }
    let (path, size, name) = {
        let store = lock(&shared.store);
        match store.get(&item_id) {
            Some(it) if !it.folder => (store.blob_path(&it.id), it.size, it.name.clone()),
            _ => return Reply::Respond(not_found().to_response()),
        }
    };
    if let Some(page) = crate::emulator::read_faults::html_page(shared, &name) {
        return Reply::Respond(page);
    }
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(_) => return Reply::Respond(not_found().to_response()),
    };
    shared.stat(|s| s.downloads += 1);
    let asked = req.header("range");
    let range = match asked
        .filter(|_| !crate::emulator::read_faults::ignore_range(shared, asked.is_some()))
    {
        None => None,
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(Unsatisfiable) => {
                return Reply::Respond(
                    ApiError::new(
                        416,
                        "invalidRange",
                        "The requested range is not satisfiable.",
                    )
                    .to_response()
                    .with_header("Content-Range", format!("bytes */{size}")),
                )
            }
        },
    };
    let mut resp = match range {
        None => {
            let mut r = Response::new(200);
            r.body = Body::File(file, size);
            r
        }
        Some((start, len)) => {
            if file.seek(SeekFrom::Start(start)).is_err() {
                return Reply::Respond(not_found().to_response());
            }
            let mut r = Response::new(206).with_header(
                "Content-Range",
                format!("bytes {start}-{}/{size}", start + len - 1),
            );
            r.body = Body::File(file, len);
            r
        }
    };
    resp.headers
        .push(("Content-Type".into(), "application/octet-stream".into()));
    resp.headers.push(("Accept-Ranges".into(), "bytes".into()));
    let len = range.map_or(size, |(_, len)| len);
    crate::emulator::read_faults::maybe_cut(shared, &mut resp, len);
    Reply::Respond(resp)
}
