//! Sharing links: `GET /v1.0/shares/{shareId}/driveItem` resolves a link such as
//! `https://emulator.sharepoint.test/:f:/s/Team/E…` to the shared item, as Graph does, and the
//! admin route `GET /_admin/share?drive=NAME&path=REL` issues such a link.
//!
//! `shareId` is `u!` + unpadded base64url of the link URL (Graph's encoding; a padded or
//! standard-alphabet form is refused like Graph refuses it). Links are stateless: the last
//! path segment is `E` + base64url of the item id, so a link survives an emulator restart
//! and needs no table. Any link form (`:f:`, `:u:`, `:w:`, …) resolves the same way.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::percent_decode_str;
use serde_json::json;

use super::errors::ApiError;
use super::http::{Reply, Request, Response};
use super::state::{lock, EmulatorState};
use super::store::HOST;

/// The link for `item_id`, in the `:f:` (folder) or `:u:` (file) form.
pub fn link_for(item_id: &str, folder: bool) -> String {
    let kind = if folder { "f" } else { "u" };
    format!(
        "https://{HOST}/:{kind}:/s/Team/E{}",
        URL_SAFE_NO_PAD.encode(item_id.as_bytes())
    )
}

/// The item id a link names, if it is one of ours.
fn item_of_link(url: &str) -> Option<String> {
    let path = url.split("://").nth(1)?.split(['?', '#']).next()?;
    let mut segs = path.split('/').skip(1);
    let kind = segs.next()?;
    if !(kind.len() == 3 && kind.starts_with(':') && kind.ends_with(':')) {
        return None;
    }
    let token = path.rsplit('/').next()?.strip_prefix('E')?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()
}

/// `/shares/...` under `/v1.0` (`path` is after `/v1.0`); `None` when not a shares route.
pub fn handle(shared: &EmulatorState, req: &Request, path: &str) -> Option<Reply> {
    let rest = path.strip_prefix("/shares/")?;
    let not_found = || {
        Reply::Respond(ApiError::not_found("The sharing link could not be found.").to_response())
    };
    let Some((share, "driveItem")) = rest.split_once('/') else {
        return Some(not_found());
    };
    if req.method != "GET" {
        return Some(Reply::Respond(
            ApiError::new(405, "invalidRequest", "Method not allowed.").to_response(),
        ));
    }
    let share = percent_decode_str(share).decode_utf8_lossy().into_owned();
    let Some(url) = share
        .strip_prefix("u!")
        .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Some(Reply::Respond(
            ApiError::bad_request("The share id is not u! + unpadded base64url.").to_response(),
        ));
    };
    let Some(id) = item_of_link(&url) else {
        return Some(not_found());
    };
    let store = lock(&shared.store);
    Some(match store.get(&id) {
        Some(it) => Reply::Respond(Response::json(200, &store.item_json(it))),
        None => not_found(),
    })
}

/// `GET /_admin/share?drive=NAME&path=REL`: `{"url": link}`; `None` when not this route.
pub fn handle_admin(shared: &EmulatorState, req: &Request) -> Option<Reply> {
    if req.path != "/_admin/share" {
        return None;
    }
    let store = lock(&shared.store);
    let drive = store.drive_by_name(req.query("drive").unwrap_or("Documents"));
    let segs: Vec<String> = req
        .query("path")
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let item = drive.and_then(|d| store.resolve(&d.root_id, &segs));
    Some(Reply::Respond(match item {
        Some(it) => Response::json(200, &json!({ "url": link_for(&it.id, it.folder) })),
        None => ApiError::not_found("No such item.").to_response(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip() {
        let link = link_for("01ABC!x", true);
        assert!(link.starts_with("https://emulator.sharepoint.test/:f:/s/Team/E"));
        assert_eq!(item_of_link(&link).as_deref(), Some("01ABC!x"));
        assert_eq!(
            item_of_link(&format!("{}?e=abc", link_for("i", false))).as_deref(),
            Some("i")
        );
        assert_eq!(item_of_link("https://h/sites/Team/Eabc"), None);
    }
}
