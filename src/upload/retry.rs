//! The retry policy of an upload (reference §2 and §7): which errors are retried and how, how
//! long to back off, and when a job gives up.
//!
//! [`classify`] maps an error, together with the request that produced it, to a [`Decision`];
//! it is a pure table. What the worker does after the wait follows from the request, not the
//! decision: after a failed fragment PUT it always GETs the session status and continues from
//! the first byte the server expects (reference §2: a failed PUT may have been accepted in
//! part); after a failed createUploadSession it creates again; after a failed status GET it
//! GETs again.
//!
//! Attempts: a job's `attempts` is the number of tries it has started. It becomes 1 when a
//! worker picks the job up; every failed request (createUploadSession, fragment PUT, status
//! GET, the item lookup after commit) that is going to be retried adds one. The give-up bound
//! counts failures *without progress*: when a retriable failure happens after `max_attempts`
//! failed requests in a row during which the server acknowledged no new byte, the job fails
//! with that failure's reason. So a long upload over a flaky link that keeps advancing goes
//! on, while one that is stuck (a permanent 5xx, endless throttling) ends in bounded time.
//! A 429/503 (throttling) adds one to `attempts` but never counts toward the give-up bound:
//! it is the service pacing the client, which a job must sit out however long it lasts (the
//! service asks for it, and a file must not fail because the tenant is busy); a worker that
//! merely waits at the shared throttle gate because another worker was throttled spends
//! nothing. [`counts_toward_give_up`] is that rule. Bytes the server
//! acknowledged are kept: a retry never re-sends them. Permanent errors fail at once, whatever
//! the count.
//!
//! Field behaviour (issue 17): a 404 at createUploadSession (a folder created seconds ago, a
//! passing 404; entry 10) and a plain 400 `invalidRequest` there (too many sessions at once;
//! entry 11) back off within the attempt budget; "locked" (entry 23) is [`Decision::Locked`],
//! waited for like throttling, without spending attempts; a column-validation refusal
//! (entry 22) fails at once.
//!
//! Backoff is exponential with full jitter: after the n-th failure (n ≥ 1) the wait is uniform
//! in `[0, min(cap, base · 2^(n-1)))`. Full jitter spreads workers that failed together.
//!
//! Stale sessions (issue 12): OneDrive for Business refuses a second open upload session on
//! one path with 409 `nameAlreadyExists`, whatever the conflictBehavior (reference §1,
//! ODI#747). With our conflict policy `replace` or `rename` a 409 at creation can only mean
//! that: an earlier session — typically one a killed process opened but never recorded —
//! still holds the path. It is not permanent: that session expires after the service's idle
//! lifetime (~15 min, sliding with activity; [`StaleSessionWait::lifetime`], config
//! `session_idle_secs`). [`classify_create`] turns it into [`Decision::StaleSession`], and
//! [`StaleSessionWait::next_wait`] waits (doubling, capped, never past the deadline) until
//! the lifetime plus a margin has passed since the first such 409, and only then gives up.
//! These waits do not count against `max_attempts`: a stuck session must not fail a file
//! sooner than it could expire. With `fail`, a 409 is the name being taken: it fails at once.

use std::time::Duration;

use rand::Rng;

use crate::remote::{Conflict, RemoteError};

/// Which request failed: the same error means different things on different requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// createUploadSession, or the simple PUT of a zero-byte file (both address the item path
    /// with the bearer token).
    Create,
    /// PUT of a fragment to the upload URL.
    Fragment,
    /// GET of the upload URL (the session's `nextExpectedRanges`).
    Status,
    /// Lookup of the committed item by path (stat), for its id and hash.
    Lookup,
}

/// What to do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Retry at once (the server told us where we stand, or the error is not load-related).
    RetryNow,
    /// Retry after an exponential backoff with full jitter.
    Backoff,
    /// The tenant is throttled: close the shared gate for every worker for the given time
    /// (Retry-After), or for a backoff when the server gave none; then retry.
    Throttle(Option<Duration>),
    /// The upload session is gone (404) or its URL expired (401): create a new session and
    /// upload from byte 0.
    NewSession,
    /// Permanent: the job fails now with the error as its reason.
    Fail,
    /// createUploadSession answered 409 while our conflict policy is `replace`/`rename`: an
    /// earlier session still holds the path. Wait for it to expire ([`StaleSessionWait`]),
    /// without spending attempts, then create again.
    StaleSession,
    /// The file is locked (checked out, open in another app; field reference entry 23): wait
    /// for the lock (up to `locked_wait`, tries at most 15 s apart), without spending
    /// attempts, then send the same request again.
    Locked,
}

/// Classify a failed createUploadSession, which also depends on our conflict policy: a 409
/// is a stale session holding the path unless we asked the server to fail on a taken name.
/// Everything else is [`classify`]`(Op::Create, err)`. Pure.
pub fn classify_create(err: &RemoteError, conflict: Conflict) -> Decision {
    match (err, conflict) {
        (RemoteError::Conflict(_), Conflict::Replace | Conflict::Rename) => Decision::StaleSession,
        _ => classify(Op::Create, err),
    }
}

/// How long to wait for a stale upload session to let go of a path (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSessionWait {
    /// The service's idle lifetime of an upload session: after this long without a request
    /// an unrecorded session of ours has expired. Default 900 s (~15 min, reference §2).
    pub lifetime: Duration,
    /// First wait; doubled per 409 in a row.
    pub base: Duration,
    /// Longest single wait.
    pub cap: Duration,
}

impl Default for StaleSessionWait {
    fn default() -> Self {
        StaleSessionWait {
            lifetime: Duration::from_secs(900),
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        }
    }
}

impl StaleSessionWait {
    /// The margin past `lifetime` before giving up: the server sweeps expired sessions late
    /// (the emulator within a second, ODB within minutes), and our clock and its may differ.
    pub fn margin(&self) -> Duration {
        (self.lifetime / 10).clamp(Duration::from_secs(5), Duration::from_secs(120))
    }

    /// The wait before creating again after the `n`-th 409 in a row (n ≥ 1), `waited` after
    /// the first one; `None` once `lifetime + margin` has passed: give up. Each wait is
    /// `min(cap, base · 2^(n-1))`, cut so that the last try falls at the deadline. Pure.
    pub fn next_wait(&self, n: u32, waited: Duration) -> Option<Duration> {
        let deadline = self.lifetime + self.margin();
        let left = deadline.checked_sub(waited).filter(|d| !d.is_zero())?;
        let doublings = n.saturating_sub(1).min(31);
        let step = self
            .base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap);
        Some(step.min(left))
    }
}

/// Classify an error of request `op`. Pure; the table is the policy.
pub fn classify(op: Op, err: &RemoteError) -> Decision {
    use Decision::*;
    use RemoteError as E;
    match (op, err) {
        (_, E::Throttled { retry_after, .. }) => Throttle(*retry_after),
        (_, E::Locked(_)) => Locked,
        // Load and network trouble: back off, whatever the request.
        (_, E::Transport(_) | E::Server { .. }) => Backoff,
        // Never retried: the tenant is full, the name is taken (conflict = fail, or a second
        // session on ODB), access is denied, the credentials do not work, or the library's
        // column rules refuse the file (entry 22: ten more tries would be refused the same).
        (
            _,
            E::QuotaExceeded(_)
            | E::Conflict(_)
            | E::Forbidden(_)
            | E::Auth(_)
            | E::ValidationFailed(_),
        ) => Fail,
        // A 404 at creation: the parent folder is missing (the worker creates it once), or —
        // as often — it was created seconds ago, or the service answers a passing 404
        // (entry 10): back off within the attempt budget; a folder that is really gone
        // fails once that is spent.
        (Op::Create, E::NotFound(_)) => Backoff,
        // A similar name (æ/ae, NFD/NFC, …) holds the path: only the user can resolve it.
        (_, E::NameClash(_)) => Fail,
        // 400 `invalidRequest` with no more specific code is what the service answers to
        // many createUploadSession calls at once (entry 11, ODI#1360): load, not a bad
        // request. Names it refuses are mostly caught before upload (`fs::names`); a refusal
        // that names the name (a tenant's extra rules, entry 17) fails at once; anything else
        // wrong fails once the attempt budget is spent.
        (
            Op::Create,
            E::Client {
                status: 400,
                code,
                message,
            },
        ) if code == "invalidRequest" && !refuses_the_name(message) => Backoff,
        // At creation the bearer token was refused after a refresh, or the request itself is
        // wrong: retrying changes nothing.
        (Op::Create, E::Unauthorized(_) | E::Client { .. }) => Fail,
        (Op::Create, E::PreconditionFailed(_)) => Fail,
        (Op::Create, E::RangeNotSatisfiable(_) | E::Protocol(_)) => Backoff,
        // On the upload URL, 404 = session unknown or cancelled, 401 = tempauth expired.
        (Op::Fragment | Op::Status, E::NotFound(_) | E::Unauthorized(_)) => NewSession,
        // Any other failed PUT: GET the status and continue from what the server has.
        (Op::Fragment, _) => RetryNow,
        (Op::Status, _) => Backoff,
        // The item was just committed: it may take a moment to be visible.
        (Op::Lookup, E::NotFound(_) | E::Protocol(_)) => Backoff,
        (Op::Lookup, _) => Fail,
    }
}

/// Does a 400 `invalidRequest` say the item's name is refused (entry 17: "Invalid name …",
/// "… cannot contain …")? Such an answer is about this file, not load (entry 11).
fn refuses_the_name(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("name") || m.contains("cannot contain") || m.contains("illegal character")
}

/// Whether a retried failure with this decision counts toward the give-up bound
/// (`max_attempts` failures without progress). Throttling does not (module documentation);
/// stale-session waits have their own deadline. Pure.
pub fn counts_toward_give_up(d: Decision) -> bool {
    !matches!(
        d,
        Decision::Throttle(_) | Decision::StaleSession | Decision::Locked
    )
}

/// Limits of retrying, from the queue configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per job (≥ 1); see the module documentation for what counts.
    pub max_attempts: u32,
    /// Ceiling of the first backoff.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Upper bound of the wait after the `failures`-th consecutive failure (1-based):
    /// `min(cap, base · 2^(failures-1))`.
    pub fn backoff_ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// Full jitter: uniform in `[0, backoff_ceiling(failures))`.
    pub fn backoff(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        self.backoff_ceiling(failures)
            .mul_f64(rng.gen_range(0.0..1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;
    use rand::SeedableRng;
    use Decision::*;

    fn client(status: u16) -> RemoteError {
        RemoteError::Client {
            status,
            code: "invalidRequest".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn classification_table() {
        let secs = |s| Some(Duration::from_secs(s));
        let cases: Vec<(Op, RemoteError, Decision)> = vec![
            (
                Op::Fragment,
                RemoteError::Transport("reset".into()),
                Backoff,
            ),
            (Op::Create, RemoteError::Transport("reset".into()), Backoff),
            (Op::Status, RemoteError::Transport("reset".into()), Backoff),
            (
                Op::Fragment,
                RemoteError::Server {
                    status: 500,
                    code: "x".into(),
                },
                Backoff,
            ),
            (
                Op::Fragment,
                RemoteError::Server {
                    status: 502,
                    code: "x".into(),
                },
                Backoff,
            ),
            (
                Op::Create,
                RemoteError::Server {
                    status: 504,
                    code: "x".into(),
                },
                Backoff,
            ),
            (
                Op::Fragment,
                RemoteError::Throttled {
                    status: 503,
                    retry_after: secs(41),
                },
                Throttle(secs(41)),
            ),
            (
                Op::Create,
                RemoteError::Throttled {
                    status: 429,
                    retry_after: secs(315),
                },
                Throttle(secs(315)),
            ),
            (
                Op::Fragment,
                RemoteError::Throttled {
                    status: 429,
                    retry_after: None,
                },
                Throttle(None),
            ),
            (
                Op::Fragment,
                RemoteError::RangeNotSatisfiable("fragmentOverlap".into()),
                RetryNow,
            ),
            (Op::Fragment, client(400), RetryNow),
            (Op::Fragment, RemoteError::Protocol("junk".into()), RetryNow),
            (
                Op::Fragment,
                RemoteError::NotFound("uploadSessionNotFound".into()),
                NewSession,
            ),
            (
                Op::Status,
                RemoteError::NotFound("uploadSessionNotFound".into()),
                NewSession,
            ),
            (
                Op::Fragment,
                RemoteError::Unauthorized("expiredToken".into()),
                NewSession,
            ),
            (
                Op::Status,
                RemoteError::Unauthorized("expiredToken".into()),
                NewSession,
            ),
            (
                Op::Create,
                RemoteError::QuotaExceeded("quotaLimitReached".into()),
                Fail,
            ),
            (
                Op::Fragment,
                RemoteError::QuotaExceeded("quotaLimitReached".into()),
                Fail,
            ),
            (
                Op::Create,
                RemoteError::Conflict("nameAlreadyExists".into()),
                Fail,
            ),
            (
                Op::Fragment,
                RemoteError::Conflict("nameAlreadyExists".into()),
                Fail,
            ),
            (
                Op::Create,
                RemoteError::Forbidden("accessDenied".into()),
                Fail,
            ),
            // Load (entry 11) and passing 404s (entry 10) at creation: back off.
            (Op::Create, client(400), Backoff),
            (
                Op::Create,
                RemoteError::Client {
                    status: 400,
                    code: "invalidRequest".into(),
                    message: "Invalid name '100%.txt': names cannot contain # or %".into(),
                },
                Fail,
            ),
            (
                Op::Create,
                RemoteError::Client {
                    status: 400,
                    code: "nameContainsInvalidCharacters".into(),
                    message: "m".into(),
                },
                Fail,
            ),
            (Op::Create, client(405), Fail),
            (Op::Create, RemoteError::NotFound("parent".into()), Backoff),
            (Op::Create, RemoteError::Locked("423".into()), Locked),
            (Op::Fragment, RemoteError::Locked("423".into()), Locked),
            (
                Op::Fragment,
                RemoteError::ValidationFailed("List data validation failed".into()),
                Fail,
            ),
            (
                Op::Create,
                RemoteError::ValidationFailed("List data validation failed".into()),
                Fail,
            ),
            (Op::Create, RemoteError::Unauthorized("token".into()), Fail),
            (Op::Create, RemoteError::Auth("bad password".into()), Fail),
            (Op::Lookup, RemoteError::NotFound("not yet".into()), Backoff),
            (Op::Lookup, RemoteError::Forbidden("no".into()), Fail),
        ];
        for (op, err, want) in cases {
            assert_eq!(classify(op, &err), want, "{op:?} {err:?}");
        }
    }

    #[test]
    fn throttling_does_not_count_toward_giving_up() {
        assert!(!counts_toward_give_up(Throttle(Some(Duration::from_secs(
            1
        )))));
        assert!(!counts_toward_give_up(Throttle(None)));
        assert!(!counts_toward_give_up(StaleSession));
        assert!(!counts_toward_give_up(Locked));
        for d in [Backoff, RetryNow, NewSession] {
            assert!(counts_toward_give_up(d), "{d:?}");
        }
    }

    #[test]
    fn create_409_depends_on_the_conflict_policy() {
        let c409 = RemoteError::Conflict("nameAlreadyExists".into());
        let similar = RemoteError::NameClash("similarRelationshipNameAlreadyExists".into());
        for (err, conflict, want) in [
            (&c409, Conflict::Replace, StaleSession),
            (&c409, Conflict::Rename, StaleSession),
            // The name is taken and we asked to fail: permanent, at once.
            (&c409, Conflict::Fail, Fail),
            // A similar name (field reference 15) is never a stale session: fail at once,
            // also under `replace`.
            (&similar, Conflict::Replace, Fail),
            (&similar, Conflict::Rename, Fail),
            (
                &RemoteError::QuotaExceeded("q".into()),
                Conflict::Replace,
                Fail,
            ),
            (
                &RemoteError::Transport("x".into()),
                Conflict::Replace,
                Backoff,
            ),
            (&RemoteError::Transport("x".into()), Conflict::Fail, Backoff),
        ] {
            assert_eq!(classify_create(err, conflict), want, "{err:?} {conflict:?}");
        }
    }

    #[test]
    fn stale_session_waits_until_it_would_have_expired() {
        let w = StaleSessionWait {
            lifetime: Duration::from_secs(100),
            base: Duration::from_secs(2),
            cap: Duration::from_secs(30),
        };
        assert_eq!(w.margin(), Duration::from_secs(10));
        let s = Duration::from_secs;
        // (n-th 409, waited since the first) -> next wait
        for (n, waited, want) in [
            (1, 0, Some(s(2))),
            (2, 2, Some(s(4))),
            (3, 6, Some(s(8))),
            (5, 30, Some(s(30))),
            (9, 60, Some(s(30))),
            // Cut so that the last try falls at lifetime + margin = 110 s.
            (10, 95, Some(s(15))),
            (11, 110, None),
            (12, 500, None),
        ] {
            assert_eq!(w.next_wait(n, s(waited)), want, "n={n} waited={waited}");
        }
        // Walking the schedule: the waits add up to exactly the deadline, whatever
        // max_attempts is, and it takes far more than 10 tries.
        let (mut waited, mut n) = (Duration::ZERO, 0);
        while let Some(d) = w.next_wait(n + 1, waited) {
            waited += d;
            n += 1;
        }
        assert_eq!(waited, s(110));
        assert!(n > 5, "{n}");
        // The default lifetime is the service's ~15 min.
        let d = StaleSessionWait::default();
        assert_eq!(d.lifetime, s(900));
        assert_eq!(d.margin(), s(90));
    }

    #[test]
    fn backoff_ceilings() {
        let p = RetryPolicy::default();
        for (failures, want_secs) in [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (6, 32),
            (7, 60),
            (8, 60),
            (40, 60),
            (u32::MAX, 60),
        ] {
            assert_eq!(
                p.backoff_ceiling(failures),
                Duration::from_secs(want_secs),
                "n={failures}"
            );
        }
        let small = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(35),
        };
        assert_eq!(small.backoff_ceiling(2), Duration::from_millis(20));
        assert_eq!(small.backoff_ceiling(3), Duration::from_millis(35));
    }

    #[test]
    fn backoff_is_full_jitter_below_ceiling() {
        let p = RetryPolicy::default();
        // A zero random value gives a zero wait.
        assert_eq!(p.backoff(5, &mut StepRng::new(0, 0)), Duration::ZERO);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut max_seen = Duration::ZERO;
        for _ in 0..1000 {
            let d = p.backoff(4, &mut rng);
            assert!(d < Duration::from_secs(8));
            max_seen = max_seen.max(d);
        }
        // Uniform over [0, 8 s): 1000 draws reach well above half the ceiling.
        assert!(max_seen > Duration::from_secs(6));
    }
}
