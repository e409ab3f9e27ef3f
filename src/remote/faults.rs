//! Fault injection around a test remote, in the spirit of mountpoint-s3's
//! `failure_client.rs`: [`FaultyRemote`] wraps a remote and answers some requests with
//! scripted failures instead of (or after) passing them on, so the double behind it keeps only
//! the protocol's rules. Faults are consumed in order by the next matching request as it
//! arrives (before the inner remote holds or slows it), whichever job makes it.
//!
//! What a wrapper cannot do through [`Remote`] alone is asked of the inner remote through
//! [`FaultTarget`]: record a request the wrapper answered itself (so call logs stay complete),
//! deliver a fragment PUT that was cut off after some bytes (the trait cannot send a short
//! body), and forget a session. `MemoryRemote` implements it.
//!
//! Test support, compiled only under `cfg(test)` or the `test-support` feature. Lock: `state`,
//! a leaf; it is never held while the inner remote is called.

use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::memory::Call;
use super::{
    ByteRange, Conflict, FragmentBody, FragmentOutcome, Remote, RemoteError, RemoteItem,
    UploadSession,
};

/// A scripted failure of the next fragment PUT.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this error; nothing is accepted.
    Fail(RemoteError),
    /// Accept the first `accept` bytes of the fragment, then answer with `err` (a PUT cut off).
    PartialThenFail { accept: u64, err: RemoteError },
    /// The session becomes unusable: this and every later request on it get `err` (404 for a
    /// session that is gone, 401 for an expired tempauth token).
    KillSession(RemoteError),
}

/// What [`FaultyRemote`] needs from the remote it wraps beyond [`Remote`].
pub trait FaultTarget: Remote {
    /// Log a request the wrapper answered without passing it on.
    fn record(&self, call: Call);
    /// A fragment PUT that arrives (checked, held, recorded like any) but is cut off after
    /// `kept` bytes; if that completes the file, the server commits it.
    fn cut_off_fragment(
        &self,
        session: &UploadSession,
        offset: u64,
        total: u64,
        body: &[u8],
        kept: usize,
    ) -> Result<(), RemoteError>;
    /// Forget an open session without a request (it died on the server).
    fn drop_session(&self, session: &UploadSession);
}

#[derive(Default)]
struct Faults {
    fragment: VecDeque<Fault>,
    create: VecDeque<RemoteError>,
    /// Answers of the next deletes (locked files, passing errors), in order.
    delete: VecDeque<RemoteError>,
    /// Sessions killed by [`Fault::KillSession`], by URL, with the error they answer.
    dead: HashMap<String, RemoteError>,
    /// The next this-many item reports (commit answers, stats) omit the hash.
    hash_missing: u32,
    /// Report a wrong hash for every item.
    wrong_hash: bool,
    /// The next this-many commits answer session-shaped (no item, ODI#1531).
    commit_without_item: u32,
}

/// A remote that fails on script. Derefs to the wrapped remote for its own test helpers.
pub struct FaultyRemote<R> {
    inner: R,
    state: Mutex<Faults>,
}

impl<R: Default> Default for FaultyRemote<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R> Deref for FaultyRemote<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.inner
    }
}

impl<R> FaultyRemote<R> {
    pub fn new(inner: R) -> Self {
        FaultyRemote {
            inner,
            state: Mutex::new(Faults::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push_fragment_fault(&self, fault: Fault) {
        self.lock().fragment.push_back(fault);
    }
    /// The next session creation or simple upload answers `err`.
    pub fn push_create_fault(&self, err: RemoteError) {
        self.lock().create.push_back(err);
    }
    /// The next delete answers `err` (nothing is deleted).
    pub fn push_delete_fault(&self, err: RemoteError) {
        self.lock().delete.push_back(err);
    }
    pub fn set_hash_missing(&self, reports: u32) {
        self.lock().hash_missing = reports;
    }
    pub fn set_wrong_hash(&self, wrong: bool) {
        self.lock().wrong_hash = wrong;
    }
    pub fn set_commit_without_item(&self, commits: u32) {
        self.lock().commit_without_item = commits;
    }

    /// An item as reported under the hash faults.
    fn report(&self, mut item: RemoteItem) -> RemoteItem {
        let mut f = self.lock();
        if f.hash_missing > 0 {
            f.hash_missing -= 1;
            item.quick_xor_hash = None;
        } else if f.wrong_hash {
            item.quick_xor_hash =
                Some(format!("wrong-{}", item.quick_xor_hash.unwrap_or_default()));
        }
        item
    }

    fn dead(&self, session: &UploadSession) -> Option<RemoteError> {
        self.lock().dead.get(session.url.expose()).cloned()
    }
}

impl<R: FaultTarget> Remote for FaultyRemote<R> {
    fn stat(&self, path: &str) -> Result<Option<RemoteItem>, RemoteError> {
        Ok(self.inner.stat(path)?.map(|item| self.report(item)))
    }

    fn list(&self, path: &str) -> Result<Vec<RemoteItem>, RemoteError> {
        self.inner.list(path)
    }

    fn mkdir(&self, path: &str) -> Result<RemoteItem, RemoteError> {
        self.inner.mkdir(path)
    }

    fn create_upload_session(
        &self,
        path: &str,
        size: u64,
        mtime: SystemTime,
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<UploadSession, RemoteError> {
        let fault = self.lock().create.pop_front();
        if let Some(err) = fault {
            self.inner.record(Call::Create {
                path: path.into(),
                size,
            });
            return Err(err);
        }
        self.inner
            .create_upload_session(path, size, mtime, conflict, if_match)
    }

    fn upload_fragment(
        &self,
        session: &UploadSession,
        total: u64,
        fragment: &FragmentBody,
    ) -> Result<FragmentOutcome, RemoteError> {
        let offset = fragment.offset();
        let data = super::memory::read_body(fragment)?;
        let body = &data[..];
        if let Some(err) = self.dead(session) {
            self.inner.record(Call::Fragment {
                path: String::new(),
                offset,
                len: body.len() as u64,
                at: Instant::now(),
            });
            return Err(err);
        }
        let fault = self.lock().fragment.pop_front();
        match fault {
            None => match self.inner.upload_fragment(
                session,
                total,
                // Already read (and paced) once: hand the bytes on.
                &FragmentBody::bytes(offset, data.clone()),
            )? {
                FragmentOutcome::Completed(Some(item)) => {
                    let item = self.report(item);
                    let mut f = self.lock();
                    if f.commit_without_item > 0 {
                        f.commit_without_item -= 1;
                        return Ok(FragmentOutcome::Completed(None));
                    }
                    Ok(FragmentOutcome::Completed(Some(item)))
                }
                other => Ok(other),
            },
            Some(Fault::Fail(err)) => {
                self.inner
                    .cut_off_fragment(session, offset, total, body, 0)?;
                Err(err)
            }
            Some(Fault::PartialThenFail { accept, err }) => {
                let kept = usize::try_from(accept).unwrap_or(usize::MAX);
                self.inner
                    .cut_off_fragment(session, offset, total, body, kept)?;
                Err(err)
            }
            Some(Fault::KillSession(err)) => {
                self.inner
                    .cut_off_fragment(session, offset, total, body, 0)?;
                self.inner.drop_session(session);
                self.lock()
                    .dead
                    .insert(session.url.expose().to_string(), err.clone());
                Err(err)
            }
        }
    }

    fn upload_status(&self, session: &UploadSession) -> Result<Vec<ByteRange>, RemoteError> {
        if let Some(err) = self.dead(session) {
            self.inner.record(Call::Status {
                path: String::new(),
            });
            return Err(err);
        }
        self.inner.upload_status(session)
    }

    fn cancel_upload(&self, session: &UploadSession) -> Result<(), RemoteError> {
        if let Some(err) = self.dead(session) {
            self.inner.record(Call::Cancel {
                path: String::new(),
            });
            return Err(err);
        }
        self.inner.cancel_upload(session)
    }

    fn upload_small(
        &self,
        path: &str,
        body: &[u8],
        conflict: Conflict,
        if_match: Option<&str>,
    ) -> Result<RemoteItem, RemoteError> {
        let fault = self.lock().create.pop_front();
        if let Some(err) = fault {
            self.inner.record(Call::Small { path: path.into() });
            return Err(err);
        }
        Ok(self.report(self.inner.upload_small(path, body, conflict, if_match)?))
    }

    fn delete(&self, path: &str) -> Result<(), RemoteError> {
        let fault = self.lock().delete.pop_front();
        match fault {
            Some(err) => Err(err),
            None => self.inner.delete(path),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<RemoteItem, RemoteError> {
        self.inner.rename(from, to)
    }

    fn set_mtime(&self, path: &str, mtime: SystemTime) -> Result<RemoteItem, RemoteError> {
        Ok(self.report(self.inner.set_mtime(path, mtime)?))
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RemoteError> {
        self.inner.read_range(path, offset, len)
    }

    fn delta(&self, token: Option<&str>) -> Result<crate::remote::DeltaRound, RemoteError> {
        self.inner.delta(token)
    }

    fn checked_out(&self, item: &RemoteItem) -> bool {
        self.inner.checked_out(item)
    }

    fn checkin(&self, item: &RemoteItem, path: &str, comment: &str) -> Result<(), RemoteError> {
        self.inner.checkin(item, path, comment)
    }

    fn drive_quota(&self) -> Result<Option<crate::remote::DriveQuota>, RemoteError> {
        self.inner.drive_quota()
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::MemoryRemote;
    use super::*;

    fn frag(offset: u64, data: &[u8]) -> FragmentBody {
        FragmentBody::bytes(offset, data.to_vec())
    }
    use crate::protocol::FRAGMENT_UNIT as ALIGN;

    fn session(r: &FaultyRemote<MemoryRemote>, path: &str, size: u64) -> UploadSession {
        r.create_upload_session(path, size, SystemTime::UNIX_EPOCH, Conflict::Replace, None)
            .unwrap()
    }

    #[test]
    fn partial_acceptance_and_dead_sessions() {
        let r = FaultyRemote::<MemoryRemote>::default();
        let total = 3 * ALIGN;
        let s = session(&r, "f.bin", total);
        let body = vec![1u8; ALIGN as usize];
        r.push_fragment_fault(Fault::PartialThenFail {
            accept: 100,
            err: RemoteError::Server {
                status: 503,
                code: "x".into(),
            },
        });
        assert!(r.upload_fragment(&s, total, &frag(0, &body)).is_err());
        assert_eq!(
            r.upload_status(&s).unwrap(),
            vec![ByteRange {
                start: 100,
                end: None
            }]
        );
        r.push_fragment_fault(Fault::KillSession(RemoteError::Unauthorized(
            "expiredToken".into(),
        )));
        assert!(r.upload_fragment(&s, total, &frag(100, &body)).is_err());
        assert!(matches!(
            r.upload_status(&s),
            Err(RemoteError::Unauthorized(_))
        ));
    }
}
