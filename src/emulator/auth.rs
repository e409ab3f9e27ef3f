//! The emulated Microsoft identity platform: `POST /auth/{tenant}/oauth2/v2.0/token` with
//! the `password` (ROPC) and `client_credentials` grants, and bearer-token checks for Graph.
//!
//! Answers mirror Azure AD v2.0 (reference §8): 400 `invalid_grant` / AADSTS50126 for a wrong
//! user or password, 401 `invalid_client` / AADSTS7000215 for a wrong client secret, 400
//! `unauthorized_client` / AADSTS700016 for an unknown client id, 400 `invalid_request` /
//! AADSTS90014 for a missing field, 400 `invalid_scope` / AADSTS70011 for a scope that is not
//! Microsoft Graph's (the emulator answers for `https://graph.microsoft.com` whatever its own
//! address). Any tenant segment is accepted and recorded in the stats.
//! Tokens are random opaque strings valid for `access_token_ttl_secs` (fault setting).

use std::time::Duration;

use serde_json::json;

use super::faults::{Fault, Trigger};
use super::http::{BodyReader, Reply, Request, Response};
use super::state::EmulatorState;

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

/// `POST /auth/{tenant}/oauth2/v2.0/token`.
pub fn handle_token(shared: &EmulatorState, req: &Request, body: &mut BodyReader<'_>) -> Reply {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let tenant = match segs.as_slice() {
        ["auth", tenant, "oauth2", "v2.0", "token"] => *tenant,
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
    let fail = |r: Response| {
        shared.stat(|s| s.auth_failures += 1);
        Reply::Respond(r)
    };
    let info = &shared.info;
    let Some(grant) = get("grant_type") else {
        return fail(aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ));
    };
    for field in ["client_id", "scope"] {
        if get(field).is_none_or(|v| v.is_empty()) {
            return fail(aad_error(
                400,
                "invalid_request",
                90014,
                &format!("The request body must contain the following parameter: '{field}'."),
            ));
        }
    }
    if let Err(r) = check_scope(grant, get("scope").unwrap_or_default()) {
        return fail(r);
    }
    if get("client_id") != Some(info.client_id.as_str()) {
        return fail(aad_error(
            400,
            "unauthorized_client",
            700016,
            "Application with the given identifier was not found in the directory.",
        ));
    }
    match grant {
        "password" => {
            let user_ok = get("username").is_some_and(|u| u.eq_ignore_ascii_case(&info.username));
            if !user_ok || get("password") != Some(info.password.as_str()) {
                return fail(aad_error(
                    400,
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                ));
            }
        }
        "client_credentials" => {
            if get("client_secret") != Some(info.client_secret.as_str()) {
                return fail(aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                ));
            }
        }
        _ => {
            return fail(aad_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            ))
        }
    }
    let ttl = shared.faults().access_token_ttl_secs;
    let token = shared.issue_token(Duration::from_secs(ttl));
    shared.stat(|s| s.tokens_issued += 1);
    Reply::Respond(Response::json(
        200,
        &json!({
            "token_type": "Bearer",
            "scope": get("scope").unwrap_or_default(),
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": token,
        }),
    ))
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
