//! Upload sessions: createUploadSession and the upload URL (`/upload/{session}?tempauth=`),
//! enforcing the rules of protocol reference §1–§2 as strictly as SharePoint.
//!
//! Checks on a fragment PUT, in order: `Authorization` present → 401 + violation; unknown,
//! cancelled or expired session → 404 `uploadSessionNotFound`; wrong tempauth → 401; tempauth
//! expired → 401 `expiredToken`; bad `Content-Range` → 400; total ≠ the session's total →
//! 400 `fragmentLengthMismatch`; `Content-Length` ≠ range length → 400; fragment ≥ 60 MiB →
//! 400 `maxFragmentLengthExceeded`; a non-final fragment whose *length* is not a multiple of
//! 320 KiB → 400 (its *start* may be unaligned: after a partial acceptance that is legal);
//! another PUT in flight on the session → 416 + violation `parallel_put`; start ≠ next
//! expected byte → 416 `fragmentOverlap` / `fragmentOutOfOrder`. Each of the 400s and the
//! Authorization 401 is recorded as a violation. A 416 is only an *event* the first time: a
//! client that resumes after a partial acceptance may legitimately hit one before it GETs the
//! status; sending a mismatching fragment again with the same start, without a GET of the
//! status in between, is a `repeated_overlap` / `repeated_out_of_order` violation.
//!
//! Invariants: bytes of a session arrive strictly in order and are appended to its temp file
//! while being hashed (so the commit needs no second pass); `next` is the count of accepted
//! bytes, equal to the temp file's length; a PUT holds the session's `busy` flag, not its
//! lock, while streaming. A PUT cut off (client gone, or an injected drop) keeps what was
//! received, exactly like the partial acceptance real servers show (ODI#64, ODI#75).
//! Sessions live in memory only: after an emulator restart their URLs answer 404. A commit
//! refused by the store (409 `nameAlreadyExists` with `fail`, 507 quota) ends the session,
//! as on SharePoint: the client must create a new one. A parallel PUT is answered 416
//! `invalidRange`/`fragmentOverlap` (the bytes of the PUT in flight are not yet visible).
//! Injected faults are decided after the checks above, so strictness is never masked by them;
//! on the fragment that completes the file, a `commit` script entry is consulted when no
//! `put_fragment` entry fired (a `commit` drop keeps all bytes, commits, then resets). The
//! field knobs of `field_faults` (entries 11, 12, 14, 21–23) hook in here: load 400s at
//! createUploadSession, the failing or slow completing fragment (a session left `Broken`
//! reports `[]` and takes no more bytes; one told to restart expects `0-` again), column
//! validation at the commit, and withheld hashes / check-out right after it.
//!
//! One open session per path, as OneDrive for Business: createUploadSession on a path (same
//! parent folder, name ignoring case) that already has a session which is neither committed,
//! cancelled (`DELETE`) nor expired answers 409 `nameAlreadyExists` "Another upload session is
//! already open for this path.", whatever the conflictBehavior (counted in
//! `sessions_refused_path_busy`; the field knob `allow_parallel_sessions` lifts the rule). A
//! session expires after `session_ttl_secs` (fault configuration, default 900) without
//! activity: creation, each fragment PUT and each status GET slide the expiry forward, so it
//! is an idle lifetime. Expired sessions stop holding their path at once and are swept within
//! a second. `GET /_admin/sessions` lists the open ones by path (never by URL).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::errors::ApiError;
use super::faults::{Fault, RangesStyle, Trigger};
use super::http::{BodyReader, Reply, Request, Response};
use super::quickxor_ref::QuickXorRef;
use super::state::{lock, EmulatorState};
use super::store::{random_string, NewFile, ALNUM};
use crate::remote::Conflict;

use crate::protocol::{FRAGMENT_LIMIT, FRAGMENT_UNIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Open,
    /// All bytes received, deferCommit: waiting for `POST {uploadUrl}`.
    AwaitingCommit,
    /// The completing fragment failed without a commit and the session reports `[]`
    /// (field reference entry 12, `field_faults`): it takes no more bytes; only a new
    /// session uploads the file.
    Broken,
}

/// The last mismatching fragment start, to tell a one-off 416 from a client stuck in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mismatch {
    start: u64,
    overlap: bool,
}

/// One upload session.
pub struct Session {
    pub id: String,
    tempauth: String,
    pub drive_id: String,
    pub parent_id: String,
    pub name: String,
    conflict: Conflict,
    defer_commit: bool,
    fs_created: Option<i64>,
    fs_modified: Option<i64>,
    token_expires: Option<Instant>,
    pub expires: SystemTime,
    total: Option<u64>,
    next: u64,
    tmp: PathBuf,
    hasher: QuickXorRef,
    busy: bool,
    state: SessionState,
    last_mismatch: Option<Mismatch>,
}

impl Session {
    fn expired(&self) -> bool {
        SystemTime::now() > self.expires
    }

    fn token_expired(&self) -> bool {
        self.token_expires.is_some_and(|t| Instant::now() >= t)
    }

    fn slide(&mut self, ttl_secs: u64) {
        self.expires = SystemTime::now() + Duration::from_secs(ttl_secs);
    }

    fn ranges(&self, style: RangesStyle) -> Value {
        if self.state != SessionState::Open {
            return json!([]);
        }
        match (style, self.total) {
            (RangesStyle::Odb, Some(total)) => json!([format!("{}-{}", self.next, total - 1)]),
            _ => json!([format!("{}-", self.next)]),
        }
    }

    fn status_json(&self, style: RangesStyle) -> Value {
        json!({
            "expirationDateTime": fmt_system_time(self.expires),
            "nextExpectedRanges": self.ranges(style),
        })
    }

    /// Created with deferCommit.
    pub(super) fn deferred(&self) -> bool {
        self.defer_commit
    }

    /// The completing fragment failed without a commit (entry 12, `field_faults`): the
    /// session is broken (reports `[]`), or lost its bytes and expects the file from 0 again.
    pub(super) fn fail_final(&mut self, restart: bool) -> std::io::Result<()> {
        if !restart {
            self.state = SessionState::Broken;
            return Ok(());
        }
        OpenOptions::new().write(true).open(&self.tmp)?.set_len(0)?;
        self.next = 0;
        self.hasher = QuickXorRef::new();
        Ok(())
    }

    /// A short, non-secret label for logs and violations.
    fn label(&self) -> String {
        format!(
            "session {}… for '{}'",
            &self.id[..8.min(self.id.len())],
            self.name
        )
    }
}

pub fn fmt_system_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `bytes {start}-{end}/{total}` → (start, end inclusive, total).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end, total) = (digits(a)?, digits(b)?, digits(total)?);
    (start <= end && end < total).then_some((start, end, total))
}

/// What createUploadSession addresses.
pub struct SessionTarget {
    pub drive_id: String,
    pub parent_id: String,
    pub name: String,
    /// The item the URL named, if it exists (`items/{id}/createUploadSession` or by path).
    pub existing: Option<super::store::Item>,
}

/// `POST …/createUploadSession`.
pub fn create_session(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    target: SessionTarget,
) -> Result<Response, ApiError> {
    let raw = body
        .read_all(1 << 20)
        .map_err(|_| ApiError::bad_request("Request body too large or unreadable."))?;
    let doc: Value = if raw.iter().all(|b| b.is_ascii_whitespace()) {
        json!({})
    } else {
        serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("Invalid JSON body."))?
    };
    let item = doc.get("item").cloned().unwrap_or(json!({}));
    if let Some(n) = item.get("name") {
        if n.as_str() != Some(target.name.as_str()) {
            return Err(ApiError::bad_request(
                "The name in the request body does not match the name in the URL.",
            ));
        }
    }
    let conflict = match item
        .get("@microsoft.graph.conflictBehavior")
        .and_then(|v| v.as_str())
    {
        None => Conflict::Replace,
        Some(s) => parse_conflict(s)?,
    };
    let fsi = item.get("fileSystemInfo");
    let fs_created = super::graph_api::fs_info_time(fsi, "createdDateTime")?;
    let fs_modified = super::graph_api::fs_info_time(fsi, "lastModifiedDateTime")?;
    let defer_commit = match doc.get("deferCommit") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("deferCommit must be a boolean.")),
    };
    check_preconditions(req, target.existing.as_ref())?;
    check_locked(shared, &target.name)?;
    super::field_faults::before_create_session(shared, open_session_count(shared))?;
    let cfg = shared.faults();
    {
        let store = lock(&shared.store);
        store.precheck_file(&target.parent_id, &target.name, conflict)?;
        if let Some(q) = cfg.quota_bytes {
            if store.used_bytes() >= q {
                return Err(ApiError::quota());
            }
        }
    }
    match shared.decide(Trigger::CreateSession).fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            shared.stat(|s| s.errors_injected += 1);
            return Err(ApiError::injected(status, retry_after));
        }
        Fault::Drop { .. } => {
            shared.stat(|s| s.drops += 1);
            return Err(ApiError::new(0, "drop", ""));
        }
        _ => {}
    }
    let id = random_string(40, ALNUM);
    let tempauth = random_string(120, ALNUM);
    let tmp = lock(&shared.store).tmp_dir().join(format!("session-{id}"));
    File::create(&tmp).map_err(|e| ApiError::new(500, "generalException", e.to_string()))?;
    let session = Session {
        id: id.clone(),
        tempauth: tempauth.clone(),
        drive_id: target.drive_id,
        parent_id: target.parent_id,
        name: target.name,
        conflict,
        defer_commit,
        fs_created,
        fs_modified,
        token_expires: cfg
            .upload_url_ttl_secs
            .map(|s| Instant::now() + Duration::from_secs(s)),
        expires: SystemTime::now() + Duration::from_secs(cfg.session_ttl_secs),
        total: None,
        next: 0,
        tmp,
        hasher: QuickXorRef::new(),
        busy: false,
        state: SessionState::Open,
        last_mismatch: None,
    };
    let mut v = session.status_json(cfg.ranges_style);
    v["uploadUrl"] = json!(format!(
        "{}/upload/{id}?tempauth={tempauth}",
        shared.base_url
    ));
    let parallel_ok = shared.field().allow_parallel_sessions;
    {
        // Check and insert under one lock: two racing creates cannot both win.
        let mut sessions = lock(&shared.sessions);
        let holder = sessions
            .iter()
            .find(|(_, c)| {
                let o = lock(c);
                o.drive_id == session.drive_id
                    && o.parent_id == session.parent_id
                    && o.name.to_lowercase() == session.name.to_lowercase()
                    && (o.busy || !o.expired())
            })
            .map(|(id, _)| id.clone());
        if let (Some(_), false) = (&holder, parallel_ok) {
            drop(sessions);
            let _ = fs::remove_file(&session.tmp);
            shared.stat(|s| s.sessions_refused_path_busy += 1);
            return Err(ApiError::new(
                409,
                "nameAlreadyExists",
                "Another upload session is already open for this path.",
            ));
        }
        sessions.insert(id, Arc::new(Mutex::new(session)));
    }
    shared.stat(|s| s.sessions_created += 1);
    Ok(Response::json(200, &v))
}

pub fn parse_conflict(s: &str) -> Result<Conflict, ApiError> {
    match s.to_ascii_lowercase().as_str() {
        "fail" => Ok(Conflict::Fail),
        "replace" => Ok(Conflict::Replace),
        "rename" => Ok(Conflict::Rename),
        _ => Err(ApiError::bad_request(format!(
            "Invalid conflictBehavior '{s}'."
        ))),
    }
}

/// `if-match` / `if-none-match` against an existing item.
pub fn check_preconditions(
    req: &Request,
    existing: Option<&super::store::Item>,
) -> Result<(), ApiError> {
    let failed = || ApiError::new(412, "preconditionFailed", "ETag does not match.");
    if let Some(m) = req.header("if-match") {
        match existing {
            Some(it) if m == "*" || m == it.etag() || m == it.ctag() => {}
            _ => return Err(failed()),
        }
    }
    if let Some(m) = req.header("if-none-match") {
        if let Some(it) = existing {
            if m == "*" || m == it.etag() || m == it.ctag() {
                return Err(failed());
            }
        }
    }
    Ok(())
}

/// The `locked_name` field knob: "locked" (423 `resourceLocked` or another body shape), as
/// SharePoint answers for a file checked out or open for editing elsewhere (`field_faults`).
fn check_locked(shared: &EmulatorState, name: &str) -> Result<(), ApiError> {
    super::field_faults::check_locked(shared, name)
}

fn session_not_found() -> ApiError {
    ApiError::not_found("The upload session was not found.").inner("uploadSessionNotFound")
}

/// Remove a session and its temp file.
fn discard(shared: &EmulatorState, id: &str) {
    let removed = lock(&shared.sessions).remove(id);
    if let Some(s) = removed {
        let tmp = lock(&s).tmp.clone();
        let _ = fs::remove_file(tmp);
    }
}

/// How many sessions are open (unexpired, not committed or cancelled).
pub fn open_session_count(shared: &EmulatorState) -> usize {
    lock(&shared.sessions)
        .values()
        .filter(|c| {
            let s = lock(c);
            s.busy || !s.expired()
        })
        .count()
}

/// Drive-relative paths ("Uploads/a.bin") of the sessions still open (unexpired, not
/// committed or cancelled), sorted; never their URLs.
pub fn open_session_paths(shared: &EmulatorState) -> Vec<String> {
    let targets: Vec<(String, String)> = lock(&shared.sessions)
        .values()
        .filter_map(|c| {
            let s = lock(c);
            (s.busy || !s.expired()).then(|| (s.parent_id.clone(), s.name.clone()))
        })
        .collect();
    let store = lock(&shared.store);
    let mut paths: Vec<String> = targets
        .into_iter()
        .map(|(parent, name)| {
            let mut segs = store.path_segments(&parent);
            segs.push(name);
            segs.join("/")
        })
        .collect();
    paths.sort();
    paths
}

/// Drop sessions past their expiry (called periodically).
pub fn sweep_expired(shared: &EmulatorState) {
    let expired: Vec<String> = lock(&shared.sessions)
        .iter()
        .filter(|(_, s)| {
            let s = lock(s);
            !s.busy && s.expired()
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        discard(shared, &id);
        shared.stat(|s| s.sessions_expired += 1);
    }
}

/// Everything under `/upload/`.
pub fn handle_upload_url(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
) -> Reply {
    let reply = match upload_url(shared, req, body) {
        Ok(reply) => reply,
        Err(e) if e.status == 0 => Reply::Drop,
        Err(e) => Reply::Respond(e.to_response()),
    };
    // A rejected fragment's body still crossed the wire: read it here so that
    // `fragment_bytes_received` counts every body byte sent to upload URLs.
    if matches!(reply, Reply::Respond(_)) && body.remaining() > 0 {
        let unread = body.remaining();
        if let Ok(n) = std::io::copy(&mut body.take(unread), &mut std::io::sink()) {
            shared.stat(|st| st.fragment_bytes_received += n);
        }
    }
    reply
}

fn upload_url(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
) -> Result<Reply, ApiError> {
    let sid = req
        .path
        .strip_prefix("/upload/")
        .unwrap_or("")
        .trim_end_matches('/');
    if req.method == "PUT" {
        shared.stat(|s| s.fragment_puts += 1);
    }
    if req.header("authorization").is_some() {
        shared.violation(
            "authorization_on_upload_url",
            format!(
                "{} on upload URL of session {}… carried an Authorization header",
                req.method,
                &sid[..8.min(sid.len())]
            ),
        );
        shared.stat(|s| s.auth_failures += 1);
        return Err(ApiError::new(
            401,
            "unauthenticated",
            "Authorization header must not be sent to the upload URL.",
        )
        .inner("invalidAuthorizationHeader"));
    }
    let cell = lock(&shared.sessions)
        .get(sid)
        .cloned()
        .ok_or_else(session_not_found)?;
    let cfg = shared.faults();
    {
        let mut s = lock(&cell);
        if req.query("tempauth") != Some(s.tempauth.as_str()) {
            shared.stat(|st| st.auth_failures += 1);
            return Err(
                ApiError::new(401, "unauthenticated", "Invalid tempauth token.")
                    .inner("invalidToken"),
            );
        }
        if s.token_expired() {
            shared.stat(|st| st.auth_failures += 1);
            return Err(
                ApiError::new(401, "unauthenticated", "The upload URL token has expired.")
                    .inner("expiredToken"),
            );
        }
        if s.expired() && !s.busy {
            drop(s);
            discard(shared, sid);
            shared.stat(|st| st.sessions_expired += 1);
            return Err(session_not_found());
        }
        match req.method.as_str() {
            "GET" => {
                shared.stat(|st| st.status_gets += 1);
                match shared.decide(Trigger::UploadStatus).fault {
                    Fault::Status {
                        status,
                        retry_after,
                    } => {
                        shared.stat(|st| st.errors_injected += 1);
                        return Err(ApiError::injected(status, retry_after));
                    }
                    Fault::Drop { .. } => {
                        shared.stat(|st| st.drops += 1);
                        return Ok(Reply::Drop);
                    }
                    _ => {}
                }
                s.last_mismatch = None;
                s.slide(cfg.session_ttl_secs);
                return Ok(Reply::Respond(Response::json(
                    200,
                    &s.status_json(cfg.ranges_style),
                )));
            }
            "DELETE" => {
                drop(s);
                discard(shared, sid);
                shared.stat(|st| st.sessions_cancelled += 1);
                return Ok(Reply::Respond(Response::new(204)));
            }
            "POST" => {
                if body.remaining() != 0 {
                    return Err(ApiError::bad_request(
                        "The commit request must have an empty body.",
                    ));
                }
                if s.state != SessionState::AwaitingCommit {
                    return Err(ApiError::bad_request(
                        "The upload session is not complete or was not created with deferCommit.",
                    ));
                }
                drop(s);
                return commit(shared, &cell, sid);
            }
            "PUT" => {}
            _ => return Err(ApiError::new(405, "invalidRequest", "Method not allowed.")),
        }
    }
    put_fragment(shared, req, body, &cell, sid)
}

/// Validate a fragment PUT; returns (start, len, total).
fn validate_fragment(
    shared: &EmulatorState,
    req: &Request,
    s: &mut Session,
) -> Result<(u64, u64, u64), ApiError> {
    let label = s.label();
    let Some((start, end, total)) = req.header("content-range").and_then(parse_content_range)
    else {
        shared.violation(
            "bad_content_range",
            format!("{label}: Content-Range {:?}", req.header("content-range")),
        );
        return Err(ApiError::bad_request(
            "The Content-Range header is missing or malformed.",
        ));
    };
    let len = end - start + 1;
    if let Some(t) = s.total {
        if t != total {
            shared.violation(
                "total_mismatch",
                format!("{label}: total {total} differs from the session's {t}"),
            );
            return Err(ApiError::bad_request(
                "The Content-Range total length differs from earlier fragments.",
            )
            .inner("fragmentLengthMismatch"));
        }
    }
    if req.header("content-length").is_none() || req.content_length != len {
        shared.violation(
            "length_mismatch",
            format!(
                "{label}: Content-Length {} but Content-Range {start}-{end} ({len} bytes)",
                req.content_length
            ),
        );
        return Err(ApiError::bad_request(
            "The Content-Length does not match the Content-Range.",
        ));
    }
    if len >= FRAGMENT_LIMIT {
        shared.violation(
            "fragment_too_large",
            format!("{label}: fragment of {len} bytes"),
        );
        return Err(
            ApiError::bad_request("The fragment is too large.").inner("maxFragmentLengthExceeded")
        );
    }
    if end + 1 < total && len % FRAGMENT_UNIT != 0 {
        shared.violation(
            "unaligned_fragment",
            format!(
                "{label}: non-final fragment of {len} bytes is not a multiple of {FRAGMENT_UNIT}"
            ),
        );
        return Err(ApiError::bad_request(
            "Fragments other than the last must be a multiple of 320 KiB.",
        )
        .inner("invalidFragmentSize"));
    }
    if s.busy {
        shared.violation(
            "parallel_put",
            format!("{label}: PUT {start}-{end} while another PUT is in progress"),
        );
        return Err(ApiError::new(
            416,
            "invalidRange",
            "Another fragment of this session is being uploaded.",
        )
        .inner("fragmentOverlap"));
    }
    if start != s.next || s.state != SessionState::Open {
        let overlap = start < s.next || s.state != SessionState::Open;
        let m = Mismatch { start, overlap };
        let repeated = s.last_mismatch == Some(m);
        s.last_mismatch = Some(m);
        let (kind, inner) = if overlap {
            shared.stat(|st| st.overlaps += 1);
            ("overlap", "fragmentOverlap")
        } else {
            shared.stat(|st| st.out_of_order += 1);
            ("out_of_order", "fragmentOutOfOrder")
        };
        let detail = format!(
            "{label}: fragment starts at {start}, next expected byte is {}",
            s.next
        );
        if repeated {
            shared.violation(&format!("repeated_{kind}"), detail);
        } else {
            shared.event(kind, detail);
        }
        return Err(ApiError::new(
            416,
            "invalidRange",
            "The requested range is not the next expected range.",
        )
        .inner(inner));
    }
    s.last_mismatch = None;
    s.total = Some(total);
    Ok((start, len, total))
}

fn put_fragment(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    cell: &Arc<Mutex<Session>>,
    sid: &str,
) -> Result<Reply, ApiError> {
    let cfg = shared.faults();
    let (start, len, total, tmp, mut hasher) = {
        let mut s = lock(cell);
        check_locked(shared, &s.name)?;
        let (start, len, total) = validate_fragment(shared, req, &mut s)?;
        s.slide(cfg.session_ttl_secs);
        // From here on the session is ours (busy) until `release` puts the hasher back.
        s.busy = true;
        (
            start,
            len,
            total,
            s.tmp.clone(),
            std::mem::take(&mut s.hasher),
        )
    };
    let finishing = start + len == total;
    let mut decision = shared.decide(Trigger::PutFragment).fault;
    if decision == Fault::None && finishing {
        decision = match shared.decide(Trigger::Commit).fault {
            // A drop at commit: everything is received and committed, the answer is lost.
            Fault::Drop { .. } => Fault::Drop {
                accept_bytes: Some(len),
            },
            other => other,
        };
    }
    let release = |hasher: QuickXorRef, accepted: u64| {
        let mut s = lock(cell);
        s.hasher = hasher;
        s.next += accepted;
        s.busy = false;
    };
    let limit = match decision {
        Fault::Status {
            status,
            retry_after,
        } => {
            release(hasher, 0);
            shared.stat(|st| {
                if status == 429 {
                    st.throttled += 1
                } else {
                    st.errors_injected += 1
                }
            });
            return Err(ApiError::injected(status, retry_after));
        }
        Fault::ExpireSession => {
            release(hasher, 0);
            lock(cell).expires = SystemTime::now() - Duration::from_secs(1);
            discard(shared, sid);
            shared.stat(|st| st.sessions_expired += 1);
            return Err(session_not_found());
        }
        Fault::ExpireUploadToken => {
            release(hasher, 0);
            lock(cell).token_expires = Some(Instant::now());
            shared.stat(|st| st.auth_failures += 1);
            return Err(
                ApiError::new(401, "unauthenticated", "The upload URL token has expired.")
                    .inner("expiredToken"),
            );
        }
        Fault::Drop { accept_bytes } => {
            let n = accept_bytes.unwrap_or_else(|| shared.random_accept(len));
            Some(n.min(len))
        }
        Fault::None | Fault::ExpireAccessToken => None,
    };
    let want = limit.unwrap_or(len);
    let (accepted, err) = stream_to_file(shared, body, &tmp, start, want, &mut hasher);
    shared.stat(|st| st.fragment_bytes_accepted += accepted);
    // The server's own time per fragment (issue 19), once the body is in.
    let server_ms = shared.field().fragment_server_ms;
    if err.is_none() && server_ms > 0 {
        std::thread::sleep(Duration::from_millis(server_ms));
    }
    let dropping = limit.is_some();
    release(hasher, accepted);
    if let Some(e) = err {
        if e.status == 0 || dropping {
            if dropping {
                shared.stat(|st| st.drops += 1);
            }
            return Ok(Reply::Drop);
        }
        return Err(e);
    }
    if dropping && (accepted < len || !finishing) {
        shared.stat(|st| st.drops += 1);
        return Ok(Reply::Drop);
    }
    if !finishing {
        let s = lock(cell);
        return Ok(Reply::Respond(Response::json(
            202,
            &s.status_json(cfg.ranges_style),
        )));
    }
    if !dropping {
        if let Some(reply) = super::field_faults::last_fragment(shared, cell, sid)? {
            return Ok(reply);
        }
    }
    let defer = {
        let mut s = lock(cell);
        if s.defer_commit {
            s.state = SessionState::AwaitingCommit;
        }
        s.defer_commit
    };
    let reply = if defer {
        let s = lock(cell);
        Reply::Respond(Response::json(202, &s.status_json(cfg.ranges_style)))
    } else {
        commit(shared, cell, sid)?
    };
    if dropping {
        // Accepted wholly (and committed unless deferred), but the client never hears of it.
        shared.stat(|st| st.drops += 1);
        return Ok(Reply::Drop);
    }
    Ok(reply)
}

/// Append `want` body bytes to the session file at `start`. Returns the bytes kept and an
/// error (status 0: the client went away).
fn stream_to_file(
    shared: &EmulatorState,
    body: &mut BodyReader<'_>,
    tmp: &PathBuf,
    start: u64,
    want: u64,
    hasher: &mut QuickXorRef,
) -> (u64, Option<ApiError>) {
    let internal = |e: std::io::Error| ApiError::new(500, "generalException", e.to_string());
    let mut file = match OpenOptions::new().write(true).open(tmp) {
        Ok(f) => f,
        Err(e) => return (0, Some(internal(e))),
    };
    if let Err(e) = file.seek(SeekFrom::Start(start)) {
        return (0, Some(internal(e)));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut kept = 0u64;
    while kept < want {
        let room = (want - kept).min(buf.len() as u64) as usize;
        let n = match body.read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return (kept, Some(ApiError::new(0, "clientGone", ""))),
        };
        shared.stat(|st| st.fragment_bytes_received += n as u64);
        if let Err(e) = file.write_all(&buf[..n]) {
            let _ = file.set_len(start + kept);
            return (kept, Some(internal(e)));
        }
        hasher.update(&buf[..n]);
        kept += n as u64;
    }
    (kept, None)
}

/// The field knobs `enrich` / `corrupt_commits` (`enrich.rs`): rewrite the complete temp file
/// as SharePoint would; `Some((size, quickXorHash))` of the new content when it changed.
fn server_rewrite(
    shared: &EmulatorState,
    tmp: &std::path::Path,
    name: &str,
) -> std::io::Result<Option<(u64, String)>> {
    let knobs = shared.field();
    let mut changed = false;
    if knobs.enrich {
        changed |= super::enrich::enrich(tmp, name)?;
    }
    if knobs.corrupt_commits {
        super::enrich::corrupt(tmp)?;
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let size = std::fs::metadata(tmp)?.len();
    Ok(Some((size, super::quickxor_ref::quickxor_file(tmp)?)))
}

/// Commit a complete session into the store.
pub(super) fn commit(
    shared: &EmulatorState,
    cell: &Arc<Mutex<Session>>,
    sid: &str,
) -> Result<Reply, ApiError> {
    let cfg = shared.faults();
    let (parent, name, conflict, tmp, size, qxh, fs_created, fs_modified) = {
        let s = lock(cell);
        (
            s.parent_id.clone(),
            s.name.clone(),
            s.conflict,
            s.tmp.clone(),
            s.next,
            s.hasher.finish(),
            s.fs_created,
            s.fs_modified,
        )
    };
    let (size, qxh) = match server_rewrite(shared, &tmp, &name) {
        Ok(Some(rewritten)) => rewritten,
        Ok(None) => (size, qxh),
        Err(e) => {
            discard(shared, sid);
            return Err(ApiError::new(
                500,
                "generalException",
                format!("store: {e}"),
            ));
        }
    };
    if let Some(refused) = super::field_faults::validation_refuses(shared, &name) {
        discard(shared, sid);
        return Err(refused);
    }
    let result = {
        let mut store = lock(&shared.store);
        store
            .commit_file(NewFile {
                parent_id: &parent,
                name: &name,
                conflict,
                tmp: &tmp,
                size,
                qxh,
                fs_created,
                fs_modified,
                quota: cfg.quota_bytes,
            })
            .map(|mut it| {
                super::field_faults::after_commit(shared, &mut store, &mut it);
                store.item_json(&it)
            })
    };
    discard(shared, sid);
    let item = result?;
    shared.stat(|st| st.sessions_committed += 1);
    Ok(Reply::Respond(Response::json(201, &item)))
}

/// Stream a request body into a fresh temp file, hashing it. Used by simple uploads and the
/// admin seeding endpoint.
pub fn body_to_temp(
    shared: &EmulatorState,
    body: &mut BodyReader<'_>,
) -> Result<(PathBuf, u64, String), ApiError> {
    let path = lock(&shared.store)
        .tmp_dir()
        .join(format!("put-{}", random_string(24, ALNUM)));
    let internal = |e: std::io::Error| ApiError::new(500, "generalException", e.to_string());
    let mut file = File::create(&path).map_err(internal)?;
    let mut hasher = QuickXorRef::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                let _ = fs::remove_file(&path);
                return Err(ApiError::new(0, "clientGone", ""));
            }
        };
        if let Err(e) = file.write_all(&buf[..n]) {
            let _ = fs::remove_file(&path);
            return Err(internal(e));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((path, size, hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        for (input, want) in [
            ("bytes 0-9/10", Some((0, 9, 10))),
            (
                "bytes 655360-983039/1000000",
                Some((655_360, 983_039, 1_000_000)),
            ),
            ("  bytes 5-5/6 ", Some((5, 5, 6))),
            ("bytes 0-9/9", None),
            ("bytes 9-0/10", None),
            ("bytes 0-9/*", None),
            ("bytes */10", None),
            ("bytes=0-9/10", None),
            ("bytes 0-9", None),
            ("bytes -1-9/10", None),
            ("bytes +0-9/10", None),
            ("", None),
        ] {
            assert_eq!(parse_content_range(input), want, "{input:?}");
        }
    }
}
