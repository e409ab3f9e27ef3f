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
//!
//! Parts: `mod.rs` the endpoint (routing, injected faults, the form), the sign-in state, the
//! bearer check and `/me`; `token.rs` the grants and scope rules; `device.rs` the device-code
//! flow; `assertion.rs` certificate assertions; `policy.rs` Conditional Access refusals;
//! `admin.rs` the sign-in admin routes.

mod admin;
mod assertion;
mod device;
mod policy;
mod token;

pub use admin::handle_admin;
pub use device::DeviceKnobs;
pub use policy::policy_refusal;
pub use token::{DEVICE_CODE_GRANT, GRAPH_RESOURCE, JWT_BEARER};

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::faults::{Fault, Trigger};
use super::http::{BodyReader, Reply, Request, Response};
use super::state::{lock, EmulatorState};
use device::{device_code, DeviceGrant};
use token::token;

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

/// The bearer token of a request, if it carries one.
pub fn bearer(req: &Request) -> Option<&str> {
    let v = req.header("authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}
