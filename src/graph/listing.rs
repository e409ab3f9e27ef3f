//! A folder's children, page after page, with every page checked to belong to that folder
//! (field-reference entry 19: a children `@odata.nextLink` once pointed at the drive root, and
//! a client that followed it showed the root's files and missed the folder's own).
//!
//! Every item of every page must name the same parent (`parentReference.id`) as the items
//! before it; when there is more than one page, the folder's own id and `childCount` are
//! asked once (one small GET), every page must name that id, and the pages must hold that
//! many children (a link to another folder may bring foreign items, or none at all). A
//! listing that breaks this is never mixed: it starts over once from the first page, then
//! fails with a protocol error (EIO for a reader) and a log line. (Under heavy churn of a
//! multi-page folder the count can differ twice in a row: then too the listing fails, and
//! the next `ls` asks again.) A page that
//! stalls or is cut is asked again once (the FUSE thread waiting on a first `ls` should not
//! wait through more than two answer timeouts per page), then the transport error goes up
//! (the namespace then answers from its cache).

use serde::Deserialize;
use serde_json::Value;

use super::api::GraphApi;
use super::wire::DriveItem;
use crate::remote::{RemoteError, RemoteItem};

/// Bound on `@odata.nextLink` pages, against a server that never stops paging.
const MAX_PAGES: usize = 100_000;

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// One listed child: the item and the parent id its page gave.
#[derive(Debug)]
pub struct Child {
    pub item: RemoteItem,
    pub parent_id: Option<String>,
}

/// Check that every item of `page` has the parent `*parent` (learning it from the first item
/// that names one when `*parent` is `None`). Pure. `Err(the foreign parent id)`.
pub fn check_parents(page: &[Child], parent: &mut Option<String>) -> Result<(), String> {
    for c in page {
        let Some(p) = c.parent_id.as_deref() else {
            continue; // no parentReference: nothing to compare
        };
        match parent.as_deref() {
            None => *parent = Some(p.to_string()),
            Some(want) if want == p => {}
            Some(_) => return Err(p.to_string()),
        }
    }
    Ok(())
}

fn child(v: Value, context: &str) -> Result<Child, RemoteError> {
    let parent_id = v["parentReference"]["id"].as_str().map(str::to_string);
    let item: DriveItem = serde_json::from_value(v)
        .map_err(|_| RemoteError::Protocol(format!("{context}: malformed driveItem")))?;
    Ok(Child {
        item: item.into_remote_item(),
        parent_id,
    })
}

/// GET one page, asking again once if it stalls or is cut.
fn page(api: &GraphApi, url: &str, context: &str) -> Result<Page, RemoteError> {
    page_like(api, url, context)
}

/// Why one pass over the pages failed.
enum Pass {
    Failed(RemoteError),
    /// Page `n` (1-based) held an item of another folder.
    Foreign {
        page: usize,
        parent: String,
    },
    /// The pages held fewer (or more) children than the folder has.
    Short {
        got: u64,
        want: u64,
    },
}

/// The folder's id and child count (`GET {folder_url}?$select=id,folder`).
fn folder_facts(
    api: &GraphApi,
    folder_url: &str,
    context: &str,
) -> Result<(String, Option<u64>), RemoteError> {
    let v: Value = page_like(api, &format!("{folder_url}?$select=id,folder"), context)?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| RemoteError::Protocol(format!("{context}: folder without id")))?;
    Ok((id.to_string(), v["folder"]["childCount"].as_u64()))
}

/// GET JSON, asking again once if it stalls or is cut.
fn page_like<T: serde::de::DeserializeOwned>(
    api: &GraphApi,
    url: &str,
    context: &str,
) -> Result<T, RemoteError> {
    match api.get_json::<T>(url, context) {
        Err(RemoteError::Transport(e)) => {
            log::debug!("{context}: {e}; asking again");
            api.get_json::<T>(url, context)
        }
        other => other,
    }
}

fn one_pass(
    api: &GraphApi,
    first: &str,
    folder_url: &str,
    context: &str,
) -> Result<Vec<RemoteItem>, Pass> {
    let mut parent: Option<String> = None;
    let mut expected: Option<u64> = None;
    let mut items = Vec::new();
    let mut url = first.to_string();
    for n in 1..=MAX_PAGES {
        let p = page(api, &url, context).map_err(Pass::Failed)?;
        let children = p
            .value
            .into_iter()
            .map(|v| child(v, context))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Pass::Failed)?;
        check_parents(&children, &mut parent).map_err(|foreign| Pass::Foreign {
            page: n,
            parent: foreign,
        })?;
        items.extend(children.into_iter().map(|c| c.item));
        if n == 1 && p.next_link.is_some() {
            // More than one page: learn the folder's id (every page is checked against it)
            // and how many children it has (a link gone astray may bring nothing at all).
            let (id, count) = folder_facts(api, folder_url, context).map_err(Pass::Failed)?;
            if let Some(foreign) = parent.as_ref().filter(|p| **p != id) {
                return Err(Pass::Foreign {
                    page: 1,
                    parent: foreign.clone(),
                });
            }
            parent = Some(id);
            expected = count;
        }
        if p.next_link.is_none() {
            if let Some(want) = expected.filter(|w| *w != items.len() as u64) {
                return Err(Pass::Short {
                    got: items.len() as u64,
                    want,
                });
            }
        }
        match p.next_link {
            Some(next) if next == url => {
                return Err(Pass::Failed(RemoteError::Protocol(format!(
                    "{context}: @odata.nextLink points to the same page"
                ))))
            }
            Some(next) => url = next,
            None => return Ok(items),
        }
    }
    Err(Pass::Failed(RemoteError::Protocol(format!(
        "{context}: too many pages"
    ))))
}

/// Every child of the folder whose first children page is `first` (and whose id is
/// `folder_id`, when known).
pub fn list_children(
    api: &GraphApi,
    first: &str,
    folder_url: &str,
    context: &str,
) -> Result<Vec<RemoteItem>, RemoteError> {
    let mut last = String::new();
    for attempt in 1..=2 {
        last = match one_pass(api, first, folder_url, context) {
            Ok(items) => return Ok(items),
            Err(Pass::Failed(e)) => return Err(e),
            Err(Pass::Foreign { page, parent }) => format!(
                "page {page} of the listing holds items of another folder (parent id \
                 {parent}): the server's @odata.nextLink went astray"
            ),
            Err(Pass::Short { got, want }) => format!(
                "the pages held {got} children but the folder has {want}: the server's \
                 @odata.nextLink went astray, or the folder changed meanwhile"
            ),
        };
        if attempt == 1 {
            log::warn!("{context}: {last}; listing again from the first page");
        }
    }
    log::warn!("{context}: {last}; the listing is refused, not mixed");
    Err(RemoteError::Protocol(format!("{context}: {last}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, parent: Option<&str>) -> Child {
        Child {
            item: RemoteItem {
                id: format!("id-{name}"),
                name: name.into(),
                is_folder: false,
                size: 0,
                mtime: std::time::SystemTime::UNIX_EPOCH,
                etag: None,
                quick_xor_hash: None,
                web_url: None,
            },
            parent_id: parent.map(str::to_string),
        }
    }

    #[test]
    fn pages_must_share_one_parent() {
        let mut parent = None;
        let p1 = [c("a", Some("F")), c("b", None), c("c", Some("F"))];
        assert_eq!(check_parents(&p1, &mut parent), Ok(()));
        assert_eq!(parent.as_deref(), Some("F"));
        let p2 = [c("d", Some("F")), c("root-file", Some("ROOT"))];
        assert_eq!(check_parents(&p2, &mut parent), Err("ROOT".into()));
        // A known folder id is checked from the first item on.
        let mut known = Some("F".to_string());
        assert_eq!(
            check_parents(&[c("x", Some("G"))], &mut known),
            Err("G".into())
        );
        // Items without parentReference are not judged.
        let mut none = None;
        assert_eq!(check_parents(&[c("x", None)], &mut none), Ok(()));
        assert_eq!(none, None);
    }
}
