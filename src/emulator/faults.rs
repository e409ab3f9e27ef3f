//! Fault injection: the configuration (a JSON document), its scripted one-shot faults and
//! the seeded random rates, and the decision taken for each request.
//!
//! Schema (every field optional; unknown fields are refused so typos do not silently
//! disable a test):
//! ```json
//! { "seed": 42,                      // seeds the random rates (same seed, same sequence)
//!   "error_rate": 0.0,               // fraction of events answered with one of error_statuses,
//!   "error_statuses": [500,502,503,504],  //   no bytes accepted
//!   "throttle_rate": 0.0,            // fraction answered 429 + Retry-After: retry_after_secs
//!   "retry_after_secs": 2,
//!   "drop_rate": 0.0,                // fraction where a random prefix of the body (0..=len bytes,
//!                                    //   unaligned) is accepted, then the TCP connection is reset
//!   "apply_to": "upload",            // "upload": random rates hit fragment PUTs only;
//!                                    // "all": also every /v1.0 request (never /auth, /_admin)
//!   "session_ttl_secs": 900,         // upload session lifetime, slid forward by activity
//!   "upload_url_ttl_secs": null,     // tempauth lifetime (from creation): then 401 expiredToken
//!   "access_token_ttl_secs": 3600,   // expires_in of issued tokens
//!   "bandwidth_bytes_per_sec": null, // cap on request-body reads and download bytes, all connections
//!   "quota_bytes": null,             // total stored file bytes allowed; else 507 quotaLimitReached
//!   "ranges_style": "odb",           // "odb": ["N-M"]; "personal": ["N-"]
//!   "script": [ { "on": "put_fragment", "status": 503, "retry_after_secs": 5, "count": 2 } ] }
//! ```
//! Script entries: `on` is one of `put_fragment` (a PUT on an upload URL that passed the
//! protocol checks), `create_session`, `commit` (the request that would commit a file: last
//! fragment or deferred-commit POST), `upload_status` (GET on an upload URL), `any_graph`
//! (every /v1.0 request), `token` (the token endpoint), `download`. An entry does one of:
//! `"status": N` (answer N with a Graph error body, `Retry-After` when `retry_after_secs` is
//! set or N is 429), `"action": "drop"` (accept `accept_bytes` bytes of the body, or a random
//! number when absent, then reset the connection; on other events: reset without reading),
//! `"action": "expire_session"` (the session is expired now: 404), `"action":
//! "expire_upload_token"` (the tempauth is expired now: 401), `"action": "expire_access_token"`
//! (the presented bearer token is expired now: 401), and may add `"delay_ms": N` (sleep first;
//! an entry with only `delay_ms` just delays). `count` (default 1) is how many times it fires;
//! `skip` (default 0) lets that many matching events pass first. For each event the FIRST entry
//! with `on` matching and `count > 0` owns the event (so entries fire in list order); scripted
//! faults are decided before the random rates. `GET /_admin/faults` shows the remaining counts.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Where the random rates apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyTo {
    #[default]
    Upload,
    All,
}

/// Shape of `nextExpectedRanges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangesStyle {
    /// OneDrive for Business / SharePoint: `"N-M"` with an explicit inclusive end.
    #[default]
    Odb,
    /// OneDrive Personal: `"N-"`.
    Personal,
}

/// The events a script entry can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    PutFragment,
    CreateSession,
    Commit,
    UploadStatus,
    AnyGraph,
    Token,
    Download,
}

/// Scripted actions other than a plain status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Drop,
    ExpireSession,
    ExpireUploadToken,
    ExpireAccessToken,
}

/// One scripted fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptEntry {
    pub on: Trigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default = "one")]
    pub count: u64,
    #[serde(default)]
    pub skip: u64,
}

fn one() -> u64 {
    1
}

/// The whole fault configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    pub seed: u64,
    pub error_rate: f64,
    pub error_statuses: Vec<u16>,
    pub throttle_rate: f64,
    pub retry_after_secs: u64,
    pub drop_rate: f64,
    pub apply_to: ApplyTo,
    pub session_ttl_secs: u64,
    pub upload_url_ttl_secs: Option<u64>,
    pub access_token_ttl_secs: u64,
    pub bandwidth_bytes_per_sec: Option<u64>,
    pub quota_bytes: Option<u64>,
    pub ranges_style: RangesStyle,
    pub script: Vec<ScriptEntry>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 42,
            error_rate: 0.0,
            error_statuses: vec![500, 502, 503, 504],
            throttle_rate: 0.0,
            retry_after_secs: 2,
            drop_rate: 0.0,
            apply_to: ApplyTo::Upload,
            session_ttl_secs: 900,
            upload_url_ttl_secs: None,
            access_token_ttl_secs: 3600,
            bandwidth_bytes_per_sec: None,
            quota_bytes: None,
            ranges_style: RangesStyle::Odb,
            script: Vec::new(),
        }
    }
}

impl FaultConfig {
    /// Parse and validate a JSON configuration.
    pub fn from_json(text: &str) -> Result<FaultConfig, String> {
        let cfg: FaultConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("drop_rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within 0..=1"));
            }
        }
        if self.error_rate + self.throttle_rate + self.drop_rate > 1.0 {
            return Err("error_rate + throttle_rate + drop_rate must not exceed 1".into());
        }
        if self.error_rate > 0.0 && self.error_statuses.is_empty() {
            return Err("error_statuses is empty".into());
        }
        if self.error_statuses.iter().any(|s| !(400..=599).contains(s)) {
            return Err("error_statuses must be 4xx/5xx".into());
        }
        if self.bandwidth_bytes_per_sec == Some(0) {
            return Err("bandwidth_bytes_per_sec must be positive".into());
        }
        for (i, e) in self.script.iter().enumerate() {
            match (e.status, e.action) {
                (Some(_), Some(_)) => {
                    return Err(format!("script[{i}]: give either status or action"))
                }
                (None, None) if e.delay_ms.is_none() => {
                    return Err(format!("script[{i}]: needs status, action or delay_ms"))
                }
                (Some(s), None) if !(400..=599).contains(&s) => {
                    return Err(format!("script[{i}]: status must be 4xx/5xx"))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What to do to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer this status (no bytes accepted); `Retry-After` when set.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Accept this many body bytes (None: random), then reset the connection.
    Drop {
        accept_bytes: Option<u64>,
    },
    ExpireSession,
    ExpireUploadToken,
    ExpireAccessToken,
}

/// A decision: an optional delay, then a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub delay: Option<Duration>,
    pub fault: Fault,
}

impl Decision {
    pub fn none() -> Decision {
        Decision {
            delay: None,
            fault: Fault::None,
        }
    }
}

/// Configuration plus the seeded generator; lives behind the emulator's fault lock.
pub struct FaultState {
    config: FaultConfig,
    rng: StdRng,
}

impl FaultState {
    pub fn new(config: FaultConfig) -> FaultState {
        let rng = StdRng::seed_from_u64(config.seed);
        FaultState { config, rng }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Replace the whole configuration (reseeds the generator).
    pub fn replace(&mut self, config: FaultConfig) {
        *self = FaultState::new(config);
    }

    /// Decide the fault for one event. `random_ok` says whether the random rates may apply
    /// (fragment PUTs always; Graph requests when `apply_to` is `all`).
    pub fn decide(&mut self, event: Trigger) -> Decision {
        if let Some(entry) = self
            .config
            .script
            .iter_mut()
            .find(|e| e.on == event && e.count > 0)
        {
            if entry.skip > 0 {
                entry.skip -= 1;
                return Decision::none();
            }
            entry.count -= 1;
            let fault = match (entry.status, entry.action) {
                (Some(status), _) => Fault::Status {
                    status,
                    retry_after: entry
                        .retry_after_secs
                        .or((status == 429).then_some(self.config.retry_after_secs)),
                },
                (None, Some(Action::Drop)) => Fault::Drop {
                    accept_bytes: entry.accept_bytes,
                },
                (None, Some(Action::ExpireSession)) => Fault::ExpireSession,
                (None, Some(Action::ExpireUploadToken)) => Fault::ExpireUploadToken,
                (None, Some(Action::ExpireAccessToken)) => Fault::ExpireAccessToken,
                (None, None) => Fault::None,
            };
            return Decision {
                delay: entry.delay_ms.map(Duration::from_millis),
                fault,
            };
        }
        let random_ok = match event {
            Trigger::PutFragment => true,
            Trigger::AnyGraph => self.config.apply_to == ApplyTo::All,
            _ => false,
        };
        if !random_ok {
            return Decision::none();
        }
        let c = &self.config;
        if c.drop_rate + c.error_rate + c.throttle_rate <= 0.0 {
            return Decision::none();
        }
        let r: f64 = self.rng.gen();
        let fault = if r < c.drop_rate {
            Fault::Drop { accept_bytes: None }
        } else if r < c.drop_rate + c.error_rate {
            let i = self.rng.gen_range(0..c.error_statuses.len());
            Fault::Status {
                status: c.error_statuses[i],
                retry_after: None,
            }
        } else if r < c.drop_rate + c.error_rate + c.throttle_rate {
            Fault::Status {
                status: 429,
                retry_after: Some(c.retry_after_secs),
            }
        } else {
            Fault::None
        };
        Decision { delay: None, fault }
    }

    /// A random number of bytes to accept before a drop: 0..=len.
    pub fn random_accept(&mut self, len: u64) -> u64 {
        self.rng.gen_range(0..=len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_example() {
        let cfg = FaultConfig::from_json(
            r#"{ "seed": 7, "error_rate": 0.1, "throttle_rate": 0.1, "drop_rate": 0.1,
                 "apply_to": "all", "ranges_style": "personal", "upload_url_ttl_secs": 5,
                 "script": [ {"on":"put_fragment","status":503,"count":2},
                             {"on":"put_fragment","action":"drop","accept_bytes":12345},
                             {"on":"create_session","status":507},
                             {"on":"any_graph","action":"expire_access_token"},
                             {"on":"token","delay_ms":10} ] }"#,
        )
        .unwrap();
        assert_eq!(cfg.script.len(), 5);
        assert_eq!(cfg.script[1].count, 1);
        assert_eq!(cfg.ranges_style, RangesStyle::Personal);
    }

    #[test]
    fn refuses_bad_configs() {
        for bad in [
            r#"{"eror_rate":0.1}"#,
            r#"{"error_rate":1.5}"#,
            r#"{"error_rate":0.6,"drop_rate":0.6}"#,
            r#"{"script":[{"on":"put_fragment"}]}"#,
            r#"{"script":[{"on":"nowhere","status":500}]}"#,
            r#"{"script":[{"on":"put_fragment","status":503,"action":"drop"}]}"#,
        ] {
            assert!(FaultConfig::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn script_fires_in_order_then_random() {
        let cfg = FaultConfig::from_json(
            r#"{"script":[{"on":"put_fragment","status":503,"count":2},
                           {"on":"put_fragment","action":"drop","accept_bytes":3,"skip":1}]}"#,
        )
        .unwrap();
        let mut st = FaultState::new(cfg);
        let seq: Vec<Fault> = (0..5)
            .map(|_| st.decide(Trigger::PutFragment).fault)
            .collect();
        assert_eq!(
            seq,
            vec![
                Fault::Status {
                    status: 503,
                    retry_after: None
                },
                Fault::Status {
                    status: 503,
                    retry_after: None
                },
                Fault::None,
                Fault::Drop {
                    accept_bytes: Some(3)
                },
                Fault::None,
            ]
        );
        assert_eq!(st.decide(Trigger::CreateSession).fault, Fault::None);
    }

    #[test]
    fn random_rates_respect_apply_to() {
        let mut st = FaultState::new(FaultConfig {
            throttle_rate: 1.0,
            ..FaultConfig::default()
        });
        assert_eq!(st.decide(Trigger::AnyGraph).fault, Fault::None);
        assert_eq!(
            st.decide(Trigger::PutFragment).fault,
            Fault::Status {
                status: 429,
                retry_after: Some(2)
            }
        );
    }
}
