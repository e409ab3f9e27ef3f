//! Access tokens from the Microsoft identity platform v2.0 token endpoint (reference §8):
//! client credentials (client id + secret) or the resource-owner password grant (client id +
//! username + password), as `auth` chooses. The scope is the cloud's Graph resource
//! (`{resource}/.default` app-only, the Files/Sites permissions + `offline_access` for a
//! user), never derived from `graph_url`; the tenant defaults to `organizations`.
//!
//! The token is cached and refreshed from `expires_in` — never assuming one hour — once less
//! than `min(5 min, 10 % of its lifetime)` remains. After a 401 from Graph the caller
//! `invalidate`s the token it used; only that token is dropped, so concurrent callers that
//! saw the same 401 cause one refresh, not several. Locking: `cache` is held only to read or
//! swap the token; `refresh` serialises token requests (held across the token HTTP call, by
//! design: one refresh at a time), and is always taken before `cache`, never the other way.
//! Secrets (client secret, password, token) live in `Secret` and are exposed only into the
//! form body; token-endpoint error text is scrubbed of the password.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cloud::{choose_auth, tenant_or_default, AuthMethod, KeysSet};
use super::error::{scrub, transport_error};
use super::http::{error_from_response, read_body_limited, Http};
use super::paths::encode_segment;
use super::GraphConfig;
use crate::redact::Secret;
use crate::remote::RemoteError;

/// Refresh at most this long before expiry...
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// ...or at this fraction (1/n) of the lifetime, whichever is shorter.
const REFRESH_MARGIN_DIVISOR: u32 = 10;
/// Lifetime assumed when the endpoint omits `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

enum Credentials {
    ClientSecret {
        client_id: String,
        secret: Secret,
    },
    Password {
        client_id: String,
        username: String,
        password: Secret,
    },
}

struct CachedToken {
    token: Secret,
    obtained: Instant,
    lifetime: Duration,
}

/// Thread-safe access-token source for Graph calls.
pub struct TokenProvider {
    http: Http,
    token_url: String,
    scope: String,
    credentials: Credentials,
    cache: Mutex<Option<CachedToken>>,
    refresh: Mutex<()>,
}

/// Whether a token obtained at `obtained` with `lifetime` should be refreshed at `now`.
pub fn needs_refresh(obtained: Instant, lifetime: Duration, now: Instant) -> bool {
    let margin = MAX_REFRESH_MARGIN.min(lifetime / REFRESH_MARGIN_DIVISOR);
    let age = now.saturating_duration_since(obtained);
    age + margin >= lifetime
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn present(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.trim().is_empty())
}

fn present_secret(s: &Option<Secret>) -> bool {
    s.as_ref().is_some_and(|s| !s.is_empty())
}

/// The credential set of the configured sign-in method (already checked by
/// [`choose_auth`](super::cloud::choose_auth); re-checked here so a hand-built config fails
/// with the same one-line message).
fn credentials(cfg: &GraphConfig) -> Result<Credentials, String> {
    let keys = KeysSet {
        client_id: present(&cfg.client_id),
        client_secret: present_secret(&cfg.client_secret),
        certificate_file: cfg.certificate_file.is_some(),
        username: present(&cfg.username),
        password: present_secret(&cfg.password),
        tenant: present(&cfg.tenant),
    };
    let method = choose_auth(Some(&cfg.auth.to_string()), keys)?;
    let client_id = cfg.client_id.clone().unwrap_or_default().trim().to_string();
    match (method, cfg.client_secret.clone(), cfg.password.clone()) {
        (AuthMethod::ClientSecret, Some(secret), _) => {
            Ok(Credentials::ClientSecret { client_id, secret })
        }
        (AuthMethod::Password, _, Some(password)) => Ok(Credentials::Password {
            client_id,
            username: cfg.username.clone().unwrap_or_default().trim().to_string(),
            password,
        }),
        (other, _, _) => Err(format!(
            "auth = \"{other}\" is not available in this build; use password or client_secret"
        )),
    }
}

/// `error: first line of error_description`, from a token-endpoint error body.
fn describe_token_error(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let code = v.get("error")?.as_str()?;
    let description = v
        .get("error_description")
        .and_then(Value::as_str)
        .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("");
    Some(if description.is_empty() {
        code.to_string()
    } else {
        format!("{code}: {description}")
    })
}

/// `expires_in` as a number or a numeric string (older endpoints send strings).
fn expires_in(v: &Value) -> Option<Duration> {
    let secs = match v.get("expires_in")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl TokenProvider {
    /// Validate credentials and derive the token URL and scope; no network I/O.
    pub fn new(cfg: &GraphConfig, http: Http) -> Result<TokenProvider, String> {
        let credentials = credentials(cfg)?;
        let tenant = tenant_or_default(cfg.tenant.as_deref());
        let token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            cfg.authority_url.trim_end_matches('/'),
            encode_segment(&tenant)
        );
        Ok(TokenProvider {
            http,
            token_url,
            scope: cfg.auth.scope(&cfg.graph_scope),
            credentials,
            cache: Mutex::new(None),
            refresh: Mutex::new(()),
        })
    }

    /// A valid access token, from the cache or freshly requested.
    pub fn token(&self) -> Result<Secret, RemoteError> {
        if let Some(t) = self.cached(Instant::now()) {
            return Ok(t);
        }
        let _one_refresh_at_a_time = lock(&self.refresh);
        // Another thread may have refreshed while we waited.
        if let Some(t) = self.cached(Instant::now()) {
            return Ok(t);
        }
        let obtained = Instant::now();
        let (token, lifetime) = self.request_token()?;
        *lock(&self.cache) = Some(CachedToken {
            token: token.clone(),
            obtained,
            lifetime,
        });
        Ok(token)
    }

    /// Drop `failed` from the cache (after Graph answered 401 to it).
    pub fn invalidate(&self, failed: &Secret) {
        let mut cache = lock(&self.cache);
        if cache.as_ref().is_some_and(|c| &c.token == failed) {
            *cache = None;
        }
    }

    fn cached(&self, now: Instant) -> Option<Secret> {
        let cache = lock(&self.cache);
        let c = cache.as_ref()?;
        (!needs_refresh(c.obtained, c.lifetime, now)).then(|| c.token.clone())
    }

    fn request_token(&self) -> Result<(Secret, Duration), RemoteError> {
        let form: Vec<(&str, &str)> = match &self.credentials {
            Credentials::ClientSecret { client_id, secret } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret.expose()),
                ("scope", &self.scope),
            ],
            Credentials::Password {
                client_id,
                username,
                password,
            } => vec![
                ("grant_type", "password"),
                ("client_id", client_id),
                ("username", username),
                ("password", password.expose()),
                ("scope", &self.scope),
            ],
        };
        let req = self
            .http
            .request(reqwest::Method::POST, &self.token_url)
            .form(&form);
        let resp = self.http.send(req, &self.token_url)?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                let bytes = resp.bytes().map_err(transport_error)?;
                let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    RemoteError::Protocol("token endpoint answered with invalid JSON".into())
                })?;
                let token = v
                    .get("access_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        RemoteError::Protocol("token endpoint response has no access_token".into())
                    })?;
                let lifetime = expires_in(&v).unwrap_or(DEFAULT_LIFETIME);
                log::debug!("obtained access token valid for {}s", lifetime.as_secs());
                Ok((Secret::new(token), lifetime))
            }
            400 | 401 => {
                let body = read_body_limited(resp, 64 * 1024);
                let text = describe_token_error(&body)
                    .unwrap_or_else(|| format!("token endpoint answered {status}"));
                Err(RemoteError::Auth(self.without_secrets(&text)))
            }
            _ => Err(error_from_response(resp, "token endpoint")),
        }
    }

    /// Scrub URLs and make sure neither password nor client secret is echoed back.
    fn without_secrets(&self, text: &str) -> String {
        let mut text = scrub(text);
        let secret = match &self.credentials {
            Credentials::ClientSecret { secret, .. } => secret,
            Credentials::Password { password, .. } => password,
        };
        if !secret.is_empty() {
            text = text.replace(secret.expose(), "***");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn config() -> GraphConfig {
        GraphConfig {
            graph_url: "https://graph.microsoft.com/v1.0".into(),
            authority_url: "https://login.microsoftonline.com/".into(),
            client_id: Some("cid".into()),
            username: Some("u@contoso.com".into()),
            password: Some(Secret::new("pw")),
            site_url: "https://contoso.sharepoint.com/sites/Team".into(),
            folder_url: "/sites/Team/Shared Documents".into(),
            timeout: Duration::from_secs(30),
            graph_scope: "https://graph.microsoft.com".into(),
            ..GraphConfig::default()
        }
    }

    #[test]
    fn refresh_margin_math() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!needs_refresh(t0, hour, t0));
        assert!(!needs_refresh(t0, hour, at(3299)));
        assert!(needs_refresh(t0, hour, at(3300)));
        assert!(needs_refresh(t0, hour, at(7200)));
        // 10-minute token: refresh 1 minute (10 %) before expiry, not 5.
        let ten = Duration::from_secs(600);
        assert!(!needs_refresh(t0, ten, at(539)));
        assert!(needs_refresh(t0, ten, at(540)));
        // Zero lifetime: always refresh.
        assert!(needs_refresh(t0, Duration::ZERO, t0));
    }

    #[test]
    fn credential_selection() {
        let mut cfg = config();
        assert!(matches!(
            credentials(&cfg),
            Ok(Credentials::Password { .. })
        ));
        cfg.auth = AuthMethod::ClientSecret;
        cfg.client_secret = Some(Secret::new("s"));
        let err = credentials(&cfg).err().unwrap();
        assert!(err.contains("missing: tenant"), "{err}");
        cfg.tenant = Some("t".into());
        assert!(matches!(
            credentials(&cfg),
            Ok(Credentials::ClientSecret { .. })
        ));
        cfg.client_secret = Some(Secret::new(""));
        let err = credentials(&cfg).err().unwrap();
        assert!(err.contains("missing: client_secret"), "{err}");
    }

    #[test]
    fn scope_comes_from_the_cloud_not_graph_url() {
        let mut cfg = config();
        cfg.graph_url = "http://127.0.0.1:8123/v1.0".into();
        let http = Http::new(super::super::Tuning::default().timeouts(&cfg), None).unwrap();
        let p = TokenProvider::new(&cfg, http.clone()).unwrap();
        assert_eq!(
            p.scope,
            "https://graph.microsoft.com/Files.ReadWrite.All \
             https://graph.microsoft.com/Sites.ReadWrite.All offline_access"
        );
        assert_eq!(
            p.token_url,
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        cfg.auth = AuthMethod::ClientSecret;
        cfg.client_secret = Some(Secret::new("s"));
        cfg.tenant = Some("t-id".into());
        let p = TokenProvider::new(&cfg, http).unwrap();
        assert_eq!(p.scope, "https://graph.microsoft.com/.default");
        assert_eq!(
            p.token_url,
            "https://login.microsoftonline.com/t-id/oauth2/v2.0/token"
        );
    }

    #[test]
    fn token_error_description() {
        let body = r#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[50126]}"#;
        assert_eq!(
            describe_token_error(body).unwrap(),
            "invalid_grant: AADSTS50126: Error validating credentials due to invalid username or password."
        );
        assert_eq!(
            describe_token_error(r#"{"error":"invalid_client"}"#).unwrap(),
            "invalid_client"
        );
        assert_eq!(describe_token_error("<html>"), None);
    }

    #[test]
    fn expires_in_forms() {
        let v: Value = serde_json::from_str(r#"{"expires_in":3599}"#).unwrap();
        assert_eq!(expires_in(&v), Some(Duration::from_secs(3599)));
        let v: Value = serde_json::from_str(r#"{"expires_in":"4000"}"#).unwrap();
        assert_eq!(expires_in(&v), Some(Duration::from_secs(4000)));
        let v: Value = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(expires_in(&v), None);
    }
}
