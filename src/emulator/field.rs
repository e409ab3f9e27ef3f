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
//!   "locked_secs": 0,             //   423 resourceLocked to createUploadSession and fragment
//!                                 //   PUTs for locked_secs from when the knob was set
//!   "stall_rate": 0.0,            // entry 20: fraction of the requests of each kind that stall
//!   "stall_kinds": [],            //   kinds (`by_kind` names) that stall; [] = every kind
//!   "stall_secs": null,           //   how long; null = until the client gives up
//!   "stall_phase": "mixed",       //   "head" | "body" | "mixed" (`stall.rs`)
//!   "download_html_rate": 0.0,    // entry 18: fraction of downloads answered 200 text/html
//!   "download_html_name": null,   //   a file name whose downloads always get the HTML page
//!   "download_cut_rate": 0.0,     // fraction of downloads cut after a random part of the body
//!   "download_ignore_range": false, // entry 18: Range ignored, 200 with the whole file
//!   "children_next_link_to_root": false, // entry 19: page 1's nextLink → the root's children
//!   "children_page_max": null,    //   children pages hold at most this many, whatever $top
//!   "token_refusal": null,        // entry 24: refuse every grant with AADSTS 53003, 50076,
//!                                 //   50079, 70043 or 700082 (`auth.rs`)
//!   "graph_refuses_tokens": false } // entry 24: Graph answers 401 to valid tokens
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
    /// Entry 20: the fraction of the requests of each kind in `stall_kinds` that stall
    /// (`stall.rs`).
    pub stall_rate: f64,
    /// Entry 20: the kinds that stall (`by_kind` names); empty = every kind.
    pub stall_kinds: Vec<String>,
    /// Entry 20: how long a stall lasts; `None` = until the client closes.
    pub stall_secs: Option<u64>,
    /// Entry 20: `head`, `body` or `mixed` (`stall.rs`).
    pub stall_phase: String,
    /// Entry 18: the fraction of downloads answered 200 with an HTML error page
    /// (`read_faults.rs`).
    pub download_html_rate: f64,
    /// Entry 18: a file name (any folder, case-insensitive) whose downloads always get it.
    pub download_html_name: Option<String>,
    /// Entry 18 (a download cut mid-body): the fraction of downloads whose connection is reset
    /// after a random part of the body.
    pub download_cut_rate: f64,
    /// Entry 18: downloads ignore `Range` and answer 200 with the whole file.
    pub download_ignore_range: bool,
    /// Entry 19: the first page of a folder's children (not the root's) carries an
    /// `@odata.nextLink` to the drive root's children.
    pub children_next_link_to_root: bool,
    /// Entry 19: children pages carry at most this many items, whatever `$top` asks.
    pub children_page_max: Option<usize>,
    /// Entry 24: the token endpoint refuses every grant with this AADSTS code (`auth.rs`).
    pub token_refusal: Option<u32>,
    /// Entry 24: Graph answers 401 to valid access tokens (a location policy).
    pub graph_refuses_tokens: bool,
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
            stall_rate: 0.0,
            stall_kinds: Vec::new(),
            stall_secs: None,
            stall_phase: "mixed".into(),
            download_html_rate: 0.0,
            download_html_name: None,
            download_cut_rate: 0.0,
            download_ignore_range: false,
            children_next_link_to_root: false,
            children_page_max: None,
            token_refusal: None,
            graph_refuses_tokens: false,
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
        if !(400..=599).contains(&cfg.delta_disabled_status) {
            return Err("delta_disabled_status must be an HTTP error status".into());
        }
        super::stall::validate(&cfg)?;
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
    /// Run-time state of the stall and read-side knobs (`stall.rs`).
    pub faults_state: super::stall::FieldFaultState,
}

impl FieldState {
    pub fn new(config: FieldConfig) -> FieldState {
        let mut s = FieldState {
            config: FieldConfig::default(),
            bucket: None,
            retry_until: None,
            retry_sent: None,
            locked_until: None,
            faults_state: Default::default(),
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
