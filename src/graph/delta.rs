//! The drive's change feed (`GET /drives/{id}/root/delta`) read by item id, for
//! `GraphRemote::delta`.
//!
//! On OneDrive for Business and SharePoint a delta item carries no `parentReference.path`
//! (field reference, entry 1: "always track items by id"), so nothing here builds a path: each
//! item becomes a [`DeltaChange`] with its id, its parent's id and its name, and the core
//! resolves paths through the ids it holds (`fs::feed`). A folder renamed or moved comes alone
//! (entry 2); items may repeat within a round and deletes may come late, early or not at all
//! (entry 3): this module passes the feed on in order and leaves "last occurrence wins" to the
//! core. A `410 Gone` (`resyncRequired`) can come on any page (entry 4): it fails the whole
//! round (the pages read so far are dropped) and the caller starts again at `token=latest`.
//!
//! The round also names the mount folder's own item id ([`DeltaRound::root_id`]), read once
//! per mount (one GET of the folder) and kept in [`Feed`].
//!
//! Locks: [`Feed`]'s mutex is a leaf, never held across a request.

use std::sync::Mutex;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use super::api::GraphApi;
use super::wire::DriveItem;
use crate::remote::{DeltaChange, DeltaRound, RemoteError, RemoteItem};

/// Bound on pages in one round, against a server that never stops paging.
const MAX_PAGES: usize = 100_000;

/// What the feed remembers between rounds: the mount folder's item id.
#[derive(Debug, Default)]
pub struct Feed {
    root_id: Mutex<Option<String>>,
}

impl Feed {
    /// The mount folder's id, asking `stat_root` (one request) the first time.
    fn root_id(
        &self,
        stat_root: impl FnOnce() -> Result<Option<RemoteItem>, RemoteError>,
    ) -> Result<Option<String>, RemoteError> {
        if let Some(id) = self
            .root_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(Some(id));
        }
        let id = stat_root()?.map(|it| it.id).filter(|id| !id.is_empty());
        if let Some(id) = &id {
            *self.root_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        }
        Ok(id)
    }
}

/// Where a page says to go next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// `@odata.nextLink`: more pages in this round.
    Page(String),
    /// `@odata.deltaLink`'s token: the round is complete.
    Done(String),
}

/// One round after `token` (`None`: start at "now", `token=latest`).
pub(super) fn round(
    api: &GraphApi,
    drive_id: &str,
    feed: &Feed,
    stat_root: impl FnOnce() -> Result<Option<RemoteItem>, RemoteError>,
    token: Option<&str>,
) -> Result<DeltaRound, RemoteError> {
    let context = "change feed";
    let root_id = feed.root_id(stat_root)?;
    let base = format!(
        "{}/drives/{}/root/delta",
        api.base,
        utf8_percent_encode(drive_id, NON_ALPHANUMERIC)
    );
    let mut url = match token {
        None => format!("{base}?token=latest"),
        Some(t) => format!("{base}?token={}", utf8_percent_encode(t, NON_ALPHANUMERIC)),
    };
    let mut round = DeltaRound {
        root_id,
        ..DeltaRound::default()
    };
    for _ in 0..MAX_PAGES {
        let page: Value = api.get_json(&url, context)?;
        match parse_page(&page, &mut round.changes)? {
            Next::Page(next) if next != url => url = next,
            Next::Page(_) => {
                return Err(RemoteError::Protocol(format!(
                    "{context}: @odata.nextLink points to the same page"
                )))
            }
            Next::Done(token) => {
                round.token = token;
                return Ok(round);
            }
        }
    }
    Err(RemoteError::Protocol(format!("{context}: too many pages")))
}

/// The changes of one page, appended to `out`, and where to go next.
fn parse_page(page: &Value, out: &mut Vec<DeltaChange>) -> Result<Next, RemoteError> {
    for v in page["value"].as_array().into_iter().flatten() {
        if let Some(change) = parse_item(v) {
            out.push(change);
        }
    }
    if let Some(next) = page["@odata.nextLink"].as_str() {
        return Ok(Next::Page(next.to_string()));
    }
    let link = page["@odata.deltaLink"]
        .as_str()
        .ok_or_else(|| RemoteError::Protocol("change feed: no deltaLink".into()))?;
    url::Url::parse(link)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .map(Next::Done)
        .ok_or_else(|| RemoteError::Protocol("change feed: deltaLink without token".into()))
}

/// One delta item as a change; `None` for an item without an id (nothing to track it by).
fn parse_item(v: &Value) -> Option<DeltaChange> {
    let id = v["id"].as_str().filter(|s| !s.is_empty())?.to_string();
    let parent_id = v["parentReference"]["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if v.get("deleted").is_some_and(|d| !d.is_null()) {
        return Some(DeltaChange::Deleted { id, parent_id });
    }
    let child_count = v["folder"]["childCount"].as_u64();
    let item = serde_json::from_value::<DriveItem>(v.clone()).ok()?;
    Some(DeltaChange::Changed {
        item: item.into_remote_item(),
        parent_id,
        child_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_are_read_by_id_without_parent_paths() {
        let page = json!({
            "value": [
                {"id": "R", "name": "root", "root": {}, "folder": {"childCount": 3},
                 "parentReference": {"driveId": "d"}},
                {"id": "F1", "name": "a.txt", "size": 5, "file": {},
                 "parentReference": {"driveId": "d", "id": "D1"}},
                {"id": "D1", "name": "Docs", "folder": {"childCount": 1},
                 "parentReference": {"driveId": "d", "id": "R"}},
                {"id": "X", "name": "gone.txt", "deleted": {}, "file": {},
                 "parentReference": {"driveId": "d", "id": "D1"}},
                {"name": "no id"},
            ],
            "@odata.deltaLink": "https://g/v1.0/drives/d/root/delta?token=abc%2D1",
        });
        let mut out = Vec::new();
        assert_eq!(
            parse_page(&page, &mut out).unwrap(),
            Next::Done("abc-1".into())
        );
        assert_eq!(out.len(), 4, "{out:?}");
        match &out[0] {
            DeltaChange::Changed {
                item,
                parent_id,
                child_count,
            } => {
                assert_eq!((item.id.as_str(), item.is_folder), ("R", true));
                assert_eq!((parent_id, child_count), (&None, &Some(3)));
            }
            c => panic!("{c:?}"),
        }
        match &out[1] {
            DeltaChange::Changed {
                item, parent_id, ..
            } => {
                assert_eq!((item.name.as_str(), item.size), ("a.txt", 5));
                assert_eq!(parent_id.as_deref(), Some("D1"));
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            out[3],
            DeltaChange::Deleted {
                id: "X".into(),
                parent_id: Some("D1".into())
            }
        );
    }

    #[test]
    fn next_links_and_bad_pages() {
        let mut out = Vec::new();
        let page = json!({"value": [], "@odata.nextLink": "https://g/next"});
        assert_eq!(
            parse_page(&page, &mut out).unwrap(),
            Next::Page("https://g/next".into())
        );
        for bad in [
            json!({"value": []}),
            json!({"value": [], "@odata.deltaLink": "https://g/delta?x=1"}),
        ] {
            assert!(matches!(
                parse_page(&bad, &mut out),
                Err(RemoteError::Protocol(_))
            ));
        }
    }

    #[test]
    fn the_root_id_is_asked_once() {
        let feed = Feed::default();
        let mut asked = 0;
        let root = |asked: &mut i32| {
            *asked += 1;
            Ok(Some(RemoteItem {
                id: "R".into(),
                name: "Uploads".into(),
                is_folder: true,
                size: 0,
                mtime: std::time::SystemTime::UNIX_EPOCH,
                etag: None,
                quick_xor_hash: None,
                web_url: None,
            }))
        };
        assert_eq!(
            feed.root_id(|| root(&mut asked)).unwrap().as_deref(),
            Some("R")
        );
        assert_eq!(
            feed.root_id(|| root(&mut asked)).unwrap().as_deref(),
            Some("R")
        );
        assert_eq!(asked, 1);
        let other = Feed::default();
        assert!(other
            .root_id(|| Err(RemoteError::Transport("down".into())))
            .is_err());
        assert_eq!(other.root_id(|| Ok(None)).unwrap(), None);
    }
}
