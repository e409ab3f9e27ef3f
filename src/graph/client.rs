//! `GraphRemote`: the [`Remote`] implementation over Microsoft Graph drive items and upload
//! sessions, rooted at the mount folder found at connect time.
//!
//! Invariants: every path is relative to the mount folder and reaches a URL segment by
//! segment (`paths`); Graph API calls carry the bearer token (via `api`), while upload URLs
//! and pre-authenticated download URLs are called through the bare transport with no
//! Authorization header — they carry their own credentials, and SharePoint answers 401 to a
//! bearer token on an upload URL (reference §2). Upload URLs appear in logs and errors only
//! redacted. Rename, delete and set_mtime address items by id (resolved with a stat) as in
//! reference §6; everything else addresses by path.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, IF_MATCH};
use reqwest::Method;
use serde_json::Value;

use super::api::GraphApi;
use super::auth::{TokenProvider, SIGN_IN_NEEDED};
use super::http::{error_from_parts, error_from_response, parse_json, read_json, Http};
use super::paths::{drive_item_id_url, drive_item_url, split_rel};
use super::resolve::{resolve, sign_in, ConnectError};
use super::wire::{
    format_time, parse_ranges, parse_time, CreateSessionBody, CreateSessionItem, DriveItem,
    EmptyObject, FileSystemInfoOut, MoveBody, NewFolder, ParentRef, SetMtimeBody,
    UploadSessionWire,
};
use super::{GraphConfig, Tuning};
use crate::redact::SecretUrl;
use crate::remote::hints::{RateHints, SignIn};
use crate::remote::{
    ByteRange, Conflict, FragmentBody, FragmentOutcome, Remote, RemoteError, RemoteItem,
    UploadSession,
};

/// Fields requested when listing a folder.
/// (`parentReference`: every page is checked to belong to the folder, `listing.rs`.)
const LIST_SELECT: &str =
    "id,name,size,eTag,file,folder,fileSystemInfo,lastModifiedDateTime,webUrl,parentReference";
/// Page size when listing (the Graph maximum).
const LIST_PAGE: u32 = 1000;

/// The Microsoft Graph remote, rooted at the configured folder.
pub struct GraphRemote {
    api: GraphApi,
    drive_id: String,
    drive_name: String,
    /// Decoded segments of the mount folder inside the drive.
    folder: Vec<String>,
    /// The change feed's memory between rounds (`delta`).
    feed: super::delta::Feed,
    /// Items the latest answers said were checked out (`library.rs`).
    publications: super::library::Publications,
}

impl std::fmt::Debug for GraphRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphRemote")
            .field("graph_url", &self.api.base)
            .field("drive_id", &self.drive_id)
            .field("drive_name", &self.drive_name)
            .field("folder", &self.folder)
            .finish()
    }
}

fn usage(op: &str, message: &str) -> RemoteError {
    RemoteError::Client {
        status: 400,
        code: "invalidRequest".into(),
        message: format!("{op}: {message}"),
    }
}

/// `(parent segments, name)` of a non-root path.
fn split_parent<'a>(segs: &[&'a str], op: &str) -> Result<(Vec<&'a str>, &'a str), RemoteError> {
    match segs.split_last() {
        Some((name, parent)) => Ok((parent.to_vec(), name)),
        None => Err(usage(op, "not allowed on the mount root")),
    }
}

/// A driveItem body, or `None` when the body is session-shaped (no `id`, ODI#1531).
fn item_or_session_shaped(
    v: Value,
    context: &str,
    publications: &super::library::Publications,
) -> Result<Option<RemoteItem>, RemoteError> {
    if v.get("id").and_then(Value::as_str).is_none() {
        return Ok(None);
    }
    let item: DriveItem = serde_json::from_value(v)
        .map_err(|_| RemoteError::Protocol(format!("{context}: malformed driveItem")))?;
    publications.note(&item);
    Ok(Some(item.into_remote_item()))
}

/// The pause before a second look at an item that answered 404 (`stat_confirmed`).
const SECOND_LOOK: Duration = Duration::from_millis(300);

/// First wait between start-up attempts; doubles up to [`STARTUP_MAX_BACKOFF`].
const STARTUP_FIRST_BACKOFF: Duration = Duration::from_secs(1);
const STARTUP_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Run `attempt` until it succeeds, fails permanently, or `budget` is spent: throttling
/// (honouring Retry-After), 5xx and network errors are waited out with backoff, each wait
/// logged; wrong credentials or a missing folder end at once.
pub fn retry_transient<T>(
    budget: Duration,
    mut attempt: impl FnMut() -> Result<T, ConnectError>,
) -> Result<T, ConnectError> {
    let deadline = std::time::Instant::now() + budget;
    let mut backoff = STARTUP_FIRST_BACKOFF;
    loop {
        let err = match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        let hinted = match err.remote_error() {
            Some(RemoteError::Throttled {
                retry_after: Some(d),
                ..
            }) => *d,
            _ => backoff,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(err);
        }
        let wait = hinted.min(left);
        log::warn!(
            "start-up: {err}; trying again in {} ms ({} s of startup_timeout left)",
            wait.as_millis(),
            left.as_secs()
        );
        std::thread::sleep(wait);
        backoff = (backoff * 2).min(STARTUP_MAX_BACKOFF);
    }
}

impl GraphRemote {
    /// Sign in, resolve site → library → folder, and check the folder exists.
    pub fn connect(cfg: GraphConfig) -> Result<GraphRemote, ConnectError> {
        Self::connect_with(cfg, Tuning::default())
    }

    /// [`connect`](Self::connect) with explicit transport tuning.
    ///
    /// Device-code sign-in: a successful start-up remembers where it found the folder
    /// (`cache::FolderCache`, beside the token cache). A start-up whose saved sign-in is
    /// already dead (refresh token revoked or expired) then comes up anyway with that folder,
    /// the queue paused on `sign-in needed` until `shareuplift login`; without a remembered
    /// folder it fails with the one-line message, as every other sign-in failure does.
    pub fn connect_with(cfg: GraphConfig, tuning: Tuning) -> Result<GraphRemote, ConnectError> {
        let api = Self::api(&cfg, tuning)?;
        let folder_cache = Self::folder_cache(&cfg);
        let outcome = retry_transient(cfg.startup_timeout, || {
            sign_in(&api, &cfg)?;
            resolve(&api, &cfg)
        });
        let r = match outcome {
            Ok(r) => {
                if let Some(fc) = &folder_cache {
                    if let Err(e) = fc.save(&r.drive_id, &r.drive_name, &r.folder) {
                        log::warn!("{e}");
                    }
                }
                r
            }
            Err(e) => match folder_cache
                .as_ref()
                .filter(|_| api.auth.sign_in_needed().is_some())
            {
                Some(fc) => match fc.load() {
                    Ok(Some(c)) => {
                        log::warn!(
                            "{SIGN_IN_NEEDED}: mounting with the folder found at the last \
                             start-up ({}); uploads wait for the sign-in",
                            c.saved_at
                        );
                        super::resolve::Resolved {
                            drive_id: c.drive_id,
                            drive_name: c.drive_name,
                            folder: c.folder,
                        }
                    }
                    Ok(None) => return Err(e),
                    Err(load_err) => {
                        log::warn!("{load_err}");
                        return Err(e);
                    }
                },
                None => return Err(e),
            },
        };
        log::info!(
            "mounted library {} folder /{} (drive {})",
            r.drive_name,
            r.folder.join("/"),
            r.drive_id
        );
        Ok(GraphRemote {
            api,
            drive_id: r.drive_id,
            drive_name: r.drive_name,
            folder: r.folder,
            feed: Default::default(),
            publications: Default::default(),
        })
    }

    /// The folder cache of a device-code configuration (`None` for other sign-ins: their
    /// failures at start-up are configuration errors, not a sign-in to repair while mounted).
    fn folder_cache(cfg: &GraphConfig) -> Option<super::cache::FolderCache> {
        if cfg.auth != super::AuthMethod::DeviceCode {
            return None;
        }
        let tokens = super::auth::token_cache(cfg).ok()?;
        Some(tokens.folder_cache(&cfg.graph_url, &cfg.site_url, &cfg.folder_url))
    }

    /// The authorized Graph API of `cfg` (for `check`), without network I/O.
    pub(super) fn api_for(cfg: &GraphConfig, tuning: Tuning) -> Result<GraphApi, ConnectError> {
        Self::api(cfg, tuning)
    }

    /// A remote rooted at an already resolved folder (for `check`).
    pub(super) fn from_resolved(api: GraphApi, r: super::resolve::Resolved) -> GraphRemote {
        GraphRemote {
            api,
            drive_id: r.drive_id,
            drive_name: r.drive_name,
            folder: r.folder,
            feed: Default::default(),
            publications: Default::default(),
        }
    }

    fn api(cfg: &GraphConfig, tuning: Tuning) -> Result<GraphApi, ConnectError> {
        let http = Http::new(tuning.timeouts(cfg), cfg.ca_file.as_deref())
            .map_err(|e| ConnectError::new(format!("cannot set up HTTPS: {e}")))?;
        let auth = TokenProvider::new(cfg, http.clone()).map_err(ConnectError::new)?;
        GraphApi::new(http, auth, &cfg.graph_url).map_err(ConnectError::new)
    }

    /// A remote for a known drive and folder, without network I/O (tests, reconnects).
    #[cfg(test)]
    pub(crate) fn from_parts(
        cfg: &GraphConfig,
        tuning: Tuning,
        drive_id: &str,
        folder: &[&str],
    ) -> Result<GraphRemote, ConnectError> {
        Ok(GraphRemote {
            api: Self::api(cfg, tuning)?,
            drive_id: drive_id.into(),
            drive_name: "Documents".into(),
            folder: folder.iter().map(|s| s.to_string()).collect(),
            feed: Default::default(),
            publications: Default::default(),
        })
    }

    pub fn drive_id(&self) -> &str {
        &self.drive_id
    }

    pub fn drive_name(&self) -> &str {
        &self.drive_name
    }

    /// The mount folder inside the library, `/`-separated, `""` for the library root.
    pub fn folder_path(&self) -> String {
        self.folder.join("/")
    }

    /// URL of the item at mount-relative segments (see `paths::drive_item_url`).
    fn item_url(&self, rel: &[&str]) -> String {
        let all: Vec<&str> = self
            .folder
            .iter()
            .map(String::as_str)
            .chain(rel.iter().copied())
            .collect();
        drive_item_url(&self.api.base, &self.drive_id, &all)
    }

    fn stat_segments(
        &self,
        segs: &[&str],
        context: &str,
    ) -> Result<Option<RemoteItem>, RemoteError> {
        match self
            .api
            .get_json::<DriveItem>(&self.item_url(segs), context)
        {
            Ok(item) => {
                self.publications.note(&item);
                Ok(Some(item.into_remote_item()))
            }
            Err(RemoteError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A stat whose 404 is confirmed by a second look: a lookup can answer a passing 404
    /// (field reference entry 10), and a rename must not report a file that is there as
    /// missing. Costs a pause only when the item is (or looks) absent.
    fn stat_confirmed(
        &self,
        segs: &[&str],
        context: &str,
    ) -> Result<Option<RemoteItem>, RemoteError> {
        match self.stat_segments(segs, context)? {
            Some(item) => Ok(Some(item)),
            None => {
                std::thread::sleep(SECOND_LOOK);
                self.stat_segments(segs, context)
            }
        }
    }

    fn require(&self, path: &str, op: &str) -> Result<RemoteItem, RemoteError> {
        let segs = split_rel(path)?;
        self.stat_segments(&segs, &format!("{op} {path}"))?
            .ok_or_else(|| RemoteError::NotFound(format!("{op} {path}")))
    }

    /// PATCH an item by id and return the updated item.
    fn patch_item<B: serde::Serialize>(
        &self,
        id: &str,
        query: &str,
        body: &B,
        context: &str,
    ) -> Result<RemoteItem, RemoteError> {
        let url = format!(
            "{}{query}",
            drive_item_id_url(&self.api.base, &self.drive_id, id)
        );
        let resp = self
            .api
            .send_ok(Method::PATCH, &url, |r| r.json(body), context)?;
        let item: DriveItem = read_json(resp, context)?;
        self.publications.note(&item);
        Ok(item.into_remote_item())
    }
}

/// The sign-in state of a Graph remote (its token provider).
struct GraphSignIn(Arc<GraphRemote>);

impl SignIn for GraphSignIn {
    fn needed(&self) -> Option<String> {
        self.0.api.auth.sign_in_needed()
    }
    fn pauses(&self) -> bool {
        self.0.api.auth.auth_pauses()
    }
}

impl GraphRemote {
    /// Where this remote's HTTP layer records `RateLimit-*` headers and `Retry-After`
    /// windows, for the mount's limiter.
    pub fn rate_hints(&self) -> Arc<RateHints> {
        self.api.http.rate.clone()
    }

    /// This remote's sign-in state, for the upload queue.
    pub fn sign_in(self: &Arc<Self>) -> Arc<dyn SignIn> {
        Arc::new(GraphSignIn(self.clone()))
    }
}

impl Remote for GraphRemote {
    fn stat(&self, path: &str) -> Result<Option<RemoteItem>, RemoteError> {
        let segs = split_rel(path)?;
        self.stat_segments(&segs, &format!("stat {path}"))
    }

    fn checked_out(&self, item: &RemoteItem) -> bool {
        self.publications.is_checked_out(&item.id)
    }

    fn checkin(&self, item: &RemoteItem, path: &str, comment: &str) -> Result<(), RemoteError> {
        super::library::checkin(
            &self.api,
            &self.publications,
            &self.drive_id,
            item,
            path,
            comment,
        )
    }

    fn drive_quota(&self) -> Result<Option<crate::remote::DriveQuota>, RemoteError> {
        super::library::drive_quota(&self.api, &self.drive_id)
    }

    /// One round of the change feed by item id (see `Remote::delta` and `super::delta`).
    fn delta(&self, token: Option<&str>) -> Result<crate::remote::DeltaRound, RemoteError> {
        super::delta::round(
            &self.api,
            &self.drive_id,
            &self.feed,
            || self.stat(""),
            token,
        )
    }

    fn list(&self, path: &str) -> Result<Vec<RemoteItem>, RemoteError> {
        let segs = split_rel(path)?;
        let context = format!("list {path}");
        let folder_url = self.item_url(&segs);
        let url = format!("{folder_url}/children?$top={LIST_PAGE}&$select={LIST_SELECT}");
        super::listing::list_children(&self.api, &url, &folder_url, &context)
    }

    fn mkdir(&self, path: &str) -> Result<RemoteItem, RemoteError> {
        let segs = split_rel(path)?;
        let context = format!("mkdir {path}");
        let Some((parent, name)) = segs.split_last().map(|(n, p)| (p, *n)) else {
            return self.require("", "mkdir");
        };
        let url = format!("{}/children", self.item_url(parent));
        let body = NewFolder {
            name,
            folder: EmptyObject {},
            conflict: Conflict::Fail,
        };
        let resp = self
            .api
            .send(Method::POST, &url, |r| r.json(&body), &context)?;
        match resp.status().as_u16() {
            200 | 201 => {
                let item: DriveItem = read_json(resp, &context)?;
                Ok(item.into_remote_item())
            }
            409 => {
                let conflict = error_from_response(resp, &context);
                match self.stat_segments(&segs, &context)? {
                    Some(existing) if existing.is_folder => Ok(existing),
                    _ => Err(conflict),
                }
            }
            _ => Err(error_from_response(resp, &context)),
        }
    }

    fn create_upload_session(
        &self,
        path: &str,
        _size: u64,
        mtime: SystemTime,
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<UploadSession, RemoteError> {
        let segs = split_rel(path)?;
        let (_, name) = split_parent(&segs, "createUploadSession")?;
        let context = format!("createUploadSession {path}");
        let body = CreateSessionBody {
            item: CreateSessionItem {
                conflict,
                name,
                file_system_info: FileSystemInfoOut {
                    last_modified: format_time(mtime)?,
                },
            },
        };
        let url = format!("{}/createUploadSession", self.item_url(&segs));
        // Graph honours If-Match on createUploadSession: 412 when the item changed since.
        let resp = self.api.send_ok(
            Method::POST,
            &url,
            |r| match if_match {
                Some(tag) => r.header(IF_MATCH, tag).json(&body),
                None => r.json(&body),
            },
            &context,
        )?;
        let wire: UploadSessionWire = read_json(resp, &context)?;
        let url = wire.upload_url.filter(|u| !u.is_empty()).ok_or_else(|| {
            RemoteError::Protocol(format!("{context}: response has no uploadUrl"))
        })?;
        Ok(UploadSession {
            url: SecretUrl::new(url),
            expires: wire.expiration.as_deref().and_then(parse_time),
        })
    }

    fn upload_fragment(
        &self,
        session: &UploadSession,
        total: u64,
        body: &FragmentBody,
    ) -> Result<FragmentOutcome, RemoteError> {
        let (offset, len) = (body.offset(), body.len());
        let end = match offset.checked_add(len) {
            Some(after) if len > 0 && after <= total => after - 1,
            _ => {
                return Err(usage(
                    "upload fragment",
                    &format!("bytes {offset}+{len} do not fit a non-empty fragment of {total}"),
                ))
            }
        };
        let context = "upload session";
        let mut headers = reqwest::header::HeaderMap::new();
        let range = format!("bytes {offset}-{end}/{total}");
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&range) {
            headers.insert(CONTENT_RANGE, v);
        }
        // Entry 20: idle while sending; after the last byte of the file, its commit may take
        // longer than an ordinary answer (entry 12).
        let timeouts = &self.api.http.timeouts;
        let answer_wait = if end + 1 == total {
            timeouts.commit_wait(total)
        } else {
            timeouts.idle
        };
        let answer = self.api.http.put_watched(
            session.url.expose(),
            &session.url.redacted(),
            headers,
            body,
            answer_wait,
        )?;
        match answer.status {
            202 => {
                let wire: UploadSessionWire = parse_json(&answer.body, context)?;
                let ranges = wire.next_expected_ranges.unwrap_or_default();
                Ok(FragmentOutcome::Accepted {
                    next_expected: parse_ranges(&ranges)?,
                    expires: wire.expiration.as_deref().and_then(parse_time),
                })
            }
            200 | 201 => {
                let v: Value = parse_json(&answer.body, context)?;
                Ok(FragmentOutcome::Completed(item_or_session_shaped(
                    v,
                    context,
                    &self.publications,
                )?))
            }
            s => Err(error_from_parts(
                s,
                &answer.headers,
                &String::from_utf8_lossy(&answer.body),
                context,
            )),
        }
    }

    fn upload_status(&self, session: &UploadSession) -> Result<Vec<ByteRange>, RemoteError> {
        let context = "upload session status";
        let req = self.api.http.request(Method::GET, session.url.expose());
        let resp = self.api.http.send(req, &session.url.redacted())?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, context));
        }
        let wire: UploadSessionWire = read_json(resp, context)?;
        parse_ranges(&wire.next_expected_ranges.unwrap_or_default())
    }

    fn cancel_upload(&self, session: &UploadSession) -> Result<(), RemoteError> {
        let req = self.api.http.request(Method::DELETE, session.url.expose());
        let resp = self.api.http.send(req, &session.url.redacted())?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(error_from_response(resp, "cancel upload session")),
        }
    }

    fn upload_small(
        &self,
        path: &str,
        body: &[u8],
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<RemoteItem, RemoteError> {
        let segs = split_rel(path)?;
        split_parent(&segs, "upload")?;
        let context = format!("upload {path}");
        let url = format!(
            "{}/content?@microsoft.graph.conflictBehavior={}",
            self.item_url(&segs),
            conflict.as_str()
        );
        let timeout = self.api.http.timeouts.transfer;
        let resp = self.api.send_ok(
            Method::PUT,
            &url,
            |r| {
                let r = match if_match {
                    Some(tag) => r.header(IF_MATCH, tag),
                    None => r,
                };
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .timeout(timeout)
                    .body(body.to_vec())
            },
            &context,
        )?;
        let item: DriveItem = read_json(resp, &context)?;
        self.publications.note(&item);
        Ok(item.into_remote_item())
    }

    /// DELETE by path, one request: a 404 from the DELETE itself means the goal is reached.
    /// (Looking the item up first would let a passing 404 of the lookup, field reference
    /// entry 10, report a file that is still there as "already gone".)
    fn delete(&self, path: &str) -> Result<(), RemoteError> {
        let segs = split_rel(path)?;
        split_parent(&segs, "delete")?;
        let context = format!("delete {path}");
        let url = self.item_url(&segs);
        let resp = self.api.send(Method::DELETE, &url, |r| r, &context)?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(error_from_response(resp, &context)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<RemoteItem, RemoteError> {
        let from_segs = split_rel(from)?;
        split_parent(&from_segs, "rename")?;
        let to_segs = split_rel(to)?;
        let (to_parent, to_name) = split_parent(&to_segs, "rename")?;
        let context = format!("rename {from} -> {to}");
        let item = self
            .stat_confirmed(&from_segs, &context)?
            .ok_or_else(|| RemoteError::NotFound(format!("{context}: source")))?;
        let parent = self
            .stat_segments(&to_parent, &context)?
            .ok_or_else(|| RemoteError::NotFound(format!("{context}: target folder")))?;
        if !parent.is_folder {
            return Err(usage(&context, "the target's parent is not a folder"));
        }
        let body = MoveBody {
            name: to_name,
            parent_reference: ParentRef { id: &parent.id },
        };
        self.patch_item(
            &item.id,
            "?@microsoft.graph.conflictBehavior=fail",
            &body,
            &context,
        )
    }

    fn set_mtime(&self, path: &str, mtime: SystemTime) -> Result<RemoteItem, RemoteError> {
        let context = format!("set mtime {path}");
        let item = self.require(path, "set mtime")?;
        let body = SetMtimeBody {
            file_system_info: FileSystemInfoOut {
                last_modified: format_time(mtime)?,
            },
        };
        self.patch_item(&item.id, "", &body, &context)
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RemoteError> {
        let segs = split_rel(path)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let context = format!("read {path}");
        let url = format!("{}/content", self.item_url(&segs));
        let name = segs.last().copied().unwrap_or_default();
        super::download::read_range(&self.api, &url, name, &context, offset, len)
    }
}
