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

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::collation::{self, NameRules};
use super::delta::{ChangeLog, Tombstone};
use super::errors::ApiError;
use crate::remote::Conflict;

/// Host name that identifies the emulated tenant (reserved TLD: never resolved).
pub const HOST: &str = "emulator.sharepoint.test";
/// The OneDrive for Business host of the same tenant (`-my`), and its one personal site.
pub const HOST_MY: &str = "emulator-my.sharepoint.test";
pub const PERSONAL_PATH: &str = "/personal/ana_emulator_test";
/// The personal site's drive (OneDrive names it so; its URL segment is `Documents`).
pub const PERSONAL_DRIVE: &str = "OneDrive";
/// SharePoint's path length limit (characters, drive-relative here).
const MAX_PATH: usize = 400;

/// Characters percent-encoded in path segments of `webUrl`s.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/');

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

#[derive(Serialize, Deserialize)]
struct Persisted {
    site: SiteMeta,
    #[serde(default)]
    personal: Option<SiteMeta>,
    drives: Vec<DriveMeta>,
    items: Vec<Item>,
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

pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 UTC with `Z`.
pub fn fmt_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Parse RFC 3339 into whole seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn new_item_id() -> String {
    format!("01{}", random_string(32, BASE32))
}

fn guid() -> String {
    let h = random_string(32, b"0123456789abcdef");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// SharePoint's naming rules (reference §6). `at_root`: the item is directly under a
/// library root (where `forms` is reserved).
pub fn validate_name(name: &str, at_root: bool) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(format!(
            "Invalid name '{name}': {why}"
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name
        .chars()
        .any(|c| "\"*:<>?/\\|".contains(c) || c.is_control())
    {
        return bad("contains a character SharePoint refuses");
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return bad("leading or trailing space");
    }
    if name.ends_with('.') {
        return bad("trailing dot");
    }
    let lower = name.to_lowercase();
    // Device names are refused as whole names (reference §6 lists them as names).
    let reserved_device = ["con", "prn", "aux", "nul"].contains(&lower.as_str())
        || ((lower.starts_with("com") || lower.starts_with("lpt"))
            && lower.len() == 4
            && lower.as_bytes()[3].is_ascii_digit());
    if reserved_device
        || lower == ".lock"
        || lower == "desktop.ini"
        || lower.starts_with("~$")
        || lower.contains("_vti_")
        || (at_root && lower == "forms")
    {
        return bad("reserved name");
    }
    Ok(())
}

fn mime_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("zip") => "application/zip",
        Some("csv") => "text/csv",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

impl Store {
    /// Open (or initialise) the store in `dir`.
    pub fn open(dir: &Path) -> io::Result<Store> {
        create_private_dir(dir)?;
        create_private_dir(&dir.join("blobs"))?;
        let tmp = dir.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        create_private_dir(&tmp)?;
        let meta = dir.join("meta.json");
        if meta.exists() {
            let data = fs::read(&meta)?;
            let p: Persisted = serde_json::from_slice(&data)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let mut s = Store {
                site: p.site,
                personal: p.personal.unwrap_or_else(personal_site),
                drives: p.drives,
                items: HashMap::new(),
                children: HashMap::new(),
                dir: dir.to_path_buf(),
                dirty: false,
                changes: ChangeLog::default(),
                names: NameRules::default(),
            };
            for it in p.items {
                s.index(it);
            }
            if !s.drives.iter().any(|d| d.personal) {
                // A store from before the personal site.
                let web = format!("https://{HOST_MY}{PERSONAL_PATH}/Documents");
                s.add_drive(PERSONAL_DRIVE, &web, true);
                s.dirty = true;
            }
            s.reset_changes();
            return Ok(s);
        }
        let site_web = format!("https://{HOST}/sites/Team");
        let mut s = Store {
            site: SiteMeta {
                id: format!("{HOST},{},{}", guid(), guid()),
                name: "Team".into(),
                display_name: "Team".into(),
                web_url: site_web.clone(),
                path: "/sites/Team".into(),
            },
            personal: personal_site(),
            drives: Vec::new(),
            items: HashMap::new(),
            children: HashMap::new(),
            dir: dir.to_path_buf(),
            dirty: true,
            changes: ChangeLog::default(),
            names: NameRules::default(),
        };
        for (name, lib) in [("Documents", "Shared%20Documents"), ("Archive", "Archive")] {
            s.add_drive(name, &format!("{site_web}/{lib}"), false);
        }
        s.add_drive(
            PERSONAL_DRIVE,
            &format!("https://{HOST_MY}{PERSONAL_PATH}/Documents"),
            true,
        );
        let docs_root = s.drives[0].root_id.clone();
        s.create_folder(&docs_root, "Uploads", Conflict::Fail)
            .map_err(|e| io::Error::other(e.message))?;
        s.reset_changes();
        Ok(s)
    }

    /// A new, empty drive (library).
    fn add_drive(&mut self, name: &str, web_url: &str, personal: bool) {
        let root_id = new_item_id();
        let drive_id = format!("b!{}", random_string(64, ALNUM));
        self.index(Item::new_folder(
            root_id.clone(),
            drive_id.clone(),
            None,
            "root".into(),
            now_secs(),
        ));
        self.drives.push(DriveMeta {
            id: drive_id,
            name: name.into(),
            web_url: web_url.into(),
            root_id,
            personal,
        });
    }

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

    /// True once after any change (the persister's cue).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::replace(&mut self.dirty, false)
    }

    /// The metadata document for `meta.json`.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut items: Vec<Item> = self.items.values().cloned().collect();
        items.sort_by(|a, b| a.id.cmp(&b.id));
        let p = Persisted {
            site: self.site.clone(),
            personal: Some(self.personal.clone()),
            drives: self.drives.clone(),
            items,
        };
        serde_json::to_vec_pretty(&p).unwrap_or_default()
    }

    pub fn meta_path(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn blob_path(&self, id: &str) -> PathBuf {
        self.dir.join("blobs").join(id)
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

    fn check_path_len(&self, parent: &str, name: &str) -> Result<(), ApiError> {
        let len: usize = self
            .path_segments(parent)
            .iter()
            .map(|s| s.chars().count() + 1)
            .sum::<usize>()
            + name.chars().count();
        if len > MAX_PATH {
            return Err(ApiError::bad_request("The path is too long."));
        }
        Ok(())
    }

    fn parent_folder(&self, parent: &str) -> Result<&Item, ApiError> {
        match self.items.get(parent) {
            Some(p) if p.folder => Ok(p),
            Some(_) => Err(ApiError::bad_request("The parent is not a folder.")),
            None => Err(ApiError::not_found("The parent folder does not exist.")),
        }
    }

    /// `name 1.ext`, `name 2.ext`, ... : the first free name (SharePoint's rename).
    fn unique_name(&self, parent: &str, name: &str) -> String {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
            _ => (name.to_string(), String::new()),
        };
        (1..)
            .map(|n| format!("{stem} {n}{ext}"))
            .find(|c| self.occupant_any(parent, c).is_none())
            .unwrap_or_else(|| name.to_string())
    }

    /// Validation done at session creation: parent exists, name legal, `fail` conflicts.
    pub fn precheck_file(
        &self,
        parent: &str,
        name: &str,
        conflict: Conflict,
    ) -> Result<(), ApiError> {
        self.parent_folder(parent)?;
        validate_name(name, self.is_root(parent))?;
        self.names.check(name, false)?;
        self.check_path_len(parent, name)?;
        match self.occupant(parent, name)? {
            Some(it) if it.folder => Err(ApiError::name_exists(&it.name)),
            Some(it) if conflict == Conflict::Fail => Err(ApiError::name_exists(&it.name)),
            _ => Ok(()),
        }
    }

    pub fn create_folder(
        &mut self,
        parent: &str,
        name: &str,
        conflict: Conflict,
    ) -> Result<Item, ApiError> {
        let drive_id = self.parent_folder(parent)?.drive_id.clone();
        validate_name(name, self.is_root(parent))?;
        self.names.check(name, true)?;
        self.check_path_len(parent, name)?;
        let mut name = self.names.stored(name).into_owned();
        if let Some(existing) = self.occupant(parent, &name)? {
            match conflict {
                Conflict::Fail => return Err(ApiError::name_exists(&existing.name)),
                Conflict::Replace if existing.folder => return Ok(existing.clone()),
                Conflict::Replace => {
                    let id = existing.id.clone();
                    self.delete(&id);
                }
                Conflict::Rename => name = self.unique_name(parent, &name),
            }
        }
        let now = now_secs();
        let it = Item::new_folder(new_item_id(), drive_id, Some(parent.to_string()), name, now);
        self.index(it.clone());
        self.touch_parent(parent, now);
        self.dirty = true;
        Ok(it)
    }

    fn touch_parent(&mut self, parent: &str, now: i64) {
        if let Some(p) = self.items.get_mut(parent) {
            p.modified = now;
            p.version += 1;
            self.changes.touched(parent);
        }
    }

    /// Make `tmp` the content of `parent/name` under `conflict` (checked again here: the
    /// situation may have changed since the session was created), within `quota`.
    pub fn commit_file(&mut self, f: NewFile<'_>) -> Result<Item, ApiError> {
        let drive_id = self.parent_folder(f.parent_id)?.drive_id.clone();
        validate_name(f.name, self.is_root(f.parent_id))?;
        self.names.check(f.name, false)?;
        let existing = self.occupant(f.parent_id, f.name)?.cloned();
        let mut name = self.names.stored(f.name).into_owned();
        let mut replace: Option<Item> = None;
        if let Some(ex) = existing {
            if ex.folder {
                return Err(ApiError::name_exists(&ex.name));
            }
            match f.conflict {
                Conflict::Fail => return Err(ApiError::name_exists(&ex.name)),
                Conflict::Replace => replace = Some(ex),
                Conflict::Rename => name = self.unique_name(f.parent_id, f.name),
            }
        }
        if let Some(q) = f.quota {
            let freed = replace.as_ref().map_or(0, |r| r.size);
            if self.used_bytes() - freed + f.size > q {
                return Err(ApiError::quota());
            }
        }
        let now = now_secs();
        let item = match replace {
            Some(mut it) => {
                it.size = f.size;
                it.qxh = Some(f.qxh);
                it.modified = now;
                it.fs_modified = f.fs_modified.unwrap_or(now);
                if let Some(c) = f.fs_created {
                    it.fs_created = c;
                }
                it.version += 1;
                it
            }
            None => Item {
                id: new_item_id(),
                drive_id,
                parent_id: Some(f.parent_id.to_string()),
                name,
                folder: false,
                size: f.size,
                qxh: Some(f.qxh),
                created: now,
                modified: now,
                fs_created: f.fs_created.unwrap_or(now),
                fs_modified: f.fs_modified.unwrap_or(now),
                version: 1,
                checked_out: false,
            },
        };
        fs::rename(f.tmp, self.blob_path(&item.id))
            .map_err(|e| ApiError::new(500, "generalException", format!("store: {e}")))?;
        self.items.remove(&item.id);
        self.index(item.clone());
        self.touch_parent(f.parent_id, now);
        self.dirty = true;
        Ok(item)
    }

    /// Set (or withhold) a file's quickXorHash (the field knobs of entry 14, `field_faults`).
    /// Not a content change: no new version, no delta entry.
    pub fn set_hash(&mut self, id: &str, qxh: Option<String>) {
        if let Some(it) = self.items.get_mut(id) {
            it.qxh = qxh;
            self.dirty = true;
        }
    }

    /// Mark a file checked out or checked in (entry 21, `field_faults`); a check-in is a
    /// change (new version, delta entry), as on SharePoint.
    pub fn set_checked_out(&mut self, id: &str, checked_out: bool) -> Option<Item> {
        let it = self.items.get_mut(id)?;
        if it.checked_out != checked_out {
            it.checked_out = checked_out;
            if !checked_out {
                it.version += 1;
                self.changes.touched(id);
            }
            self.dirty = true;
        }
        self.items.get(id).cloned()
    }

    /// Folders named by `segs` below `base`, created as needed; returns the last one's id.
    pub fn ensure_folders(&mut self, base: &str, segs: &[String]) -> Result<String, ApiError> {
        let mut cur = base.to_string();
        for s in segs {
            cur = match self.occupant(&cur, s)? {
                Some(it) if it.folder => it.id.clone(),
                Some(it) => return Err(ApiError::name_exists(&it.name)),
                None => self.create_folder(&cur, s, Conflict::Fail)?.id,
            };
        }
        Ok(cur)
    }

    /// Delete an item and everything below it (blobs included). Roots cannot be deleted.
    pub fn delete(&mut self, id: &str) -> bool {
        if self.is_root(id) || !self.items.contains_key(id) {
            return false;
        }
        let mut stack = vec![id.to_string()];
        let mut all = Vec::new();
        while let Some(cur) = stack.pop() {
            if let Some(c) = self.children.get(&cur) {
                stack.extend(c.values().cloned());
            }
            all.push(cur);
        }
        let parent = self.items.get(id).and_then(|i| i.parent_id.clone());
        for cur in all {
            if let Some(it) = self.unindex(&cur) {
                self.changes.deleted(
                    &it.id,
                    Tombstone {
                        drive_id: it.drive_id.clone(),
                        parent_id: it.parent_id.clone(),
                        name: it.name.clone(),
                        folder: it.folder,
                        seq: 0,
                    },
                );
                if !it.folder {
                    let _ = fs::remove_file(self.blob_path(&it.id));
                }
            }
            self.children.remove(&cur);
        }
        if let Some(p) = parent {
            self.touch_parent(&p, now_secs());
        }
        self.dirty = true;
        true
    }

    /// Rename / move / set mtime.
    pub fn patch(
        &mut self,
        id: &str,
        new_name: Option<&str>,
        new_parent: Option<&str>,
        fs_modified: Option<i64>,
        fs_created: Option<i64>,
    ) -> Result<Item, ApiError> {
        let it = self
            .items
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("The resource could not be found."))?;
        if it.parent_id.is_none() && (new_name.is_some() || new_parent.is_some()) {
            return Err(ApiError::bad_request(
                "The root cannot be moved or renamed.",
            ));
        }
        let old_parent = it.parent_id.clone().unwrap_or_default();
        let parent = new_parent.unwrap_or(&old_parent).to_string();
        let name = self.names.stored(new_name.unwrap_or(&it.name)).into_owned();
        let moving = parent != old_parent || name != it.name;
        if moving {
            let p = self.parent_folder(&parent)?;
            if p.drive_id != it.drive_id {
                return Err(ApiError::bad_request(
                    "Moving between drives is not supported.",
                ));
            }
            // A folder cannot move into itself or below itself.
            let mut cur = Some(parent.clone());
            while let Some(c) = cur {
                if c == it.id {
                    return Err(ApiError::bad_request("Cannot move a folder into itself."));
                }
                cur = self.items.get(&c).and_then(|i| i.parent_id.clone());
            }
            validate_name(&name, self.is_root(&parent))?;
            self.names.check(&name, it.folder)?;
            self.check_path_len(&parent, &name)?;
            // A rename of an item to another spelling of its own name is not a clash.
            if let Some(ex) = self.occupant_any(&parent, &name) {
                if ex.id != it.id && !collation::same_spelling(&ex.name, &name) {
                    return Err(collation::similar_name());
                }
                if ex.id != it.id {
                    return Err(ApiError::name_exists(&ex.name));
                }
            }
        }
        let now = now_secs();
        let mut new = self.unindex(id).unwrap_or(it);
        new.parent_id = Some(parent.clone());
        new.name = name;
        if let Some(m) = fs_modified {
            new.fs_modified = m;
        }
        if let Some(c) = fs_created {
            new.fs_created = c;
        }
        new.modified = now;
        new.version += 1;
        self.index(new.clone());
        if moving {
            self.touch_parent(&old_parent, now);
            self.touch_parent(&parent, now);
        }
        self.dirty = true;
        Ok(new)
    }

    /// Graph driveItem JSON.
    pub fn item_json(&self, it: &Item) -> Value {
        let drive = self.drive(&it.drive_id);
        let drive_url = drive.map(|d| d.web_url.as_str()).unwrap_or("");
        let segs = self.path_segments(&it.id);
        let mut web = drive_url.to_string();
        for s in &segs {
            web.push('/');
            web.extend(utf8_percent_encode(s, SEGMENT));
        }
        let mut v = json!({
            "id": it.id,
            "name": it.name,
            "size": if it.folder { self.folder_size(&it.id) } else { it.size },
            "eTag": it.etag(),
            "cTag": it.ctag(),
            "webUrl": web,
            "createdDateTime": fmt_time(it.created),
            "lastModifiedDateTime": fmt_time(it.modified),
            "fileSystemInfo": {
                "createdDateTime": fmt_time(it.fs_created),
                "lastModifiedDateTime": fmt_time(it.fs_modified),
            },
        });
        if let Some(p) = &it.parent_id {
            let parent_segs = &segs[..segs.len().saturating_sub(1)];
            let mut path = format!("/drives/{}/root:", it.drive_id);
            for s in parent_segs {
                path.push('/');
                path.push_str(s);
            }
            v["parentReference"] = json!({"driveId": it.drive_id, "driveType": "documentLibrary", "id": p, "path": path});
        } else {
            v["root"] = json!({});
            v["parentReference"] = json!({"driveId": it.drive_id, "driveType": "documentLibrary"});
        }
        if it.folder {
            let n = self.children.get(&it.id).map_or(0, |c| c.len());
            v["folder"] = json!({ "childCount": n });
        } else {
            let mut file = json!({ "mimeType": mime_type(&it.name) });
            if let Some(h) = &it.qxh {
                file["hashes"] = json!({ "quickXorHash": h });
            }
            v["file"] = file;
            let level = if it.checked_out {
                "checkout"
            } else {
                "published"
            };
            v["publication"] = json!({ "level": level, "versionId": format!("{}.0", it.version) });
        }
        v
    }

    fn folder_size(&self, id: &str) -> u64 {
        let mut total = 0;
        let mut stack = vec![id.to_string()];
        while let Some(cur) = stack.pop() {
            for c in self.children(&cur) {
                if c.folder {
                    stack.push(c.id.clone());
                } else {
                    total += c.size;
                }
            }
        }
        total
    }

    pub fn drive_json(&self, d: &DriveMeta, quota: Option<u64>) -> Value {
        let used = self.used_bytes_in(&d.id);
        let total = quota.unwrap_or(1 << 40);
        let all_used = self.used_bytes();
        json!({
            "id": d.id,
            "name": d.name,
            "description": "",
            "webUrl": d.web_url,
            "driveType": if d.personal { "business" } else { "documentLibrary" },
            "createdDateTime": fmt_time(self.items.get(&d.root_id).map_or(0, |r| r.created)),
            "quota": { "total": total, "used": used,
                       "remaining": total.saturating_sub(all_used), "deleted": 0, "state": "normal" },
        })
    }

    pub fn site_json(&self) -> Value {
        Self::site_meta_json(&self.site, HOST)
    }

    /// The OneDrive personal site.
    pub fn personal_json(&self) -> Value {
        Self::site_meta_json(&self.personal, HOST_MY)
    }

    fn site_meta_json(site: &SiteMeta, host: &str) -> Value {
        json!({
            "id": site.id,
            "name": site.name,
            "displayName": site.display_name,
            "webUrl": site.web_url,
            "siteCollection": { "hostname": host },
        })
    }
}

/// The OneDrive for Business personal site of the emulator's user.
fn personal_site() -> SiteMeta {
    SiteMeta {
        id: format!("{HOST_MY},{},{}", guid(), guid()),
        name: "ana_emulator_test".into(),
        display_name: "Ana Emulator".into(),
        web_url: format!("https://{HOST_MY}{PERSONAL_PATH}"),
        path: PERSONAL_PATH.into(),
    }
}

pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Write `data` to `path` atomically (tmp + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a.txt", "Report 2024.docx", "x", "con.d", "~a", "forms2"] {
            assert!(validate_name(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a:b",
            "a*b",
            "a?",
            " a",
            "a ",
            "a.",
            "CON",
            "com1",
            "lpt9",
            ".lock",
            "desktop.ini",
            "~$doc.docx",
            "x_vti_y",
            "a|b",
            "a\\b",
        ] {
            assert!(validate_name(bad, false).is_err(), "{bad}");
        }
        assert!(validate_name("Forms", true).is_err());
        assert!(validate_name("Forms", false).is_ok());
    }

    #[test]
    fn tree_operations() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let root = s.drives[0].root_id.clone();
        let up = s.resolve(&root, &["uploads".into()]).unwrap().clone();
        assert_eq!(up.name, "Uploads");
        let f = s.create_folder(&up.id, "Docs", Conflict::Fail).unwrap();
        assert!(s.create_folder(&up.id, "DOCS", Conflict::Fail).is_err());
        let r = s.create_folder(&up.id, "docs", Conflict::Rename).unwrap();
        assert_eq!(r.name, "docs 1");
        let tmp = s.tmp_dir().join("t");
        fs::write(&tmp, b"hello").unwrap();
        let it = s
            .commit_file(NewFile {
                parent_id: &f.id,
                name: "A.txt",
                conflict: Conflict::Replace,
                tmp: &tmp,
                size: 5,
                qxh: "h".into(),
                fs_created: None,
                fs_modified: Some(1000),
                quota: None,
            })
            .unwrap();
        fs::write(&tmp, b"hi").unwrap();
        let again = s
            .commit_file(NewFile {
                parent_id: &f.id,
                name: "a.TXT",
                conflict: Conflict::Replace,
                tmp: &tmp,
                size: 2,
                qxh: "h2".into(),
                fs_created: None,
                fs_modified: None,
                quota: None,
            })
            .unwrap();
        assert_eq!(
            (again.id.as_str(), again.name.as_str()),
            (it.id.as_str(), "A.txt")
        );
        assert_eq!(fs::read(s.blob_path(&it.id)).unwrap(), b"hi");
        assert_eq!(s.path_segments(&it.id), vec!["Uploads", "Docs", "A.txt"]);
        s.patch(&it.id, Some("b.txt"), Some(&up.id), Some(5), None)
            .unwrap();
        assert!(s
            .resolve(&root, &["Uploads".into(), "B.TXT".into()])
            .is_some());
        assert!(s.patch(&f.id, None, Some(&f.id), None, None).is_err());
        assert!(s.delete(&up.id));
        assert!(!s.blob_path(&it.id).exists());
        let snap = s.snapshot();
        drop(s);
        write_atomic(&dir.path().join("meta.json"), &snap).unwrap();
        let s2 = Store::open(dir.path()).unwrap();
        assert!(s2.resolve(&root, &["Uploads".into()]).is_none());
    }
}
