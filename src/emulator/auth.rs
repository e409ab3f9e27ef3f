//! The emulated Microsoft identity platform: `POST /auth/{tenant}/oauth2/v2.0/token` with
//! the `password` (ROPC), `client_credentials` (secret or certificate assertion),
//! `device_code` and `refresh_token` grants, `POST /auth/{tenant}/oauth2/v2.0/devicecode`,
//! bearer-token checks for Graph, and `GET /v1.0/me`.
//!
//! Answers mirror Azure AD v2.0 (reference §8): 400 `invalid_grant` / AADSTS50126 for a wrong
//! user or password, 401 `invalid_client` / AADSTS7000215 for a wrong client secret, 400
//! `unauthorized_client` / AADSTS700016 for an unknown client id, 400 `invalid_request` /
//! AADSTS90014 for a missing field, 400 `invalid_scope` / AADSTS70011 for a scope that is not
//! Microsoft Graph's (the emulator answers for `https://graph.microsoft.com` whatever its own
//! address). Any tenant segment is accepted and recorded in the stats.
//! Tokens are random opaque strings valid for `access_token_ttl_secs` (fault setting).
//!
//! Device code: the first `pending_polls` polls (knob, default 2) answer
//! `authorization_pending`, then the grant is approved (or at once after `POST
//! /_admin/device_code/approve`); a poll sooner than `interval_secs` after the previous one
//! answers `slow_down`; after `expires_in_secs` the code answers `expired_token`. Knobs: `POST
//! /_admin/device_code` with any of `{pending_polls, interval_secs, expires_in_secs}`.
//! Refresh tokens are issued for delegated grants and rotated on every use (the old one is
//! dead at once); `POST /_admin/revoke_refresh_tokens` kills them all (`invalid_grant`).
//! Certificate assertions (RS256 JWT) are checked like Azure AD: `x5t#S256` names a
//! certificate registered through `POST /_admin/certificates` (PEM body) or the emulator
//! options, the signature verifies with its key, `aud` is this token endpoint (compared by
//! path, so a TLS front or proxy in between does not matter), `iss` = `sub` = client id, `exp`
//! not passed. The sign-in state is a leaf lock (`EmulatorState::signin`).
//!
//! Conditional Access (field-reference entry 24, field knob `token_refusal`): while set, every
//! token request (all grants, device-code polls included) is refused with that AADSTS code in
//! Azure AD's body shape — 400 `invalid_grant`, `error_description` "AADSTSnnnnn: …",
//! `error_codes` [nnnnn], plus `suberror` where Azure AD sends one: 53003 blocked by policy,
//! 50076 MFA required, 50079 MFA registration required, 70043 refresh token expired by a
//! sign-in frequency policy, 700082 refresh token expired by inactivity. The field knob
//! `graph_refuses_tokens` makes Graph (and `/me`) answer 401 to valid tokens
//! (`read_faults.rs`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::faults::{Fault, Trigger};
use super::http::{BodyReader, Reply, Request, Response};
use super::state::{lock, EmulatorState};

fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Response {
    Response::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": super::store::fmt_time(super::store::now_secs()),
        }),
    )
}

/// Entry 24: `(error, suberror, description)` of a Conditional Access / token-lifetime
/// refusal Azure AD answers with this AADSTS code; `None` for codes the knob does not know.
pub fn policy_refusal(code: u32) -> Option<(&'static str, Option<&'static str>, &'static str)> {
    Some(match code {
        53003 => (
            "invalid_grant",
            Some("message_only"),
            "Access has been blocked by Conditional Access policies. The access policy does \
             not allow token issuance.",
        ),
        50076 => (
            "invalid_grant",
            Some("basic_action"),
            "Due to a configuration change made by your administrator, or because you moved \
             to a new location, you must use multi-factor authentication to access \
             '00000003-0000-0000-c000-000000000000'.",
        ),
        50079 => (
            "invalid_grant",
            Some("basic_action"),
            "Due to a configuration change made by your administrator, or because you moved \
             to a new location, you must enroll in multi-factor authentication to access \
             '00000003-0000-0000-c000-000000000000'.",
        ),
        70043 => (
            "invalid_grant",
            Some("bad_token"),
            "The refresh token has expired or is invalid due to sign-in frequency checks by \
             conditional access. The token was issued on 2025-01-01T00:00:00Z and the maximum \
             allowed lifetime for this request is 3600.",
        ),
        700082 => (
            "invalid_grant",
            Some("bad_token"),
            "The refresh token has expired due to inactivity. The token was issued on \
             2025-01-01T00:00:00Z and was inactive for 90.00:00:00.",
        ),
        _ => return None,
    })
}

/// The knob's refusal, if one is set.
fn refused_by_policy(shared: &EmulatorState) -> Option<Response> {
    let code = shared.field().token_refusal?;
    let (error, suberror, description) = policy_refusal(code)?;
    shared.stat(|s| s.read_faults.token_refusals += 1);
    let mut r = aad_error(400, error, code, description);
    if let (Some(sub), super::http::Body::Bytes(b)) = (suberror, &mut r.body) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(b) {
            v["suberror"] = json!(sub);
            *b = v.to_string().into_bytes();
        }
    }
    Some(r)
}

/// Device-code knobs (`POST /_admin/device_code`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DeviceKnobs {
    /// Polls answered `authorization_pending` before the grant is approved by itself.
    pub pending_polls: u32,
    /// The polling interval handed out; faster polls answer `slow_down`.
    pub interval_secs: u64,
    /// Lifetime of a device code.
    pub expires_in_secs: u64,
}

impl Default for DeviceKnobs {
    fn default() -> Self {
        DeviceKnobs {
            pending_polls: 2,
            interval_secs: 1,
            expires_in_secs: 900,
        }
    }
}

struct DeviceGrant {
    polls: u32,
    last_poll: Option<Instant>,
    expires: Instant,
    approved: bool,
}

/// Sign-in state beyond access tokens: device codes, refresh tokens, registered certificates.
#[derive(Default)]
pub struct SignInState {
    pub knobs: DeviceKnobs,
    devices: HashMap<String, DeviceGrant>,
    /// Live refresh tokens (rotated on use).
    refresh: HashSet<String>,
    /// Access tokens issued app-only (for `/me`).
    app_tokens: HashSet<String>,
    /// DER of the registered client certificates.
    certs: Vec<Vec<u8>>,
    pub refresh_tokens_issued: u64,
    pub refresh_tokens_revoked: u64,
    pub device_polls: u64,
}

impl SignInState {
    /// The initial state, with the certificate of `pem_file` registered (emulator options).
    pub fn with_certificate(pem_file: Option<&std::path::Path>) -> std::io::Result<SignInState> {
        let mut st = SignInState::default();
        if let Some(f) = pem_file {
            let pem = std::fs::read(f)?;
            st.register_pem(&pem).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{}: {e}", f.display()),
                )
            })?;
        }
        Ok(st)
    }

    /// Register the certificate(s) of a PEM text; returns how many.
    pub fn register_pem(&mut self, pem: &[u8]) -> Result<usize, String> {
        use rustls_pki_types::pem::PemObject;
        let mut n = 0;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let c = c.map_err(|e| format!("certificate PEM: {e}"))?;
            self.certs.push(c.as_ref().to_vec());
            n += 1;
        }
        if n == 0 {
            return Err("no CERTIFICATE block in the PEM".into());
        }
        Ok(n)
    }
}

/// `POST /auth/{tenant}/oauth2/v2.0/{token|devicecode}`.
pub fn handle_token(shared: &EmulatorState, req: &Request, body: &mut BodyReader<'_>) -> Reply {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let (tenant, endpoint) = match segs.as_slice() {
        ["auth", tenant, "oauth2", "v2.0", e @ ("token" | "devicecode")] => (*tenant, *e),
        _ => {
            return Reply::Respond(aad_error(
                404,
                "invalid_request",
                90002,
                "Unknown endpoint.",
            ))
        }
    };
    if req.method != "POST" {
        return Reply::Respond(aad_error(
            405,
            "invalid_request",
            90056,
            "The token endpoint only accepts POST.",
        ));
    }
    let tenant = percent_encoding::percent_decode_str(tenant)
        .decode_utf8_lossy()
        .into_owned();
    shared.stat(|s| {
        if !s.tenants_seen.contains(&tenant) && s.tenants_seen.len() < 100 {
            s.tenants_seen.push(tenant.clone());
        }
    });
    match shared.decide(Trigger::Token).fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            shared.stat(|s| s.errors_injected += 1);
            let mut r = aad_error(status, "temporarily_unavailable", 90033, "Injected fault.");
            if let Some(s) = retry_after {
                r.headers.push(("Retry-After".into(), s.to_string()));
            }
            return Reply::Respond(r);
        }
        Fault::Drop { .. } => {
            shared.stat(|s| s.drops += 1);
            return Reply::Drop;
        }
        _ => {}
    }
    let raw = match body.read_all(64 * 1024) {
        Ok(r) => r,
        Err(_) => {
            return Reply::Respond(aad_error(
                400,
                "invalid_request",
                90014,
                "Request body too large.",
            ))
        }
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let r = if endpoint == "devicecode" {
        device_code(shared, &get)
    } else {
        token(shared, req, &get)
    };
    match r {
        Ok(r) => Reply::Respond(r),
        Err(r) => {
            shared.stat(|s| s.auth_failures += 1);
            Reply::Respond(r)
        }
    }
}

type Get<'a> = dyn Fn(&str) -> Option<&'a str> + 'a;

fn require(get: &Get<'_>, fields: &[&str]) -> Result<(), Response> {
    for field in fields {
        if get(field).is_none_or(|v| v.is_empty()) {
            return Err(aad_error(
                400,
                "invalid_request",
                90014,
                &format!("The request body must contain the following parameter: '{field}'."),
            ));
        }
    }
    Ok(())
}

fn check_client(shared: &EmulatorState, get: &Get<'_>) -> Result<(), Response> {
    if get("client_id") != Some(shared.info.client_id.as_str()) {
        return Err(aad_error(
            400,
            "unauthorized_client",
            700016,
            "Application with the given identifier was not found in the directory.",
        ));
    }
    Ok(())
}

/// `POST …/devicecode`: a new device code for a delegated sign-in.
fn device_code(shared: &EmulatorState, get: &Get<'_>) -> Result<Response, Response> {
    require(get, &["client_id", "scope"])?;
    check_scope("device_code", get("scope").unwrap_or_default())?;
    check_client(shared, get)?;
    let device = super::store::random_string(64, super::store::ALNUM);
    let user_code = super::store::random_string(9, b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789");
    let mut st = lock(&shared.signin);
    let knobs = st.knobs;
    let now = Instant::now();
    st.devices.retain(|_, g| g.expires > now);
    st.devices.insert(
        device.clone(),
        DeviceGrant {
            polls: 0,
            last_poll: None,
            expires: now + Duration::from_secs(knobs.expires_in_secs),
            approved: false,
        },
    );
    drop(st);
    let uri = "https://microsoft.com/devicelogin";
    Ok(Response::json(
        200,
        &json!({
            "device_code": device,
            "user_code": user_code,
            "verification_uri": uri,
            "expires_in": knobs.expires_in_secs,
            "interval": knobs.interval_secs,
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }),
    ))
}

/// `POST …/token`: every grant.
fn token(shared: &EmulatorState, req: &Request, get: &Get<'_>) -> Result<Response, Response> {
    let info = &shared.info;
    if let Some(r) = refused_by_policy(shared) {
        return Err(r);
    }
    let Some(grant) = get("grant_type") else {
        return Err(aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ));
    };
    require(get, &["client_id"])?;
    // A refresh or a device-code poll may omit the scope (it keeps the original grant's).
    if grant != "refresh_token" && grant != DEVICE_CODE_GRANT {
        require(get, &["scope"])?;
    }
    if let Some(scope) = get("scope") {
        check_scope(grant, scope)?;
    }
    check_client(shared, get)?;
    let delegated = match grant {
        "password" => {
            let user_ok = get("username").is_some_and(|u| u.eq_ignore_ascii_case(&info.username));
            if !user_ok || get("password") != Some(info.password.as_str()) {
                return Err(aad_error(
                    400,
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                ));
            }
            true
        }
        "client_credentials" => {
            if let Some(assertion) = get("client_assertion") {
                if get("client_assertion_type") != Some(JWT_BEARER) {
                    return Err(aad_error(
                        400,
                        "invalid_request",
                        50027,
                        "Invalid client_assertion_type.",
                    ));
                }
                check_assertion(shared, req, assertion)?;
            } else if get("client_secret") != Some(info.client_secret.as_str()) {
                return Err(aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                ));
            }
            false
        }
        DEVICE_CODE_GRANT => {
            require(get, &["device_code"])?;
            poll_device(shared, get("device_code").unwrap_or_default())?;
            true
        }
        "refresh_token" => {
            require(get, &["refresh_token"])?;
            let presented = get("refresh_token").unwrap_or_default();
            if !lock(&shared.signin).refresh.remove(presented) {
                return Err(aad_error(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                ));
            }
            true
        }
        _ => {
            return Err(aad_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            ))
        }
    };
    let ttl = shared.faults().access_token_ttl_secs;
    let token = shared.issue_token(Duration::from_secs(ttl));
    shared.stat(|s| s.tokens_issued += 1);
    let mut body = json!({
        "token_type": "Bearer",
        "scope": get("scope").unwrap_or_default(),
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": token,
    });
    let mut st = lock(&shared.signin);
    if delegated {
        let refresh = super::store::random_string(120, super::store::ALNUM);
        st.refresh.insert(refresh.clone());
        st.refresh_tokens_issued += 1;
        body["refresh_token"] = Value::String(refresh);
    } else {
        if st.app_tokens.len() > 10_000 {
            st.app_tokens.clear();
        }
        st.app_tokens.insert(token);
    }
    Ok(Response::json(200, &body))
}

/// The device-code grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The client assertion type of certificate credentials.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One poll of a device code: `Ok` when approved (the code is used up).
fn poll_device(shared: &EmulatorState, code: &str) -> Result<(), Response> {
    let mut st = lock(&shared.signin);
    st.device_polls += 1;
    let knobs = st.knobs;
    let now = Instant::now();
    let Some(g) = st.devices.get_mut(code) else {
        return Err(aad_error(
            400,
            "bad_verification_code",
            70019,
            "Verification code expired or not recognised.",
        ));
    };
    if g.expires <= now {
        st.devices.remove(code);
        return Err(aad_error(
            400,
            "expired_token",
            70020,
            "The provided authorization code or refresh token has expired.",
        ));
    }
    // A little slack for timer granularity.
    let min_gap =
        Duration::from_secs(knobs.interval_secs).saturating_sub(Duration::from_millis(50));
    if g.last_poll.is_some_and(|t| now.duration_since(t) < min_gap) {
        g.last_poll = Some(now);
        return Err(aad_error(
            400,
            "slow_down",
            70016,
            "The client is polling too quickly.",
        ));
    }
    g.last_poll = Some(now);
    g.polls += 1;
    if !g.approved && g.polls <= knobs.pending_polls {
        return Err(aad_error(
            400,
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ));
    }
    st.devices.remove(code);
    Ok(())
}

fn b64_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Check a certificate client assertion as Azure AD does.
fn check_assertion(shared: &EmulatorState, req: &Request, jwt: &str) -> Result<(), Response> {
    let bad = |code: u32, what: &str| Err(aad_error(401, "invalid_client", code, what));
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, sig] = parts.as_slice() else {
        return bad(50027, "JWT token is invalid or malformed.");
    };
    let (Some(header), Some(claims), Ok(sig)) =
        (b64_json(h), b64_json(p), URL_SAFE_NO_PAD.decode(sig))
    else {
        return bad(50027, "JWT token is invalid or malformed.");
    };
    if header["alg"] != "RS256" {
        return bad(5002738, "The client assertion must be signed with RS256.");
    }
    let Some(thumb) = header["x5t#S256"]
        .as_str()
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
    else {
        return bad(
            700027,
            "Client assertion contains no x5t#S256 certificate thumbprint.",
        );
    };
    let cert = lock(&shared.signin)
        .certs
        .iter()
        .find(|der| ring::digest::digest(&ring::digest::SHA256, der).as_ref() == thumb.as_slice())
        .cloned();
    let Some(cert) = cert else {
        return bad(
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        );
    };
    let der = rustls_pki_types::CertificateDer::from(cert);
    let verified = webpki::EndEntityCert::try_from(&der)
        .ok()
        .is_some_and(|ee| {
            ee.verify_signature(
                webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                format!("{h}.{p}").as_bytes(),
                &sig,
            )
            .is_ok()
        });
    if !verified {
        return bad(700027, "Client assertion failed signature validation.");
    }
    let aud_path = claims["aud"]
        .as_str()
        .and_then(|a| url::Url::parse(a).ok())
        .map(|u| u.path().to_string());
    if aud_path.as_deref() != Some(req.path.as_str()) {
        return bad(
            700212,
            "The audience claim of the client assertion is not this token endpoint.",
        );
    }
    let client = shared.info.client_id.as_str();
    if claims["iss"] != client || claims["sub"] != client {
        return bad(
            700021,
            "Client assertion iss and sub must be the client id.",
        );
    }
    let now = super::store::now_secs();
    match (claims["exp"].as_i64(), claims["nbf"].as_i64()) {
        (Some(exp), _) if exp <= now => bad(
            700024,
            "Client assertion is not within its valid time range (expired).",
        ),
        (_, Some(nbf)) if nbf > now + 300 => bad(700024, "Client assertion is not yet valid."),
        (None, _) => bad(50027, "Client assertion has no exp claim."),
        _ => Ok(()),
    }
}

/// `GET /v1.0/me`: the signed-in user (delegated tokens only, as in Graph).
pub fn handle_me(shared: &EmulatorState, req: &Request) -> Reply {
    let err = |status: u16, code: &str, msg: &str| {
        Reply::Respond(Response::json(
            status,
            &json!({"error": {"code": code, "message": msg}}),
        ))
    };
    let Some(t) = bearer(req).filter(|t| shared.token_valid(t)) else {
        return err(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    };
    if let Some(r) = super::read_faults::graph_refusal(shared) {
        return Reply::Respond(r);
    }
    if lock(&shared.signin).app_tokens.contains(t) {
        return err(
            400,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        );
    }
    Reply::Respond(Response::json(
        200,
        &json!({
            "id": "0e3a0000-0000-4000-8000-00000000e001",
            "displayName": "Emulated Uploader",
            "userPrincipalName": shared.info.username,
            "mail": shared.info.username,
        }),
    ))
}

/// `/_admin/device_code[/approve]`, `/_admin/revoke_refresh_tokens`, `/_admin/certificates`,
/// `/_admin/signin`; `None` for other admin paths.
pub fn handle_admin(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
) -> Option<Reply> {
    let rest = req.path.strip_prefix("/_admin/")?;
    let ok = |v: Value| Some(Reply::Respond(Response::json(200, &v)));
    let bad = |m: String| {
        Some(Reply::Respond(Response::json(
            400,
            &json!({"error": {"code": "invalidRequest", "message": m}}),
        )))
    };
    match (req.method.as_str(), rest) {
        ("POST", "device_code") => {
            let raw = body.read_all(64 * 1024).unwrap_or_default();
            let mut st = lock(&shared.signin);
            let mut v = serde_json::to_value(st.knobs).unwrap_or_default();
            let patch: Value = match serde_json::from_slice(&raw) {
                Ok(p) => p,
                Err(e) => return bad(e.to_string()),
            };
            if let (Some(o), Some(p)) = (v.as_object_mut(), patch.as_object()) {
                for (k, val) in p {
                    o.insert(k.clone(), val.clone());
                }
            }
            match serde_json::from_value::<DeviceKnobs>(v) {
                Ok(k) => st.knobs = k,
                Err(e) => return bad(e.to_string()),
            }
            ok(serde_json::to_value(st.knobs).unwrap_or_default())
        }
        ("POST", "device_code/approve") => {
            let mut st = lock(&shared.signin);
            let n = st.devices.values_mut().map(|g| g.approved = true).count();
            ok(json!({ "approved": n }))
        }
        ("POST", "revoke_refresh_tokens") => {
            let mut st = lock(&shared.signin);
            let n = st.refresh.len() as u64;
            st.refresh.clear();
            st.refresh_tokens_revoked += n;
            ok(json!({ "revoked": n }))
        }
        ("POST", "certificates") => {
            let raw = body.read_all(256 * 1024).unwrap_or_default();
            match lock(&shared.signin).register_pem(&raw) {
                Ok(n) => ok(json!({ "registered": n })),
                Err(e) => bad(e),
            }
        }
        ("GET", "signin") => {
            let st = lock(&shared.signin);
            ok(json!({
                "knobs": st.knobs,
                "live_refresh_tokens": st.refresh.len(),
                "refresh_tokens_issued": st.refresh_tokens_issued,
                "refresh_tokens_revoked": st.refresh_tokens_revoked,
                "device_polls": st.device_polls,
                "pending_device_codes": st.devices.len(),
                "certificates": st.certs.len(),
            }))
        }
        _ => None,
    }
}

/// The Graph resource the emulator issues tokens for, whatever its own address: clients must
/// ask for the real Graph scope, as they would of Azure AD.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// Scope rules of the v2.0 endpoint: client credentials take exactly `{resource}/.default`;
/// user grants take `.default` or Graph permissions (`{resource}/Files.ReadWrite.All`, …),
/// plus the OpenID scopes (`offline_access`, `openid`, `profile`, `email`).
fn check_scope(grant: &str, scope: &str) -> Result<(), Response> {
    let default = format!("{GRAPH_RESOURCE}/.default");
    let invalid = |what: &str| {
        aad_error(
            400,
            "invalid_scope",
            70011,
            &format!("The provided value for the input parameter 'scope' is not valid. {what}"),
        )
    };
    if grant == "client_credentials" {
        return if scope.trim() == default {
            Ok(())
        } else {
            Err(invalid(&format!(
                "The scope for client credentials must be {default}."
            )))
        };
    }
    let openid = ["offline_access", "openid", "profile", "email"];
    let graph = scope
        .split_whitespace()
        .filter(|s| !openid.contains(s))
        .collect::<Vec<_>>();
    let ok = !graph.is_empty()
        && graph.iter().all(|s| {
            s.strip_prefix(GRAPH_RESOURCE)
                .and_then(|p| p.strip_prefix('/'))
                .is_some_and(|p| !p.is_empty() && !p.contains('/'))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid("Request Microsoft Graph permissions."))
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(req: &Request) -> Option<&str> {
    let v = req.header("authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}
