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
//!   "budget_per_sec": null,       // the app's budget: units/s refilled; null = unlimited
//!   "budget_burst": null,         // bucket capacity in units; null = budget_per_sec (1 s)
//!   "budget_units": "resource_units", // entry 7: "resource_units" (1 or 2 a request by
//!                                 //   kind) or "requests" (1 each)
//!   "refusals_cost": true,        // entry 5: a refused request still costs its units
//!   "rate_limit_headers": true,   // entry 6: RateLimit-* from 80 % of the one-minute
//!                                 //   budget; false: never (per-user limit)
//!   "throttle_status": 429,       // entry 7: a throttled request is answered 429 or 503
//!   "retry_after": "seconds",     // entry 7: Retry-After as "seconds", an HTTP "date",
//!                                 //   or "absent"
//!   "app_blocked": false,         // entry 8: every metered request answers 503 (blocked app)
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
//!   "fragment_server_ms": 0,      // the server's own time per fragment PUT: each is answered
//!                                 //   this long after its last byte arrived (on top of latency)
//!   "drive_quota_absent": false,  // 13: GET /drive carries no `quota` object
//!   "hash_delay_secs": 0,         // 14: quickXorHash appears N s after the commit
//!   "hash_absent": false,         // 14: committed files never get a quickXorHash
//!   "require_checkout": false,    // 21: uploads stay checked out until POST .../checkin
//!   "checkin_refused": false,     // 21: check-in answers 400 (required properties missing)
//!   "validation_pattern": null,   // 22: names matching (`*` wildcards) fail at commit: 500
//!                                 //     "List data validation failed."
//!   "locked_shape": "resource_locked", // 23: resource_locked (423), access_denied (423,
//!                                 //     code accessDenied), conflict (409, inner
//!                                 //     resourceLocked), forbidden (403, inner resourceLocked)
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
//! period. The budget (`budget.rs`: resource units, refusals that cost, the one-minute window
//! and its `RateLimit-*` headers) is one for the whole emulator: the emulator serves exactly
//! one app registration and one user, so "per client" (SharePoint meters per app and per user)
//! is per emulator. It meters `/v1.0` and `/upload/` requests (not `/auth`, `/download`,
//! `/_admin`). A refused request is answered `throttle_status` (429 `activityLimitReached`,
//! inner `throttledRequest`, or 503 `serviceNotAvailable`) with `Retry-After` in the
//! `retry_after` form. `app_blocked` answers every metered request 503 `serviceNotAvailable`
//! without `Retry-After` and without charging the budget, until it is switched off. Every 429
//! or 503 carrying `Retry-After` that the emulator sends (budget or
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

use super::budget::{self, Budget, BudgetUnits};
use super::errors::ApiError;
use super::graph_api::{parse_route, ItemOp, Route};
use super::http::{Request, Response};

/// The field-condition knobs (see the module documentation for the JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldConfig {
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    pub budget_per_sec: Option<f64>,
    pub budget_burst: Option<f64>,
    /// Entry 7: resource units per request kind, or one per request (`budget::cost`).
    pub budget_units: BudgetUnits,
    /// Entry 5: throttled requests count towards the budget (the bucket goes into debt).
    pub refusals_cost: bool,
    /// Entry 6: `RateLimit-*` headers from 80 % of the one-minute budget; false: never sent
    /// (the per-user limit has none).
    pub rate_limit_headers: bool,
    /// Entry 7: the status of a throttled answer, 429 or 503.
    pub throttle_status: u16,
    /// Entry 7: how a throttled answer gives `Retry-After`.
    pub retry_after: RetryAfterForm,
    /// Entry 8: the app is blocked: every metered request answers 503, for as long as set.
    pub app_blocked: bool,
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
    /// The server's own time per fragment PUT (issue 19): answered this many ms after its last
    /// body byte arrived, on top of `latency_ms`.
    pub fragment_server_ms: u64,
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
            budget_units: BudgetUnits::default(),
            refusals_cost: true,
            rate_limit_headers: true,
            throttle_status: 429,
            retry_after: RetryAfterForm::default(),
            app_blocked: false,
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
            fragment_server_ms: 0,
            drive_quota_absent: false,
            hash_delay_secs: 0,
            hash_absent: false,
            require_checkout: false,
            checkin_refused: false,
            validation_pattern: None,
            locked_shape: super::field_faults::LockedShape::ResourceLocked,
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

/// How a throttled answer states `Retry-After` (field knob `retry_after`, entry 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterForm {
    /// Delay-seconds: `Retry-After: 41`.
    #[default]
    Seconds,
    /// An HTTP date: `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT` (whole seconds).
    Date,
    /// No `Retry-After` at all.
    Absent,
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
        if !matches!(cfg.throttle_status, 429 | 503) {
            return Err("throttle_status must be 429 or 503".into());
        }
        if !(400..=599).contains(&cfg.delta_disabled_status) {
            return Err("delta_disabled_status must be an HTTP error status".into());
        }
        super::field_faults::validate(&cfg)?;
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

/// How long a client needs to read a 429 that has left the emulator: requests arriving sooner
/// were, on loopback, sent before it could know (the "in flight" ones); those arriving later
/// count in `requests_inside_retry_after_late` as well.
pub const REACTION: Duration = Duration::from_millis(5);

/// The knobs plus the run-time state they drive (under one lock, `EmulatorState::field`).
#[derive(Debug)]
pub struct FieldState {
    config: FieldConfig,
    budget: Option<Budget>,
    /// End of the latest Retry-After window the emulator gave.
    retry_until: Option<Instant>,
    /// When the latest 429/503 with Retry-After was sent.
    retry_sent: Option<Instant>,
    /// Until when `locked_name` answers 423 (set when the lock knobs change).
    locked_until: Option<Instant>,
    /// What the upload and library faults remember between requests (`field_faults`).
    pub faults: super::field_faults::FaultRuntime,
    /// Run-time state of the stall and read-side knobs (`stall.rs`).
    pub faults_state: super::stall::FieldFaultState,
}

impl FieldState {
    pub fn new(config: FieldConfig) -> FieldState {
        let mut s = FieldState {
            config: FieldConfig::default(),
            budget: None,
            retry_until: None,
            retry_sent: None,
            locked_until: None,
            faults: Default::default(),
            faults_state: Default::default(),
        };
        s.replace(config);
        s
    }

    pub fn config(&self) -> &FieldConfig {
        &self.config
    }

    /// Install a new configuration; a changed budget starts with a full bucket and a fresh
    /// one-minute window.
    pub fn replace(&mut self, config: FieldConfig) {
        let budget = |c: &FieldConfig| {
            (
                c.budget_per_sec,
                c.budget_burst,
                c.refusals_cost,
                c.rate_limit_headers,
            )
        };
        if budget(&config) != budget(&self.config) || self.budget.is_none() {
            self.budget = config.budget_per_sec.map(|r| {
                Budget::new(
                    r,
                    config.budget_burst.unwrap_or(r),
                    config.refusals_cost,
                    config.rate_limit_headers,
                    Instant::now(),
                )
            });
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

    /// Charge a metered request arriving `now` (entries 5–8; `budget.rs`).
    pub fn admit(&mut self, now: Instant, req: &Request) -> Gate {
        if self.config.app_blocked {
            let e = ApiError::new(
                503,
                "serviceNotAvailable",
                "The service is unavailable: the application is blocked.",
            );
            return Gate::Blocked(e.to_response());
        }
        let Some(b) = self.budget.as_mut() else {
            return Gate::Admit {
                units: 0,
                headers: Vec::new(),
            };
        };
        let units = budget::cost(req, self.config.budget_units);
        match b.admit(now, units) {
            budget::Admission::Admit(headers) => Gate::Admit { units, headers },
            budget::Admission::Refuse {
                retry_after_secs,
                headers,
            } => {
                let e = match self.config.throttle_status {
                    503 => ApiError::new(
                        503,
                        "serviceNotAvailable",
                        "The service is temporarily unavailable.",
                    ),
                    _ => ApiError::new(
                        429,
                        "activityLimitReached",
                        "The request has been throttled.",
                    )
                    .inner("throttledRequest"),
                };
                let mut response = e.to_response();
                let value = match self.config.retry_after {
                    RetryAfterForm::Seconds => Some(retry_after_secs.to_string()),
                    RetryAfterForm::Date => Some(retry_after_date(retry_after_secs)),
                    RetryAfterForm::Absent => None,
                };
                if let Some(v) = value {
                    response.headers.push(("Retry-After".into(), v));
                    self.gave_retry_after(now, retry_after_secs);
                }
                response.headers.extend(headers);
                let units = if self.config.refusals_cost { units } else { 0 };
                Gate::Throttle { units, response }
            }
        }
    }
}

/// `Retry-After` as an HTTP date `secs` from now, rounded up to the whole second (the date
/// has no finer resolution, and a client honouring it must not come back early).
fn retry_after_date(secs: u64) -> String {
    let at = std::time::SystemTime::now() + Duration::from_secs(secs);
    let since = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let whole = Duration::from_secs(since.as_secs() + u64::from(since.subsec_nanos() > 0));
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + whole)
}

/// What the budget (or a block) says about one metered request ([`FieldState::admit`]).
pub enum Gate {
    /// Go ahead: `units` were charged; attach the `RateLimit-*` `headers` (possibly none).
    Admit {
        units: u32,
        headers: Vec<(String, String)>,
    },
    /// Throttled by the budget: answer `response` (charged `units` if refusals cost).
    Throttle { units: u32, response: Response },
    /// The app is blocked (entry 8): answer `response`.
    Blocked(Response),
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

    fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            content_length: 0,
        }
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn throttled_answers_take_the_configured_status_and_retry_after_form() {
        let t0 = Instant::now();
        let listing = get("/v1.0/drives/d/root/children");
        let item = get("/v1.0/drives/d/root");
        for (knobs, status, form) in [
            (r#"{}"#, 429, "seconds"),
            (r#"{"throttle_status": 503}"#, 503, "seconds"),
            (r#"{"retry_after": "date"}"#, 429, "date"),
            (
                r#"{"retry_after": "absent", "throttle_status": 503}"#,
                503,
                "absent",
            ),
        ] {
            let mut cfg = FieldConfig::from_json(knobs).unwrap();
            cfg.budget_per_sec = Some(4.0);
            let mut s = FieldState::new(cfg);
            // Resource units: a listing is 2, an item GET 1.
            assert!(matches!(
                s.admit(t0, &listing),
                Gate::Admit { units: 2, .. }
            ));
            assert!(matches!(s.admit(t0, &item), Gate::Admit { units: 1, .. }));
            assert!(matches!(s.admit(t0, &item), Gate::Admit { units: 1, .. }));
            let Gate::Throttle { units, response } = s.admit(t0, &listing) else {
                panic!("{knobs}: not throttled");
            };
            assert_eq!(units, 2);
            assert_eq!(response.status, status, "{knobs}");
            let ra = header(&response, "Retry-After");
            match form {
                "seconds" => assert_eq!(ra, Some("1"), "{knobs}"),
                "date" => {
                    let when = httpdate::parse_http_date(ra.unwrap()).unwrap();
                    let ahead = when
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    assert!(ahead > Duration::ZERO && ahead <= Duration::from_secs(2));
                }
                _ => assert_eq!(ra, None, "{knobs}"),
            }
            // A window is open for the counter unless no Retry-After was given.
            assert_eq!(s.inside_retry_after(t0), form != "absent", "{knobs}");
        }
        // Entry 8: blocked, whatever the budget.
        let mut s = FieldState::new(FieldConfig::from_json(r#"{"app_blocked": true}"#).unwrap());
        let Gate::Blocked(r) = s.admit(t0, &item) else {
            panic!("not blocked");
        };
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "Retry-After"), None);
        assert!(FieldConfig::from_json(r#"{"throttle_status": 500}"#).is_err());
        assert!(FieldConfig::from_json(r#"{"retry_after": "later"}"#).is_err());
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
