//! The Graph routes the emulator knows, parsed from a path below `/v1.0` into a [`Route`]:
//! sites by path and id, a site's drives, a drive, and the driveItem addressing forms (by root,
//! id, and `:/path[:]` below either) with the operation that follows them. Segments are
//! percent-decoded one by one (UTF-8, strict).

use percent_encoding::percent_decode_str;

use crate::emulator::errors::ApiError;

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

pub(super) fn decode(seg: &str) -> Result<String, ApiError> {
    percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("Path segment is not valid UTF-8."))
}

pub(super) fn bad_route() -> ApiError {
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

pub(super) fn drive_route(drive: DriveSel, rest: &str) -> Result<Route, ApiError> {
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
