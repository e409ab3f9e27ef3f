//! The waits of an upload run that do not spend its attempts: throttling (the service
//! pacing the mount), a file SharePoint reports locked (entry 23: checked out or open in
//! another app, retried at most [`LOCKED_RETRY_MAX`] apart for `locked_wait`), and a path
//! held by an earlier upload session (`retry::StaleSessionWait`). Each updates the status
//! entry (state `retrying` and why) and sleeps on the run's clock, interruptibly.

use std::time::Duration;

use log::{debug, info};

use super::super::retry::{classify_create, Decision, Op};
use super::super::status::{sanitize_error, FILE_LOCKED, STALE_SESSION, STALE_UNRECORDED_SESSION};
use super::{is_changed_meanwhile, JobRun, Stop};
use crate::remote::RemoteError;

/// The longest pause between tries of a locked file: someone closing the document expects
/// the upload to follow within seconds, not after the retry policy's minute-long backoff.
/// With the policy's jitter that is about 8 tries a minute per locked file, for at most
/// `locked_wait` (1 h). Deletes of locked files (`pending_ops`) use the same bound.
pub const LOCKED_RETRY_MAX: Duration = Duration::from_secs(15);

impl JobRun<'_> {
    /// A 429/503: the service asks everyone to slow down. The gate closes for Retry-After (or
    /// a backoff when there is none) and the request is retried; it spends a try (`attempts`)
    /// but not the give-up bound (`stalled`): throttling is the service pacing us, not the
    /// upload failing, so a job throttled for longer than `max_attempts` tries still ends done
    /// (issue 9: "sustained throttling burns max_attempts").
    pub(super) fn throttled(
        &mut self,
        op: Op,
        retry_after: Option<Duration>,
        reason: &str,
    ) -> Decision {
        self.attempts += 1;
        self.ctx.registry.retrying(self.id, self.attempts, reason);
        let n = self.ctx.throttle.note_throttled();
        let d = retry_after.unwrap_or_else(|| self.ctx.policy.backoff(n, self.rng));
        debug!(
            "{}: {op:?} throttled: {reason}; waiting {} ms (attempt {}, not counted)",
            self.path(),
            d.as_millis(),
            self.attempts
        );
        // Every worker waits at the gate before its next request, this one included.
        self.ctx.throttle.close_for(&*self.ctx.clock, d);
        Decision::Throttle(retry_after)
    }

    /// SharePoint answered "locked" (423, or 409/403 `resourceLocked`: field reference entry
    /// 23): the file is checked out or open for editing elsewhere. That is the file's state,
    /// not a fault of this upload: retry with the policy's backoff
    /// (doubling, capped) for up to `locked_wait`, in state `retrying` with
    /// `status::FILE_LOCKED`, without spending `max_attempts`; fail only after that.
    pub(super) fn wait_locked(&mut self, err: &RemoteError) -> Result<Decision, Stop> {
        let now = self.ctx.clock.now();
        let first = *self.locked_since.get_or_insert(now);
        let waited = now.saturating_duration_since(first);
        if waited >= self.ctx.locked_wait {
            return Err(Stop::Failed(format!(
                "{} (still locked after {} s)",
                sanitize_error(&err.to_string()),
                waited.as_secs()
            )));
        }
        self.locked_refusals += 1;
        self.attempts += 1;
        self.ctx
            .registry
            .retrying(self.id, self.attempts, FILE_LOCKED);
        if self.locked_refusals == 1 {
            info!(
                "{}: {FILE_LOCKED}; retrying for up to {} s",
                self.path(),
                self.ctx.locked_wait.as_secs()
            );
        }
        let d = self
            .ctx
            .policy
            .backoff(self.locked_refusals, self.rng)
            .min(LOCKED_RETRY_MAX)
            .min(self.ctx.locked_wait - waited);
        self.ctx.clock.sleep(d, self.interrupt);
        Ok(Decision::Backoff)
    }

    /// A failed createUploadSession: a path held by an earlier session is waited for, the
    /// rest follows the retry policy.
    pub(super) fn create_failed(&mut self, err: &RemoteError) -> Result<(), Stop> {
        if is_changed_meanwhile(err, self.if_match.as_deref()) {
            return self.save_as_conflict();
        }
        if classify_create(err, self.ctx.conflict) == Decision::StaleSession {
            return self.wait_stale_session(err);
        }
        self.on_failure(Op::Create, err).map(|_| ())
    }

    /// createUploadSession was refused because an earlier session holds the path: wait for
    /// it to expire (no attempt of `max_attempts` spent), or fail once it would have.
    fn wait_stale_session(&mut self, err: &RemoteError) -> Result<(), Stop> {
        let now = self.ctx.clock.now();
        let first = *self.stale_since.get_or_insert(now);
        let waited = now.saturating_duration_since(first);
        self.stale_refusals += 1;
        let Some(wait) = self.ctx.stale_wait.next_wait(self.stale_refusals, waited) else {
            return Err(Stop::Failed(format!(
                "{} (an earlier upload session still held this path after {} s)",
                sanitize_error(&err.to_string()),
                waited.as_secs()
            )));
        };
        let unrecorded = self
            .job
            .resume
            .as_ref()
            .is_some_and(|r| r.unrecorded_session);
        let msg = if unrecorded {
            STALE_UNRECORDED_SESSION
        } else {
            STALE_SESSION
        };
        self.attempts += 1;
        self.ctx.registry.retrying(self.id, self.attempts, msg);
        if self.stale_refusals == 1 {
            info!(
                "{}: {msg}; retrying for up to {} s",
                self.path(),
                (self.ctx.stale_wait.lifetime + self.ctx.stale_wait.margin()).as_secs()
            );
        }
        self.ctx.clock.sleep(wait, self.interrupt);
        Ok(())
    }
}
