//! The admin API under `/_admin` (no auth; the emulator only listens on 127.0.0.1): what
//! tests and the demo use to look inside the emulated tenant and steer it.
//!
//! `GET items | violations | events | stats | faults | info` (items carry `checked_out`: a
//! file left checked out in a library that requires check-out, which nobody else sees), `POST faults` (replaces the whole
//! configuration), `POST reset_stats` (counters, violations and events), `PUT
//! files/{drive}/{path}?mtime=RFC3339` (seed or replace a file, streaming; parents created),
//! `GET files/{drive}/{path}` (raw bytes, for content checks), `DELETE files/{drive}/{path}`
//! (a file or a folder with everything below; 204, 404 when absent), `PUT
//! folders/{drive}/{path}` (folders created as needed; 201 with the item) and `POST
//! move/{drive}/{path}?to={new drive-relative path}` (rename or move a file or folder, as a
//! PATCH of its name and parent would; the new parent must exist; 200 with the item). Changes
//! through `files/`, `folders/` and `move/` are a colleague's changes: they appear in
//! `/root/delta` as SharePoint reports them (a moved folder alone, without its descendants).
//!
//! Field conditions (`field`): `GET field` shows the knobs, `POST field` merges a JSON object
//! into them and answers the result. `POST delta/expire` makes every delta token issued so far
//! answer 410 `resyncRequired`. `GET sessions` answers `{"count": N, "paths": ["Uploads/a.bin",
//! …]}`, the open upload sessions by drive-relative path (never URLs); `GET stats` carries the
//! same as `open_sessions` / `open_session_paths`, plus `by_kind`, `budget_refused`,
//! `requests_inside_retry_after` and `sessions_refused_path_busy`. `{drive}` is a drive name
//! ("Documents", "Archive"), library name ("Shared Documents") or id; path segments are
//! percent-decoded.

use std::fs::File;

use percent_encoding::percent_decode_str;
use serde_json::json;

use super::errors::ApiError;
use super::faults::FaultConfig;
use super::http::{Body, BodyReader, Reply, Request, Response};
use super::state::{lock, EmulatorState, Journal, Stats};
use super::store::{fmt_time, parse_time, NewFile};
use super::upload::body_to_temp;
use super::upload::open_session_paths;
use crate::remote::Conflict;

pub fn handle_admin(shared: &EmulatorState, req: &Request, body: &mut BodyReader<'_>) -> Reply {
    if let Some(r) = super::shares::handle_admin(shared, req) {
        return r;
    }
    if let Some(r) = super::auth::handle_admin(shared, req, body) {
        return r;
    }
    match admin(shared, req, body) {
        Ok(r) => Reply::Respond(r),
        Err(e) if e.status == 0 => Reply::Drop,
        Err(e) => Reply::Respond(e.to_response()),
    }
}

fn admin(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
) -> Result<Response, ApiError> {
    let rest = req.path.strip_prefix("/_admin/").unwrap_or("");
    let m = req.method.as_str();
    let ok = |v: serde_json::Value| Ok(Response::json(200, &v));
    match (m, rest) {
        ("GET", "items") => {
            let store = lock(&shared.store);
            let items: Vec<_> = store
                .all_items()
                .into_iter()
                .map(|(drive, path, it)| {
                    let web_url = store.item_json(it)["webUrl"].clone();
                    json!({
                        "drive": drive, "path": path, "folder": it.folder, "size": it.size,
                        "quickXorHash": it.qxh, "mtime": fmt_time(it.fs_modified), "id": it.id,
                        "webUrl": web_url, "checked_out": it.checked_out,
                    })
                })
                .collect();
            ok(json!({ "items": items }))
        }
        ("GET", "violations") => ok(json!({ "violations": lock(&shared.journal).violations })),
        ("GET", "events") => ok(json!({ "events": lock(&shared.journal).events })),
        ("GET", "stats") => {
            let mut v = serde_json::to_value(lock(&shared.stats).clone()).unwrap_or_default();
            let paths = open_session_paths(shared);
            v["open_sessions"] = json!(paths.len());
            v["open_session_paths"] = json!(paths);
            ok(v)
        }
        ("GET", "sessions") => {
            let paths = open_session_paths(shared);
            ok(json!({ "count": paths.len(), "paths": paths }))
        }
        ("GET", "field") => ok(serde_json::to_value(shared.field()).unwrap_or_default()),
        ("POST", "field") => {
            let raw = body
                .read_all(1 << 20)
                .map_err(|_| ApiError::bad_request("body too large"))?;
            let patch: serde_json::Value = serde_json::from_slice(&raw)
                .map_err(|e| ApiError::bad_request(format!("bad field configuration: {e}")))?;
            let cfg = shared
                .field()
                .merged(&patch)
                .map_err(|e| ApiError::bad_request(format!("bad field configuration: {e}")))?;
            shared.set_field(cfg);
            ok(serde_json::to_value(shared.field()).unwrap_or_default())
        }
        ("POST", "delta/expire") => {
            lock(&shared.store).changes_mut().expire_tokens();
            Ok(Response::new(204))
        }
        ("GET", "info") => ok(serde_json::to_value(&shared.info).unwrap_or_default()),
        ("GET", "faults") => ok(serde_json::to_value(shared.faults()).unwrap_or_default()),
        ("POST", "faults") => {
            let raw = body
                .read_all(1 << 20)
                .map_err(|_| ApiError::bad_request("body too large"))?;
            let text = String::from_utf8(raw).map_err(|_| ApiError::bad_request("not UTF-8"))?;
            let cfg = FaultConfig::from_json(&text)
                .map_err(|e| ApiError::bad_request(format!("bad fault configuration: {e}")))?;
            shared.set_faults(cfg);
            ok(serde_json::to_value(shared.faults()).unwrap_or_default())
        }
        ("POST", "reset_stats") => {
            *lock(&shared.stats) = Stats::default();
            *lock(&shared.journal) = Journal::default();
            Ok(Response::new(204))
        }
        (_, r) if r.starts_with("files/") => files(shared, req, body, &r["files/".len()..]),
        ("PUT", r) if r.starts_with("folders/") => folders(shared, &r["folders/".len()..]),
        ("POST", r) if r.starts_with("move/") => move_item(shared, req, &r["move/".len()..]),
        _ => Err(ApiError::not_found("Unknown admin endpoint.")),
    }
}

/// Percent-decoded segments of `{drive}/{path}`.
fn segments(rest: &str) -> Result<Vec<String>, ApiError> {
    rest.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::bad_request("path is not UTF-8"))
        })
        .collect::<Result<_, _>>()
}

/// The root id of the drive named (or identified) by `name`.
fn drive_root(shared: &EmulatorState, name: &str) -> Result<String, ApiError> {
    let store = lock(&shared.store);
    store
        .drive_by_name(name)
        .or_else(|| store.drive(name))
        .map(|d| d.root_id.clone())
        .ok_or_else(|| ApiError::not_found("unknown drive"))
}

fn folders(shared: &EmulatorState, rest: &str) -> Result<Response, ApiError> {
    let segs = segments(rest)?;
    let (drive_name, path) = segs
        .split_first()
        .ok_or_else(|| ApiError::bad_request("drive and path required"))?;
    let root = drive_root(shared, drive_name)?;
    let mut store = lock(&shared.store);
    let id = store.ensure_folders(&root, path)?;
    let it = store
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such folder"))?;
    Ok(Response::json(201, &store.item_json(&it)))
}

/// Rename or move `{drive}/{path}` to the drive-relative path in `?to=`.
fn move_item(shared: &EmulatorState, req: &Request, rest: &str) -> Result<Response, ApiError> {
    let segs = segments(rest)?;
    let (drive_name, path) = segs
        .split_first()
        .ok_or_else(|| ApiError::bad_request("drive and path required"))?;
    let to: Vec<String> = req
        .query("to")
        .ok_or_else(|| ApiError::bad_request("?to= required"))?
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let (name, dirs) = to
        .split_last()
        .ok_or_else(|| ApiError::bad_request("?to= names no item"))?;
    let root = drive_root(shared, drive_name)?;
    let mut store = lock(&shared.store);
    let id = store
        .resolve(&root, path)
        .map(|i| i.id.clone())
        .ok_or_else(|| ApiError::not_found("no such item"))?;
    let parent = store
        .resolve(&root, dirs)
        .filter(|i| i.folder)
        .map(|i| i.id.clone())
        .ok_or_else(|| ApiError::not_found("no such folder for ?to="))?;
    let it = store.patch(&id, Some(name), Some(&parent), None, None)?;
    Ok(Response::json(200, &store.item_json(&it)))
}

fn files(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
    rest: &str,
) -> Result<Response, ApiError> {
    let segs = segments(rest)?;
    let (drive_name, path) = segs
        .split_first()
        .ok_or_else(|| ApiError::bad_request("drive and path required"))?;
    let (name, dirs) = path
        .split_last()
        .ok_or_else(|| ApiError::bad_request("file path required"))?;
    let root = drive_root(shared, drive_name)?;
    match req.method.as_str() {
        "GET" => {
            let store = lock(&shared.store);
            let it = store
                .resolve(&root, path)
                .filter(|i| !i.folder)
                .ok_or_else(|| ApiError::not_found("no such file"))?;
            let f = File::open(store.blob_path(&it.id))
                .map_err(|e| ApiError::new(500, "generalException", e.to_string()))?;
            let mut r = Response::new(200);
            r.body = Body::File(f, it.size);
            Ok(r)
        }
        "PUT" => {
            let mtime = match req.query("mtime") {
                None => None,
                Some(s) => Some(parse_time(s).ok_or_else(|| ApiError::bad_request("bad mtime"))?),
            };
            let (tmp, size, qxh) = body_to_temp(shared, body)?;
            let result = {
                let mut store = lock(&shared.store);
                store.ensure_folders(&root, dirs).and_then(|parent| {
                    store
                        .commit_file(NewFile {
                            parent_id: &parent,
                            name,
                            conflict: Conflict::Replace,
                            tmp: &tmp,
                            size,
                            qxh,
                            fs_created: mtime,
                            fs_modified: mtime,
                            quota: None,
                        })
                        .map(|it| store.item_json(&it))
                })
            };
            let _ = std::fs::remove_file(&tmp);
            Ok(Response::json(201, &result?))
        }
        "DELETE" => {
            let mut store = lock(&shared.store);
            let id = store
                .resolve(&root, path)
                .map(|i| i.id.clone())
                .ok_or_else(|| ApiError::not_found("no such item"))?;
            store.delete(&id);
            Ok(Response::new(204))
        }
        _ => Err(ApiError::new(405, "invalidRequest", "Method not allowed.")),
    }
}
