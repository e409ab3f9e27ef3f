//! The store's writes: SharePoint's naming rules and path limit checked on every write,
//! folder creation, file commits (with conflict behaviour and quota), hash and check-out
//! marks, deletes of whole subtrees and rename / move / set-mtime patches. Each write keeps
//! the tree's invariants (see the module paragraph) and records the change in the change log.

use std::fs;

use super::ids::{new_item_id, now_secs};
use super::{Item, NewFile, Store};
use crate::emulator::collation;
use crate::emulator::delta::Tombstone;
use crate::emulator::errors::ApiError;
use crate::remote::Conflict;

/// SharePoint's path length limit (characters, drive-relative here).
const MAX_PATH: usize = 400;

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

impl Store {
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
}
