//! Field conditions: the knobs that make the loopback emulator behave like a tenant on the
//! other side of the internet — per-request latency, a request budget (SharePoint's
//! throttling), the delta feed's availability, and how strict upload sessions are per path —
//! plus the per-kind request counters that benchmarks read.
//!
//! Configuration (a JSON object; every key optional; unknown keys are refused). At start:
//! `shareuplift emulator --field JSON` (or `--latency-ms N`, `--latency-jitter-ms N`,
//! `--budget-per-sec N`, which override the JSON), or [`super::EmulatorOptions::field_json`].
//! At run time: `POST /_admin/field` with a JSON object *merges* (keys present replace, the
//! others stay; `null` resets a key to its default); `GET /_admin/field` shows it.
//! ```json
//! { "latency_ms": 0,              // every request but /_admin is answered after this long
//!   "latency_jitter_ms": 0,       //   plus a uniform random 0..=jitter ms
//!   "budget_per_sec": null,       // token bucket refill (requests/s); null = unlimited
//!   "budget_burst": null,         // bucket capacity; null = budget_per_sec (1 s worth)
//!   "delta_disabled": false,      // answer /root/delta with delta_disabled_status
//!   "delta_disabled_status": 501, //   501 notSupported or 403 accessDenied
//!   "allow_parallel_sessions": false, // true: lift the one-open-session-per-path rule
//!   "enrich": false,              // rewrite Office/ODF/PDF files at commit, as SharePoint does
//!   "corrupt_commits": false,     // invert the first byte of every committed file (`enrich.rs`)
//!   "locked_name": null,          // a file name (any folder, case-insensitive) that answers
//!   "locked_secs": 0,             //   "locked" to createUploadSession, fragment PUTs, simple
//!                                 //   uploads, DELETE and PATCH for locked_secs from when the
//!                                 //   knob was set (entry 23)
//!   "delta_parent_path": false,   // entry 1: add parentReference.path to delta items (the
//!                                 //   real service never does; old-behaviour comparisons)
//!   "delta_duplicates": false,    // entry 3: an item changed more than once since the token
//!                                 //   comes once per change in the round (older places first)
//!   "delta_deletes_last": false,  // entry 3: a page lists its deletions after everything else
//!                                 //   (a re-create at a path before the delete there)
//!   "delta_drop_deletes": false,  // entry 3: deletions never appear in delta
//!   "delta_lag_secs": 0,          // entry 3: a change shows in delta this long after it is
//!                                 //   made (GET and listings show it at once)
//!   "delta_resync_every": 0,      // entry 4: every Nth delta request (any page) answers 410
//!                                 //   resyncRequired with a Location; 0 = never
//!   "nfc_names": false,           // entry 16: store names composed (NFC): NFD comes back NFC
//!   "legacy_name_rules": false,   // entry 17: also refuse folders named ~*, names ending
//!                                 //   _files, names with # or % (`collation.rs`)
//!   // Upload and library faults (field reference entries 10-14, 21-23; `field_faults.rs`):
//!   "fresh_folder_404_secs": 0,   // 10: 404 under a folder created < N s ago through Graph
//!   "passing_404_rate": 0.0,      // 10: fraction of item GETs / createUploadSession -> 404
//!   "max_open_sessions": null,    // 11: createUploadSession -> 400 while N sessions are open
//!   "session_400_rate": 0.0,      // 11: fraction of createUploadSession -> 400 invalidRequest
//!   "last_fragment": null,        // 12: {"status": 500, "committed": false, "then": "empty"
//!                                 //      | "restart", "html": false, "count": 1}
//!   "commit_delay_secs": 0,       // 12: the completing fragment is answered N s late
//!   "drive_quota_absent": false,  // 13: GET /drive carries no `quota` object
//!   "hash_delay_secs": 0,         // 14: quickXorHash appears N s after the commit
//!   "hash_absent": false,         // 14: committed files never get a quickXorHash
//!   "require_checkout": false,    // 21: uploads stay checked out until POST .../checkin
//!   "checkin_refused": false,     // 21: check-in answers 400 (required properties missing)
//!   "validation_pattern": null,   // 22: names matching (`*` wildcards) fail at commit: 500
//!                                 //     "List data validation failed."
//!   "locked_shape": "resource_locked" } // 23: resource_locked (423), access_denied (423,
//!                                 //     code accessDenied), conflict (409, inner
//!                                 //     resourceLocked), forbidden (403, inner resourceLocked)
//! ```
//! Latency is a sleep on the connection's own thread before the request is handled; the server
//! runs one thread per connection, so N concurrent requests still complete N per latency
//! period. The budget is one bucket for the whole emulator: the emulator serves exactly one
//! app registration and one user, so "per client" (SharePoint meters per app and per user) is
//! per emulator. It meters `/v1.0` and `/upload/` requests (not `/auth`, `/download`,
//! `/_admin`). A request finding the bucket empty costs nothing and gets 429
//! `activityLimitReached` + `Retry-After` (whole seconds until a token is back, at least 1);
//! while at least 80 % of the bucket is used, answers carry `RateLimit-Limit` (capacity),
//! `RateLimit-Remaining` (whole tokens left) and `RateLimit-Reset` (seconds until full), as
//! SharePoint does. Every 429 or 503 carrying `Retry-After` that the emulator sends (budget or
//! injected fault) opens a window; a metered request *arriving* before that window closes is
//! counted in `requests_inside_retry_after` (requests already in flight when the window opened
//! are not), so a test can assert that a client honours Retry-After. Those arriving more than
//! [`REACTION`] after the latest such answer left are also counted in
//! `requests_inside_retry_after_late`: with no transit time on loopback, a request arriving
//! sooner was sent while the 429 was still being read by the client, which in a real network
//! is a request in flight.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::graph_api::{parse_route, ItemOp, Route};
use super::http::Request;

/// The field-condition knobs (see the module documentation for the JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldConfig {
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    pub budget_per_sec: Option<f64>,
    pub budget_burst: Option<f64>,
    pub delta_disabled: bool,
    pub delta_disabled_status: u16,
    pub allow_parallel_sessions: bool,
    pub enrich: bool,
    pub corrupt_commits: bool,
    pub locked_name: Option<String>,
    pub locked_secs: u64,
    /// Entry 1: delta items carry `parentReference.path` (SharePoint's never do). Off.
    pub delta_parent_path: bool,
    /// Entry 3: the same item more than once in a round (once per change, older first).
    pub delta_duplicates: bool,
    /// Entry 3: deletions after the other items of a page (a re-create before its delete).
    pub delta_deletes_last: bool,
    /// Entry 3: deletions missing from delta altogether.
    pub delta_drop_deletes: bool,
    /// Entry 3: seconds before a change shows in delta (at most 600).
    pub delta_lag_secs: u64,
    /// Entry 4: every Nth delta request answers 410 `resyncRequired` (0: never).
    pub delta_resync_every: u64,
    /// Field reference entry 16: names are stored and listed composed (NFC), as some tenants
    /// show; off, the form sent is kept (`collation.rs`).
    pub nfc_names: bool,
    /// Field reference entry 17: the extra refused names of older configurations — folder
    /// names beginning with `~`, names ending `_files`, `#` and `%` (`collation.rs`).
    pub legacy_name_rules: bool,
    /// Entry 10: createUploadSession, simple uploads and item GETs under a folder created
    /// through Graph less than this many seconds ago answer 404 `itemNotFound`; 0 = off.
    pub fresh_folder_404_secs: u64,
    /// Entry 10: the fraction of item GETs and createUploadSession calls answering a passing
    /// 404 `itemNotFound`.
    pub passing_404_rate: f64,
    /// Entry 11: createUploadSession answers 400 `invalidRequest` while this many upload
    /// sessions (or more) are open; null = no cap.
    pub max_open_sessions: Option<u64>,
    /// Entry 11: the fraction of createUploadSession calls answering 400 `invalidRequest`.
    pub session_400_rate: f64,
    /// Entry 12: how the fragment that completes a file fails (`field_faults::LastFragment`).
    pub last_fragment: Option<super::field_faults::LastFragment>,
    /// Entry 12: the fragment that completes a file is answered this many seconds late (a
    /// slow commit).
    pub commit_delay_secs: u64,
    /// Entry 13: GET of a drive carries no `quota` object.
    pub drive_quota_absent: bool,
    /// Entry 14: a committed file's quickXorHash appears this many seconds after the commit.
    pub hash_delay_secs: u64,
    /// Entry 14: committed files never get a quickXorHash.
    pub hash_absent: bool,
    /// Entry 21: the library requires check-out: uploaded files stay checked out
    /// (`publication.level` = `checkout`) until `POST …/checkin`.
    pub require_checkout: bool,
    /// Entry 21: check-in answers 400 (required properties are missing).
    pub checkin_refused: bool,
    /// Entry 22: file names matching this pattern (`*` wildcards, case-insensitive) fail at
    /// the commit with 500 "List data validation failed." (column validation).
    pub validation_pattern: Option<String>,
    /// Entry 23: the body shape of `locked_name`'s refusals.
    pub locked_shape: super::field_faults::LockedShape,
}

impl Default for FieldConfig {
    fn default() -> Self {
        FieldConfig {
            latency_ms: 0,
            latency_jitter_ms: 0,
            budget_per_sec: None,
            budget_burst: None,
            delta_disabled: false,
            delta_disabled_status: 501,
            allow_parallel_sessions: false,
            enrich: false,
            corrupt_commits: false,
            locked_name: None,
            locked_secs: 0,
            delta_parent_path: false,
            delta_duplicates: false,
            delta_deletes_last: false,
            delta_drop_deletes: false,
            delta_lag_secs: 0,
            delta_resync_every: 0,
            nfc_names: false,
            legacy_name_rules: false,
            fresh_folder_404_secs: 0,
            passing_404_rate: 0.0,
            max_open_sessions: None,
            session_400_rate: 0.0,
            last_fragment: None,
            commit_delay_secs: 0,
            drive_quota_absent: false,
            hash_delay_secs: 0,
            hash_absent: false,
            require_checkout: false,
            checkin_refused: false,
            validation_pattern: None,
            locked_shape: super::field_faults::LockedShape::ResourceLocked,
        }
    }
}

impl FieldConfig {
    /// Parse a complete configuration.
    pub fn from_json(s: &str) -> Result<FieldConfig, String> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        FieldConfig::default().merged(&v)
    }

    /// This configuration with the keys of `patch` (an object) replaced; `null` = default.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<FieldConfig, String> {
        let obj = patch
            .as_object()
            .ok_or_else(|| "the field configuration must be a JSON object".to_string())?;
        let mut cur = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let defaults = serde_json::to_value(FieldConfig::default()).map_err(|e| e.to_string())?;
        for (k, v) in obj {
            if defaults.get(k).is_none() {
                return Err(format!("unknown field knob '{k}'"));
            }
            cur[k] = if v.is_null() {
                defaults[k].clone()
            } else {
                v.clone()
            };
        }
        let cfg: FieldConfig = serde_json::from_value(cur).map_err(|e| e.to_string())?;
        if cfg
            .budget_per_sec
            .is_some_and(|r| !(r > 0.0 && r.is_finite()))
        {
            return Err("budget_per_sec must be a positive number".into());
        }
        if cfg
            .budget_burst
            .is_some_and(|b| !(b >= 1.0 && b.is_finite()))
        {
            return Err("budget_burst must be at least 1".into());
        }
        if cfg.delta_lag_secs > super::delta::MAX_LAG_SECS {
            return Err("delta_lag_secs must be at most 600".into());
        }
        if !(400..=599).contains(&cfg.delta_disabled_status) {
            return Err("delta_disabled_status must be an HTTP error status".into());
        }
        super::field_faults::validate(&cfg)?;
        Ok(cfg)
    }

    /// How long to hold the next request.
    pub fn latency(&self) -> Duration {
        let jitter = match self.latency_jitter_ms {
            0 => 0,
            j => rand::thread_rng().gen_range(0..=j),
        };
        Duration::from_millis(self.latency_ms + jitter)
    }
}

/// What the bucket says about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go ahead; attach these `RateLimit-*` headers (empty below 80 % use).
    Admit(Vec<(String, String)>),
    /// Refuse with 429 and `Retry-After: secs`.
    Refuse { retry_after_secs: u64 },
}

/// A token bucket: `capacity` tokens, refilled at `rate` per second, one token per request.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, capacity: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Take one token at `now`, or say how long until one is back.
    pub fn admit(&mut self, now: Instant) -> Admission {
        self.refill(now);
        if self.tokens < 1.0 {
            let secs = ((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64;
            return Admission::Refuse {
                retry_after_secs: secs,
            };
        }
        self.tokens -= 1.0;
        // In whole tokens, as the headers report them (a sliver of refill is not a token).
        let used = 1.0 - self.tokens.floor() / self.capacity;
        if used < 0.8 {
            return Admission::Admit(Vec::new());
        }
        let reset = ((self.capacity - self.tokens) / self.rate).ceil() as u64;
        Admission::Admit(vec![
            (
                "RateLimit-Limit".into(),
                format!("{}", self.capacity as u64),
            ),
            (
                "RateLimit-Remaining".into(),
                format!("{}", self.tokens.floor() as u64),
            ),
            ("RateLimit-Reset".into(), reset.to_string()),
        ])
    }
}

/// How long a client needs to read a 429 that has left the emulator: requests arriving sooner
/// were, on loopback, sent before it could know (the "in flight" ones); those arriving later
/// count in `requests_inside_retry_after_late` as well.
pub const REACTION: Duration = Duration::from_millis(5);

/// The knobs plus the run-time state they drive (under one lock, `EmulatorState::field`).
#[derive(Debug)]
pub struct FieldState {
    config: FieldConfig,
    bucket: Option<Bucket>,
    /// End of the latest Retry-After window the emulator gave.
    retry_until: Option<Instant>,
    /// When the latest 429/503 with Retry-After was sent.
    retry_sent: Option<Instant>,
    /// Until when `locked_name` answers 423 (set when the lock knobs change).
    locked_until: Option<Instant>,
    /// What the upload and library faults remember between requests (`field_faults`).
    pub faults: super::field_faults::FaultRuntime,
}

impl FieldState {
    pub fn new(config: FieldConfig) -> FieldState {
        let mut s = FieldState {
            config: FieldConfig::default(),
            bucket: None,
            retry_until: None,
            retry_sent: None,
            locked_until: None,
            faults: Default::default(),
        };
        s.replace(config);
        s
    }

    pub fn config(&self) -> &FieldConfig {
        &self.config
    }

    /// Install a new configuration; a changed budget starts with a full bucket.
    pub fn replace(&mut self, config: FieldConfig) {
        let budget = |c: &FieldConfig| (c.budget_per_sec, c.budget_burst);
        if budget(&config) != budget(&self.config) || self.bucket.is_none() {
            self.bucket = config
                .budget_per_sec
                .map(|r| Bucket::new(r, config.budget_burst.unwrap_or(r).max(1.0), Instant::now()));
        }
        let lock = |c: &FieldConfig| (c.locked_name.clone(), c.locked_secs);
        if lock(&config) != lock(&self.config) {
            self.locked_until = config
                .locked_name
                .as_ref()
                .map(|_| Instant::now() + Duration::from_secs(config.locked_secs));
        }
        self.faults.configure(&self.config, &config);
        self.config = config;
    }

    /// Whether a file named `name` is locked (checked out, open in another app) `now`.
    pub fn is_locked(&self, name: &str, now: Instant) -> bool {
        self.config
            .locked_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && self.locked_until.is_some_and(|t| now < t)
    }

    /// True when a request arriving `now` is inside a Retry-After window we gave.
    pub fn inside_retry_after(&self, now: Instant) -> bool {
        self.retry_until.is_some_and(|t| now < t)
    }

    /// Inside a window and arriving at least [`REACTION`] after the latest 429/503 was sent:
    /// sent by a client that had had time to read it.
    pub fn late_inside_retry_after(&self, now: Instant) -> bool {
        self.inside_retry_after(now)
            && self
                .retry_sent
                .is_some_and(|t| now.saturating_duration_since(t) >= REACTION)
    }

    /// Remember a Retry-After we sent at `now`.
    pub fn gave_retry_after(&mut self, now: Instant, secs: u64) {
        self.retry_sent = Some(now);
        let until = now + Duration::from_secs(secs);
        if self.retry_until.is_none_or(|t| t < until) {
            self.retry_until = Some(until);
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        match &mut self.bucket {
            None => Admission::Admit(Vec::new()),
            Some(b) => b.admit(now),
        }
    }
}

/// Request counters by kind (`GET /_admin/stats` → `"by_kind"`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KindCounts {
    /// `GET …/children` (every page counts).
    pub list_children: u64,
    /// `GET` of an item's metadata (by path or id), sites and drives.
    pub item_get: u64,
    pub create_upload_session: u64,
    /// `PUT` on an upload URL.
    pub fragment_put: u64,
    /// `GET` (status), `DELETE` (cancel) and `POST` (deferred commit) on an upload URL.
    pub upload_url_other: u64,
    /// `POST …/children` (create a folder).
    pub mkdir: u64,
    pub delete: u64,
    pub patch: u64,
    /// `GET …/root/delta` (every page counts).
    pub delta: u64,
    /// `GET …/content` (the redirect) and `/download/` (the bytes).
    pub content_get: u64,
    /// `PUT …/content`.
    pub simple_upload: u64,
    /// The token endpoint.
    pub token: u64,
    /// Anything else outside `/_admin`.
    pub other: u64,
}

/// Which counter a request belongs to; None for `/_admin`.
pub fn classify(req: &Request) -> Option<fn(&mut KindCounts) -> &mut u64> {
    let p = req.path.as_str();
    let m = req.method.as_str();
    if p.starts_with("/_admin/") {
        return None;
    }
    if p.starts_with("/upload/") {
        return Some(if m == "PUT" {
            |k| &mut k.fragment_put
        } else {
            |k| &mut k.upload_url_other
        });
    }
    if p.starts_with("/auth/") {
        return Some(|k| &mut k.token);
    }
    if p.starts_with("/download/") {
        return Some(|k| &mut k.content_get);
    }
    let Some(rest) = p.strip_prefix("/v1.0") else {
        return Some(|k| &mut k.other);
    };
    Some(match (m, parse_route(rest)) {
        ("GET", Ok(Route::Item { op, .. })) => match op {
            ItemOp::Children => |k| &mut k.list_children,
            ItemOp::Content => |k| &mut k.content_get,
            ItemOp::Delta => |k| &mut k.delta,
            _ => |k| &mut k.item_get,
        },
        ("GET", Ok(_)) => |k| &mut k.item_get,
        ("POST", Ok(Route::Item { op, .. })) => match op {
            ItemOp::CreateUploadSession => |k| &mut k.create_upload_session,
            ItemOp::Children => |k| &mut k.mkdir,
            _ => |k| &mut k.other,
        },
        (
            "PUT",
            Ok(Route::Item {
                op: ItemOp::Content,
                ..
            }),
        ) => |k| &mut k.simple_upload,
        ("PATCH", Ok(Route::Item { .. })) => |k| &mut k.patch,
        ("DELETE", Ok(Route::Item { .. })) => |k| &mut k.delete,
        _ => |k| &mut k.other,
    })
}

/// True for requests the budget meters.
pub fn metered(req: &Request) -> bool {
    req.path.starts_with("/v1.0") || req.path.starts_with("/upload/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_capacity_then_refuses_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 10.0, t0);
        let mut headers_from = None;
        for i in 0..10 {
            match b.admit(t0) {
                Admission::Admit(h) => {
                    if !h.is_empty() && headers_from.is_none() {
                        headers_from = Some(i);
                    }
                }
                r => panic!("request {i} refused: {r:?}"),
            }
        }
        // 80 % used after the 8th request (index 7): 2 of 10 left.
        assert_eq!(headers_from, Some(7));
        assert_eq!(
            b.admit(t0),
            Admission::Refuse {
                retry_after_secs: 1
            }
        );
        // A refused request costs nothing; 0.1 s later one token is back.
        match b.admit(t0 + Duration::from_millis(100)) {
            Admission::Admit(h) => {
                assert!(h.contains(&("RateLimit-Limit".into(), "10".into())));
                assert!(h.contains(&("RateLimit-Remaining".into(), "0".into())));
                assert!(h.contains(&("RateLimit-Reset".into(), "1".into())));
            }
            r => panic!("{r:?}"),
        }
        // Long idle: full again, no headers, never above capacity.
        assert_eq!(
            b.admit(t0 + Duration::from_secs(60)),
            Admission::Admit(Vec::new())
        );
        assert!(b.tokens <= 9.0 + 1e-9);
    }

    #[test]
    fn slow_bucket_retry_after_rounds_up() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0.25, 1.0, t0);
        assert!(matches!(b.admit(t0), Admission::Admit(_)));
        assert_eq!(
            b.admit(t0),
            Admission::Refuse {
                retry_after_secs: 4
            }
        );
        assert_eq!(
            b.admit(t0 + Duration::from_secs(3)),
            Admission::Refuse {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn merge_keeps_unnamed_keys_and_null_resets() {
        let c = FieldConfig::from_json(r#"{"latency_ms": 50, "budget_per_sec": 20}"#).unwrap();
        assert_eq!(c.latency_ms, 50);
        let c2 = c
            .merged(&serde_json::json!({"latency_ms": null, "delta_disabled": true}))
            .unwrap();
        assert_eq!(c2.latency_ms, 0);
        assert_eq!(c2.budget_per_sec, Some(20.0));
        assert!(c2.delta_disabled);
        assert!(c.merged(&serde_json::json!({"latency": 5})).is_err());
        assert!(c.merged(&serde_json::json!({"budget_per_sec": 0})).is_err());
        assert!(FieldConfig::from_json("[]").is_err());
    }

    #[test]
    fn retry_window() {
        let t0 = Instant::now();
        let mut s = FieldState::new(FieldConfig::default());
        assert!(!s.inside_retry_after(t0));
        s.gave_retry_after(t0, 2);
        assert!(s.inside_retry_after(t0 + Duration::from_secs(1)));
        assert!(!s.inside_retry_after(t0 + Duration::from_secs(2)));
        // A shorter, later window never shortens the current one.
        s.gave_retry_after(t0 + Duration::from_millis(10), 1);
        assert!(s.inside_retry_after(t0 + Duration::from_millis(1500)));
        // Late: arrived REACTION or more after the latest 429 left.
        assert!(!s.late_inside_retry_after(t0 + Duration::from_millis(12)));
        assert!(s.late_inside_retry_after(t0 + Duration::from_millis(15)));
    }
}
