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
//!
//! Parts: `mod.rs` the entry point (faults, token check), dispatch and the item lookups every
//! handler shares; `route.rs` the route parser; `items.rs` listings, delta, folder creation,
//! simple uploads and patches; `download.rs` the download URLs.

mod download;
mod items;
mod route;
#[cfg(test)]
mod tests;

pub use download::{handle_download, parse_range, Unsatisfiable};
pub use route::{parse_route, Base, DriveSel, ItemOp, Route};

use serde_json::{json, Value};

use super::auth::bearer;
use super::errors::ApiError;
use super::faults::{Fault, Trigger};
use super::http::{BodyReader, Reply, Request, Response};
use super::state::{lock, EmulatorState};
use super::store::{parse_time, Item, Store, HOST, HOST_MY};
use super::upload::{self, check_preconditions, SessionTarget};
use items::{create_folder, delta, list_children, patch_item, simple_upload};

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
            Ok(download::redirect(shared, it.id))
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
