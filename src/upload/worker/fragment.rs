//! One fragment PUT of an upload run: which bytes (the first range the server expects, at the
//! mount's current fragment size, `fragment_size.rs`), sent straight from the spool file
//! (`remote::FragmentBody`: pieces of 256 KiB, each through the mount's byte pace), timed, and
//! told back to the fragment sizer — accepted with its fixed cost, or dropped / timed out. A
//! body the spool file could not give is the job's failure, not the network's.
//!
//! The small-file lane's uploader has a plan of its own (one fragment per file) and neither
//! reads nor feeds the sizer; the big-file lane's plan is the mount's (`ctx.plan`).

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use super::super::chunk::{ChunkPlan, Fragment, PlanError};
use super::super::fragment_size::fixed_cost;
use super::{JobRun, Stop};
use crate::remote::{ByteRange, FragmentBody, FragmentOutcome, RemoteError, UploadSession, PIECE};

impl JobRun<'_> {
    /// Whether this run follows the mount's fragment size (the big-file lane).
    fn sized_to_link(&self) -> bool {
        self.lane == self.ctx.plan
    }

    /// The next fragment to send, at the current size.
    pub(super) fn plan_fragment(&self, expected: &[ByteRange]) -> Result<Fragment, PlanError> {
        let size = if self.sized_to_link() {
            self.ctx.fragments.size()
        } else {
            self.lane.chunk_size()
        };
        self.ctx.registry.fragment_size(self.id, size);
        ChunkPlan::new(size).next_fragment(self.job.size, expected)
    }

    /// PUT `fragment` of the spool `file` into `session`.
    pub(super) fn send_fragment(
        &self,
        file: &Arc<File>,
        session: &UploadSession,
        fragment: Fragment,
    ) -> Result<Result<FragmentOutcome, RemoteError>, Stop> {
        let body = FragmentBody::file(Arc::clone(file), fragment.offset, fragment.len)
            .with_pace(Arc::clone(&self.ctx.pace));
        let started = Instant::now();
        let result = self
            .ctx
            .remote
            .upload_fragment(session, self.job.size, &body);
        let took = started.elapsed();
        let log = body.send_log();
        if let Some(local) = log.local_error {
            return Err(Stop::Failed(local));
        }
        if self.sized_to_link() {
            match &result {
                Ok(FragmentOutcome::Accepted { .. }) => {
                    let fixed = fixed_cost(took, &log.gaps, fragment.len, PIECE as u64);
                    self.ctx.fragments.succeeded(fragment.len, took, fixed);
                }
                // Dropped mid-body or timed out: the link, not the request.
                Err(RemoteError::Transport(_)) => self.ctx.fragments.failed(),
                _ => {}
            }
        }
        Ok(result)
    }
}
