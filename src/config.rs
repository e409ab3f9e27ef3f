//! Mount configuration: the TOML file, command-line overrides and the environment, merged and
//! validated into one [`MountConfig`].
//!
//! Keys follow the system this grew from (`site_url`, `folder_url`, `username`, `password`)
//! plus app credentials and tuning. Precedence: flag > environment (secrets only) > file >
//! default. Validation happens once, at start-up, and every error is one line that names the
//! key and says what to fix; nothing here ever prints a secret. Unknown keys are errors, so a
//! typo does not silently fall back to a default.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::graph::cloud::{choose_auth, Cloud, KeysSet};
use crate::graph::AuthMethod;
use crate::redact::Secret;
use crate::remote::Conflict;
use crate::upload::bwlimit::Timetable;

use crate::protocol::{DEFAULT_CHUNK, FRAGMENT_LIMIT, FRAGMENT_UNIT, MAX_FRAGMENT};

/// Default of `unmount_drain`: long enough to finish a few hundred MiB on a good link after
/// `umount`, short enough that a shutdown (systemd's default stop timeout is 90 s) is not held
/// up; systemd units drain before unmounting anyway (`ExecStop`).
pub const DEFAULT_UNMOUNT_DRAIN_SECS: u64 = 30;

/// The TOML file as written by the user. Every field is optional here; `MountConfig::resolve`
/// applies defaults and checks.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub site_url: Option<String>,
    pub folder_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub graph_url: Option<String>,
    pub authority_url: Option<String>,
    /// `"10MiB"`, `"5 MiB"`, `"320KiB"`, or an integer (bytes).
    pub chunk_size: Option<SizeValue>,
    pub workers: Option<usize>,
    pub spool_dir: Option<PathBuf>,
    pub conflict: Option<String>,
    /// Attempts per upload before it is `failed` (default 10).
    pub max_attempts: Option<u32>,
    /// Seconds finished uploads stay in `.status` (default 600).
    pub status_retention: Option<u64>,
    /// Above this many entries `.status` lists only the last done uploads and sums up the
    /// rest (default 1000; `.status.all` lists them all).
    pub status_summary_at: Option<usize>,
    /// Done uploads `.status` keeps at most, besides the retention (default 10000).
    pub status_max_done: Option<usize>,
    /// The service's idle lifetime of an upload session, in seconds (default 900): how long
    /// an upload refused because an earlier session still holds its path keeps retrying.
    pub session_idle_secs: Option<u64>,
    /// Seconds a file SharePoint reports locked (checked out, open in another app) keeps
    /// being retried before its upload fails (default 3600).
    pub locked_wait_secs: Option<u64>,
    /// Milliseconds a closed file waits before its upload starts, so a rename or `utimens`
    /// right after close amends the job instead of racing it (default 1000).
    pub write_back_delay_ms: Option<u64>,
    /// Threads serving FUSE requests (default 4).
    pub fuse_threads: Option<usize>,
    /// Let other users access the mount (`allow_other`); default false.
    pub allow_other: Option<bool>,
    /// Seconds between polls of the drive's change feed (default 30; 0: never poll, and
    /// listings are then kept 2 s).
    pub poll_interval: Option<u64>,
    /// Seconds folder listings are trusted while the change feed is followed (default 300).
    pub dir_cache_time: Option<u64>,
    /// Small-file uploads in flight together, besides `workers` for big ones (default 16).
    pub small_file_workers: Option<usize>,
    /// Most bytes the spool may hold (`"20GiB"`); default: keep max(1 GiB, 5 %) of the
    /// spool filesystem free.
    pub spool_max: Option<SizeValue>,
    /// fsync waits until the file's current content is committed in SharePoint.
    pub fsync_barrier: Option<bool>,
    /// Seconds the process keeps uploading what is queued after the filesystem is unmounted
    /// (`umount`, `fusermount3 -u`), before it exits (default 30; 0: exit at once and resume
    /// at the next mount).
    pub unmount_drain: Option<u64>,
    /// Upload bandwidth limit, one rate or a timetable as rclone's `--bwlimit`:
    /// `"2MiB"`, `"off"` (default), `"08:00,2MiB 19:00,off"` (`upload::bwlimit`).
    pub bwlimit: Option<String>,
    // --- sign-in, cloud and TLS (see `crate::graph::cloud`) ---
    /// `device_code`, `client_secret`, `certificate` or `password`; inferred when unambiguous.
    pub auth: Option<String>,
    /// `global` (default), `usgov`, `usgov-dod`, `china`: sets authority, Graph URL and scope.
    pub cloud: Option<String>,
    /// The Graph resource scopes are built from (default: the cloud's).
    pub graph_scope: Option<String>,
    /// PEM file with the certificate (and key, unless `certificate_key_file`).
    pub certificate_file: Option<PathBuf>,
    pub certificate_key_file: Option<PathBuf>,
    /// Extra trusted root CA certificate(s), PEM (e.g. a TLS-inspecting proxy's).
    pub ca_file: Option<PathBuf>,
    /// Seconds start-up keeps retrying throttling, 5xx and network errors (default 120).
    pub startup_timeout: Option<u64>,
    /// Seconds a transfer may move no byte before it is abandoned and resumed (default 30);
    /// metadata reads must start answering within a third of it.
    pub idle_timeout: Option<u64>,
    /// Directory of the device-code token cache (default `$XDG_STATE_HOME/shareuplift`).
    pub state_dir: Option<PathBuf>,
    // --- shared mounts (see `crate::ownership`) ---
    /// Owner and group every node reports (default: the mounting user's).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Octal, as a string (`"077"`) or a TOML integer (`0o077`).
    pub umask: Option<ModeValue>,
    pub file_mode: Option<ModeValue>,
    pub dir_mode: Option<ModeValue>,
}

/// A mode given as a TOML integer (`0o640`) or an octal string (`"640"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ModeValue {
    Number(u32),
    Text(String),
}

impl ModeValue {
    fn resolve(&self, key: &str) -> Result<u32, ConfigError> {
        let v = match self {
            ModeValue::Number(n) if *n <= 0o7777 => Ok(*n),
            ModeValue::Number(n) => Err(format!("{n:#o} is larger than 7777")),
            ModeValue::Text(t) => crate::ownership::parse_mode(t),
        };
        v.map_err(|e| ConfigError(format!("{key}: {e}")))
    }
}

/// A size given as a TOML integer (bytes) or a string with a unit.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Validated configuration of one mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub site_url: String,
    pub folder_url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub graph_url: String,
    pub authority_url: String,
    pub chunk_size: u64,
    /// `chunk_size` was set (file, flag or fstab option): every fragment has that size.
    /// Unset: fragments start at 10 MiB and follow the link (`upload::fragment_size`).
    pub chunk_size_fixed: bool,
    pub workers: usize,
    pub spool_dir: PathBuf,
    pub conflict: Conflict,
    pub max_attempts: u32,
    pub status_retention: Duration,
    /// `.status`'s summary threshold and done-entry bound (`upload::status_summary`).
    pub status_summary_at: usize,
    pub status_max_done: usize,
    /// Idle lifetime of an upload session on the service (stale-session wait).
    pub session_idle: Duration,
    /// How long a locked (423) file is retried.
    pub locked_wait: Duration,
    /// How long a closed file waits in the queue before its upload starts.
    pub write_back_delay: Duration,
    /// Threads serving FUSE requests.
    pub fuse_threads: usize,
    pub allow_other: bool,
    /// `None`: the change feed is not polled.
    pub poll_interval: Option<Duration>,
    pub dir_cache_time: Duration,
    pub small_file_workers: usize,
    /// `None`: the free-space margin rule.
    pub spool_max: Option<u64>,
    pub fsync_barrier: bool,
    /// How long uploads continue after an external unmount (`mount::run`); zero: stop at once.
    pub unmount_drain: Duration,
    /// The upload bandwidth limit's timetable (off by default).
    pub bwlimit: Timetable,
    pub auth: AuthMethod,
    /// Graph resource for scopes, e.g. `https://graph.microsoft.com`.
    pub graph_scope: String,
    pub certificate_file: Option<PathBuf>,
    pub certificate_key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub startup_timeout: Duration,
    /// No byte moved for this long: the request is abandoned (and retried or resumed).
    pub idle_timeout: Duration,
    pub state_dir: Option<PathBuf>,
    /// uid, gid, umask, file_mode, dir_mode.
    pub ownership: crate::ownership::Ownership,
}

/// A configuration problem, as one line that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

impl FileConfig {
    /// Read and parse a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        FileConfig::parse(&text)
            .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
    }

    /// Parse TOML text. Errors name the key; values are never echoed (they may be secrets).
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's message quotes the offending line, which may hold a password: keep only
            // the first line of its description.
            let msg = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string();
            ConfigError(msg)
        })
    }

    /// Fill every field that `over` sets (flags win over the file).
    pub fn overlay(mut self, over: FileConfig) -> FileConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            site_url,
            folder_url,
            username,
            password,
            tenant,
            client_id,
            client_secret,
            graph_url,
            authority_url,
            chunk_size,
            workers,
            spool_dir,
            conflict,
            max_attempts,
            status_retention,
            status_summary_at,
            status_max_done,
            session_idle_secs,
            locked_wait_secs,
            write_back_delay_ms,
            fuse_threads,
            allow_other,
            poll_interval,
            dir_cache_time,
            small_file_workers,
            spool_max,
            fsync_barrier,
            unmount_drain,
            bwlimit,
            auth,
            cloud,
            graph_scope,
            certificate_file,
            certificate_key_file,
            ca_file,
            startup_timeout,
            idle_timeout,
            state_dir,
            uid,
            gid,
            umask,
            file_mode,
            dir_mode
        );
        self
    }
}

/// Parse `"10MiB"`, `"320 KiB"`, `"5M"`, `"1048576"` into bytes. Units are binary
/// (K/KB/KiB = 1024); a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num.replace('_', "").parse().map_err(|_| {
        format!("\"{text}\" is not a size (examples: 10MiB, 5 MiB, {FRAGMENT_UNIT})")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\" (use KiB, MiB or GiB)"
            ))
        }
    };
    num.checked_mul(mult)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Check a fragment size against the upload-session rules.
pub fn validate_chunk_size(bytes: u64) -> Result<u64, String> {
    if bytes == 0 || !bytes.is_multiple_of(FRAGMENT_UNIT) {
        let lower = (bytes / FRAGMENT_UNIT).max(1) * FRAGMENT_UNIT;
        return Err(format!(
            "chunk_size = {bytes} bytes is not a multiple of 320 KiB ({FRAGMENT_UNIT} bytes); \
             use e.g. {lower} or \"10MiB\""
        ));
    }
    if bytes >= FRAGMENT_LIMIT {
        return Err(format!(
            "chunk_size = {bytes} bytes is not under 60 MiB; the largest allowed is {MAX_FRAGMENT} \
             ({} × 320 KiB); the default is \"10MiB\"",
            MAX_FRAGMENT / FRAGMENT_UNIT
        ));
    }
    Ok(bytes)
}

fn default_spool_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("shareuplift");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("shareuplift");
    }
    PathBuf::from("/var/tmp/shareuplift")
}

fn check_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => err(format!(
            "{key} = \"{value}\" is not an http(s) URL; example: https://contoso.sharepoint.com/sites/Team"
        )),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl MountConfig {
    /// Apply defaults, the environment's secrets and all checks. `env` is the lookup used for
    /// `SHAREUPLIFT_PASSWORD` / `SHAREUPLIFT_CLIENT_SECRET` (injected for tests).
    pub fn resolve(
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<MountConfig, ConfigError> {
        let folder_url = match non_empty(file.folder_url) {
            Some(s) => s,
            None => return err("folder_url is missing; set it to the folder to mount, e.g. https://contoso.sharepoint.com/sites/Team/Shared Documents/Uploads"),
        };
        let folder_is_url = folder_url.contains("://");
        if folder_is_url {
            check_url("folder_url", &folder_url)?;
        }
        let site_url = match non_empty(file.site_url) {
            Some(s) => s.trim_end_matches('/').to_string(),
            // Derived from the folder URL at connect time.
            None if folder_is_url => String::new(),
            None => return err(
                "site_url is missing; set it to e.g. https://contoso.sharepoint.com/sites/Team \
                 (or give folder_url as a full URL)",
            ),
        };
        if !site_url.is_empty() {
            check_url("site_url", &site_url)?;
        }
        let cloud = match non_empty(file.cloud) {
            Some(c) => Cloud::parse(&c).map_err(ConfigError)?,
            None => Cloud::Global,
        }
        .endpoints();
        let graph_url = non_empty(file.graph_url)
            .unwrap_or_else(|| cloud.graph_url.into())
            .trim_end_matches('/')
            .to_string();
        check_url("graph_url", &graph_url)?;
        let authority_url = non_empty(file.authority_url)
            .unwrap_or_else(|| cloud.authority_url.into())
            .trim_end_matches('/')
            .to_string();
        check_url("authority_url", &authority_url)?;
        let graph_scope =
            non_empty(file.graph_scope).unwrap_or_else(|| cloud.graph_resource.into());
        let graph_scope = graph_scope
            .trim()
            .trim_end_matches("/.default")
            .trim_end_matches('/')
            .to_string();
        check_url("graph_scope", &graph_scope)?;

        let password = non_empty(env("SHAREUPLIFT_PASSWORD"))
            .or(non_empty(file.password))
            .map(Secret::new);
        let client_secret = non_empty(env("SHAREUPLIFT_CLIENT_SECRET"))
            .or(non_empty(file.client_secret))
            .map(Secret::new);
        let username = non_empty(file.username);
        let client_id = non_empty(file.client_id);
        let tenant = non_empty(file.tenant);
        let auth = choose_auth(
            file.auth.as_deref(),
            KeysSet {
                client_id: client_id.is_some(),
                client_secret: client_secret.is_some(),
                certificate_file: file.certificate_file.is_some(),
                username: username.is_some(),
                password: password.is_some(),
                tenant: tenant.is_some(),
            },
        )
        .map_err(ConfigError)?;
        let startup_timeout = Duration::from_secs(file.startup_timeout.unwrap_or(120));
        let idle_timeout = match file.idle_timeout.unwrap_or(30) {
            n @ 1..=3600 => Duration::from_secs(n),
            n => {
                return Err(ConfigError(format!(
                    "idle_timeout = {n} must be between 1 and 3600 seconds"
                )))
            }
        };

        let chunk_size_fixed = file.chunk_size.is_some();
        let chunk_size = match file.chunk_size {
            None => DEFAULT_CHUNK,
            Some(SizeValue::Bytes(b)) => b,
            Some(SizeValue::Text(t)) => {
                parse_size(&t).map_err(|e| ConfigError(format!("chunk_size: {e}")))?
            }
        };
        let chunk_size = validate_chunk_size(chunk_size).map_err(ConfigError)?;

        let small_file_workers = file.small_file_workers.unwrap_or(16);
        if !(1..=64).contains(&small_file_workers) {
            return err(format!(
                "small_file_workers = {small_file_workers} must be between 1 and 64"
            ));
        }
        let workers = file.workers.unwrap_or(4);
        if !(1..=32).contains(&workers) {
            return err(format!("workers = {workers} must be between 1 and 32"));
        }
        let conflict = match file.conflict.as_deref().map(str::trim) {
            None | Some("replace") => Conflict::Replace,
            Some("rename") => Conflict::Rename,
            Some("fail") => Conflict::Fail,
            Some(other) => {
                return err(format!(
                    "conflict = \"{other}\" is not one of replace, rename, fail"
                ))
            }
        };
        let spool_max = match file.spool_max {
            None => None,
            Some(SizeValue::Bytes(b)) => Some(b),
            Some(SizeValue::Text(t)) if t.trim() == "auto" => None,
            Some(SizeValue::Text(t)) => {
                Some(parse_size(&t).map_err(|e| ConfigError(format!("spool_max: {e}")))?)
            }
        };
        if spool_max == Some(0) {
            return err("spool_max must be positive (or \"auto\")");
        }
        let max_attempts = file.max_attempts.unwrap_or(10);
        if max_attempts == 0 {
            return err("max_attempts must be at least 1");
        }
        let session_idle_secs = file.session_idle_secs.unwrap_or(900);
        if session_idle_secs == 0 || session_idle_secs > 86_400 {
            return err("session_idle_secs must be between 1 and 86400 (a day)");
        }
        let mode =
            |v: &Option<ModeValue>, key: &str| v.as_ref().map(|m| m.resolve(key)).transpose();
        let ownership = crate::ownership::Ownership {
            uid: file.uid,
            gid: file.gid,
            umask: mode(&file.umask, "umask")?,
            file_mode: mode(&file.file_mode, "file_mode")?,
            dir_mode: mode(&file.dir_mode, "dir_mode")?,
        };
        let unmount_drain = file.unmount_drain.unwrap_or(DEFAULT_UNMOUNT_DRAIN_SECS);
        if unmount_drain > 86_400 {
            return err("unmount_drain must be at most 86400 seconds (a day)");
        }
        let locked_wait_secs = file.locked_wait_secs.unwrap_or(3600);
        if locked_wait_secs > 7 * 86_400 {
            return err("locked_wait_secs must be at most 604800 (a week)");
        }
        let write_back_delay_ms = file.write_back_delay_ms.unwrap_or(1000);
        if write_back_delay_ms > 60_000 {
            return err("write_back_delay_ms must be at most 60000 (a minute)");
        }
        let fuse_threads = file.fuse_threads.unwrap_or(4);
        if !(1..=64).contains(&fuse_threads) {
            return err("fuse_threads must be between 1 and 64");
        }
        let bwlimit = match file.bwlimit.as_deref() {
            None => Timetable::default(),
            Some(v) => Timetable::parse(v).map_err(|e| ConfigError(format!("bwlimit: {e}")))?,
        };
        Ok(MountConfig {
            site_url,
            folder_url,
            username,
            password,
            tenant,
            client_id,
            client_secret,
            graph_url,
            authority_url,
            chunk_size,
            chunk_size_fixed,
            workers,
            spool_dir: file.spool_dir.unwrap_or_else(default_spool_dir),
            conflict,
            max_attempts,
            status_retention: Duration::from_secs(file.status_retention.unwrap_or(600)),
            status_summary_at: file.status_summary_at.unwrap_or(1000),
            status_max_done: file.status_max_done.unwrap_or(10_000).max(1),
            session_idle: Duration::from_secs(session_idle_secs),
            locked_wait: Duration::from_secs(locked_wait_secs),
            write_back_delay: Duration::from_millis(write_back_delay_ms),
            fuse_threads,
            allow_other: file.allow_other.unwrap_or(false),
            poll_interval: match file.poll_interval.unwrap_or(30) {
                0 => None,
                n => Some(Duration::from_secs(n)),
            },
            dir_cache_time: Duration::from_secs(file.dir_cache_time.unwrap_or(300)),
            small_file_workers,
            spool_max,
            fsync_barrier: file.fsync_barrier.unwrap_or(false),
            unmount_drain: Duration::from_secs(unmount_drain),
            bwlimit,
            auth,
            graph_scope,
            certificate_file: file.certificate_file,
            certificate_key_file: file.certificate_key_file,
            ca_file: file.ca_file,
            startup_timeout,
            idle_timeout,
            state_dir: file.state_dir,
            ownership,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FileConfig {
        FileConfig::parse(
            r#"
            site_url = "https://contoso.sharepoint.com/sites/Team"
            folder_url = "/sites/Team/Shared Documents/Uploads"
            username = "u@contoso.com"
            password = "pw-very-secret"
            client_id = "abc"
            "#,
        )
        .unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn unmount_drain_default_zero_and_bound() {
        let cfg = MountConfig::resolve(base(), &no_env).unwrap();
        assert_eq!(
            cfg.unmount_drain,
            Duration::from_secs(DEFAULT_UNMOUNT_DRAIN_SECS)
        );
        for (secs, ok) in [(0, true), (600, true), (86_400, true), (86_401, false)] {
            let mut f = base();
            f.unmount_drain = Some(secs);
            match MountConfig::resolve(f, &no_env) {
                Ok(c) => {
                    assert!(ok, "{secs} accepted");
                    assert_eq!(c.unmount_drain, Duration::from_secs(secs));
                }
                Err(e) => {
                    assert!(!ok, "{secs}: {e}");
                    assert!(e.to_string().contains("unmount_drain"), "{e}");
                }
            }
        }
        let f = FileConfig::parse(&format!(
            "{}\nunmount_drain = 5\n",
            "site_url = \"https://c.sharepoint.com/sites/T\"\nfolder_url = \"/sites/T/D/U\""
        ))
        .unwrap();
        assert_eq!(f.unmount_drain, Some(5));
    }

    #[test]
    fn bwlimit_key() {
        let cfg = MountConfig::resolve(base(), &no_env).unwrap();
        assert!(cfg.bwlimit.is_off());
        let f = FileConfig::parse(
            "site_url = \"https://c.sharepoint.com/sites/T\"\nfolder_url = \"/sites/T/D/U\"\n\
             bwlimit = \"08:00,2MiB 19:00,off\"\n",
        )
        .unwrap();
        let mut f = base().overlay(f);
        let cfg = MountConfig::resolve(f.clone(), &no_env).unwrap();
        assert_eq!(cfg.bwlimit.text(), "08:00,2MiB 19:00,off");
        f.bwlimit = Some("2 parsecs".into());
        let e = MountConfig::resolve(f, &no_env).unwrap_err().0;
        assert!(e.starts_with("bwlimit: unknown unit"), "{e}");
    }

    #[test]
    fn parse_sizes() {
        for (input, want) in [
            ("10MiB", Ok(10 * 1024 * 1024)),
            ("5 MiB", Ok(5 * 1024 * 1024)),
            ("320KiB", Ok(FRAGMENT_UNIT)),
            (&FRAGMENT_UNIT.to_string(), Ok(FRAGMENT_UNIT)),
            ("1_048_576", Ok(1_048_576)),
            ("2g", Ok(2 * 1024 * 1024 * 1024)),
        ] {
            assert_eq!(parse_size(input), want, "{input}");
        }
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10 parsecs").is_err());
    }

    /// The messages are user-facing and documented: the numbers in them come from
    /// `crate::protocol` now, and must read exactly as before.
    #[test]
    fn error_messages_unchanged() {
        assert_eq!(
            parse_size("ten").unwrap_err(),
            "\"ten\" is not a size (examples: 10MiB, 5 MiB, 327680)"
        );
        assert_eq!(
            validate_chunk_size(100_000).unwrap_err(),
            "chunk_size = 100000 bytes is not a multiple of 320 KiB (327680 bytes); \
             use e.g. 327680 or \"10MiB\""
        );
        assert_eq!(
            validate_chunk_size(62_914_560).unwrap_err(),
            "chunk_size = 62914560 bytes is not under 60 MiB; the largest allowed is 62586880 \
             (191 × 320 KiB); the default is \"10MiB\""
        );
    }

    #[test]
    fn chunk_size_rules() {
        assert!(validate_chunk_size(FRAGMENT_UNIT).is_ok());
        assert!(validate_chunk_size(MAX_FRAGMENT).is_ok());
        let e = validate_chunk_size(100_000).unwrap_err();
        assert!(e.contains("not a multiple of 320 KiB"), "{e}");
        assert!(validate_chunk_size(MAX_FRAGMENT + FRAGMENT_UNIT)
            .unwrap_err()
            .contains("60 MiB"));
        assert!(validate_chunk_size(0).is_err());
    }

    #[test]
    fn defaults_and_overrides() {
        let cfg = MountConfig::resolve(base(), &no_env).unwrap();
        assert_eq!(cfg.chunk_size, DEFAULT_CHUNK);
        assert_eq!(cfg.workers, 4);
        assert_eq!(cfg.conflict, Conflict::Replace);
        assert_eq!(cfg.graph_url, "https://graph.microsoft.com/v1.0");
        let over = FileConfig {
            chunk_size: Some(SizeValue::Text("5MiB".into())),
            conflict: Some("fail".into()),
            ..Default::default()
        };
        let cfg = MountConfig::resolve(base().overlay(over), &no_env).unwrap();
        assert_eq!(cfg.chunk_size, 5 * 1024 * 1024);
        assert_eq!(cfg.conflict, Conflict::Fail);
    }

    #[test]
    fn env_secret_wins_and_never_prints() {
        let env = |k: &str| (k == "SHAREUPLIFT_PASSWORD").then(|| "from-env".to_string());
        let cfg = MountConfig::resolve(base(), &env).unwrap();
        assert_eq!(cfg.password.as_ref().unwrap().expose(), "from-env");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("from-env") && !dbg.contains("pw-very-secret"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: Vec<(FileConfig, &str)> = vec![
            (
                FileConfig {
                    chunk_size: Some(SizeValue::Text("100000".into())),
                    ..base()
                },
                "chunk_size",
            ),
            (
                FileConfig {
                    chunk_size: Some(SizeValue::Bytes(100_000)),
                    ..base()
                },
                "chunk_size",
            ),
            (
                FileConfig {
                    workers: Some(0),
                    ..base()
                },
                "workers",
            ),
            (
                FileConfig {
                    conflict: Some("keep".into()),
                    ..base()
                },
                "conflict",
            ),
            (
                FileConfig {
                    site_url: Some("not a url".into()),
                    ..base()
                },
                "site_url",
            ),
            (
                FileConfig {
                    site_url: None,
                    ..base()
                },
                "site_url",
            ),
            (
                FileConfig {
                    folder_url: None,
                    ..base()
                },
                "folder_url",
            ),
            (
                FileConfig {
                    password: None,
                    ..base()
                },
                "missing: password",
            ),
        ];
        for (cfg, key) in cases {
            let e = MountConfig::resolve(cfg, &no_env).unwrap_err().0;
            assert!(e.contains(key), "{e} should name {key}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(!e.contains("pw-very-secret"));
        }
    }

    #[test]
    fn cloud_scope_and_optional_site_url() {
        let mut f = base();
        f.cloud = Some("usgov".into());
        f.site_url = None;
        f.folder_url = Some("https://contoso.sharepoint.us/sites/Team/Shared Documents".into());
        let cfg = MountConfig::resolve(f.clone(), &no_env).unwrap();
        assert_eq!(cfg.authority_url, "https://login.microsoftonline.us");
        assert_eq!(cfg.graph_url, "https://graph.microsoft.us/v1.0");
        assert_eq!(cfg.graph_scope, "https://graph.microsoft.us");
        assert_eq!(cfg.site_url, "");
        assert_eq!(cfg.auth, AuthMethod::Password);
        f.graph_url = Some("http://127.0.0.1:9/v1.0".into());
        f.graph_scope = Some("https://graph.microsoft.com/.default".into());
        let cfg = MountConfig::resolve(f.clone(), &no_env).unwrap();
        assert_eq!(cfg.graph_scope, "https://graph.microsoft.com");
        assert_eq!(cfg.authority_url, "https://login.microsoftonline.us");
        f.folder_url = Some("/sites/Team/Shared Documents".into());
        let e = MountConfig::resolve(f, &no_env).unwrap_err().0;
        assert!(e.contains("site_url is missing"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error_without_echoing_values() {
        let e = FileConfig::parse("pasword = \"hunter2\"\n").unwrap_err().0;
        assert!(e.contains("pasword"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
