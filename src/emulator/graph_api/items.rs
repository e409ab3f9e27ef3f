//! The driveItem handlers that do more than answer an item: children pages (`$top`,
//! `$skiptoken`, the read faults' page size and links), the delta route, folder creation,
//! simple uploads (PUT content, up to the protocol's limit) and PATCH (rename, move by id or
//! path, `fileSystemInfo` times).

use serde_json::{json, Value};

use super::route::decode;
use super::{existing, file_target, fs_info_time, read_json, Base};
use crate::emulator::errors::ApiError;
use crate::emulator::http::{BodyReader, Reply, Request, Response};
use crate::emulator::state::{lock, EmulatorState};
use crate::emulator::store::NewFile;
use crate::emulator::upload::{self, check_preconditions, parse_conflict};
use crate::protocol::{MAX_PAGE_SIZE, SIMPLE_UPLOAD_LIMIT};
use crate::remote::Conflict;

const DEFAULT_TOP: usize = 200;

pub(super) fn list_children(
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
    let top = crate::emulator::read_faults::page_size(shared, top);
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
        v["@odata.nextLink"] = json!(crate::emulator::read_faults::next_link_to_root(
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

pub(super) fn delta(
    shared: &EmulatorState,
    req: &Request,
    drive: &str,
    base: &Base,
    rel: &[String],
) -> Result<Reply, ApiError> {
    let at_root = *base == Base::Root && rel.is_empty();
    crate::emulator::delta::handle(shared, req, drive, at_root, MAX_PAGE_SIZE)
}

pub(super) fn create_folder(
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
    crate::emulator::field_faults::folder_created(shared, &it.id);
    Ok(Reply::Respond(Response::json(201, &store.item_json(&it))))
}

pub(super) fn simple_upload(
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
    if let Some(refused) = crate::emulator::field_faults::validation_refuses(shared, &target.name) {
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
                crate::emulator::field_faults::after_commit(shared, &mut store, &mut it);
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

pub(super) fn patch_item(
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
