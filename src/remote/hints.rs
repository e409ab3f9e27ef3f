//! What the service says besides its answers, and who learns it: rate hints and sign-in state.
//!
//! These are not data operations, so they are not on the [`super::Remote`] trait. The remote
//! that sees the answers (the Graph client's HTTP layer) records into a shared
//! [`RateHints`]; the one mount-wide limiter (`upload/limiter.rs`) is handed the same object
//! and reads it, so the hints travel from the transport to the gate without passing through
//! the trait. Sign-in state is its own small trait, [`SignIn`], handed to the upload queue
//! (which pauses while the user must act) and read by the core through the queue.
//!
//! Locks: two leaf mutexes inside [`RateHints`], held for a copy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::RateLimitHint;

/// The `RateLimit-*` headers of the latest answer and the latest `Retry-After` window,
/// shared by every clone of the HTTP layer and by the limiter.
#[derive(Debug, Default)]
pub struct RateHints {
    latest: Mutex<Option<RateLimitHint>>,
    /// The latest 429/503 + Retry-After: until when the service asked us to send nothing.
    /// Recorded the moment the status line is in, before the body is read or the error
    /// classified, so every other thread can see it before its next request.
    retry_until: Mutex<Option<Instant>>,
}

impl RateHints {
    /// Record an answer's headers (`None`: it carried none).
    pub fn record(&self, hint: Option<RateLimitHint>) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = hint;
    }

    /// What the latest answer said.
    pub fn latest(&self) -> Option<RateLimitHint> {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 429/503 asked for `d` of silence from now (never shortens a later end).
    pub fn record_retry_after(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut r = self.retry_until.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none_or(|cur| cur < until) {
            *r = Some(until);
        }
    }

    /// Until when the latest Retry-After asks for silence, if that is still ahead.
    pub fn retry_until(&self) -> Option<Instant> {
        let r = *self.retry_until.lock().unwrap_or_else(|e| e.into_inner());
        r.filter(|t| *t > Instant::now())
    }
}

/// Whether the mount can sign in without the user.
pub trait SignIn: Send + Sync {
    /// `Some(reason)` while the remote cannot sign in until the user acts (a device-code
    /// sign-in was refused: `shareuplift login` fixes it); the upload queue pauses meanwhile.
    /// Cheap, no network I/O (may stat a local file).
    fn needed(&self) -> Option<String>;

    /// Whether an `Auth` error pauses the queue (the sign-in can be repaired while mounted)
    /// rather than failing the job.
    fn pauses(&self) -> bool;
}

/// A remote that never needs the user (the in-memory test double, app credentials).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSignIn;

impl SignIn for NoSignIn {
    fn needed(&self) -> Option<String> {
        None
    }
    fn pauses(&self) -> bool {
        false
    }
}
