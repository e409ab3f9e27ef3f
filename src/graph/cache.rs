//! The token cache of delegated sign-in (device code): one small JSON file per configuration
//! holding the refresh token that `shareuplift login` obtained and the mount rotates.
//!
//! Where: `{state_dir}/tokens-{hash}.json`, `state_dir` being the `state_dir` key, else
//! `$XDG_STATE_HOME/shareuplift`, else `~/.local/state/shareuplift`. The directory is created
//! 0700 and the file 0600; the name is the first 16 bytes (hex) of SHA-256 over authority,
//! tenant, client id and username, so two configurations for different apps, tenants or
//! accounts never share (or overwrite) a sign-in, and the same configuration always finds its
//! own. Invariants: the file is replaced atomically (temp file in the same directory, fsync,
//! rename, fsync of the directory), so a crash leaves either the old or the new refresh token,
//! never a torn file; the refresh token is held only in `Secret` and never logged; errors name
//! the file, never its content.
//!
//! Beside it, [`FolderCache`] (`folder-{hash}.json`, same directory, same modes and atomic
//! replacement) remembers where the last successful start-up of that sign-in found the mount
//! folder (drive id, library name, folder inside it), keyed also by `graph_url`, `site_url`
//! and `folder_url`, so that a mount started while the saved sign-in is already dead can
//! still come up — paused, spooling, `sign-in needed` in `.status` — instead of failing. It
//! holds no secret (ids and names only); a file for other settings is never used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::redact::Secret;

/// Largest cache file read (a refresh token is a few KiB).
const MAX_CACHE_BYTES: u64 = 256 * 1024;

/// What identifies a sign-in: the cache file is keyed by these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey<'a> {
    pub authority_url: &'a str,
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// The token cache file of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCache {
    path: PathBuf,
}

/// What the cache holds.
pub struct CachedLogin {
    pub refresh_token: Secret,
    /// When `login` stored it (RFC 3339), for messages.
    pub saved_at: String,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// For a human looking at the file: which sign-in it is (no secret).
    authority_url: String,
    tenant: String,
    client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    refresh_token: String,
    saved_at: String,
}

/// The default state directory from the environment lookup `env`.
pub fn default_state_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(x) = env("XDG_STATE_HOME").filter(|s| s.starts_with('/')) {
        return Some(Path::new(&x).join("shareuplift"));
    }
    let home = env("HOME").filter(|s| !s.is_empty())?;
    Some(Path::new(&home).join(".local/state/shareuplift"))
}

/// Hex of the first 16 bytes of SHA-256 over the key fields (NUL-separated).
pub fn key_hash(key: &CacheKey<'_>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        key.authority_url.trim_end_matches('/'),
        key.tenant,
        key.client_id,
        key.username.unwrap_or(""),
    ] {
        ctx.update(part.to_ascii_lowercase().as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl TokenCache {
    /// The cache of `key` under `state_dir` (or the default state directory).
    pub fn new(state_dir: Option<&Path>, key: &CacheKey<'_>) -> Result<TokenCache, String> {
        let dir = match state_dir {
            Some(d) => d.to_path_buf(),
            None => default_state_dir(&|k| std::env::var(k).ok()).ok_or(
                "no state directory for the token cache: set state_dir, XDG_STATE_HOME or HOME",
            )?,
        };
        Ok(TokenCache {
            path: dir.join(format!("tokens-{}.json", key_hash(key))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Modification time and inode of the file, `None` when it does not exist. Every save
    /// renames a new file into place, so the inode changes even where mtimes are coarse.
    pub fn stamp(&self) -> Option<(SystemTime, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.ino()))
    }

    /// The stored sign-in; `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<CachedLogin>, String> {
        let text = match fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("token cache {}: {e}", self.path.display())),
            Ok(m) if m.len() > MAX_CACHE_BYTES => {
                return Err(format!("token cache {}: too large", self.path.display()))
            }
            Ok(_) => fs::read_to_string(&self.path)
                .map_err(|e| format!("token cache {}: {e}", self.path.display()))?,
        };
        let f: CacheFile = serde_json::from_str(&text).map_err(|_| {
            format!(
                "token cache {} is damaged: run shareuplift login again",
                self.path.display()
            )
        })?;
        if f.refresh_token.is_empty() {
            return Ok(None);
        }
        Ok(Some(CachedLogin {
            refresh_token: Secret::new(f.refresh_token),
            saved_at: f.saved_at,
        }))
    }

    /// Store `refresh_token` atomically (0600 file in a 0700 directory).
    pub fn save(&self, key: &CacheKey<'_>, refresh_token: &Secret) -> Result<(), String> {
        let body = CacheFile {
            version: 1,
            authority_url: key.authority_url.to_string(),
            tenant: key.tenant.to_string(),
            client_id: key.client_id.to_string(),
            username: key.username.map(str::to_string),
            refresh_token: refresh_token.expose().to_string(),
            saved_at: now_rfc3339(),
        };
        let json = serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?;
        self.write_atomic(&json)
            .map_err(|e| format!("cannot write token cache {}: {e}", self.path.display()))
    }

    fn write_atomic(&self, data: &[u8]) -> io::Result<()> {
        write_atomic(&self.path, data)
    }

    /// Remove the stored sign-in; returns whether there was one.
    pub fn remove(&self) -> Result<bool, String> {
        remove_file(&self.path)
    }

    /// The folder cache of this sign-in for the mount folder `site_url`/`folder_url` at
    /// `graph_url`.
    pub fn folder_cache(&self, graph_url: &str, site_url: &str, folder_url: &str) -> FolderCache {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let token_file = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for part in [token_file.as_str(), graph_url, site_url, folder_url] {
            ctx.update(part.trim().trim_end_matches('/').as_bytes());
            ctx.update(&[0]);
        }
        let hash: String = ctx.finish().as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        FolderCache {
            path: dir.join(format!("folder-{hash}.json")),
            graph_url: graph_url.to_string(),
            site_url: site_url.to_string(),
            folder_url: folder_url.to_string(),
        }
    }
}

/// Where the last successful start-up found the mount folder (module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCache {
    path: PathBuf,
    graph_url: String,
    site_url: String,
    folder_url: String,
}

/// The resolution a [`FolderCache`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFolder {
    pub drive_id: String,
    pub drive_name: String,
    /// Decoded folder segments inside the drive.
    pub folder: Vec<String>,
    /// When it was resolved (RFC 3339), for messages.
    pub saved_at: String,
}

#[derive(Serialize, Deserialize)]
struct FolderFile {
    version: u32,
    graph_url: String,
    site_url: String,
    folder_url: String,
    drive_id: String,
    drive_name: String,
    folder: Vec<String>,
    saved_at: String,
}

impl FolderCache {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached resolution, `Ok(None)` when there is none (or it is for other settings).
    pub fn load(&self) -> Result<Option<CachedFolder>, String> {
        let text = match fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("folder cache {}: {e}", self.path.display())),
            Ok(m) if m.len() > MAX_CACHE_BYTES => {
                return Err(format!("folder cache {}: too large", self.path.display()))
            }
            Ok(_) => fs::read_to_string(&self.path)
                .map_err(|e| format!("folder cache {}: {e}", self.path.display()))?,
        };
        let f: FolderFile = serde_json::from_str(&text)
            .map_err(|_| format!("folder cache {} is damaged", self.path.display()))?;
        let same = f.graph_url == self.graph_url
            && f.site_url == self.site_url
            && f.folder_url == self.folder_url;
        if !same || f.drive_id.is_empty() {
            return Ok(None);
        }
        Ok(Some(CachedFolder {
            drive_id: f.drive_id,
            drive_name: f.drive_name,
            folder: f.folder,
            saved_at: f.saved_at,
        }))
    }

    /// Remember a successful resolution (atomically; 0600 in the 0700 state directory).
    pub fn save(&self, drive_id: &str, drive_name: &str, folder: &[String]) -> Result<(), String> {
        let body = FolderFile {
            version: 1,
            graph_url: self.graph_url.clone(),
            site_url: self.site_url.clone(),
            folder_url: self.folder_url.clone(),
            drive_id: drive_id.to_string(),
            drive_name: drive_name.to_string(),
            folder: folder.to_vec(),
            saved_at: now_rfc3339(),
        };
        let json = serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?;
        write_atomic(&self.path, &json)
            .map_err(|e| format!("cannot write folder cache {}: {e}", self.path.display()))
    }

    /// Forget it (`logout`); returns whether there was one.
    pub fn remove(&self) -> Result<bool, String> {
        remove_file(&self.path)
    }
}

fn remove_file(path: &Path) -> Result<bool, String> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// Replace `path` with `data`: a 0600 temp file in the same (0700) directory, fsync, rename,
/// fsync of the directory.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing directory keeps its mode unless it is more open than 0700.
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cache"),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(user: Option<&'a str>) -> CacheKey<'a> {
        CacheKey {
            authority_url: "https://login.microsoftonline.com",
            tenant: "organizations",
            client_id: "cid",
            username: user,
        }
    }

    #[test]
    fn key_hash_separates_configs() {
        let a = key_hash(&key(None));
        assert_eq!(a.len(), 32);
        assert_eq!(a, key_hash(&key(None)));
        assert_ne!(a, key_hash(&key(Some("ana@contoso.com"))));
        let mut k = key(None);
        k.tenant = "contoso.onmicrosoft.com";
        assert_ne!(a, key_hash(&k));
        // A trailing slash on the authority is the same authority.
        k = key(None);
        k.authority_url = "https://login.microsoftonline.com/";
        assert_eq!(a, key_hash(&k));
    }

    #[test]
    fn default_dir_order() {
        let env = |k: &str| match k {
            "XDG_STATE_HOME" => Some("/x/state".to_string()),
            "HOME" => Some("/home/ana".to_string()),
            _ => None,
        };
        assert_eq!(
            default_state_dir(&env),
            Some(PathBuf::from("/x/state/shareuplift"))
        );
        let env = |k: &str| (k == "HOME").then(|| "/home/ana".to_string());
        assert_eq!(
            default_state_dir(&env),
            Some(PathBuf::from("/home/ana/.local/state/shareuplift"))
        );
        assert_eq!(default_state_dir(&|_| None), None);
    }

    #[test]
    fn save_load_remove_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let cache = TokenCache::new(Some(&dir), &key(None)).unwrap();
        assert!(cache.load().unwrap().is_none());
        assert!(cache.stamp().is_none());
        cache.save(&key(None), &Secret::new("rt-1")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(cache.path()), 0o600);
        assert_eq!(
            cache.load().unwrap().unwrap().refresh_token.expose(),
            "rt-1"
        );
        let before = cache.stamp().unwrap();
        cache.save(&key(None), &Secret::new("rt-2")).unwrap();
        assert_ne!(cache.stamp().unwrap(), before, "a save is always noticed");
        assert_eq!(
            cache.load().unwrap().unwrap().refresh_token.expose(),
            "rt-2"
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert!(cache.remove().unwrap());
        assert!(!cache.remove().unwrap());
        fs::write(cache.path(), b"{not json").unwrap();
        let err = cache.load().err().unwrap();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn folder_cache_round_trip_and_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let tokens = TokenCache::new(Some(&dir), &key(None)).unwrap();
        let g = "https://graph.microsoft.com/v1.0";
        let site = "https://contoso.sharepoint.com/sites/Team";
        let fc = tokens.folder_cache(g, site, "/sites/Team/Shared Documents/Up");
        assert_eq!(fc.path().parent(), tokens.path().parent());
        assert_eq!(fc.load().unwrap(), None);
        let folder = vec!["Up".to_string(), "Ä b".to_string()];
        fc.save("b!drive", "Documents", &folder).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(fc.path()), 0o600);
        let got = fc.load().unwrap().unwrap();
        assert_eq!(got.drive_id, "b!drive");
        assert_eq!(got.drive_name, "Documents");
        assert_eq!(got.folder, folder);
        // Another folder, site or Graph endpoint has its own file (none yet).
        for other in [
            tokens.folder_cache(g, site, "/sites/Team/Shared Documents/Other"),
            tokens.folder_cache(g, "https://contoso.sharepoint.com/sites/X", "/x"),
            tokens.folder_cache(
                "http://127.0.0.1:1/v1.0",
                site,
                "/sites/Team/Shared Documents/Up",
            ),
        ] {
            assert_ne!(other.path(), fc.path());
            assert_eq!(other.load().unwrap(), None);
        }
        // A file whose settings differ from the key's (copied, edited) is not used.
        let edited = tokens.folder_cache(g, site, "/sites/Team/Shared Documents/Other");
        fs::copy(fc.path(), edited.path()).unwrap();
        assert_eq!(edited.load().unwrap(), None);
        assert!(fc.remove().unwrap());
        assert!(!fc.remove().unwrap());
        fs::write(fc.path(), b"{not json").unwrap();
        assert!(fc.load().err().unwrap().contains("damaged"));
    }
}
