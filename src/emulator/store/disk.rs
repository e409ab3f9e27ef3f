//! The store on disk: opening (or initialising) the data directory with its `blobs/` and
//! `tmp/` parts, the `meta.json` document and its snapshot for the persister, and the
//! private-directory and atomic-write helpers the emulator uses for its files.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ids::{guid, new_item_id, now_secs, random_string, ALNUM};
use super::{DriveMeta, Item, SiteMeta, Store, HOST, HOST_MY, PERSONAL_DRIVE, PERSONAL_PATH};
use crate::emulator::collation::NameRules;
use crate::emulator::delta::ChangeLog;
use crate::remote::Conflict;

#[derive(Serialize, Deserialize)]
struct Persisted {
    site: SiteMeta,
    #[serde(default)]
    personal: Option<SiteMeta>,
    drives: Vec<DriveMeta>,
    items: Vec<Item>,
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
