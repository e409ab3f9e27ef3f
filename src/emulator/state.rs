//! State shared by all connection threads of one emulator: the store, open upload sessions,
//! fault configuration, issued tokens, download links, counters and the violation journal.
//!
//! The type is [`EmulatorState`] (one per running emulator, behind an `Arc` that every
//! connection thread holds).
//!
//! Lock order (never take an earlier lock while holding a later one): `sessions` (map) →
//! one session → `store` → `faults` → `field` → `tokens` / `downloads` / `signin` → `stats` /
//! `journal`. No lock is
//! held while reading a request body or writing a response; the only file operations under a
//! lock are renames/deletes in the store (see `store`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::faults::{Decision, FaultConfig, FaultState, Trigger};
use super::field::{FieldConfig, FieldState, KindCounts};
use super::http::RateLimiter;
use super::store::Store;
use super::upload::Session;
use super::EmulatorInfo;

/// Request counters (`GET /_admin/stats`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub graph_requests: u64,
    pub fragment_puts: u64,
    /// Every body byte read on upload URLs: accepted, rejected (drained) and the partial
    /// bodies of dropped requests.
    pub fragment_bytes_received: u64,
    /// Bytes that became part of a session (received and kept).
    pub fragment_bytes_accepted: u64,
    pub sessions_created: u64,
    pub sessions_committed: u64,
    pub sessions_cancelled: u64,
    pub sessions_expired: u64,
    /// createUploadSession refused because another session holds the path (409).
    pub sessions_refused_path_busy: u64,
    pub status_gets: u64,
    pub overlaps: u64,
    pub out_of_order: u64,
    pub throttled: u64,
    pub errors_injected: u64,
    pub drops: u64,
    pub tokens_issued: u64,
    pub auth_failures: u64,
    pub simple_uploads: u64,
    pub downloads: u64,
    pub violations: u64,
    /// Requests by kind (every request outside `/_admin`, refused ones included).
    pub by_kind: KindCounts,
    /// Metered requests refused by the budget (429 or 503, `budget.rs`).
    pub budget_refused: u64,
    /// Budget units charged for admitted requests (resource units or requests, `budget.rs`).
    pub budget_units_admitted: u64,
    /// Budget units charged for refused requests (0 when refusals do not cost).
    pub budget_units_refused: u64,
    /// Metered requests answered 503 because the app is blocked (`app_blocked`, entry 8).
    pub blocked_refused: u64,
    /// Metered requests that arrived inside a Retry-After window the emulator gave.
    pub requests_inside_retry_after: u64,
    /// Of those, the ones arriving `field::REACTION` or more after the latest 429/503 left.
    pub requests_inside_retry_after_late: u64,
    /// Tenant segments seen on the token endpoint.
    pub tenants_seen: Vec<String>,
    /// Answers shaped by the upload and library fault knobs (`field_faults`), by kind.
    pub field_faults: std::collections::BTreeMap<String, u64>,
    /// Stalls, HTML pages, cut downloads and sign-in refusals of the field knobs (`stall.rs`).
    pub read_faults: super::stall::FieldFaultCounts,
}

/// A protocol rule broken by a client, or a notable but legal event.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Violation {
    pub kind: String,
    pub detail: String,
}

const JOURNAL_CAP: usize = 10_000;

#[derive(Default)]
pub struct Journal {
    pub violations: Vec<Violation>,
    pub events: Vec<Violation>,
}

/// Everything the connection threads of one emulator share.
pub struct EmulatorState {
    pub info: EmulatorInfo,
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    pub store: Mutex<Store>,
    pub sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
    pub faults: Mutex<FaultState>,
    /// Latency, budget and delta knobs (see `field`).
    pub field: Mutex<FieldState>,
    /// Access token → expiry.
    pub tokens: Mutex<HashMap<String, Instant>>,
    /// Device codes, refresh tokens, registered client certificates (see `auth`).
    pub signin: Mutex<super::auth::SignInState>,
    /// Download token → (item id, expiry).
    pub downloads: Mutex<HashMap<String, (String, Instant)>>,
    pub stats: Mutex<Stats>,
    pub journal: Mutex<Journal>,
    pub limiter: Arc<RateLimiter>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmulatorState {
    pub fn stat(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
    }

    pub fn violation(&self, kind: &str, detail: impl Into<String>) {
        let detail = detail.into();
        log::warn!("emulator: protocol violation {kind}: {detail}");
        let mut j = lock(&self.journal);
        if j.violations.len() < JOURNAL_CAP {
            j.violations.push(Violation {
                kind: kind.to_string(),
                detail,
            });
        }
        drop(j);
        self.stat(|s| s.violations += 1);
    }

    pub fn event(&self, kind: &str, detail: impl Into<String>) {
        let mut j = lock(&self.journal);
        if j.events.len() < JOURNAL_CAP {
            j.events.push(Violation {
                kind: kind.to_string(),
                detail: detail.into(),
            });
        }
    }

    pub fn faults(&self) -> FaultConfig {
        lock(&self.faults).config().clone()
    }

    pub fn set_faults(&self, cfg: FaultConfig) {
        self.limiter.set_rate(cfg.bandwidth_bytes_per_sec);
        lock(&self.faults).replace(cfg);
    }

    pub fn field(&self) -> FieldConfig {
        lock(&self.field).config().clone()
    }

    pub fn set_field(&self, cfg: FieldConfig) {
        let rules = super::collation::NameRules::of(&cfg);
        lock(&self.field).replace(cfg);
        lock(&self.store).set_name_rules(rules);
    }

    /// Decide a fault for `event` and apply its delay.
    pub fn decide(&self, event: Trigger) -> Decision {
        let d = lock(&self.faults).decide(event);
        if let Some(delay) = d.delay {
            std::thread::sleep(delay);
        }
        d
    }

    pub fn random_accept(&self, len: u64) -> u64 {
        lock(&self.faults).random_accept(len)
    }

    pub fn issue_token(&self, ttl: Duration) -> String {
        let token = super::store::random_string(96, super::store::ALNUM);
        let mut t = lock(&self.tokens);
        let now = Instant::now();
        t.retain(|_, exp| *exp > now);
        t.insert(token.clone(), now + ttl);
        token
    }

    pub fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens)
            .get(token)
            .is_some_and(|exp| *exp > Instant::now())
    }

    pub fn expire_token(&self, token: &str) {
        if let Some(exp) = lock(&self.tokens).get_mut(token) {
            *exp = Instant::now();
        }
    }
}
