//! The drive change feed: `GET /drives/{id}/root/delta` (also below `/sites/{id}/drive[s/{id}]`),
//! as Graph documents it for OneDrive for Business and SharePoint (root only).
//!
//! The store keeps a [`ChangeLog`]: every item change — through Graph *or* the admin API, since
//! both go through the store — takes the next sequence number, and deletions leave tombstones.
//! A delta token names "everything up to sequence S seen" plus the store's epoch (random per
//! emulator start: the log lives in memory, so tokens from before a restart get 410).
//!
//! Protocol: without `token`, the whole drive is enumerated (the live items, parents before
//! children in a fresh store, no deletions); with `token=S` from a deltaLink, the items whose
//! latest change is after S, each once, deleted ones as `{"id", "name", "parentReference",
//! "deleted": {}, "file"|"folder": {}}`; `token=latest` answers no items and a deltaLink for
//! now. Pages hold `$top` items (default 200, at most `MAX_PAGE_SIZE`); every page but the
//! last carries `@odata.nextLink`, the last `@odata.deltaLink`. A round is a snapshot at its
//! first page (sequence U): later pages list only changes up to U, ordered by sequence and
//! resumed after the last sequence sent, so a change made while a client pages is never lost
//! — it comes in the next round (an item may come twice across rounds, as on Graph). A token
//! below the log's floor (the admin `POST /_admin/delta/expire`, or another epoch) is answered
//! `410 Gone` with code `resyncRequired`, as Graph does when a token is too old. The field knob
//! `delta_disabled` refuses delta altogether (see `field`).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::errors::ApiError;
use super::store::{random_string, Store, ALNUM};

/// Items per page when `$top` is absent.
pub const DEFAULT_TOP: usize = 200;

/// What is left of a deleted item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub drive_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub folder: bool,
    pub seq: u64,
}

/// Sequence numbers of the latest change of every item, and tombstones of deleted ones.
#[derive(Debug)]
pub struct ChangeLog {
    epoch: String,
    seq: u64,
    live: HashMap<String, u64>,
    tombstones: HashMap<String, Tombstone>,
    /// Tokens below this are too old (410 resyncRequired).
    floor: u64,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog {
            epoch: random_string(8, ALNUM),
            seq: 0,
            live: HashMap::new(),
            tombstones: HashMap::new(),
            floor: 0,
        }
    }
}

/// Where a delta request starts, decoded from its `token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Changes after this sequence (0 = enumerate everything, no deletions).
    pub since: u64,
    /// Snapshot of the round (None on its first page).
    pub upto: Option<u64>,
    /// Last sequence already sent in this round.
    pub after: u64,
}

/// One entry of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Live(String),
    Gone(String),
}

impl ChangeLog {
    /// Record a change of `id` (created, modified, moved, renamed).
    pub fn touched(&mut self, id: &str) {
        self.seq += 1;
        self.live.insert(id.to_string(), self.seq);
        self.tombstones.remove(id);
    }

    /// Record the deletion of `id`.
    pub fn deleted(&mut self, id: &str, mut t: Tombstone) {
        self.seq += 1;
        t.seq = self.seq;
        self.live.remove(id);
        self.tombstones.insert(id.to_string(), t);
    }

    /// Make every token issued so far too old.
    pub fn expire_tokens(&mut self) {
        self.seq += 1;
        self.floor = self.seq;
        let floor = self.floor;
        self.tombstones.retain(|_, t| t.seq >= floor);
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn token(&self, since: u64) -> String {
        format!("{}-{since}", self.epoch)
    }

    fn next_token(&self, c: Cursor) -> String {
        format!(
            "{}-{}-{}-{}",
            self.epoch,
            c.since,
            c.upto.unwrap_or(self.seq),
            c.after
        )
    }

    /// Decode a token: 400 when it is not one of ours, 410 when it is too old.
    pub fn parse(&self, token: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::bad_request("Invalid delta token.");
        let mut parts = token.split('-');
        let epoch = parts.next().ok_or_else(bad)?;
        let nums: Vec<u64> = parts
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let gone = || {
            ApiError::new(
                410,
                "resyncRequired",
                "The delta token is no longer valid; start a new enumeration.",
            )
            .inner("resyncRequired")
        };
        let c = match nums.as_slice() {
            [since] => Cursor {
                since: *since,
                upto: None,
                after: *since,
            },
            [since, upto, after] => Cursor {
                since: *since,
                upto: Some(*upto),
                after: *after,
            },
            _ => return Err(bad()),
        };
        if epoch != self.epoch {
            return Err(gone());
        }
        if c.since > self.seq || c.upto.is_some_and(|u| u > self.seq || u < c.since) {
            return Err(bad());
        }
        // An initial enumeration (since 0) is below the floor too once tokens are expired.
        if c.since < self.floor && !(c.since == 0 && c.upto.is_none()) {
            return Err(gone());
        }
        Ok(c)
    }

    /// The changes of one page: sequence in (`after`, `upto`], filtered by `keep`, at most
    /// `top`; returns them, the cursor to resume at (None: this was the last page) and `upto`.
    pub fn page(
        &self,
        c: Cursor,
        top: usize,
        keep: impl Fn(&Change) -> bool,
    ) -> (Vec<Change>, Option<Cursor>, u64) {
        let upto = c.upto.unwrap_or(self.seq);
        let mut all: Vec<(u64, Change)> = self
            .live
            .iter()
            .map(|(id, s)| (*s, Change::Live(id.clone())))
            .chain(
                self.tombstones
                    .iter()
                    .filter(|_| c.since > 0)
                    .map(|(id, t)| (t.seq, Change::Gone(id.clone()))),
            )
            .filter(|(s, ch)| *s > c.after && *s <= upto && keep(ch))
            .collect();
        all.sort_by_key(|(s, _)| *s);
        let more = all.len() > top;
        all.truncate(top);
        let next = match (more, all.last()) {
            (true, Some((s, _))) => Some(Cursor {
                since: c.since,
                upto: Some(upto),
                after: *s,
            }),
            _ => None,
        };
        (all.into_iter().map(|(_, ch)| ch).collect(), next, upto)
    }

    pub fn tombstone(&self, id: &str) -> Option<&Tombstone> {
        self.tombstones.get(id)
    }
}

/// Answer one delta request for `drive_id` (the caller checked the route and the knob).
/// `link_base` is the URL of the delta resource, without query.
pub fn delta_page(
    store: &Store,
    drive_id: &str,
    token: Option<&str>,
    top: usize,
    link_base: &str,
) -> Result<Value, ApiError> {
    let log = store.changes();
    if token == Some("latest") {
        return Ok(json!({
            "value": [],
            "@odata.deltaLink": format!("{link_base}?token={}", log.token(log.seq())),
        }));
    }
    let cursor = match token {
        None => Cursor {
            since: 0,
            upto: None,
            after: 0,
        },
        Some(t) => log.parse(t)?,
    };
    let keep = |ch: &Change| match ch {
        Change::Live(id) => store.get(id).is_some_and(|it| it.drive_id == drive_id),
        Change::Gone(id) => log.tombstone(id).is_some_and(|t| t.drive_id == drive_id),
    };
    let (changes, next, upto) = log.page(cursor, top, keep);
    let value: Vec<Value> = changes
        .iter()
        .filter_map(|ch| match ch {
            Change::Live(id) => store.get(id).map(|it| store.item_json(it)),
            Change::Gone(id) => log.tombstone(id).map(|t| {
                let mut v = json!({
                    "id": id,
                    "name": t.name,
                    "parentReference": {"driveId": t.drive_id, "id": t.parent_id},
                    "deleted": {},
                });
                v[if t.folder { "folder" } else { "file" }] = json!({});
                v
            }),
        })
        .collect();
    let mut v = json!({ "value": value });
    match next {
        Some(c) => {
            v["@odata.nextLink"] = json!(format!(
                "{link_base}?token={}&$top={top}",
                log.next_token(c)
            ))
        }
        None => v["@odata.deltaLink"] = json!(format!("{link_base}?token={}", log.token(upto))),
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> ChangeLog {
        let mut l = ChangeLog::default();
        for i in 0..n {
            l.touched(&format!("i{i}"));
        }
        l
    }

    fn ids(v: &[Change]) -> Vec<String> {
        v.iter()
            .map(|c| match c {
                Change::Live(i) => i.clone(),
                Change::Gone(i) => format!("-{i}"),
            })
            .collect()
    }

    #[test]
    fn pages_cover_a_snapshot_and_later_changes_come_next_round() {
        let mut l = log_with(5);
        let start = Cursor {
            since: 0,
            upto: None,
            after: 0,
        };
        let (p1, next, upto) = l.page(start, 2, |_| true);
        assert_eq!(ids(&p1), ["i0", "i1"]);
        assert_eq!(upto, 5);
        let next = next.unwrap();
        // i0 changes while the client pages; i2 is deleted; i9 is created.
        l.touched("i0");
        l.deleted(
            "i2",
            Tombstone {
                drive_id: "d".into(),
                parent_id: None,
                name: "i2".into(),
                folder: false,
                seq: 0,
            },
        );
        l.touched("i9");
        let (p2, next2, _) = l.page(next, 2, |_| true);
        assert_eq!(ids(&p2), ["i3", "i4"]);
        assert!(next2.is_none(), "last page of the round");
        // Next round from the deltaLink token (upto 5).
        let c = l.parse(&l.token(upto)).unwrap();
        let (p3, n3, _) = l.page(c, 10, |_| true);
        assert_eq!(ids(&p3), ["i0", "-i2", "i9"]);
        assert!(n3.is_none());
    }

    #[test]
    fn initial_enumeration_has_no_tombstones() {
        let mut l = log_with(2);
        l.deleted(
            "i0",
            Tombstone {
                drive_id: "d".into(),
                parent_id: None,
                name: "i0".into(),
                folder: false,
                seq: 0,
            },
        );
        let (p, _, _) = l.page(
            Cursor {
                since: 0,
                upto: None,
                after: 0,
            },
            10,
            |_| true,
        );
        assert_eq!(ids(&p), ["i1"]);
    }

    #[test]
    fn tokens_expire_and_foreign_tokens_are_refused() {
        let mut l = log_with(3);
        let t = l.token(l.seq());
        let mid = l.next_token(Cursor {
            since: 1,
            upto: Some(3),
            after: 2,
        });
        assert!(l.parse(&t).is_ok());
        assert_eq!(l.parse(&mid).unwrap().after, 2);
        l.expire_tokens();
        for old in [&t, &mid] {
            let e = l.parse(old).unwrap_err();
            assert_eq!((e.status, e.code), (410, "resyncRequired"));
        }
        assert!(l.parse(&l.token(l.seq())).is_ok(), "a fresh token works");
        let other = ChangeLog::default();
        assert_eq!(other.parse(&t).unwrap_err().status, 410);
        for bad in [
            "",
            "x",
            &format!("{}-zz", l.epoch),
            &format!("{}-999", l.epoch),
        ] {
            assert_eq!(l.parse(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
