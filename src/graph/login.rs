//! `shareuplift login` / `logout`: the device-code flow (reference §8) that stores a refresh
//! token in the token cache (`cache`), and its removal.
//!
//! Flow: `POST {authority}/{tenant}/oauth2/v2.0/devicecode` (client id + delegated scope);
//! the user code and verification URL are printed; then the token endpoint is polled with the
//! device-code grant every `interval` seconds: `authorization_pending` keeps waiting,
//! `slow_down` adds 5 s to the interval (RFC 8628 §3.5), `expired_token` (or the code's
//! `expires_in` passing) ends with a clear error, a Conditional Access refusal with the line
//! saying what to do (`policy`), anything else with the server's words.
//! The device code itself is a secret (whoever holds it gets the tokens): it is never printed
//! or logged; the user code is meant for the user and is printed.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::auth::{post_token_form, token_cache, OwnedKey, TokenFailure, TokenProvider};
use super::paths::encode_segment;
use super::{AuthMethod, GraphConfig, Tuning};
use crate::redact::Secret;

/// RFC 8628: the default interval, and what `slow_down` adds.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The device-code grant type.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What to do after a refused poll with error `code`: wait this long and poll again, or stop.
pub fn after_refusal(code: &str, text: &str, interval: Duration) -> Result<Duration, String> {
    match code {
        "authorization_pending" => Ok(interval),
        "slow_down" => Ok(interval + SLOW_DOWN_STEP),
        "expired_token" | "code_expired" => Err(
            "the sign-in code expired before sign-in finished: run shareuplift login again".into(),
        ),
        "authorization_declined" | "access_denied" => {
            Err("sign-in was declined in the browser".into())
        }
        _ => Err(
            // Conditional Access (entry 24): the line that says what to do.
            match super::policy::aadsts_code(text)
                .and_then(|c| super::policy::describe(c, super::policy::Flow::DeviceCode))
            {
                Some(line) => line,
                None => format!("sign-in failed: {text}"),
            },
        ),
    }
}

fn secs(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Run the device-code flow for `cfg` and store the refresh token; returns the cache path.
pub fn login(cfg: &GraphConfig, out: &mut dyn Write) -> Result<String, String> {
    if cfg.auth != AuthMethod::DeviceCode {
        return Err(format!(
            "login is for auth = \"device_code\"; this configuration signs in with auth = \"{}\"",
            cfg.auth
        ));
    }
    let http = super::http::Http::new(Tuning::default().timeouts(cfg), cfg.ca_file.as_deref())
        .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
    let provider = TokenProvider::new(cfg, http)?;
    let (http, token_url, scope) = provider.endpoint();
    let key = OwnedKey::of(cfg);
    let cache = token_cache(cfg)?;
    let device_url = format!(
        "{}/{}/oauth2/v2.0/devicecode",
        key.authority_url,
        encode_segment(&key.tenant)
    );
    let mut form = vec![("client_id", key.client_id.as_str()), ("scope", scope)];
    if let Some(u) = key.username.as_deref() {
        form.push(("login_hint", u));
    }
    let v = post_token_form(http, &device_url, &form, &[]).map_err(|e| match e {
        TokenFailure::Refused(t) => format!("device-code sign-in refused: {t} — check client_id, tenant and that the app registration allows public client flows"),
        TokenFailure::Other(e) => format!("device-code endpoint {device_url}: {e}"),
    })?;
    let device_code = Secret::new(
        v.get("device_code")
            .and_then(Value::as_str)
            .ok_or("device-code endpoint answered without a device_code")?,
    );
    let user_code = v.get("user_code").and_then(Value::as_str).unwrap_or("");
    let uri = v
        .get("verification_uri")
        .or_else(|| v.get("verification_url"))
        .and_then(Value::as_str)
        .unwrap_or("https://microsoft.com/devicelogin");
    let expires = Duration::from_secs(secs(&v, "expires_in").unwrap_or(900));
    let mut interval = secs(&v, "interval")
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_INTERVAL);
    let _ = writeln!(
        out,
        "To sign in, open {uri} in a browser and enter the code {user_code}"
    );
    let _ = out.flush();
    let deadline = Instant::now() + expires;
    loop {
        std::thread::sleep(interval);
        if Instant::now() >= deadline {
            return Err(after_refusal("expired_token", "", interval).unwrap_err());
        }
        let poll = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", key.client_id.as_str()),
            ("device_code", device_code.expose()),
        ];
        match post_token_form(http, token_url, &poll, &[device_code.expose()]) {
            Ok(v) => {
                let rt = v
                    .get("refresh_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or(
                        "signed in, but no refresh token came back: the scope needs offline_access",
                    )?;
                cache.save(&key.borrow(), &Secret::new(rt))?;
                let path = cache.path().display().to_string();
                let _ = writeln!(out, "Signed in. Token cache: {path}");
                return Ok(path);
            }
            Err(f @ TokenFailure::Refused(_)) => {
                let code = f.code().unwrap_or("").trim().to_string();
                interval = after_refusal(&code, &f.text(), interval)?;
                log::debug!(
                    "device code: {code}; polling again in {}s",
                    interval.as_secs()
                );
            }
            Err(TokenFailure::Other(e)) => return Err(format!("token endpoint: {e}")),
        }
    }
}

/// Remove the stored sign-in of `cfg`; returns a line for the user.
pub fn logout(cfg: &GraphConfig) -> Result<String, String> {
    let cache = token_cache(cfg)?;
    // The folder the last start-up found goes too: without a sign-in it serves nothing.
    cache
        .folder_cache(&cfg.graph_url, &cfg.site_url, &cfg.folder_url)
        .remove()?;
    Ok(if cache.remove()? {
        format!("Signed out: removed {}", cache.path().display())
    } else {
        format!(
            "No saved sign-in ({} does not exist)",
            cache.path().display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_refusals() {
        let i = Duration::from_secs(5);
        assert_eq!(after_refusal("authorization_pending", "", i), Ok(i));
        assert_eq!(
            after_refusal("slow_down", "", i),
            Ok(Duration::from_secs(10))
        );
        assert!(after_refusal("expired_token", "", i)
            .unwrap_err()
            .contains("expired"));
        assert!(after_refusal("authorization_declined", "", i)
            .unwrap_err()
            .contains("declined"));
        let e = after_refusal("invalid_client", "invalid_client: AADSTS7000218", i).unwrap_err();
        assert!(e.contains("AADSTS7000218"), "{e}");
        let e = after_refusal(
            "invalid_grant",
            "invalid_grant: AADSTS53003: Access has been blocked",
            i,
        )
        .unwrap_err();
        assert!(
            e.starts_with("sign-in blocked by a Conditional Access policy"),
            "{e}"
        );
    }
}
