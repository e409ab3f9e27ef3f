//! An in-memory SharePoint for tests: a [`Remote`] that keeps files in a map and ENFORCES the
//! upload-session rules of reference §2 (the numbers are `crate::protocol`'s). Scripted faults
//! are not here: wrap it in [`super::faults::FaultyRemote`].
//!
//! Enforced: every fragment but the last is a multiple of 320 KiB; each is under 60 MiB and not
//! empty; fragments are sequential (a gap → 416 `fragmentOutOfOrder`, a repeat → 416
//! `fragmentOverlap`); the total is the same in every request (else 400
//! `fragmentLengthMismatch`); no two PUTs of one session run at once (recorded as a violation);
//! the parent folder exists; conflict behaviour at creation and commit. It records every
//! request it receives ([`Call`]) and can hold or slow fragment PUTs (server timing, not
//! faults). `hash` computes the item hash the server reports; tests use a stand-in for
//! quickXorHash on both sides. The [`FaultTarget`] hooks let the fault wrapper record the
//! requests it answers itself, deliver a PUT cut off after some bytes, and drop a session.
//!
//! Test support: compiled only under `cfg(test)` or the `test-support` feature. Locks:
//! `state`, then `pause` is never taken while `state` is held (the pause wait happens outside);
//! the remote never calls back into the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::faults::FaultTarget;
use crate::protocol::{FRAGMENT_LIMIT, FRAGMENT_UNIT};
use crate::redact::SecretUrl;
use crate::remote::{
    ByteRange, Conflict, DeltaChange, DeltaRound, FragmentBody, FragmentOutcome, Remote,
    RemoteError, RemoteItem, UploadSession,
};

/// A request the remote received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create {
        path: String,
        size: u64,
    },
    Fragment {
        path: String,
        offset: u64,
        len: u64,
        at: Instant,
    },
    Status {
        path: String,
    },
    Cancel {
        path: String,
    },
    Small {
        path: String,
    },
    Stat {
        path: String,
    },
    SetMtime {
        path: String,
    },
    Mkdir {
        path: String,
    },
    List {
        path: String,
    },
    Checkin {
        path: String,
    },
    Quota,
}

#[derive(Debug)]
struct Session {
    path: String,
    total: u64,
    mtime: SystemTime,
    conflict: Conflict,
    data: Vec<u8>,
    busy: bool,
}

#[derive(Debug)]
struct State {
    /// Keyed by lower-cased path.
    files: BTreeMap<String, (RemoteItem, Vec<u8>)>,
    sessions: HashMap<String, Session>,
    next_id: u64,
    calls: Vec<Call>,
    violations: Vec<String>,
    fragment_delay: Duration,
    /// Change-feed snapshots, one per token handed out (the token is the index): item id →
    /// (parent id, item).
    delta_snapshots: Vec<BTreeMap<String, (String, RemoteItem)>>,
    /// A library that requires check-out: committed files stay checked out (by id).
    require_checkout: bool,
    checked_out: std::collections::HashSet<String>,
    /// Total file bytes allowed (507 at the commit beyond it), reported by `drive_quota`.
    quota: Option<u64>,
}

/// The in-memory remote.
pub struct MemoryRemote {
    hash: fn(&[u8]) -> String,
    state: Mutex<State>,
    paused: Mutex<bool>,
    resumed: Condvar,
}

/// A trivial stand-in for quickXorHash (FNV-1a 64, hex), for tests on both sides.
pub fn stand_in_hash(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// [`stand_in_hash`] of a file, with the signature of the queue's `hasher`.
pub fn stand_in_file_hash(path: &std::path::Path) -> std::io::Result<String> {
    Ok(stand_in_hash(&std::fs::read(path)?))
}

/// The item id of the memory remote's root folder (the mount root), for the change feed.
pub const MEMORY_ROOT_ID: &str = "item-root";

fn key(path: &str) -> String {
    path.to_lowercase()
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

impl Default for MemoryRemote {
    fn default() -> Self {
        Self::new(stand_in_hash)
    }
}

impl MemoryRemote {
    /// An empty drive whose items report `hash(content)` as their quickXorHash.
    pub fn new(hash: fn(&[u8]) -> String) -> Self {
        MemoryRemote {
            hash,
            state: Mutex::new(State {
                files: BTreeMap::new(),
                sessions: HashMap::new(),
                next_id: 1,
                calls: Vec::new(),
                violations: Vec::new(),
                fragment_delay: Duration::ZERO,
                delta_snapshots: Vec::new(),
                require_checkout: false,
                checked_out: Default::default(),
                quota: None,
            }),
            paused: Mutex::new(false),
            resumed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every fragment PUT takes at least this long (real time).
    pub fn set_fragment_delay(&self, d: Duration) {
        self.lock().fragment_delay = d;
    }

    /// Committed files stay checked out until `checkin` (a library that requires check-out).
    pub fn set_require_checkout(&self, on: bool) {
        self.lock().require_checkout = on;
    }

    /// Whether the file at `path` is checked out.
    pub fn is_checked_out(&self, path: &str) -> bool {
        let s = self.lock();
        s.files
            .get(&key(path))
            .is_some_and(|(item, _)| s.checked_out.contains(&item.id))
    }

    /// Total file bytes allowed; commits beyond it answer 507.
    pub fn set_quota(&self, bytes: Option<u64>) {
        self.lock().quota = bytes;
    }

    fn used_bytes(s: &State) -> u64 {
        s.files.values().map(|(item, _)| item.size).sum()
    }

    /// Hold every fragment PUT (after validation, before acceptance) until `resume`.
    pub fn pause_fragments(&self) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }
    pub fn resume_fragments(&self) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.resumed.notify_all();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }
    /// Rule violations seen (parallel PUTs of one session).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }
    pub fn open_sessions(&self) -> usize {
        self.lock().sessions.len()
    }
    /// Content of the file at `path`.
    pub fn content(&self, path: &str) -> Option<Vec<u8>> {
        self.lock().files.get(&key(path)).map(|(_, d)| d.clone())
    }
    /// Number of fragment PUTs received so far.
    pub fn fragment_count(&self) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Fragment { .. }))
            .count()
    }

    fn wait_while_paused(&self) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        while *paused {
            paused = self.resumed.wait(paused).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn check_parent(s: &State, path: &str) -> Result<(), RemoteError> {
        let parent = parent_of(path);
        if parent.is_empty() {
            return Ok(());
        }
        match s.files.get(&key(parent)) {
            Some((item, _)) if item.is_folder => Ok(()),
            _ => Err(RemoteError::NotFound(format!("parent folder of {path}"))),
        }
    }

    /// `if-match`: the item at `path` must exist with exactly this eTag, else 412 (as Graph
    /// answers an in-place edit whose file changed meanwhile).
    fn check_if_match(s: &State, path: &str, if_match: Option<&str>) -> Result<(), RemoteError> {
        let Some(want) = if_match else {
            return Ok(());
        };
        match s.files.get(&key(path)) {
            Some((item, _)) if item.etag.as_deref() == Some(want) => Ok(()),
            _ => Err(RemoteError::PreconditionFailed(format!(
                "{path}: eTag does not match"
            ))),
        }
    }

    /// Store a file according to `conflict`; returns the stored item.
    fn commit(
        &self,
        s: &mut State,
        path: &str,
        data: Vec<u8>,
        mtime: SystemTime,
        conflict: Conflict,
    ) -> Result<RemoteItem, RemoteError> {
        Self::check_parent(s, path)?;
        let mut target = path.to_string();
        if s.files.contains_key(&key(path)) {
            match conflict {
                Conflict::Replace => {}
                Conflict::Fail => return Err(RemoteError::Conflict("nameAlreadyExists".into())),
                Conflict::Rename => {
                    let parent = parent_of(path);
                    let name = name_of(path);
                    let (stem, ext) = name.rsplit_once('.').map_or((name, ""), |(a, b)| (a, b));
                    for n in 1.. {
                        let candidate = if ext.is_empty() {
                            format!("{stem} {n}")
                        } else {
                            format!("{stem} {n}.{ext}")
                        };
                        let full = if parent.is_empty() {
                            candidate
                        } else {
                            format!("{parent}/{candidate}")
                        };
                        if !s.files.contains_key(&key(&full)) {
                            target = full;
                            break;
                        }
                    }
                }
            }
        }
        if let Some(q) = s.quota {
            let freed = s.files.get(&key(&target)).map_or(0, |(item, _)| item.size);
            if Self::used_bytes(s) - freed + data.len() as u64 > q {
                return Err(RemoteError::QuotaExceeded("quotaLimitReached".into()));
            }
        }
        let id = format!("item-{}", s.next_id);
        s.next_id += 1;
        if s.require_checkout {
            s.checked_out.insert(id.clone());
        }
        let item = RemoteItem {
            id,
            name: name_of(&target).to_string(),
            is_folder: false,
            size: data.len() as u64,
            mtime,
            etag: Some(format!("\"{}\"", s.next_id)),
            quick_xor_hash: Some((self.hash)(&data)),
            web_url: Some(format!("memory:///{target}")),
        };
        s.files.insert(key(&target), (item.clone(), data));
        Ok(item)
    }

    fn session_for<'a>(
        s: &'a mut State,
        session: &UploadSession,
    ) -> Result<&'a mut Session, RemoteError> {
        let url = session.url.expose();
        s.sessions
            .get_mut(url)
            .ok_or_else(|| RemoteError::NotFound("uploadSessionNotFound".into()))
    }

    fn validate_fragment(
        sess: &Session,
        offset: u64,
        total: u64,
        len: usize,
    ) -> Result<(), RemoteError> {
        let client = |code: &str, message: &str| RemoteError::Client {
            status: 400,
            code: code.into(),
            message: message.into(),
        };
        if total != sess.total {
            return Err(client("invalidRequest", "fragmentLengthMismatch"));
        }
        if len == 0 {
            return Err(client("invalidRequest", "empty fragment"));
        }
        if len as u64 >= FRAGMENT_LIMIT {
            return Err(client("invalidRequest", "maxFragmentLengthExceeded"));
        }
        let end = offset + len as u64;
        if end > total {
            return Err(RemoteError::RangeNotSatisfiable("beyond total".into()));
        }
        if end < total && !(len as u64).is_multiple_of(FRAGMENT_UNIT) {
            return Err(client(
                "invalidRequest",
                "fragment not a multiple of 320 KiB",
            ));
        }
        let received = sess.data.len() as u64;
        if offset < received {
            return Err(RemoteError::RangeNotSatisfiable("fragmentOverlap".into()));
        }
        if offset > received {
            return Err(RemoteError::RangeNotSatisfiable(
                "fragmentOutOfOrder".into(),
            ));
        }
        Ok(())
    }
    /// A fragment PUT arrives: recorded, checked, held while paused, then the first `kept`
    /// bytes of `body` are received (`kept < body.len()`: the PUT was cut off; its answer is
    /// meaningless then). When the session has every byte, the file is committed.
    fn receive(
        &self,
        session: &UploadSession,
        offset: u64,
        total: u64,
        body: &[u8],
        kept: usize,
    ) -> Result<FragmentOutcome, RemoteError> {
        let delay;
        {
            let mut s = self.lock();
            let path = s
                .sessions
                .get(session.url.expose())
                .map_or_else(String::new, |x| x.path.clone());
            s.calls.push(Call::Fragment {
                path,
                offset,
                len: body.len() as u64,
                at: Instant::now(),
            });
            delay = s.fragment_delay;
            let sess = Self::session_for(&mut s, session)?;
            Self::validate_fragment(sess, offset, total, body.len())?;
            if sess.busy {
                let path = sess.path.clone();
                s.violations
                    .push(format!("parallel PUTs on the session of {path}"));
                return Err(RemoteError::Protocol("parallel PUT".into()));
            }
            sess.busy = true;
        }
        self.wait_while_paused();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut s = self.lock();
        let url = session.url.expose().to_string();
        // The session may have been cancelled while the PUT was in flight.
        let sess = Self::session_for(&mut s, session)?;
        sess.busy = false;
        sess.data.extend_from_slice(&body[..kept.min(body.len())]);
        let received = sess.data.len() as u64;
        if received < sess.total {
            return Ok(FragmentOutcome::Accepted {
                next_expected: vec![ByteRange {
                    start: received,
                    end: Some(sess.total - 1),
                }],
                expires: None,
            });
        }
        // Every byte arrived: the server commits (even if the answer is then lost).
        let Some(sess) = s.sessions.remove(&url) else {
            return Err(RemoteError::Protocol("session vanished".into()));
        };
        let item = self.commit(&mut s, &sess.path, sess.data, sess.mtime, sess.conflict)?;
        Ok(FragmentOutcome::Completed(Some(item)))
    }
}

impl FaultTarget for MemoryRemote {
    fn record(&self, call: Call) {
        self.lock().calls.push(call);
    }

    fn cut_off_fragment(
        &self,
        session: &UploadSession,
        offset: u64,
        total: u64,
        body: &[u8],
        kept: usize,
    ) -> Result<(), RemoteError> {
        self.receive(session, offset, total, body, kept).map(|_| ())
    }

    fn drop_session(&self, session: &UploadSession) {
        self.lock().sessions.remove(session.url.expose());
    }
}

/// A test double's whole read of a fragment body (a read error is noted on the body, as the
/// real sender does, and answered as a transport error).
pub(crate) fn read_body(body: &FragmentBody) -> Result<Vec<u8>, RemoteError> {
    body.start_send();
    body.to_vec().map_err(|e| {
        body.note_local_error(e.to_string());
        RemoteError::Transport(format!("request body: {e}"))
    })
}

impl Remote for MemoryRemote {
    fn stat(&self, path: &str) -> Result<Option<RemoteItem>, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::Stat { path: path.into() });
        Ok(s.files.get(&key(path)).map(|(item, _)| item.clone()))
    }

    fn list(&self, path: &str) -> Result<Vec<RemoteItem>, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::List { path: path.into() });
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{}/", key(path))
        };
        Ok(s.files
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .map(|(_, (item, _))| item.clone())
            .collect())
    }

    fn mkdir(&self, path: &str) -> Result<RemoteItem, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::Mkdir { path: path.into() });
        Self::check_parent(&s, path)?;
        if let Some((item, _)) = s.files.get(&key(path)) {
            return if item.is_folder {
                Ok(item.clone())
            } else {
                Err(RemoteError::Conflict("nameAlreadyExists".into()))
            };
        }
        let item = RemoteItem {
            id: format!("item-{}", s.next_id),
            name: name_of(path).to_string(),
            is_folder: true,
            size: 0,
            mtime: SystemTime::now(),
            etag: None,
            quick_xor_hash: None,
            web_url: Some(format!("memory:///{path}")),
        };
        s.next_id += 1;
        s.files.insert(key(path), (item.clone(), Vec::new()));
        Ok(item)
    }

    fn create_upload_session(
        &self,
        path: &str,
        size: u64,
        mtime: SystemTime,
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<UploadSession, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::Create {
            path: path.into(),
            size,
        });
        Self::check_parent(&s, path)?;
        Self::check_if_match(&s, path, if_match)?;
        if conflict == Conflict::Fail && s.files.contains_key(&key(path)) {
            return Err(RemoteError::Conflict("nameAlreadyExists".into()));
        }
        if size == 0 {
            return Err(RemoteError::Client {
                status: 400,
                code: "invalidRequest".into(),
                message: "zero-byte files cannot use an upload session".into(),
            });
        }
        let url = format!(
            "https://memory.invalid/upload/{}?tempauth=secret",
            s.next_id
        );
        s.next_id += 1;
        s.sessions.insert(
            url.clone(),
            Session {
                path: path.into(),
                total: size,
                mtime,
                conflict,
                data: Vec::new(),
                busy: false,
            },
        );
        Ok(UploadSession {
            url: SecretUrl::new(url),
            expires: None,
        })
    }

    fn upload_fragment(
        &self,
        session: &UploadSession,
        total: u64,
        body: &FragmentBody,
    ) -> Result<FragmentOutcome, RemoteError> {
        let data = read_body(body)?;
        self.receive(session, body.offset(), total, &data, data.len())
    }

    fn upload_status(&self, session: &UploadSession) -> Result<Vec<ByteRange>, RemoteError> {
        let mut s = self.lock();
        let path = s
            .sessions
            .get(session.url.expose())
            .map_or_else(String::new, |x| x.path.clone());
        s.calls.push(Call::Status { path });
        let sess = Self::session_for(&mut s, session)?;
        Ok(vec![ByteRange {
            start: sess.data.len() as u64,
            end: None,
        }])
    }

    fn cancel_upload(&self, session: &UploadSession) -> Result<(), RemoteError> {
        let mut s = self.lock();
        let url = session.url.expose();
        let path = s
            .sessions
            .get(url)
            .map_or_else(String::new, |x| x.path.clone());
        s.calls.push(Call::Cancel { path });
        s.sessions
            .remove(url)
            .map(|_| ())
            .ok_or_else(|| RemoteError::NotFound("uploadSessionNotFound".into()))
    }

    fn upload_small(
        &self,
        path: &str,
        body: &[u8],
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<RemoteItem, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::Small { path: path.into() });
        Self::check_if_match(&s, path, if_match)?;
        self.commit(&mut s, path, body.to_vec(), SystemTime::now(), conflict)
    }

    fn delete(&self, path: &str) -> Result<(), RemoteError> {
        let mut s = self.lock();
        let k = key(path);
        s.files
            .remove(&k)
            .map(|_| ())
            .ok_or_else(|| RemoteError::NotFound(path.into()))?;
        let prefix = format!("{k}/");
        s.files.retain(|p, _| !p.starts_with(&prefix));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<RemoteItem, RemoteError> {
        let mut s = self.lock();
        Self::check_parent(&s, to)?;
        if s.files.contains_key(&key(to)) {
            return Err(RemoteError::Conflict("nameAlreadyExists".into()));
        }
        let (mut item, data) = s
            .files
            .remove(&key(from))
            .ok_or_else(|| RemoteError::NotFound(from.into()))?;
        item.name = name_of(to).to_string();
        s.files.insert(key(to), (item.clone(), data));
        Ok(item)
    }

    fn set_mtime(&self, path: &str, mtime: SystemTime) -> Result<RemoteItem, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::SetMtime { path: path.into() });
        let entry = s
            .files
            .get_mut(&key(path))
            .ok_or_else(|| RemoteError::NotFound(path.into()))?;
        entry.0.mtime = mtime;
        Ok(entry.0.clone())
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RemoteError> {
        let s = self.lock();
        let (_, data) = s
            .files
            .get(&key(path))
            .ok_or_else(|| RemoteError::NotFound(path.into()))?;
        let start = (offset as usize).min(data.len());
        let end = (offset.saturating_add(len) as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn checked_out(&self, item: &RemoteItem) -> bool {
        self.lock().checked_out.contains(&item.id)
    }

    fn checkin(&self, item: &RemoteItem, path: &str, _comment: &str) -> Result<(), RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::Checkin { path: path.into() });
        if s.checked_out.remove(&item.id) {
            Ok(())
        } else {
            Err(RemoteError::Client {
                status: 400,
                code: "invalidRequest".into(),
                message: "The file is not checked out.".into(),
            })
        }
    }

    fn drive_quota(&self) -> Result<Option<crate::remote::DriveQuota>, RemoteError> {
        let mut s = self.lock();
        s.calls.push(Call::Quota);
        Ok(s.quota.map(|q| crate::remote::DriveQuota {
            remaining: q.saturating_sub(Self::used_bytes(&s)),
            total: Some(q),
        }))
    }

    /// The change feed, by snapshot comparison: each token names the items as they were
    /// when it was handed out. By id, as SharePoint's: each changed item with its parent's id
    /// ([`MEMORY_ROOT_ID`] for the mount root), each deleted one by id.
    fn delta(&self, token: Option<&str>) -> Result<DeltaRound, RemoteError> {
        let mut s = self.lock();
        let mut now: BTreeMap<String, (String, RemoteItem)> = BTreeMap::new();
        for (k, (item, _)) in &s.files {
            let parent = parent_of(k);
            let parent_id = if parent.is_empty() {
                MEMORY_ROOT_ID.to_string()
            } else {
                match s.files.get(parent) {
                    Some((p, _)) => p.id.clone(),
                    None => continue, // orphaned below a moved folder: not in the tree
                }
            };
            now.insert(item.id.clone(), (parent_id, item.clone()));
        }
        let mut changes = Vec::new();
        if let Some(t) = token {
            let before = t
                .parse::<usize>()
                .ok()
                .and_then(|i| s.delta_snapshots.get(i))
                .ok_or_else(|| RemoteError::Client {
                    status: 410,
                    code: "resyncRequired".into(),
                    message: "unknown token".into(),
                })?;
            for (id, entry) in &now {
                if before.get(id) != Some(entry) {
                    changes.push(DeltaChange::Changed {
                        item: entry.1.clone(),
                        parent_id: Some(entry.0.clone()),
                        child_count: None,
                    });
                }
            }
            for (id, (parent, _)) in before.iter().filter(|(id, _)| !now.contains_key(*id)) {
                changes.push(DeltaChange::Deleted {
                    id: id.clone(),
                    parent_id: Some(parent.clone()),
                });
            }
        }
        s.delta_snapshots.push(now);
        Ok(DeltaRound {
            changes,
            root_id: Some(MEMORY_ROOT_ID.to_string()),
            token: (s.delta_snapshots.len() - 1).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(offset: u64, data: &[u8]) -> FragmentBody {
        FragmentBody::bytes(offset, data.to_vec())
    }

    const ALIGN: u64 = FRAGMENT_UNIT;

    fn session(r: &MemoryRemote, path: &str, size: u64) -> UploadSession {
        r.create_upload_session(path, size, SystemTime::UNIX_EPOCH, Conflict::Replace, None)
            .unwrap()
    }

    #[test]
    fn enforces_fragment_rules() {
        let r = MemoryRemote::default();
        let total = 2 * ALIGN + 10;
        let s = session(&r, "f.bin", total);
        let body = vec![7u8; 2 * ALIGN as usize + 10];
        // Non-final fragment not a multiple of 320 KiB.
        assert!(matches!(
            r.upload_fragment(&s, total, &frag(0, &body[..1000])),
            Err(RemoteError::Client { .. })
        ));
        // Total differs.
        assert!(matches!(
            r.upload_fragment(&s, total + 1, &frag(0, &body[..ALIGN as usize])),
            Err(RemoteError::Client { .. })
        ));
        // Out of order.
        assert!(matches!(
            r.upload_fragment(&s, total, &frag(ALIGN, &body[..ALIGN as usize])),
            Err(RemoteError::RangeNotSatisfiable(_))
        ));
        let out = r
            .upload_fragment(&s, total, &frag(0, &body[..ALIGN as usize]))
            .unwrap();
        assert_eq!(
            out,
            FragmentOutcome::Accepted {
                next_expected: vec![ByteRange {
                    start: ALIGN,
                    end: Some(total - 1)
                }],
                expires: None,
            }
        );
        // Overlap.
        assert!(matches!(
            r.upload_fragment(&s, total, &frag(0, &body[..ALIGN as usize])),
            Err(RemoteError::RangeNotSatisfiable(_))
        ));
        let out = r
            .upload_fragment(&s, total, &frag(ALIGN, &body[ALIGN as usize..]))
            .unwrap();
        let FragmentOutcome::Completed(Some(item)) = out else {
            panic!("not completed: {out:?}");
        };
        assert_eq!(item.size, total);
        assert_eq!(item.quick_xor_hash, Some(stand_in_hash(&body)));
        assert_eq!(r.content("F.BIN"), Some(body));
        assert_eq!(r.open_sessions(), 0);
    }

    #[test]
    fn conflicts_and_parents() {
        let r = MemoryRemote::default();
        assert!(matches!(
            r.create_upload_session(
                "no/such",
                5,
                SystemTime::UNIX_EPOCH,
                Conflict::Replace,
                None
            ),
            Err(RemoteError::NotFound(_))
        ));
        r.mkdir("Docs").unwrap();
        r.upload_small("Docs/a.txt", b"x", Conflict::Replace, None)
            .unwrap();
        assert!(matches!(
            r.create_upload_session(
                "docs/A.txt",
                5,
                SystemTime::UNIX_EPOCH,
                Conflict::Fail,
                None
            ),
            Err(RemoteError::Conflict(_))
        ));
        let item = r
            .upload_small("Docs/a.txt", b"y", Conflict::Rename, None)
            .unwrap();
        assert_eq!(item.name, "a 1.txt");
        assert_eq!(r.list("Docs").unwrap().len(), 2);
    }

    #[test]
    fn if_match_is_enforced() {
        let r = MemoryRemote::default();
        let t = SystemTime::UNIX_EPOCH;
        let e1 = r
            .upload_small("a.txt", b"1", Conflict::Replace, None)
            .unwrap()
            .etag
            .unwrap();
        assert!(r
            .create_upload_session("a.txt", 5, t, Conflict::Replace, Some(&e1))
            .is_ok());
        let e2 = r
            .upload_small("a.txt", b"2", Conflict::Replace, Some(&e1))
            .unwrap()
            .etag
            .unwrap();
        assert_ne!(e1, e2, "every change gets a new eTag");
        for stale in [e1.as_str(), "\"other\""] {
            assert!(matches!(
                r.create_upload_session("a.txt", 5, t, Conflict::Replace, Some(stale)),
                Err(RemoteError::PreconditionFailed(_))
            ));
            assert!(matches!(
                r.upload_small("a.txt", b"3", Conflict::Replace, Some(stale)),
                Err(RemoteError::PreconditionFailed(_))
            ));
        }
        assert_eq!(r.content("a.txt"), Some(b"2".to_vec()));
        // A missing item never matches.
        assert!(matches!(
            r.create_upload_session("gone.txt", 5, t, Conflict::Replace, Some(&e2)),
            Err(RemoteError::PreconditionFailed(_))
        ));
    }
}
