//! The emulated tenant's content: one site, its document libraries (drives) and their item
//! trees, with file bytes on disk and metadata in memory.
//!
//! Layout under the data directory (created 0700): `blobs/{item-id}` holds each file's bytes,
//! `tmp/` holds upload-session and simple-upload temp files (emptied at start), `meta.json`
//! holds site, drives and items, rewritten atomically (tmp + rename) by the emulator's
//! persister thread whenever [`Store::take_dirty`] reports a change.
//!
//! Invariants: every item except a drive root has a parent folder in the same drive; names
//! are unique per folder under SharePoint's collation (`children` is keyed by
//! `collation::child_key`: case, Unicode normal form, æ/ae, œ/oe, ß/ss; a request spelling an
//! occupied key differently is refused, see `collation.rs`) and keep the case they were
//! created with (a replace keeps the stored name and id, as SharePoint does); times are whole seconds (SharePoint drops sub-second precision of
//! `fileSystemInfo`); a file's blob exists exactly while its item does. The store does no
//! network I/O; its file operations are renames and deletes, done under the store lock so a
//! commit and a conflicting commit cannot interleave. Every item change (index, parent touch,
//! delete) is recorded in the store's `delta::ChangeLog`, so Graph and admin changes alike
//! reach `/root/delta`.
//!
//! Parts: `mod.rs` the model (site, drives, items, the tree index) and its reads (lookup by
//! id, name and path under the collation, children, sizes); `write.rs` the writes and the
//! naming rules; `json.rs` the Graph JSON; `disk.rs` the data directory and `meta.json`;
//! `ids.rs` times and identifiers.

mod disk;
mod ids;
mod json;
mod write;

pub use disk::{create_private_dir, write_atomic};
pub use ids::{fmt_time, now_secs, parse_time, random_string, ALNUM};
pub use json::SEGMENT;
pub use write::validate_name;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::collation::{self, NameRules};
use super::delta::ChangeLog;
use super::errors::ApiError;
use crate::remote::Conflict;

/// Host name that identifies the emulated tenant (reserved TLD: never resolved).
pub const HOST: &str = "emulator.sharepoint.test";
/// The OneDrive for Business host of the same tenant (`-my`), and its one personal site.
pub const HOST_MY: &str = "emulator-my.sharepoint.test";
pub const PERSONAL_PATH: &str = "/personal/ana_emulator_test";
/// The personal site's drive (OneDrive names it so; its URL segment is `Documents`).
pub const PERSONAL_DRIVE: &str = "OneDrive";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteMeta {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub web_url: String,
    /// Server-relative path, e.g. `/sites/Team`.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriveMeta {
    pub id: String,
    pub name: String,
    pub web_url: String,
    pub root_id: String,
    /// The drive of the OneDrive personal site, not of the team site.
    #[serde(default)]
    pub personal: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub drive_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub folder: bool,
    pub size: u64,
    pub qxh: Option<String>,
    pub created: i64,
    pub modified: i64,
    pub fs_created: i64,
    pub fs_modified: i64,
    pub version: u64,
    /// Checked out to the uploader (a library that requires check-out, field reference
    /// entry 21): `publication.level` is `checkout` until a check-in.
    #[serde(default)]
    pub checked_out: bool,
}

impl Item {
    /// An empty folder created at `now`.
    fn new_folder(
        id: String,
        drive_id: String,
        parent_id: Option<String>,
        name: String,
        now: i64,
    ) -> Item {
        Item {
            id,
            drive_id,
            parent_id,
            name,
            folder: true,
            size: 0,
            qxh: None,
            created: now,
            modified: now,
            fs_created: now,
            fs_modified: now,
            version: 1,
            checked_out: false,
        }
    }
}

impl Item {
    pub fn etag(&self) -> String {
        format!("\"{{{}}},{}\"", self.id, self.version)
    }
    pub fn ctag(&self) -> String {
        format!("\"c:{{{}}},{}\"", self.id, self.version)
    }
}

/// A file ready to become an item: bytes in `tmp`, already hashed.
pub struct NewFile<'a> {
    pub parent_id: &'a str,
    pub name: &'a str,
    pub conflict: Conflict,
    pub tmp: &'a Path,
    pub size: u64,
    pub qxh: String,
    pub fs_created: Option<i64>,
    pub fs_modified: Option<i64>,
    pub quota: Option<u64>,
}

pub struct Store {
    pub site: SiteMeta,
    /// The OneDrive for Business personal site ([`HOST_MY`], [`PERSONAL_PATH`]); its one drive
    /// is the [`DriveMeta`] marked `personal`.
    pub personal: SiteMeta,
    pub drives: Vec<DriveMeta>,
    items: HashMap<String, Item>,
    children: HashMap<String, BTreeMap<String, String>>,
    dir: PathBuf,
    dirty: bool,
    /// The change feed behind `/root/delta` (in memory only; see `delta`).
    changes: ChangeLog,
    /// The tenant's name rules (field knobs, `collation.rs`).
    names: NameRules,
}

impl Store {
    fn index(&mut self, it: Item) {
        if let Some(p) = &it.parent_id {
            self.children
                .entry(p.clone())
                .or_default()
                .insert(collation::child_key(&it.name), it.id.clone());
        }
        if it.folder {
            self.children.entry(it.id.clone()).or_default();
        }
        self.changes.touched(&it.id);
        self.changes
            .placed(&it.id, it.parent_id.as_deref(), &it.name);
        self.items.insert(it.id.clone(), it);
    }

    /// A fresh change log in which every item appears once, parents before children.
    fn reset_changes(&mut self) {
        let mut ids: Vec<(usize, String)> = self
            .items
            .keys()
            .map(|id| (self.path_segments(id).len(), id.clone()))
            .collect();
        ids.sort();
        self.changes = ChangeLog::default();
        for (_, id) in ids {
            self.changes.touched(&id);
        }
    }

    pub fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    pub fn changes_mut(&mut self) -> &mut ChangeLog {
        &mut self.changes
    }

    fn unindex(&mut self, id: &str) -> Option<Item> {
        let it = self.items.remove(id)?;
        if let Some(p) = &it.parent_id {
            if let Some(c) = self.children.get_mut(p) {
                c.remove(&collation::child_key(&it.name));
            }
        }
        Some(it)
    }

    pub fn drive(&self, id: &str) -> Option<&DriveMeta> {
        self.drives.iter().find(|d| d.id == id)
    }

    pub fn drive_by_name(&self, name: &str) -> Option<&DriveMeta> {
        self.drives.iter().find(|d| {
            d.name.eq_ignore_ascii_case(name)
                || d.web_url
                    .rsplit('/')
                    .next()
                    .is_some_and(|l| l.replace("%20", " ").eq_ignore_ascii_case(name))
        })
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    /// The child of `parent` named `name` (ignoring case; in the tenant's stored form). An
    /// item under a differently spelt name of the same collation key is not it.
    pub fn child(&self, parent: &str, name: &str) -> Option<&Item> {
        let name = self.names.stored(name);
        self.occupant_any(parent, &name)
            .filter(|it| collation::same_spelling(&it.name, &name))
    }

    /// The child of `parent` whose name has the collation key of `name`, however spelt.
    fn occupant_any(&self, parent: &str, name: &str) -> Option<&Item> {
        self.children
            .get(parent)?
            .get(&collation::child_key(name))
            .and_then(|id| self.items.get(id))
    }

    /// What a new `name` in `parent` meets: the item of that name (`Some`), nothing, or 409
    /// `similarRelationshipNameAlreadyExists` when another spelling holds its collation key.
    fn occupant(&self, parent: &str, name: &str) -> Result<Option<&Item>, ApiError> {
        let name = self.names.stored(name);
        match self.occupant_any(parent, &name) {
            Some(it) if !collation::same_spelling(&it.name, &name) => {
                Err(collation::similar_name())
            }
            found => Ok(found),
        }
    }

    /// The tenant's name rules (the field knobs `nfc_names`, `legacy_name_rules`).
    pub fn set_name_rules(&mut self, rules: NameRules) {
        self.names = rules;
    }

    /// This store with `rules` (at start).
    pub fn with_name_rules(mut self, rules: NameRules) -> Store {
        self.names = rules;
        self
    }

    /// Children sorted by collation key.
    pub fn children(&self, parent: &str) -> Vec<&Item> {
        self.children
            .get(parent)
            .map(|c| c.values().filter_map(|id| self.items.get(id)).collect())
            .unwrap_or_default()
    }

    pub fn resolve(&self, base: &str, segs: &[String]) -> Option<&Item> {
        let mut cur = self.items.get(base)?;
        for s in segs {
            cur = self.child(&cur.id, s)?;
        }
        Some(cur)
    }

    /// [`Self::resolve`] for a request: 404, saying "incompatible with a similar name" when a
    /// segment is another spelling of a stored name (field reference entry 15).
    pub fn resolve_request(&self, base: &str, segs: &[String]) -> Result<&Item, ApiError> {
        let missing = || ApiError::not_found("The resource could not be found.");
        let mut cur = self.items.get(base).ok_or_else(missing)?;
        for s in segs {
            cur = match self.child(&cur.id, s) {
                Some(it) => it,
                None if self.occupant_any(&cur.id, &self.names.stored(s)).is_some() => {
                    return Err(collation::incompatible_name())
                }
                None => return Err(missing()),
            };
        }
        Ok(cur)
    }

    /// Names from the drive root down to the item (empty for a root).
    pub fn path_segments(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = self.items.get(id);
        while let Some(it) = cur {
            match &it.parent_id {
                Some(p) => {
                    out.push(it.name.clone());
                    cur = self.items.get(p);
                }
                None => break,
            }
        }
        out.reverse();
        out
    }

    pub fn is_root(&self, id: &str) -> bool {
        self.items.get(id).is_some_and(|i| i.parent_id.is_none())
    }

    pub fn used_bytes(&self) -> u64 {
        self.items
            .values()
            .filter(|i| !i.folder)
            .map(|i| i.size)
            .sum()
    }

    pub fn used_bytes_in(&self, drive_id: &str) -> u64 {
        self.items
            .values()
            .filter(|i| !i.folder && i.drive_id == drive_id)
            .map(|i| i.size)
            .sum()
    }

    /// All items of all drives except roots, as (drive name, path, item), sorted.
    pub fn all_items(&self) -> Vec<(String, String, &Item)> {
        let mut out: Vec<_> = self
            .items
            .values()
            .filter(|i| i.parent_id.is_some())
            .map(|i| {
                let drive = self
                    .drive(&i.drive_id)
                    .map(|d| d.name.clone())
                    .unwrap_or_default();
                (drive, self.path_segments(&i.id).join("/"), i)
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

#[cfg(test)]
mod tests;
