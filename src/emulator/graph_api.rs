//! Microsoft Graph v1.0 routes for sites, drives and driveItems (everything under `/v1.0`),
//! plus the pre-authenticated download URLs they redirect to.
//!
//! Addressing (reference §6): `/sites/{host}:/{path}`, `/sites/{site-id}`,
//! `/sites/{site-id}/drives`, and item routes below `/drives/{drive-id}/`,
//! `/sites/{site-id}/drives/{drive-id}/` or `/sites/{site-id}/drive/` (the Documents drive):
//! `root`, `root:/{path}[:]`, `items/{id}`, `items/{id}:/{path}[:]`, each optionally followed
//! by `/children`, `/content` or `/createUploadSession`. Path segments are percent-decoded
//! (UTF-8, strict) one by one; names match case-insensitively. Every route requires a valid
//! bearer token; the `any_graph` fault script and, with `apply_to: "all"`, the random rates
//! run before the token check.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::auth::bearer;
use super::errors::ApiError;
use super::faults::{Fault, Trigger};
use super::http::{Body, BodyReader, Reply, Request, Response};
use super::state::{lock, EmulatorState};
use super::store::{parse_time, random_string, Item, NewFile, Store, ALNUM, HOST, HOST_MY};
use super::upload::{self, check_preconditions, parse_conflict, SessionTarget};
use crate::protocol::{MAX_PAGE_SIZE, SIMPLE_UPLOAD_LIMIT};
use crate::remote::Conflict;

const DEFAULT_TOP: usize = 200;
const DOWNLOAD_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveSel {
    Id(String),
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Root,
    Id(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOp {
    Item,
    Children,
    Content,
    CreateUploadSession,
    /// `root/delta` (the change feed; only on the root, as on SharePoint).
    Delta,
    /// `POST …/checkin` (a library that requires check-out, `field_faults`).
    Checkin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    SiteByPath {
        host: String,
        path: String,
    },
    Site(String),
    SiteDrives(String),
    Drive(DriveSel),
    Item {
        drive: DriveSel,
        base: Base,
        rel: Vec<String>,
        op: ItemOp,
    },
}

fn decode(seg: &str) -> Result<String, ApiError> {
    percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("Path segment is not valid UTF-8."))
}

fn bad_route() -> ApiError {
    ApiError::new(
        400,
        "invalidRequest",
        "Invalid request: unsupported resource path.",
    )
}

/// Parse the path after `/v1.0`.
pub fn parse_route(path: &str) -> Result<Route, ApiError> {
    let p = path.trim_start_matches('/');
    if let Some(rest) = p.strip_prefix("sites/") {
        let (site, after) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(host) = site.strip_suffix(':').or_else(|| {
            // `/sites/{host}:/{path}` splits as "host:" + "/path".
            site.contains(':').then_some(site)
        }) {
            let host = host.trim_end_matches(':');
            let server_path = after.split(':').next().unwrap_or("");
            let tail = after.split_once(':').map(|(_, t)| t).unwrap_or("");
            let segs: Result<Vec<String>, ApiError> = server_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(decode)
                .collect();
            let path = format!("/{}", segs?.join("/"));
            return match tail.trim_matches('/') {
                "" => Ok(Route::SiteByPath {
                    host: decode(host)?,
                    path,
                }),
                _ => Err(bad_route()),
            };
        }
        let site = decode(site)?;
        if after.is_empty() {
            return Ok(Route::Site(site));
        }
        if after == "drives" || after == "drives/" {
            return Ok(Route::SiteDrives(site));
        }
        if let Some(r) = after.strip_prefix("drives/") {
            let (d, rest) = r.split_once('/').unwrap_or((r, ""));
            return drive_route(DriveSel::Id(decode(d)?), rest);
        }
        if after == "drive" {
            return Ok(Route::Drive(DriveSel::Default));
        }
        if let Some(rest) = after.strip_prefix("drive/") {
            return drive_route(DriveSel::Default, rest);
        }
        return Err(bad_route());
    }
    if let Some(r) = p.strip_prefix("drives/") {
        let (d, rest) = r.split_once('/').unwrap_or((r, ""));
        return drive_route(DriveSel::Id(decode(d)?), rest);
    }
    Err(bad_route())
}

fn drive_route(drive: DriveSel, rest: &str) -> Result<Route, ApiError> {
    if rest.is_empty() {
        return Ok(Route::Drive(drive));
    }
    let (base, after) = if let Some(a) = rest.strip_prefix("root") {
        if !(a.is_empty() || a.starts_with(':') || a.starts_with('/')) {
            return Err(bad_route());
        }
        (Base::Root, a)
    } else if let Some(r) = rest.strip_prefix("items/") {
        let end = r.find([':', '/']).unwrap_or(r.len());
        (Base::Id(decode(&r[..end])?), &r[end..])
    } else {
        return Err(bad_route());
    };
    let (rel, op) = match after.strip_prefix(':') {
        Some(inner) => match inner.find(':') {
            Some(i) => (&inner[..i], &inner[i + 1..]),
            None => (inner, ""),
        },
        None => ("", after),
    };
    let mut segs = Vec::new();
    for s in rel.split('/').filter(|s| !s.is_empty()) {
        let d = decode(s)?;
        if d == "." || d == ".." || d.contains('/') {
            return Err(ApiError::bad_request("Invalid path segment."));
        }
        segs.push(d);
    }
    let op = match op.trim_matches('/') {
        "" => ItemOp::Item,
        "children" => ItemOp::Children,
        "content" => ItemOp::Content,
        "createUploadSession" => ItemOp::CreateUploadSession,
        "delta" => ItemOp::Delta,
        "checkin" => ItemOp::Checkin,
        _ => return Err(bad_route()),
    };
    Ok(Route::Item {
        drive,
        base,
        rel: segs,
        op,
    })
}

/// Everything under `/v1.0`.
pub fn handle_graph(shared: &EmulatorState, req: &Request, body: &mut BodyReader<'_>) -> Reply {
    shared.stat(|s| s.graph_requests += 1);
    match shared.decide(Trigger::AnyGraph).fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            shared.stat(|s| {
                if status == 429 {
                    s.throttled += 1
                } else {
                    s.errors_injected += 1
                }
            });
            return Reply::Respond(ApiError::injected(status, retry_after).to_response());
        }
        Fault::Drop { .. } => {
            shared.stat(|s| s.drops += 1);
            return Reply::Drop;
        }
        Fault::ExpireAccessToken => {
            if let Some(t) = bearer(req) {
                shared.expire_token(t);
            }
        }
        _ => {}
    }
    if bearer(req).is_some_and(|t| shared.token_valid(t)) {
        if let Some(r) = super::read_faults::graph_refusal(shared) {
            return Reply::Respond(r);
        }
    } else {
        shared.stat(|s| s.auth_failures += 1);
        return Reply::Respond(
            ApiError::new(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            )
            .to_response(),
        );
    }
    let path = req.path.strip_prefix("/v1.0").unwrap_or("");
    if let Some(r) = super::shares::handle(shared, req, path) {
        return r;
    }
    let result = parse_route(path).and_then(|route| dispatch(shared, req, body, route));
    match result {
        Ok(r) => r,
        Err(e) if e.status == 0 => Reply::Drop,
        Err(e) => Reply::Respond(e.to_response()),
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::new(405, "invalidRequest", "Method not allowed.")
}

fn read_json(body: &mut BodyReader<'_>) -> Result<Value, ApiError> {
    let raw = body
        .read_all(1 << 20)
        .map_err(|_| ApiError::bad_request("Request body too large or unreadable."))?;
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("Invalid JSON body."))
}

/// The site a site id names: `Ok(false)` the team site, `Ok(true)` the OneDrive personal site.
fn check_site(store: &Store, site: &str) -> Result<bool, ApiError> {
    if site == store.site.id || site == "root" || site.eq_ignore_ascii_case(HOST) {
        Ok(false)
    } else if site == store.personal.id {
        Ok(true)
    } else {
        Err(ApiError::not_found("Requested site could not be found"))
    }
}

fn drive_id(store: &Store, sel: &DriveSel) -> Result<String, ApiError> {
    match sel {
        DriveSel::Default => Ok(store.drives[0].id.clone()),
        DriveSel::Id(id) => store
            .drive(id)
            .map(|d| d.id.clone())
            .ok_or_else(|| ApiError::not_found("The drive could not be found.")),
    }
}

fn base_id(store: &Store, drive: &str, base: &Base) -> Result<String, ApiError> {
    let id = match base {
        Base::Root => {
            return Ok(store
                .drive(drive)
                .map(|d| d.root_id.clone())
                .unwrap_or_default())
        }
        Base::Id(id) => id,
    };
    match store.get(id) {
        Some(it) if it.drive_id == drive => Ok(it.id.clone()),
        _ => Err(ApiError::not_found("The resource could not be found.")),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// Resolve an existing item.
fn existing(store: &Store, drive: &str, base: &Base, rel: &[String]) -> Result<Item, ApiError> {
    let b = base_id(store, drive, base)?;
    store.resolve_request(&b, rel).cloned()
}

/// Resolve a file target: parent folder + name (+ the item if it exists).
fn file_target(
    store: &Store,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<SessionTarget, ApiError> {
    let b = base_id(store, drive, base)?;
    if rel.is_empty() {
        let it = store.get(&b).cloned().ok_or_else(not_found)?;
        if it.folder {
            return Err(ApiError::bad_request("The target is a folder."));
        }
        return Ok(SessionTarget {
            drive_id: drive.to_string(),
            parent_id: it.parent_id.clone().unwrap_or_default(),
            name: it.name.clone(),
            existing: Some(it),
        });
    }
    let (name, dirs) = rel.split_last().ok_or_else(not_found)?;
    let parent = store.resolve_request(&b, dirs).map_err(|e| {
        if e == super::collation::incompatible_name() {
            e
        } else {
            ApiError::not_found("The parent folder does not exist.")
        }
    })?;
    Ok(SessionTarget {
        drive_id: drive.to_string(),
        parent_id: parent.id.clone(),
        name: name.clone(),
        existing: store.child(&parent.id, name).cloned(),
    })
}

fn dispatch(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    route: Route,
) -> Result<Reply, ApiError> {
    let m = req.method.as_str();
    let ok = |v: Value| Ok(Reply::Respond(Response::json(200, &v)));
    match route {
        Route::SiteByPath { host, path } => {
            if m != "GET" {
                return Err(method_not_allowed());
            }
            let store = lock(&shared.store);
            let path = path.trim_end_matches('/');
            if host.eq_ignore_ascii_case(HOST) && path.eq_ignore_ascii_case(&store.site.path) {
                return ok(store.site_json());
            }
            if host.eq_ignore_ascii_case(HOST_MY) && path.eq_ignore_ascii_case(&store.personal.path)
            {
                return ok(store.personal_json());
            }
            Err(ApiError::not_found("Requested site could not be found"))
        }
        Route::Site(site) => {
            let store = lock(&shared.store);
            if check_site(&store, &site)? {
                return ok(store.personal_json());
            }
            ok(store.site_json())
        }
        Route::SiteDrives(site) => {
            let quota = shared.faults().quota_bytes;
            let knobs = shared.field();
            let store = lock(&shared.store);
            let personal = check_site(&store, &site)?;
            let drives: Vec<Value> = store
                .drives
                .iter()
                .filter(|d| d.personal == personal)
                .map(|d| {
                    let mut v = store.drive_json(d, quota);
                    super::field_faults::shape_drive(&knobs, &mut v);
                    v
                })
                .collect();
            ok(json!({ "value": drives }))
        }
        Route::Drive(sel) => {
            let quota = shared.faults().quota_bytes;
            let knobs = shared.field();
            let store = lock(&shared.store);
            let id = drive_id(&store, &sel)?;
            let d = store.drive(&id).ok_or_else(not_found)?;
            let mut v = store.drive_json(d, quota);
            super::field_faults::shape_drive(&knobs, &mut v);
            ok(v)
        }
        Route::Item {
            drive,
            base,
            rel,
            op,
        } => item_route(shared, req, body, &drive, &base, &rel, op),
    }
}

fn item_route(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    drive: &DriveSel,
    base: &Base,
    rel: &[String],
    op: ItemOp,
) -> Result<Reply, ApiError> {
    let drive = drive_id(&lock(&shared.store), drive)?;
    super::field_faults::before_item_request(shared, req, &drive, base, rel, op)?;
    match (req.method.as_str(), op) {
        ("GET", ItemOp::Item) => {
            let store = lock(&shared.store);
            let it = existing(&store, &drive, base, rel)?;
            Ok(Reply::Respond(Response::json(200, &store.item_json(&it))))
        }
        ("GET", ItemOp::Children) => list_children(shared, req, &drive, base, rel),
        ("POST", ItemOp::Children) => create_folder(shared, body, &drive, base, rel),
        ("GET", ItemOp::Content) => {
            let it = existing(&lock(&shared.store), &drive, base, rel)?;
            if it.folder {
                return Err(ApiError::bad_request("Folders have no content."));
            }
            let token = random_string(64, ALNUM);
            lock(&shared.downloads).insert(token.clone(), (it.id, Instant::now() + DOWNLOAD_TTL));
            Ok(Reply::Respond(Response::new(302).with_header(
                "Location",
                format!("{}/download/{token}", shared.base_url),
            )))
        }
        ("GET", ItemOp::Delta) => delta(shared, req, &drive, base, rel),
        ("PUT", ItemOp::Content) => simple_upload(shared, req, body, &drive, base, rel),
        ("POST", ItemOp::CreateUploadSession) => {
            let target = file_target(&lock(&shared.store), &drive, base, rel)?;
            upload::create_session(shared, req, body, target).map(Reply::Respond)
        }
        ("PATCH", ItemOp::Item) => patch_item(shared, req, body, &drive, base, rel),
        ("POST", ItemOp::Checkin) => {
            let it = existing(&lock(&shared.store), &drive, base, rel).ok();
            super::field_faults::checkin(shared, body, it)
        }
        ("DELETE", ItemOp::Item) => {
            let mut store = lock(&shared.store);
            let it = existing(&store, &drive, base, rel)?;
            check_preconditions(req, Some(&it))?;
            if it.parent_id.is_none() {
                return Err(ApiError::new(
                    403,
                    "accessDenied",
                    "The root cannot be deleted.",
                ));
            }
            store.delete(&it.id);
            Ok(Reply::Respond(Response::new(204)))
        }
        _ => Err(method_not_allowed()),
    }
}

fn list_children(
    shared: &EmulatorState,
    req: &Request,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<Reply, ApiError> {
    let q = |k: &str| {
        req.query(k)
            .or_else(|| req.query(k.trim_start_matches('$')))
    };
    let top = match q("$top") {
        None => DEFAULT_TOP,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| ApiError::bad_request("Invalid $top."))?
            .min(MAX_PAGE_SIZE),
    };
    let top = super::read_faults::page_size(shared, top);
    let skip = match q("$skiptoken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("Invalid $skiptoken."))?,
    };
    let store = lock(&shared.store);
    let folder = existing(&store, drive, base, rel)?;
    if !folder.folder {
        return Ok(Reply::Respond(Response::json(200, &json!({"value": []}))));
    }
    let all = store.children(&folder.id);
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(top)
        .map(|it| store.item_json(it))
        .collect();
    let mut v = json!({ "value": page });
    if skip + top < all.len() {
        let root = folder.parent_id.is_none();
        v["@odata.nextLink"] = json!(super::read_faults::next_link_to_root(
            shared, drive, root, skip, top
        )
        .unwrap_or_else(|| format!(
            "{}{}?$top={top}&$skiptoken={}",
            shared.base_url,
            req.path,
            skip + top
        )));
    }
    Ok(Reply::Respond(Response::json(200, &v)))
}

fn delta(
    shared: &EmulatorState,
    req: &Request,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<Reply, ApiError> {
    let at_root = *base == Base::Root && rel.is_empty();
    super::delta::handle(shared, req, drive, at_root, MAX_PAGE_SIZE)
}

fn create_folder(
    shared: &EmulatorState,
    body: &mut BodyReader<'_>,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<Reply, ApiError> {
    let doc = read_json(body)?;
    let name = doc
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| ApiError::bad_request("A name is required."))?;
    if doc.get("folder").is_none() {
        return Err(ApiError::bad_request(
            "Only folders can be created here; upload files with PUT or an upload session.",
        ));
    }
    let conflict = match doc
        .get("@microsoft.graph.conflictBehavior")
        .and_then(|v| v.as_str())
    {
        None => Conflict::Fail,
        Some(s) => parse_conflict(s)?,
    };
    let mut store = lock(&shared.store);
    let parent = existing(&store, drive, base, rel)?;
    if !parent.folder {
        return Err(ApiError::bad_request("The parent is not a folder."));
    }
    let it = store.create_folder(&parent.id, name, conflict)?;
    super::field_faults::folder_created(shared, &it.id);
    Ok(Reply::Respond(Response::json(201, &store.item_json(&it))))
}

fn simple_upload(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<Reply, ApiError> {
    if req.content_length > SIMPLE_UPLOAD_LIMIT {
        let mut r =
            ApiError::new(413, "requestTooLarge", "Maximum request length exceeded.").to_response();
        r.close = true;
        return Ok(Reply::Respond(r));
    }
    let conflict = match req.query("@microsoft.graph.conflictBehavior") {
        None => Conflict::Replace,
        Some(s) => parse_conflict(s)?,
    };
    let target = file_target(&lock(&shared.store), drive, base, rel)?;
    check_preconditions(req, target.existing.as_ref())?;
    lock(&shared.store).precheck_file(&target.parent_id, &target.name, conflict)?;
    let (tmp, size, qxh) = upload::body_to_temp(shared, body)?;
    if let Some(refused) = super::field_faults::validation_refuses(shared, &target.name) {
        let _ = std::fs::remove_file(&tmp);
        return Err(refused);
    }
    let quota = shared.faults().quota_bytes;
    let replaced = target.existing.is_some();
    let result = {
        let mut store = lock(&shared.store);
        store
            .commit_file(NewFile {
                parent_id: &target.parent_id,
                name: &target.name,
                conflict,
                tmp: &tmp,
                size,
                qxh,
                fs_created: None,
                fs_modified: None,
                quota,
            })
            .map(|mut it| {
                super::field_faults::after_commit(shared, &mut store, &mut it);
                store.item_json(&it)
            })
    };
    let _ = std::fs::remove_file(&tmp);
    let v = result?;
    shared.stat(|s| s.simple_uploads += 1);
    Ok(Reply::Respond(Response::json(
        if replaced && conflict == Conflict::Replace {
            200
        } else {
            201
        },
        &v,
    )))
}

fn patch_item(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<Reply, ApiError> {
    let doc = read_json(body)?;
    let name = match doc.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("name must be a string.")),
    };
    let parent = match doc.get("parentReference") {
        None | Some(Value::Null) => None,
        Some(p) => match p.get("id").and_then(|v| v.as_str()) {
            Some(id) => Some(id.to_string()),
            None => match p.get("path").and_then(|v| v.as_str()) {
                Some(path) => Some(path.to_string()).map(|p| format!("path:{p}")),
                None => None,
            },
        },
    };
    let fsi = doc.get("fileSystemInfo");
    let mtime = fs_info_time(fsi, "lastModifiedDateTime")?;
    let ctime = fs_info_time(fsi, "createdDateTime")?;
    let mut store = lock(&shared.store);
    let it = existing(&store, drive, base, rel)?;
    check_preconditions(req, Some(&it))?;
    let parent_id = match parent {
        None => None,
        Some(p) => match p.strip_prefix("path:") {
            Some(path) => {
                // "/drives/{id}/root:/a/b" or "/drive/root:/a/b"
                let rel = path.split_once("root:").map(|(_, r)| r).unwrap_or("");
                let segs: Vec<String> = rel
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(decode)
                    .collect::<Result<_, _>>()?;
                let root = store
                    .drive(drive)
                    .map(|d| d.root_id.clone())
                    .unwrap_or_default();
                Some(
                    store
                        .resolve(&root, &segs)
                        .map(|i| i.id.clone())
                        .ok_or_else(|| ApiError::not_found("The target folder does not exist."))?,
                )
            }
            None => Some(p),
        },
    };
    let new = store.patch(&it.id, name.as_deref(), parent_id.as_deref(), mtime, ctime)?;
    Ok(Reply::Respond(Response::json(200, &store.item_json(&new))))
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
    if let Some(page) = super::read_faults::html_page(shared, &name) {
        return Reply::Respond(page);
    }
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(_) => return Reply::Respond(not_found().to_response()),
    };
    shared.stat(|s| s.downloads += 1);
    let asked = req.header("range");
    let range = match asked.filter(|_| !super::read_faults::ignore_range(shared, asked.is_some())) {
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
    super::read_faults::maybe_cut(shared, &mut resp, len);
    Reply::Respond(resp)
}

/// A `fileSystemInfo` time field: absent or null is `None`, anything but an RFC 3339 string is
/// a 400, as on SharePoint.
pub(super) fn fs_info_time(fsi: Option<&Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match fsi.and_then(|f| f.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(parse_time)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid {key}."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(drive: DriveSel, base: Base, rel: &[&str], op: ItemOp) -> Route {
        Route::Item {
            drive,
            base,
            rel: rel.iter().map(|s| s.to_string()).collect(),
            op,
        }
    }

    #[test]
    fn routes() {
        let d = || DriveSel::Id("b!x".into());
        for (path, want) in [
            (
                "/sites/emulator.sharepoint.test:/sites/Team",
                Route::SiteByPath {
                    host: "emulator.sharepoint.test".into(),
                    path: "/sites/Team".into(),
                },
            ),
            (
                "/sites/emulator.sharepoint.test:/sites/Team:",
                Route::SiteByPath {
                    host: "emulator.sharepoint.test".into(),
                    path: "/sites/Team".into(),
                },
            ),
            ("/sites/a,b,c", Route::Site("a,b,c".into())),
            ("/sites/a%2Cb/drives", Route::SiteDrives("a,b".into())),
            ("/drives/b!x", Route::Drive(d())),
            ("/drives/b!x/root", item(d(), Base::Root, &[], ItemOp::Item)),
            (
                "/drives/b!x/root/children",
                item(d(), Base::Root, &[], ItemOp::Children),
            ),
            (
                "/drives/b!x/root:/Uploads/a%20b.txt",
                item(d(), Base::Root, &["Uploads", "a b.txt"], ItemOp::Item),
            ),
            (
                "/drives/b!x/root:/Uploads/a%20b.txt:",
                item(d(), Base::Root, &["Uploads", "a b.txt"], ItemOp::Item),
            ),
            (
                "/drives/b!x/root:/Up/%C3%A9%23%25.bin:/createUploadSession",
                item(
                    d(),
                    Base::Root,
                    &["Up", "é#%.bin"],
                    ItemOp::CreateUploadSession,
                ),
            ),
            (
                "/sites/s/drive/items/ID1:/x.bin:/content",
                item(
                    DriveSel::Default,
                    Base::Id("ID1".into()),
                    &["x.bin"],
                    ItemOp::Content,
                ),
            ),
            (
                "/sites/s/drives/b!x/items/ID1/children",
                item(d(), Base::Id("ID1".into()), &[], ItemOp::Children),
            ),
            (
                "/drives/b!x/items/ID1/createUploadSession",
                item(
                    d(),
                    Base::Id("ID1".into()),
                    &[],
                    ItemOp::CreateUploadSession,
                ),
            ),
        ] {
            assert_eq!(parse_route(path), Ok(want), "{path}");
        }
        for bad in [
            "/me/drive",
            "/drives/b!x/rootx",
            "/drives/b!x/root:/a:/bogus",
            "/drives/b!x/root:/a/%2E%2E/b",
            "/drives/b!x/root:/%FF",
        ] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        for (v, want) in [
            ("bytes=0-9", Ok(Some((0, 10)))),
            ("bytes=90-", Ok(Some((90, 10)))),
            ("bytes=-5", Ok(Some((95, 5)))),
            ("bytes=95-200", Ok(Some((95, 5)))),
            ("bytes=100-", Err(Unsatisfiable)),
            ("bytes=5-1", Err(Unsatisfiable)),
            ("items=0-1", Ok(None)),
        ] {
            assert_eq!(parse_range(v, 100), want, "{v}");
        }
    }
}
