//! The token endpoint's grants: `password` (ROPC), `client_credentials` (secret or
//! certificate assertion), `device_code` and `refresh_token` (rotated on use), with the scope
//! rules of the v2.0 endpoint; a granted request gets an access token (and a refresh token
//! for the delegated grants).

use std::time::Duration;

use serde_json::{json, Value};

use super::assertion::check_assertion;
use super::device::poll_device;
use super::policy::refused_by_policy;
use super::{aad_error, check_client, require, Get};
use crate::emulator::http::{Request, Response};
use crate::emulator::state::{lock, EmulatorState};

/// `POST …/token`: every grant.
pub(super) fn token(
    shared: &EmulatorState,
    req: &Request,
    get: &Get<'_>,
) -> Result<Response, Response> {
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
        let refresh = crate::emulator::store::random_string(120, crate::emulator::store::ALNUM);
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

/// The Graph resource the emulator issues tokens for, whatever its own address: clients must
/// ask for the real Graph scope, as they would of Azure AD.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// Scope rules of the v2.0 endpoint: client credentials take exactly `{resource}/.default`;
/// user grants take `.default` or Graph permissions (`{resource}/Files.ReadWrite.All`, …),
/// plus the OpenID scopes (`offline_access`, `openid`, `profile`, `email`).
pub(super) fn check_scope(grant: &str, scope: &str) -> Result<(), Response> {
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
