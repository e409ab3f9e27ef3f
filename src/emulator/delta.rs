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
//! `410 Gone` with code `resyncRequired` and a `Location` to a fresh enumeration, as Graph does
//! when a token is too old. The field knob `delta_disabled` refuses delta altogether.
//!
//! As on SharePoint (field reference, entries 1–4): items carry `parentReference.id` but no
//! `parentReference.path` (knob `delta_parent_path` adds it back); a folder renamed or moved
//! comes alone, without its descendants. Knobs (`field`) add the looser behaviours some tenants
//! show: `delta_duplicates` (an item changed several times since the token comes once per
//! change, at its older name and parent first: the store records each item's places),
//! `delta_deletes_last` (a page's deletions after its other items), `delta_drop_deletes` (no
//! deletions at all), `delta_lag_secs` (a change shows in delta only that long after it was
//! made: the round's snapshot stops before younger changes) and `delta_resync_every` (every
//! Nth delta request, whatever its page, answers 410).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::errors::ApiError;
use super::field::FieldConfig;
use super::http::{Reply, Request, Response};
use super::state::{lock, EmulatorState};
use super::store::{random_string, Store, ALNUM};

/// Items per page when `$top` is absent.
pub const DEFAULT_TOP: usize = 200;
/// Longest `delta_lag_secs`; change times older than this are not kept.
pub const MAX_LAG_SECS: u64 = 600;
/// Places (id, parent, name) kept for `delta_duplicates`.
const MAX_PLACES: usize = 4096;

/// Where an item was after one of its changes (for `delta_duplicates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub seq: u64,
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
}

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
    /// When each recent sequence number was taken (`delta_lag_secs`).
    times: VecDeque<(u64, Instant)>,
    /// Recent places of items, oldest first (`delta_duplicates`).
    places: VecDeque<Place>,
    /// Delta requests answered (`delta_resync_every`).
    requests: u64,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog {
            epoch: random_string(8, ALNUM),
            seq: 0,
            live: HashMap::new(),
            tombstones: HashMap::new(),
            floor: 0,
            times: VecDeque::new(),
            places: VecDeque::new(),
            requests: 0,
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
    /// An earlier change of a live item, at the place it had then (`delta_duplicates`).
    Earlier(Place),
}

/// How loose a page is (the entry-3 knobs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Looseness {
    pub duplicates: bool,
    pub deletes_last: bool,
    pub drop_deletes: bool,
}

impl Looseness {
    fn of(k: &FieldConfig) -> Looseness {
        Looseness {
            duplicates: k.delta_duplicates,
            deletes_last: k.delta_deletes_last,
            drop_deletes: k.delta_drop_deletes,
        }
    }
}

impl ChangeLog {
    /// Record a change of `id` (created, modified, moved, renamed).
    pub fn touched(&mut self, id: &str) {
        self.next_seq();
        self.live.insert(id.to_string(), self.seq);
        self.tombstones.remove(id);
    }

    /// Record where `id` is after its latest change (call after [`Self::touched`]).
    pub fn placed(&mut self, id: &str, parent_id: Option<&str>, name: &str) {
        if self.places.len() >= MAX_PLACES {
            self.places.pop_front();
        }
        self.places.push_back(Place {
            seq: self.seq,
            id: id.to_string(),
            parent_id: parent_id.map(str::to_string),
            name: name.to_string(),
        });
    }

    fn next_seq(&mut self) {
        self.seq += 1;
        let now = Instant::now();
        let keep = Duration::from_secs(MAX_LAG_SECS);
        while self
            .times
            .front()
            .is_some_and(|(_, t)| now.saturating_duration_since(*t) > keep)
        {
            self.times.pop_front();
        }
        self.times.push_back((self.seq, now));
    }

    /// The latest sequence number at least `lag` old (every change up to it is that old).
    pub fn seq_aged(&self, lag: Duration) -> u64 {
        if lag.is_zero() {
            return self.seq;
        }
        let now = Instant::now();
        match self
            .times
            .iter()
            .rev()
            .find(|(_, t)| now.saturating_duration_since(*t) >= lag)
        {
            Some((s, _)) => *s,
            // All kept times are younger: only what is older than the oldest kept is aged.
            None => self.times.front().map_or(self.seq, |(s, _)| s - 1),
        }
    }

    /// Record the deletion of `id`.
    pub fn deleted(&mut self, id: &str, mut t: Tombstone) {
        self.next_seq();
        t.seq = self.seq;
        self.live.remove(id);
        self.tombstones.insert(id.to_string(), t);
    }

    /// Make every token issued so far too old.
    pub fn expire_tokens(&mut self) {
        self.next_seq();
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
        self.page_loose(c, top, self.seq, Looseness::default(), keep)
    }

    /// [`Self::page`] with the entry-3 knobs, the first page's snapshot at `newest`.
    pub fn page_loose(
        &self,
        c: Cursor,
        top: usize,
        newest: u64,
        loose: Looseness,
        keep: impl Fn(&Change) -> bool,
    ) -> (Vec<Change>, Option<Cursor>, u64) {
        let upto = c.upto.unwrap_or(newest);
        let earlier = self
            .places
            .iter()
            .filter(|_| loose.duplicates && c.since > 0)
            .filter(|p| self.live.get(&p.id).is_some_and(|s| *s != p.seq))
            .map(|p| (p.seq, Change::Earlier(p.clone())));
        let mut all: Vec<(u64, Change)> = self
            .live
            .iter()
            .map(|(id, s)| (*s, Change::Live(id.clone())))
            .chain(
                self.tombstones
                    .iter()
                    .filter(|_| c.since > 0 && !loose.drop_deletes)
                    .map(|(id, t)| (t.seq, Change::Gone(id.clone()))),
            )
            .chain(earlier)
            .filter(|(s, ch)| *s > c.after && *s <= upto && keep(ch))
            .collect();
        // An earlier place and a live item can share a sequence number: the earlier first.
        all.sort_by_key(|(s, ch)| (*s, !matches!(ch, Change::Earlier(_))));
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
        let mut page: Vec<Change> = all.into_iter().map(|(_, ch)| ch).collect();
        if loose.deletes_last {
            page.sort_by_key(|ch| matches!(ch, Change::Gone(_)));
        }
        (page, next, upto)
    }

    pub fn tombstone(&self, id: &str) -> Option<&Tombstone> {
        self.tombstones.get(id)
    }
}

/// Answer `GET …/root/delta` for `drive` (`at_root`: the route was the drive's root; delta is
/// supported there only, as on SharePoint), honouring the field knobs.
pub fn handle(
    shared: &EmulatorState,
    req: &Request,
    drive: &str,
    at_root: bool,
    max_top: usize,
) -> Result<Reply, ApiError> {
    let knobs = shared.field();
    if knobs.delta_disabled {
        let status = knobs.delta_disabled_status;
        let (code, msg) = if status == 403 {
            ("accessDenied", "Delta is not allowed for this app.")
        } else {
            (
                "notSupported",
                "Delta queries are not supported on this drive.",
            )
        };
        return Err(ApiError::new(status, code, msg));
    }
    if !at_root {
        return Err(ApiError::bad_request(
            "Delta is only supported on the root of a drive.",
        ));
    }
    let top = match req.query("$top").or_else(|| req.query("top")) {
        None => DEFAULT_TOP,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| ApiError::bad_request("Invalid $top."))?
            .min(max_top),
    };
    let link_base = format!("{}{}", shared.base_url, req.path);
    let mut store = lock(&shared.store);
    let log = store.changes_mut();
    log.requests += 1;
    let gone =
        if knobs.delta_resync_every > 0 && log.requests.is_multiple_of(knobs.delta_resync_every) {
            Err(gone())
        } else {
            delta_page_with(&store, drive, req.query("token"), top, &link_base, &knobs)
        };
    match gone {
        Ok(v) => Ok(Reply::Respond(Response::json(200, &v))),
        // Graph's 410 carries the URL of a fresh enumeration.
        Err(e) if e.status == 410 => {
            let mut r = e.to_response();
            r.headers.push(("Location".into(), link_base));
            Ok(Reply::Respond(r))
        }
        Err(e) => Err(e),
    }
}

/// The 410 of a token that is too old.
fn gone() -> ApiError {
    ApiError::new(
        410,
        "resyncRequired",
        "The delta token is no longer valid; start a new enumeration.",
    )
    .inner("resyncRequired")
}

/// Answer one delta request for `drive_id` with the default knobs (the caller checked the
/// route). `link_base` is the URL of the delta resource, without query.
pub fn delta_page(
    store: &Store,
    drive_id: &str,
    token: Option<&str>,
    top: usize,
    link_base: &str,
) -> Result<Value, ApiError> {
    delta_page_with(
        store,
        drive_id,
        token,
        top,
        link_base,
        &FieldConfig::default(),
    )
}

/// [`delta_page`] under the field knobs.
fn delta_page_with(
    store: &Store,
    drive_id: &str,
    token: Option<&str>,
    top: usize,
    link_base: &str,
    knobs: &FieldConfig,
) -> Result<Value, ApiError> {
    let log = store.changes();
    let newest = log.seq_aged(Duration::from_secs(knobs.delta_lag_secs));
    if token == Some("latest") {
        return Ok(json!({
            "value": [],
            "@odata.deltaLink": format!("{link_base}?token={}", log.token(newest)),
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
        Change::Live(id) | Change::Earlier(Place { id, .. }) => {
            store.get(id).is_some_and(|it| it.drive_id == drive_id)
        }
        Change::Gone(id) => log.tombstone(id).is_some_and(|t| t.drive_id == drive_id),
    };
    let (changes, next, upto) = log.page_loose(cursor, top, newest, Looseness::of(knobs), keep);
    let value: Vec<Value> = changes
        .iter()
        .filter_map(|ch| match ch {
            Change::Live(id) => store.get(id).map(|it| store.item_json(it)),
            Change::Earlier(p) => store.get(&p.id).map(|it| {
                let mut v = store.item_json(it);
                v["name"] = json!(p.name);
                if let Some(parent) = &p.parent_id {
                    v["parentReference"]["id"] = json!(parent);
                    if let Some(segs) = store.get(parent).map(|_| store.path_segments(parent)) {
                        let path = format!("/drives/{}/root:", it.drive_id);
                        v["parentReference"]["path"] =
                            json!(segs.iter().fold(path, |acc, s| format!("{acc}/{s}")));
                    }
                }
                v
            }),
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
        .map(|mut v| {
            // Entry 1: SharePoint's delta items have no parentReference.path.
            if !knobs.delta_parent_path {
                if let Some(r) = v["parentReference"].as_object_mut() {
                    r.remove("path");
                }
            }
            v
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
mod tests;
