//! Library settings the upload path meets (field reference entries 13 and 21): the drive's
//! storage quota, read before a big upload because SharePoint checks it only at the end, and
//! check-out, for libraries that keep every upload checked out (visible to the uploader only)
//! until it is checked in.
//!
//! [`Publications`] remembers which items the latest answers carrying them said were checked
//! out (`publication.level` = `checkout`), so `Remote::checked_out` needs no request; it holds
//! ids only, is bounded, and its lock is a leaf taken only to read or update the set. The
//! calls here go through `GraphApi` (bearer token, 401 retry) like every Graph call.

use std::collections::HashSet;
use std::sync::Mutex;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::api::GraphApi;
use super::paths::{drive_item_id_url, encode_segment};
use super::wire::DriveItem;
use crate::remote::{DriveQuota, RemoteError, RemoteItem};

/// Ids remembered at most; past that the set starts again (a library with this many checked
/// out files at once is not one this mount is checking in).
const MAX_REMEMBERED: usize = 10_000;

/// Item ids last reported checked out.
#[derive(Debug, Default)]
pub struct Publications {
    checked_out: Mutex<HashSet<String>>,
}

impl Publications {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.checked_out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record what an answer said about `item`'s publication.
    pub fn note(&self, item: &DriveItem) {
        let checked_out = item
            .publication
            .as_ref()
            .and_then(|p| p.level.as_deref())
            .is_some_and(|l| l.eq_ignore_ascii_case("checkout"));
        let mut set = self.set();
        if checked_out {
            if set.len() >= MAX_REMEMBERED {
                set.clear();
            }
            set.insert(item.id.clone());
        } else {
            set.remove(&item.id);
        }
    }

    pub fn is_checked_out(&self, id: &str) -> bool {
        self.set().contains(id)
    }

    pub fn forget(&self, id: &str) {
        self.set().remove(id);
    }
}

#[derive(Serialize)]
struct CheckinBody<'a> {
    comment: &'a str,
}

#[derive(Deserialize)]
struct DriveWire {
    #[serde(default)]
    quota: Option<QuotaWire>,
}

#[derive(Deserialize)]
struct QuotaWire {
    #[serde(default)]
    remaining: Option<u64>,
    #[serde(default)]
    total: Option<u64>,
}

/// `POST /drives/{drive}/items/{id}/checkin` with a comment: 204 (any 2xx) once checked in.
pub fn checkin(
    api: &GraphApi,
    publications: &Publications,
    drive_id: &str,
    item: &RemoteItem,
    path: &str,
    comment: &str,
) -> Result<(), RemoteError> {
    let context = format!("check in {path}");
    let url = format!(
        "{}/checkin",
        drive_item_id_url(&api.base, drive_id, &item.id)
    );
    let body = CheckinBody { comment };
    api.send_ok(Method::POST, &url, |r| r.json(&body), &context)?;
    publications.forget(&item.id);
    Ok(())
}

/// `GET /drives/{drive}`: the `quota` facet's `remaining`, `None` when the drive has none.
pub fn drive_quota(api: &GraphApi, drive_id: &str) -> Result<Option<DriveQuota>, RemoteError> {
    let url = format!(
        "{}/drives/{}?$select=id,quota",
        api.base,
        encode_segment(drive_id)
    );
    let drive: DriveWire = api.get_json(&url, "drive quota")?;
    Ok(drive.quota.and_then(|q| {
        q.remaining.map(|remaining| DriveQuota {
            remaining,
            total: q.total,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, level: Option<&str>) -> DriveItem {
        let mut v = serde_json::json!({"id": id, "name": "a.txt"});
        if let Some(l) = level {
            v["publication"] = serde_json::json!({"level": l, "versionId": "1.0"});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn publications_follow_the_latest_answer() {
        let p = Publications::default();
        p.note(&item("a", Some("checkout")));
        p.note(&item("b", Some("published")));
        p.note(&item("c", None));
        assert!(p.is_checked_out("a"));
        assert!(!p.is_checked_out("b") && !p.is_checked_out("c"));
        p.note(&item("a", Some("published")));
        assert!(!p.is_checked_out("a"));
        p.note(&item("a", Some("Checkout")));
        p.forget("a");
        assert!(!p.is_checked_out("a"));
    }

    #[test]
    fn quota_wire() {
        let d: DriveWire =
            serde_json::from_str(r#"{"id":"x","quota":{"total":100,"remaining":40,"used":60}}"#)
                .unwrap();
        let q = d.quota.unwrap();
        assert_eq!((q.remaining, q.total), (Some(40), Some(100)));
        let none: DriveWire = serde_json::from_str(r#"{"id":"x"}"#).unwrap();
        assert!(none.quota.is_none());
    }
}
