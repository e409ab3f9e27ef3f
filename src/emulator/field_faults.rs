//! Upload and library faults of the field configuration: how SharePoint fails uploads,
//! deletes and renames in the field (field reference entries 10–14 and 21–23), behind the
//! knobs of [`super::field::FieldConfig`] (defaults: off, i.e. the documented behaviour).
//!
//! - Entry 10, passing 404s: createUploadSession, simple uploads and item GETs under a folder
//!   created through Graph less than `fresh_folder_404_secs` ago answer 404 `itemNotFound`;
//!   `passing_404_rate` of item GETs and createUploadSession calls answer it anyway.
//! - Entry 11, load 400s: createUploadSession answers 400 `invalidRequest` (no inner code,
//!   as ODI#1360 shows it) while `max_open_sessions` sessions are open, or at
//!   `session_400_rate`.
//! - Entry 12, the fragile last fragment: [`LastFragment`] makes the fragment that completes a
//!   file answer 5xx (JSON or an HTML page), with the file committed or not; when not, the
//!   session then reports `[]` (broken: a new session is the only way on) or `["0-"]` (its
//!   bytes are gone; sending again from 0 is legal). `commit_delay_secs` answers it late.
//! - Entry 13: `drive_quota_absent` drops the `quota` object from drive answers (the quota
//!   itself is the fault configuration's `quota_bytes`, refused with 507 at the commit).
//! - Entry 14: `hash_delay_secs` / `hash_absent` withhold a committed file's quickXorHash;
//!   the persister's tick ([`tick`]) puts delayed hashes back.
//! - Entry 21: `require_checkout` leaves every committed file checked out
//!   (`publication.level` = `checkout`, the admin view's `checked_out`) until `POST
//!   …/items/{id}/checkin` (or by path) answers 204; `checkin_refused` makes that a 400.
//! - Entry 22: `validation_pattern` fails the commit of matching names with 500
//!   `generalException` "List data validation failed." (the session ends, as other refused
//!   commits do).
//! - Entry 23: `locked_name` (for `locked_secs`) answers in `locked_shape` to
//!   createUploadSession, fragment PUTs, simple uploads, DELETE and PATCH.
//!
//! Every shaped answer is counted in `Stats::field_faults` by kind (`passing_404`,
//! `fresh_folder_404`, `load_400`, `last_fragment`, `validation_failed`, `locked`,
//! `checkin`, `checkin_refused`, `hash_withheld`), so a test can assert the fault fired.
//! Locks: the field lock and the store lock, in the emulator's order (store → field); the
//! runtime state ([`FaultRuntime`]) lives under the field lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ApiError;
use super::field::FieldConfig;
use super::graph_api::{Base, ItemOp};
use super::http::{Body, BodyReader, Reply, Request, Response};
use super::state::{lock, EmulatorState};
use super::store::{Item, Store};
use super::upload::Session;

/// The body shape of a lock refusal (entry 23; AB#36, ODI#912).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockedShape {
    /// 423 `resourceLocked`.
    #[default]
    ResourceLocked,
    /// 423 `accessDenied` "The file is currently checked out or locked for editing by
    /// another user." (ODI#912's shape: no inner code).
    AccessDenied,
    /// 409 `conflict` with inner `resourceLocked`.
    Conflict,
    /// 403 `accessDenied` with inner `resourceLocked`.
    Forbidden,
}

/// What the session reports after a last fragment that failed without committing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterFailure {
    /// `nextExpectedRanges: []`, nothing committed: the session is broken.
    #[default]
    Empty,
    /// `["0-"]`: the session lost its bytes and expects the file again from byte 0.
    Restart,
}

fn one() -> u64 {
    1
}

/// Entry 12: how the fragment that completes a file fails (`last_fragment` knob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastFragment {
    /// The answer's status (500–599).
    pub status: u16,
    /// The file is committed all the same (the answer is the only thing that failed).
    #[serde(default)]
    pub committed: bool,
    /// When not committed: what the session reports afterwards.
    #[serde(default)]
    pub then: AfterFailure,
    /// The answer is an HTML error page instead of a Graph error body.
    #[serde(default)]
    pub html: bool,
    /// How many completing fragments fail (counted from when the knob is set).
    #[serde(default = "one")]
    pub count: u64,
}

/// Check the knobs of this module (called by `FieldConfig::merged`).
pub fn validate(cfg: &FieldConfig) -> Result<(), String> {
    for (name, rate) in [
        ("passing_404_rate", cfg.passing_404_rate),
        ("session_400_rate", cfg.session_400_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be within 0..=1"));
        }
    }
    if let Some(l) = &cfg.last_fragment {
        if !(500..=599).contains(&l.status) {
            return Err("last_fragment.status must be a 5xx status".into());
        }
        if l.count == 0 {
            return Err("last_fragment.count must be at least 1".into());
        }
    }
    if cfg.validation_pattern.as_deref() == Some("") {
        return Err("validation_pattern must not be empty".into());
    }
    Ok(())
}

/// A hash withheld from a committed file (entry 14).
#[derive(Debug, Clone)]
struct Withheld {
    id: String,
    /// The item's version when it was committed: a newer commit is not given this hash.
    version: u64,
    qxh: String,
    /// `None`: never (`hash_absent`).
    due: Option<Instant>,
}

/// What these faults remember between requests (under the field lock).
#[derive(Debug, Default)]
pub struct FaultRuntime {
    /// Folders created through Graph while `fresh_folder_404_secs` was set, by id.
    fresh_folders: HashMap<String, Instant>,
    /// Completing fragments still to fail under `last_fragment`.
    last_fragment_left: u64,
    withheld: Vec<Withheld>,
}

impl FaultRuntime {
    /// The configuration changes from `old` to `new` (`FieldState::replace`).
    pub fn configure(&mut self, old: &FieldConfig, new: &FieldConfig) {
        if old.last_fragment != new.last_fragment {
            self.last_fragment_left = new.last_fragment.as_ref().map_or(0, |l| l.count);
        }
        if new.fresh_folder_404_secs == 0 {
            self.fresh_folders.clear();
        }
        if !new.hash_absent {
            // Hashes withheld "for ever" appear once the knob is off.
            let now = Instant::now();
            for w in &mut self.withheld {
                w.due.get_or_insert(now);
            }
        }
    }

    fn is_fresh(&self, id: &str, secs: u64) -> bool {
        self.fresh_folders
            .get(id)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(secs))
    }

    /// Withheld hashes whose time has come.
    fn take_due(&mut self, now: Instant) -> Vec<Withheld> {
        let (due, keep): (Vec<Withheld>, Vec<Withheld>) = self
            .withheld
            .drain(..)
            .partition(|w| w.due.is_some_and(|t| t <= now));
        self.withheld = keep;
        due
    }
}

fn count(shared: &EmulatorState, kind: &str) {
    shared.stat(|s| *s.field_faults.entry(kind.to_string()).or_default() += 1);
}

fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// The id of the folder an item request addresses its target in: the parent of the named
/// item (which need not exist). `None` when that folder does not exist.
fn parent_folder(store: &Store, drive: &str, base: &Base, rel: &[String]) -> Option<String> {
    let base_id = match base {
        Base::Root => store.drive(drive)?.root_id.clone(),
        Base::Id(id) => id.clone(),
    };
    match rel.split_last() {
        None => store.get(&base_id)?.parent_id.clone(),
        Some((_, dirs)) => store.resolve(&base_id, dirs).map(|f| f.id.clone()),
    }
}

/// The name of the item a request addresses (the last path segment, or the item by id).
fn target_name(store: &Store, drive: &str, base: &Base, rel: &[String]) -> Option<String> {
    if let Some(name) = rel.last() {
        return Some(name.clone());
    }
    match base {
        Base::Root => None,
        Base::Id(id) => store
            .get(id)
            .filter(|it| it.drive_id == drive)
            .map(|it| it.name.clone()),
    }
}

/// Entries 10 and 23, before an item request is handled: passing 404s for item GETs,
/// createUploadSession and simple uploads; lock refusals for simple uploads, DELETE and
/// PATCH (createUploadSession and fragment PUTs check the lock in `upload.rs`).
pub fn before_item_request(
    shared: &EmulatorState,
    req: &Request,
    drive: &str,
    base: &Base,
    rel: &[String],
    op: ItemOp,
) -> Result<(), ApiError> {
    let method = req.method.as_str();
    let may_404 = matches!(
        (method, op),
        ("GET", ItemOp::Item) | ("POST", ItemOp::CreateUploadSession) | ("PUT", ItemOp::Content)
    );
    let may_lock = matches!(
        (method, op),
        ("DELETE", ItemOp::Item) | ("PATCH", ItemOp::Item) | ("PUT", ItemOp::Content)
    );
    if !may_404 && !may_lock {
        return Ok(());
    }
    let knobs = shared.field();
    if may_404 {
        if knobs.passing_404_rate > 0.0 && rand::thread_rng().gen::<f64>() < knobs.passing_404_rate
        {
            count(shared, "passing_404");
            return Err(not_found());
        }
        if knobs.fresh_folder_404_secs > 0 && under_fresh_folder(shared, &knobs, drive, base, rel) {
            count(shared, "fresh_folder_404");
            return Err(not_found());
        }
    }
    if may_lock {
        let name = target_name(&lock(&shared.store), drive, base, rel);
        if let Some(name) = name {
            check_locked(shared, &name)?;
        }
    }
    Ok(())
}

/// Is the request's target under a folder created less than `fresh_folder_404_secs` ago?
fn under_fresh_folder(
    shared: &EmulatorState,
    knobs: &FieldConfig,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> bool {
    let store = lock(&shared.store);
    let mut cur = parent_folder(&store, drive, base, rel);
    let field = lock(&shared.field);
    while let Some(id) = cur {
        if field.faults.is_fresh(&id, knobs.fresh_folder_404_secs) {
            return true;
        }
        cur = store.get(&id).and_then(|f| f.parent_id.clone());
    }
    false
}

/// A folder was created through Graph (`POST …/children`): remember when, for entry 10.
/// Called with the store lock held (store → field).
pub fn folder_created(shared: &EmulatorState, id: &str) {
    let mut field = lock(&shared.field);
    let secs = field.config().fresh_folder_404_secs;
    if secs == 0 {
        return;
    }
    let keep = Duration::from_secs(secs);
    field.faults.fresh_folders.retain(|_, t| t.elapsed() < keep);
    field
        .faults
        .fresh_folders
        .insert(id.to_string(), Instant::now());
}

/// The refusal `locked_name` answers in `shape` (entry 23).
pub fn locked_error(shape: LockedShape) -> ApiError {
    match shape {
        LockedShape::ResourceLocked => ApiError::new(
            423,
            "resourceLocked",
            "The resource you are attempting to access is locked.",
        ),
        LockedShape::AccessDenied => ApiError::new(
            423,
            "accessDenied",
            "The file is currently checked out or locked for editing by another user.",
        ),
        LockedShape::Conflict => ApiError::new(
            409,
            "conflict",
            "The resource you are attempting to access is locked.",
        )
        .inner("resourceLocked"),
        LockedShape::Forbidden => ApiError::new(
            403,
            "accessDenied",
            "The resource you are attempting to access is locked.",
        )
        .inner("resourceLocked"),
    }
}

/// The `locked_name` knob (entry 23): refuse a request on a file named `name` while it is
/// locked, in the configured body shape, as SharePoint answers for a file checked out or open
/// for editing elsewhere.
pub fn check_locked(shared: &EmulatorState, name: &str) -> Result<(), ApiError> {
    let (locked, shape) = {
        let f = lock(&shared.field);
        (f.is_locked(name, Instant::now()), f.config().locked_shape)
    };
    if locked {
        shared.stat(|s| s.errors_injected += 1);
        count(shared, "locked");
        return Err(locked_error(shape));
    }
    Ok(())
}

/// Entry 11: refuse a createUploadSession under load, with 400 `invalidRequest` and no inner
/// code. `open_sessions` is how many sessions are open now.
pub fn before_create_session(shared: &EmulatorState, open_sessions: usize) -> Result<(), ApiError> {
    let knobs = shared.field();
    let over_cap = knobs
        .max_open_sessions
        .is_some_and(|max| open_sessions as u64 >= max);
    let random =
        knobs.session_400_rate > 0.0 && rand::thread_rng().gen::<f64>() < knobs.session_400_rate;
    if over_cap || random {
        count(shared, "load_400");
        return Err(ApiError::bad_request("Invalid request"));
    }
    Ok(())
}

/// Entry 12: whether the fragment completing a file fails now, and how (one of `count`).
fn take_last_fragment(shared: &EmulatorState) -> Option<LastFragment> {
    let mut field = lock(&shared.field);
    let knob = field.config().last_fragment.clone()?;
    if field.faults.last_fragment_left == 0 {
        return None;
    }
    field.faults.last_fragment_left -= 1;
    drop(field);
    count(shared, "last_fragment");
    Some(knob)
}

/// Entry 12 on the fragment that completes a file (not under deferCommit), called by
/// `upload.rs` once its bytes are in: `commit_delay_secs` answers late; `last_fragment` fails
/// it, committed or not. `None`: commit as usual.
pub fn last_fragment(
    shared: &EmulatorState,
    cell: &Arc<Mutex<Session>>,
    sid: &str,
) -> Result<Option<Reply>, ApiError> {
    if lock(cell).deferred() {
        return Ok(None);
    }
    let delay = shared.field().commit_delay_secs;
    if delay > 0 {
        std::thread::sleep(Duration::from_secs(delay));
    }
    let Some(fault) = take_last_fragment(shared) else {
        return Ok(None);
    };
    if fault.committed {
        super::upload::commit(shared, cell, sid)?;
    } else {
        lock(cell)
            .fail_final(fault.then == AfterFailure::Restart)
            .map_err(|e| ApiError::new(500, "generalException", e.to_string()))?;
    }
    Ok(Some(Reply::Respond(last_fragment_response(&fault))))
}

/// The answer of a failing last fragment: a Graph error body, or an HTML page.
pub fn last_fragment_response(f: &LastFragment) -> Response {
    if !f.html {
        return ApiError::injected(f.status, None).to_response();
    }
    let title = match f.status {
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    };
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h2>{} - \
         {title}</h2><p>Sorry, something went wrong. Please try again later.</p></body></html>\n",
        f.status
    );
    let mut r = Response::new(f.status).with_header("Content-Type", "text/html; charset=utf-8");
    r.body = Body::Bytes(page.into_bytes());
    r
}

/// `*` wildcards, case-insensitive, on the whole name.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    // Iterative matcher with backtracking to the last star.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Entry 22: the commit of `name` fails column validation.
pub fn validation_refuses(shared: &EmulatorState, name: &str) -> Option<ApiError> {
    let pattern = shared.field().validation_pattern?;
    if !wildcard_match(&pattern, name) {
        return None;
    }
    count(shared, "validation_failed");
    Some(ApiError::new(
        500,
        "generalException",
        "List data validation failed.",
    ))
}

/// Entries 14 and 21, right after a file was committed (store lock held, store → field):
/// withhold its hash, leave it checked out. `it` is updated to what the answer must show.
pub fn after_commit(shared: &EmulatorState, store: &mut Store, it: &mut Item) {
    let knobs = shared.field();
    if knobs.require_checkout {
        store.set_checked_out(&it.id, true);
        it.checked_out = true;
    }
    if knobs.hash_absent || knobs.hash_delay_secs > 0 {
        if let Some(qxh) = it.qxh.take() {
            store.set_hash(&it.id, None);
            let due = (!knobs.hash_absent)
                .then(|| Instant::now() + Duration::from_secs(knobs.hash_delay_secs));
            let mut field = lock(&shared.field);
            field.faults.withheld.retain(|w| w.id != it.id);
            field.faults.withheld.push(Withheld {
                id: it.id.clone(),
                version: it.version,
                qxh,
                due,
            });
            drop(field);
            count(shared, "hash_withheld");
        }
    }
}

/// The persister's tick: put back the hashes whose delay has passed (entry 14).
pub fn tick(shared: &EmulatorState) {
    let due = lock(&shared.field).faults.take_due(Instant::now());
    if due.is_empty() {
        return;
    }
    let mut store = lock(&shared.store);
    for w in due {
        if store.get(&w.id).is_some_and(|it| it.version == w.version) {
            store.set_hash(&w.id, Some(w.qxh));
        }
    }
}

/// Entry 13: a drive answer without its `quota` object when `drive_quota_absent` is set.
pub fn shape_drive(knobs: &FieldConfig, drive: &mut Value) {
    if knobs.drive_quota_absent {
        if let Some(o) = drive.as_object_mut() {
            o.remove("quota");
        }
    }
}

/// Entry 21: `POST …/items/{id}/checkin` (or by path), body `{"comment": …}` optional:
/// 204 once checked in; 400 when the file is not checked out, or `checkin_refused`.
pub fn checkin(
    shared: &EmulatorState,
    body: &mut BodyReader<'_>,
    item: Option<Item>,
) -> Result<Reply, ApiError> {
    let raw = body
        .read_all(1 << 20)
        .map_err(|_| ApiError::bad_request("Request body too large or unreadable."))?;
    if !raw.iter().all(|b| b.is_ascii_whitespace()) {
        let doc: Value = serde_json::from_slice(&raw)
            .map_err(|_| ApiError::bad_request("Invalid JSON body."))?;
        if doc.get("comment").is_some_and(|c| !c.is_string()) {
            return Err(ApiError::bad_request("comment must be a string."));
        }
    }
    let it = item.ok_or_else(not_found)?;
    if it.folder {
        return Err(ApiError::bad_request("Folders cannot be checked in."));
    }
    if !it.checked_out {
        return Err(ApiError::bad_request("The file is not checked out."));
    }
    if shared.field().checkin_refused {
        count(shared, "checkin_refused");
        return Err(ApiError::bad_request(
            "The file cannot be checked in: required properties are missing.",
        ));
    }
    lock(&shared.store).set_checked_out(&it.id, false);
    count(shared, "checkin");
    Ok(Reply::Respond(Response::new(204)))
}

#[cfg(test)]
mod tests;
