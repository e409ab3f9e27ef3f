//! What happens around the commit of an upload (field reference entries 12, 14 and 21):
//! finding out whether a final PUT whose answer failed committed the file after all, what to
//! do with a session that expects nothing more but never committed, the hash check, and the
//! check-in a library that requires check-out needs before anyone else sees the file.
//!
//! Rules: after a failure of the final PUT the item at the path is looked at before anything
//! is sent again, and a session is cancelled only after that look. An item counts as this
//! upload when its size and mtime (to the second) are the job's and its quickXorHash is the
//! spool file's; when the server has not computed the hash yet (entry 14) and our session is
//! gone, size and mtime and an eTag other than the one the edit started from are the evidence,
//! and the hash is checked later (`pending_ops`), never a reason to upload again. A file of
//! 64 MiB or more is hashed on a thread of its own while it uploads, so the check after the
//! commit costs no extra read of the whole file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};

use super::super::chunk::PlanError;
use super::super::retry::{classify, Decision, Op};
use super::super::status::{sanitize_error, CHECKED_IN, CHECKED_OUT, HASH_NOT_YET};
use super::{JobRun, Stop};
use crate::remote::{RemoteError, RemoteItem, UploadSession};

/// Files from this size on are hashed beside their upload (`start_early_hash`).
const EARLY_HASH_MIN: u64 = 64 * 1024 * 1024;

/// The comment of a check-in (shown in the file's version history).
const CHECKIN_COMMENT: &str = "Uploaded by ShareUplift";

/// Tries of a check-in that fails with a passing error (network, 5xx, throttling).
const CHECKIN_TRIES: u32 = 3;

/// The pause before a second look at a path that answered 404 although the final PUT was
/// sent (a passing 404, entry 10, must not make the file go up twice).
const SECOND_LOOK: Duration = Duration::from_secs(1);

/// What a session that expects no more bytes, yet never committed, came to (entry 12).
pub(super) enum NothingExpected {
    /// The file is there after all.
    Committed(RemoteItem),
    /// Ask the session again after a backoff (the commit may be under way).
    AskAgain,
    /// The session is broken: it was cancelled (after the look); upload in a new one.
    Abandoned,
}

impl JobRun<'_> {
    fn same_mtime(&self, item: &RemoteItem) -> bool {
        match item.mtime.duration_since(self.job.mtime) {
            Ok(d) => d < Duration::from_secs(1),
            Err(e) => e.duration() < Duration::from_secs(1),
        }
    }

    /// A big file's hash is computed on a thread of its own while its fragments go out, so
    /// the check after the commit does not add a read of the whole file to the upload.
    pub(super) fn start_early_hash(&mut self) {
        if self.job.size < EARLY_HASH_MIN || self.early_hash.is_some() {
            return;
        }
        let (hasher, path) = (Arc::clone(&self.ctx.hasher), self.job.spool_file.clone());
        let spawned = std::thread::Builder::new()
            .name("shareuplift-hash".into())
            .spawn(move || hasher(&path));
        match spawned {
            Ok(h) => self.early_hash = Some(h),
            Err(e) => debug!("{}: hashing beside the upload: {e}", self.path()),
        }
    }

    /// The spool file's hash: the early one when there is one, else computed now.
    fn spool_hash(&mut self) -> std::io::Result<String> {
        match self.early_hash.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => (self.ctx.hasher)(&self.job.spool_file),
        }
    }

    fn local_hash(&self) -> Option<String> {
        (self.ctx.hasher)(&self.job.spool_file).ok()
    }

    /// The final PUT failed without saying the bytes were refused (network, 5xx, an answer
    /// we could not read; entry 12: a 503/504 can come although the file was committed). Is
    /// the file there with our size, mtime and hash? The session may still be open, so only
    /// a hash match counts here; `find_committed` decides once the session is gone.
    pub(super) fn committed_after_failed_final(&mut self) -> Option<RemoteItem> {
        let item = self.ctx.remote.stat(self.path()).ok().flatten()?;
        if item.is_folder || item.size != self.job.size || !self.same_mtime(&item) {
            return None;
        }
        let remote_hash = item.quick_xor_hash.as_deref()?;
        if self.local_hash()? != remote_hash {
            return None;
        }
        info!(
            "{}: the final fragment's answer failed, but the file was committed",
            self.path()
        );
        Some(item)
    }

    /// The last byte was sent but its answer lost, and now the session is gone: the server may
    /// well have committed the upload. If the item at the path has this job's size, content
    /// hash and mtime (to the second), it is this upload: do not upload again (with conflict
    /// `fail` a second upload would get 409, with `rename` it would make a duplicate). A 404
    /// gets a second look; a missing hash (entry 14) is not a reason to upload again when the
    /// item is not the version this edit started from.
    pub(super) fn find_committed(&mut self) -> Option<RemoteItem> {
        let remote = Arc::clone(&self.ctx.remote);
        let mut item = remote.stat(self.path()).ok().flatten();
        if item.is_none() && self.ctx.clock.sleep(SECOND_LOOK, self.interrupt) {
            item = remote.stat(self.path()).ok().flatten();
        }
        let item = item?;
        if item.is_folder || item.size != self.job.size || !self.same_mtime(&item) {
            return None;
        }
        match item.quick_xor_hash.as_deref() {
            Some(remote_hash) => {
                if self.local_hash()? != remote_hash {
                    return None;
                }
            }
            None => {
                if self.if_match.is_some() && item.etag == self.if_match {
                    return None; // the version this edit started from: not ours
                }
                info!(
                    "{}: committed (size and mtime match, our session is gone); SharePoint \
                     has no quickXorHash yet, it is checked later",
                    self.path()
                );
            }
        }
        debug!(
            "{}: the lost final answer had committed the upload",
            self.path()
        );
        Some(item)
    }

    /// The session answers `nextExpectedRanges: []` after our final PUT, and the file is not
    /// committed (entry 12). Look for the item; ask the session once more after a backoff; the
    /// second time, cancel it (we have looked) and upload in a new session.
    pub(super) fn nothing_expected(
        &mut self,
        session: &UploadSession,
    ) -> Result<NothingExpected, Stop> {
        if let Some(item) = self.committed_after_failed_final() {
            return Ok(NothingExpected::Committed(item));
        }
        self.empty_ranges += 1;
        let err = RemoteError::Protocol(PlanError::NothingExpected.to_string());
        if self.empty_ranges < 2 {
            self.on_failure(Op::Status, &err)?;
            return Ok(NothingExpected::AskAgain);
        }
        self.on_failure(Op::Fragment, &err)?;
        info!(
            "{}: the server expects no more bytes but did not commit; uploading again in a \
             new session",
            self.path()
        );
        if let Err(e) = self.ctx.remote.cancel_upload(session) {
            debug!("{}: cancelling the broken session: {e}", self.path());
        }
        Ok(NothingExpected::Abandoned)
    }

    /// The commit answer carried no item (ODI#1531): look it up by path.
    pub(super) fn lookup(&mut self) -> Result<RemoteItem, Stop> {
        let remote = Arc::clone(&self.ctx.remote);
        loop {
            self.ready()?;
            let err = match remote.stat(self.path()) {
                Ok(Some(item)) => return Ok(item),
                Ok(None) => RemoteError::NotFound("committed item not visible yet".into()),
                Err(e) => e,
            };
            self.on_failure(Op::Lookup, &err)?;
        }
    }

    /// A committed item: check its hash, then check it in if the library keeps it checked
    /// out.
    pub(super) fn finish(&mut self, item: RemoteItem) -> Result<RemoteItem, Stop> {
        let item = self.verify(item)?;
        Ok(self.check_in(item))
    }

    /// A hash mismatch that is SharePoint's enrichment (`enrichment.rs`): an Office/ODF/PDF
    /// file in a SharePoint library whose sent and committed bytes both still open with the
    /// format's signature. Reads the first bytes of the spool file and of the stored item;
    /// any failure to read answers "no" (the job then fails with the mismatch).
    fn enriched_by_server(&self, item: &RemoteItem) -> bool {
        use super::super::enrichment::{format_of, is_enrichment, HEAD_BYTES};
        if !self.ctx.enriches_files || format_of(self.path()).is_none() {
            return false;
        }
        let mut local = [0u8; HEAD_BYTES];
        let local_ok = File::open(&self.job.spool_file)
            .and_then(|f| f.read_exact_at(&mut local, 0))
            .is_ok();
        if !local_ok || item.size < HEAD_BYTES as u64 {
            return false;
        }
        match self
            .ctx
            .remote
            .read_range(self.path(), 0, HEAD_BYTES as u64)
        {
            Ok(remote) => is_enrichment(self.path(), &local, &remote),
            Err(e) => {
                debug!("{}: reading the stored file's head: {e}", self.path());
                false
            }
        }
    }

    /// Compare the spool file's hash with the server's; ask once more after a delay when the
    /// server has not computed it yet. Still none: done, noted "not verified yet", and checked
    /// again later (`pending_ops`, entry 14).
    fn verify(&mut self, item: RemoteItem) -> Result<RemoteItem, Stop> {
        use super::super::enrichment::SERVER_MODIFIED;
        let local = self
            .spool_hash()
            .map_err(|e| Stop::Failed(format!("cannot hash spool file: {e}")))?;
        let mut remote_hash = item.quick_xor_hash.clone();
        if remote_hash.is_none() {
            self.ctx
                .clock
                .sleep(self.ctx.hash_recheck_delay, self.interrupt);
            match self.ctx.remote.stat(self.path()) {
                Ok(Some(again)) => remote_hash = again.quick_xor_hash,
                Ok(None) => {}
                Err(e) => debug!("{}: hash re-check failed: {e}", self.path()),
            }
        }
        match remote_hash {
            Some(remote) if remote == local => Ok(RemoteItem {
                quick_xor_hash: Some(remote),
                ..item
            }),
            Some(remote) if self.enriched_by_server(&item) => {
                info!(
                    "{}: {SERVER_MODIFIED} ({} bytes sent, {} stored)",
                    self.path(),
                    self.job.size,
                    item.size
                );
                self.ctx.registry.note(self.id, SERVER_MODIFIED, true);
                Ok(RemoteItem {
                    quick_xor_hash: Some(remote),
                    ..item
                })
            }
            Some(remote) => Err(Stop::Failed(format!(
                "hash mismatch: local {local} remote {remote}"
            ))),
            None => {
                warn!(
                    "{}: the server reported no quickXorHash yet; checking again later",
                    self.path()
                );
                self.ctx.registry.note(self.id, HASH_NOT_YET, false);
                self.ctx
                    .ops
                    .verify_later(&*self.ctx.clock, self.id, self.path(), &item, local);
                Ok(item)
            }
        }
    }

    /// A library that requires check-out keeps the upload visible to this account only
    /// (entry 21): check it in. A check-in that fails leaves the upload done (its content is
    /// in SharePoint) with a note saying it is checked out and why the check-in failed.
    fn check_in(&mut self, item: RemoteItem) -> RemoteItem {
        let remote = Arc::clone(&self.ctx.remote);
        if !remote.checked_out(&item) {
            return item;
        }
        let mut tries = 0;
        let reason = loop {
            if self.ready().is_err() {
                break "stopped before the check-in".to_string();
            }
            let err = match remote.checkin(&item, self.path(), CHECKIN_COMMENT) {
                Ok(()) => {
                    info!("{}: {CHECKED_IN}", self.path());
                    self.ctx.registry.note(self.id, CHECKED_IN, false);
                    return item;
                }
                Err(e) => e,
            };
            tries += 1;
            let passing = matches!(
                classify(Op::Lookup, &err),
                Decision::Backoff | Decision::Throttle(_) | Decision::Locked
            );
            if !passing || tries >= CHECKIN_TRIES {
                break sanitize_error(&err.to_string());
            }
            let d = self.ctx.policy.backoff(tries, self.rng);
            self.ctx.clock.sleep(d, self.interrupt);
        };
        warn!("{}: {CHECKED_OUT}; check-in failed: {reason}", self.path());
        self.ctx.registry.note(
            self.id,
            &format!("{CHECKED_OUT}; check-in failed: {reason}"),
            false,
        );
        item
    }
}
