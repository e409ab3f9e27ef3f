//! Access tokens from the Microsoft identity platform v2.0 token endpoint (reference §8):
//! client credentials (client id + secret, or + certificate assertion, `assertion`), the
//! resource-owner password grant (client id + username + password), or the refresh token of
//! a device-code sign-in kept in the token cache (`cache`), as `auth` chooses. The scope is the cloud's Graph resource
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
//!
//! Device code: the cache file is the source of truth; every refresh reads the refresh token
//! from it and writes the rotated one back atomically. When the token endpoint refuses it
//! (`invalid_grant`: revoked, expired, password changed) or the file is gone, the provider is
//! *dead*: it answers `Auth("sign-in needed: …")` without asking the network until the cache
//! file's mtime or inode changes (`shareuplift login` wrote a new one), which [`sign_in_needed`]
//! notices; the upload queue pauses meanwhile instead of failing jobs.
//!
//! Conditional Access and token lifetimes (field-reference entry 24, `policy`): a refusal
//! with AADSTS53003/50076/50079/70043/700082 — or Graph answering 401 to a token it was just
//! given (`api` reports it here) — becomes one line saying what the user must do, logged once,
//! shown in `.status` through [`TokenProvider::sign_in_needed`], and a block: no token request
//! goes out until a new `shareuplift login` (device code) or the block's interval (5 min,
//! doubling to 30) has passed, then one. Any sign-in method pauses the queue meanwhile
//! ([`TokenProvider::auth_pauses`]) instead of failing jobs. `blocks` is a leaf lock.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::assertion::ClientCertificate;
use super::cache::{CacheKey, TokenCache};
use super::cloud::{choose_auth, tenant_or_default, AuthMethod, KeysSet};
use super::error::{scrub, transport_error};
use super::http::{error_from_response, read_body_limited, Http};
use super::paths::encode_segment;
use super::policy::{self, Blocks, Flow, Source};
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
    Certificate {
        client_id: String,
        cert: Box<ClientCertificate>,
    },
    DeviceCode(DeviceLogin),
}

/// The refresh-token state of a device-code sign-in.
struct DeviceLogin {
    client_id: String,
    key: OwnedKey,
    cache: TokenCache,
    /// `Some(stamp of the cache file)` once the saved sign-in was refused or missing.
    dead: Mutex<Option<Option<(SystemTime, u64)>>>,
}

/// The owned fields of a [`CacheKey`].
#[derive(Debug, Clone)]
pub struct OwnedKey {
    pub authority_url: String,
    pub tenant: String,
    pub client_id: String,
    pub username: Option<String>,
}

impl OwnedKey {
    pub fn of(cfg: &GraphConfig) -> OwnedKey {
        OwnedKey {
            authority_url: cfg.authority_url.trim_end_matches('/').to_string(),
            tenant: tenant_or_default(cfg.tenant.as_deref()),
            client_id: cfg.client_id.clone().unwrap_or_default().trim().to_string(),
            username: cfg
                .username
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
        }
    }

    pub fn borrow(&self) -> CacheKey<'_> {
        CacheKey {
            authority_url: &self.authority_url,
            tenant: &self.tenant,
            client_id: &self.client_id,
            username: self.username.as_deref(),
        }
    }
}

/// The token cache of `cfg` (device-code sign-in).
pub fn token_cache(cfg: &GraphConfig) -> Result<TokenCache, String> {
    TokenCache::new(cfg.state_dir.as_deref(), &OwnedKey::of(cfg).borrow())
}

/// What `.status` and errors say when the saved sign-in is gone.
pub const SIGN_IN_NEEDED: &str = "sign-in needed: run shareuplift login";

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
    /// Policy refusals (entry 24) and, for a device-code sign-in, the token cache's stamp when
    /// the block began (a new `login` lifts it).
    blocks: Mutex<(Blocks, Option<(SystemTime, u64)>)>,
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
        (AuthMethod::Certificate, _, _) => {
            let file = cfg
                .certificate_file
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            let cert = ClientCertificate::load(file, cfg.certificate_key_file.as_deref())?;
            Ok(Credentials::Certificate {
                client_id,
                cert: Box::new(cert),
            })
        }
        (AuthMethod::DeviceCode, _, _) => Ok(Credentials::DeviceCode(DeviceLogin {
            client_id,
            key: OwnedKey::of(cfg),
            cache: token_cache(cfg)?,
            dead: Mutex::new(None),
        })),
        (other, _, _) => Err(format!(
            "auth = \"{other}\" needs its credentials (client_secret or password)"
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
            blocks: Mutex::default(),
        })
    }

    /// How this provider signs in, for advice in messages.
    fn flow(&self) -> Flow {
        match self.credentials {
            Credentials::DeviceCode(_) => Flow::DeviceCode,
            Credentials::Password { .. } => Flow::Password,
            _ => Flow::App,
        }
    }

    /// The policy block's line while no attempt may be made (a new device-code sign-in
    /// lifts it). No network I/O.
    fn blocked(&self) -> Option<String> {
        let mut b = lock(&self.blocks);
        let line = b.0.active(Instant::now())?.to_string();
        if let Credentials::DeviceCode(d) = &self.credentials {
            let now = d.cache.stamp();
            if now.is_some() && now != b.1 {
                log::info!(
                    "token cache {} changed: signing in again",
                    d.cache.path().display()
                );
                b.0.lift();
                return None;
            }
        }
        Some(line)
    }

    /// Remember a policy refusal: block, log the line once; the error to return.
    fn block(&self, line: String, source: Source) -> RemoteError {
        let stamp = match &self.credentials {
            Credentials::DeviceCode(d) => d.cache.stamp(),
            _ => None,
        };
        let mut b = lock(&self.blocks);
        if b.0.refused(line.clone(), source, Instant::now()) {
            log::warn!("{line}");
        } else {
            log::debug!("still refused: {line}");
        }
        b.1 = stamp;
        RemoteError::Auth(line)
    }

    /// A token refusal's line and block, when it is a policy refusal (entry 24).
    fn policy_refusal(&self, text: &str) -> Option<RemoteError> {
        let line = policy::describe(policy::aadsts_code(text)?, self.flow())?;
        Some(self.block(line, Source::TokenEndpoint))
    }

    /// Graph answered 401 to a token just issued (`err`): block as a policy refusal.
    pub fn graph_refused(&self, err: &RemoteError) -> RemoteError {
        let detail = match err {
            RemoteError::Unauthorized(m) => format!("401 {m}"),
            other => other.to_string(),
        };
        self.block(policy::describe_graph_refusal(&detail), Source::Graph)
    }

    /// Graph answered something other than 401: lifts a Graph refusal. Cheap.
    pub fn graph_accepted(&self) {
        let mut b = lock(&self.blocks);
        if b.0.any() {
            b.0.succeeded(Source::Graph);
        }
    }

    /// A valid access token, from the cache or freshly requested; while a policy refusal
    /// blocks sign-in, its line, without network I/O.
    pub fn token(&self) -> Result<Secret, RemoteError> {
        if let Some(line) = self.blocked() {
            return Err(RemoteError::Auth(line));
        }
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
        lock(&self.blocks).0.succeeded(Source::TokenEndpoint);
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

    /// For a device-code sign-in: `Some(message)` while the saved sign-in is refused or
    /// missing and no new `login` has happened since (the cache file's mtime is unchanged).
    /// Cheap (one stat), no network I/O.
    pub fn sign_in_needed(&self) -> Option<String> {
        if let Some(line) = self.blocked() {
            return Some(line);
        }
        let Credentials::DeviceCode(d) = &self.credentials else {
            return None;
        };
        let mut dead = lock(&d.dead);
        let since = (*dead)?;
        let now = d.cache.stamp();
        if now.is_some() && now != since {
            log::info!(
                "token cache {} changed: signing in again",
                d.cache.path().display()
            );
            *dead = None;
            return None;
        }
        Some(SIGN_IN_NEEDED.to_string())
    }

    /// Whether a refused sign-in pauses the upload queue (it can be fixed without restarting
    /// the mount: `shareuplift login`) rather than failing jobs.
    pub fn auth_pauses(&self) -> bool {
        matches!(self.credentials, Credentials::DeviceCode(_)) || lock(&self.blocks).0.any()
    }

    /// The account or app this provider acts as, for messages (no secret).
    pub fn acting_as(&self) -> String {
        match &self.credentials {
            Credentials::ClientSecret { client_id, .. } => {
                format!("app {client_id} (client secret)")
            }
            Credentials::Certificate { client_id, cert } => format!(
                "app {client_id} (certificate {}, x5t#S256 {})",
                cert.file().display(),
                cert.thumbprint_s256()
            ),
            Credentials::Password { username, .. } => format!("user {username} (password)"),
            Credentials::DeviceCode(d) => format!(
                "signed-in user (device code, token cache {})",
                d.cache.path().display()
            ),
        }
    }

    fn mark_dead(&self, d: &DeviceLogin) {
        *lock(&d.dead) = Some(d.cache.stamp());
    }

    /// The refresh grant of a device-code sign-in; stores the rotated refresh token.
    fn refresh_device(&self, d: &DeviceLogin) -> Result<(Secret, Duration), RemoteError> {
        // (The guard is dropped before `sign_in_needed` takes the same lock.)
        let was_dead = lock(&d.dead).is_some();
        if was_dead && self.sign_in_needed().is_some() {
            return Err(RemoteError::Auth(SIGN_IN_NEEDED.into()));
        }
        let saved = match d.cache.load() {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.mark_dead(d);
                return Err(RemoteError::Auth(format!(
                    "{SIGN_IN_NEEDED} (no saved sign-in in {})",
                    d.cache.path().display()
                )));
            }
            Err(e) => {
                self.mark_dead(d);
                return Err(RemoteError::Auth(format!("{SIGN_IN_NEEDED} ({e})")));
            }
        };
        let form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", d.client_id.as_str()),
            ("refresh_token", saved.refresh_token.expose()),
            ("scope", self.scope.as_str()),
        ];
        let v = match self.post_token_form(&form, &[saved.refresh_token.expose()]) {
            Ok(v) => v,
            Err(TokenFailure::Refused(text)) => {
                let code = policy::aadsts_code(&text);
                if let Some(e) = self.policy_refusal(&text) {
                    // An expired refresh token stays dead until `login`; a policy block may
                    // lift by itself, so the saved sign-in is kept.
                    if matches!(code, Some(70043 | 700082)) {
                        self.mark_dead(d);
                    }
                    return Err(e);
                }
                self.mark_dead(d);
                log::warn!("the saved sign-in was refused ({text}): {SIGN_IN_NEEDED}");
                return Err(RemoteError::Auth(format!(
                    "{SIGN_IN_NEEDED} (the saved sign-in was refused: {text})"
                )));
            }
            Err(TokenFailure::Other(e)) => return Err(e),
        };
        let (token, lifetime) = access_token(&v)?;
        if let Some(rt) = v
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if let Err(e) = d.cache.save(&d.key.borrow(), &Secret::new(rt)) {
                log::warn!("{e}; the next refresh will need shareuplift login");
            }
        }
        Ok((token, lifetime))
    }

    /// The token endpoint URL and the transport (for `login`).
    pub fn endpoint(&self) -> (&Http, &str, &str) {
        (&self.http, &self.token_url, &self.scope)
    }

    /// POST a token form; `Refused` for a 400/401 answer (text scrubbed of `secrets`).
    fn post_token_form(
        &self,
        form: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<Value, TokenFailure> {
        post_token_form(&self.http, &self.token_url, form, secrets)
    }

    fn request_token(&self) -> Result<(Secret, Duration), RemoteError> {
        let assertion;
        let form: Vec<(&str, &str)> = match &self.credentials {
            Credentials::DeviceCode(d) => return self.refresh_device(d),
            Credentials::Certificate { client_id, cert } => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                assertion = cert
                    .assertion(client_id, &self.token_url, now)
                    .map_err(RemoteError::Auth)?;
                vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.expose()),
                    ("scope", &self.scope),
                ]
            }
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
        let secrets: Vec<&str> = match &self.credentials {
            Credentials::ClientSecret { secret, .. } => vec![secret.expose()],
            Credentials::Password { password, .. } => vec![password.expose()],
            _ => Vec::new(),
        };
        match self.post_token_form(&form, &secrets) {
            Ok(v) => access_token(&v),
            Err(TokenFailure::Refused(text)) => Err(self
                .policy_refusal(&text)
                .unwrap_or_else(|| self.refused(text))),
            Err(TokenFailure::Other(e)) => Err(e),
        }
    }

    /// A refusal of the configured credentials, explained.
    fn refused(&self, text: String) -> RemoteError {
        RemoteError::Auth(match &self.credentials {
            Credentials::Certificate { cert, .. } if text.contains("AADSTS700027") => format!(
                "certificate not registered for this app: {} (x5t#S256 {}) — upload it to \
                     the app registration's Certificates & secrets ({text})",
                cert.file().display(),
                cert.thumbprint_s256()
            ),
            Credentials::Certificate { cert, .. } => {
                format!("certificate {}: {text}", cert.file().display())
            }
            _ => text,
        })
    }
}

/// How a token request failed.
pub enum TokenFailure {
    /// 400/401 from the endpoint: `error: description` (scrubbed).
    Refused(String),
    Other(RemoteError),
}

impl TokenFailure {
    /// The `error` code of a refusal (`authorization_pending`, `invalid_grant`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            TokenFailure::Refused(t) => Some(t.split(':').next().unwrap_or(t)),
            TokenFailure::Other(_) => None,
        }
    }

    /// The whole message, for errors.
    pub fn text(&self) -> String {
        match self {
            TokenFailure::Refused(t) => t.clone(),
            TokenFailure::Other(e) => e.to_string(),
        }
    }
}

/// The assertion type of certificate credentials.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// POST `form` to a token (or device-code) endpoint; the 200 body as JSON.
pub fn post_token_form(
    http: &Http,
    url: &str,
    form: &[(&str, &str)],
    secrets: &[&str],
) -> Result<Value, TokenFailure> {
    let req = http.request(reqwest::Method::POST, url).form(form);
    let resp = http.send(req, url).map_err(TokenFailure::Other)?;
    let status = resp.status().as_u16();
    match status {
        200 => {
            let bytes = resp
                .bytes()
                .map_err(|e| TokenFailure::Other(transport_error(e)))?;
            serde_json::from_slice(&bytes).map_err(|_| {
                TokenFailure::Other(RemoteError::Protocol(
                    "token endpoint answered with invalid JSON".into(),
                ))
            })
        }
        400 | 401 => {
            let body = read_body_limited(resp, 64 * 1024);
            let mut text = scrub(
                &describe_token_error(&body)
                    .unwrap_or_else(|| format!("token endpoint answered {status}")),
            );
            for s in secrets.iter().filter(|s| !s.is_empty()) {
                text = text.replace(s, "***");
            }
            Err(TokenFailure::Refused(text))
        }
        _ => Err(TokenFailure::Other(error_from_response(
            resp,
            "token endpoint",
        ))),
    }
}

/// `access_token` and its lifetime from a token response.
fn access_token(v: &Value) -> Result<(Secret, Duration), RemoteError> {
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            RemoteError::Protocol("token endpoint response has no access_token".into())
        })?;
    let lifetime = expires_in(v).unwrap_or(DEFAULT_LIFETIME);
    log::debug!("obtained access token valid for {}s", lifetime.as_secs());
    Ok((Secret::new(token), lifetime))
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
    fn device_code_dead_until_the_cache_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.auth = AuthMethod::DeviceCode;
        cfg.password = None;
        cfg.state_dir = Some(tmp.path().join("state"));
        let http = Http::new(super::super::Tuning::default().timeouts(&cfg), None).unwrap();
        let p = TokenProvider::new(&cfg, http).unwrap();
        assert!(p.auth_pauses());
        assert_eq!(p.sign_in_needed(), None, "not dead before trying");
        let Credentials::DeviceCode(d) = &p.credentials else {
            panic!("device code credentials")
        };
        // No cache file: dead at once, without network I/O.
        let err = p.refresh_device(d).err().unwrap();
        assert!(err.to_string().contains(SIGN_IN_NEEDED), "{err}");
        assert_eq!(p.sign_in_needed().as_deref(), Some(SIGN_IN_NEEDED));
        // While dead, token requests answer at once (and take the dead lock only once).
        let err = p.token().err().unwrap();
        assert!(err.to_string().contains(SIGN_IN_NEEDED), "{err}");
        assert_eq!(p.sign_in_needed().as_deref(), Some(SIGN_IN_NEEDED));
        // `login` writes the cache: the gate opens.
        let cache = token_cache(&cfg).unwrap();
        cache
            .save(&OwnedKey::of(&cfg).borrow(), &Secret::new("rt"))
            .unwrap();
        assert_eq!(p.sign_in_needed(), None);
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
