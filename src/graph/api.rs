//! Authorized Graph calls: adds `Authorization: Bearer` to requests for the Graph API (and
//! only those), and on a 401 drops the token, fetches a new one and retries exactly once.
//!
//! A second 401 (to a token issued a moment ago) is a policy refusal, not an expiry: the
//! token provider blocks sign-in and says what to do (field-reference entry 24, `policy`).
//!
//! Requests are described by a closure that rebuilds the request, because a sent request
//! cannot be replayed. Upload URLs and download URLs never go through here: they carry their
//! own credentials and must not receive the bearer token (reference §2). As a guard, a URL
//! whose origin differs from the configured Graph origin (e.g. a foreign `@odata.nextLink`)
//! is refused instead of being sent the token.

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::auth::TokenProvider;
use super::http::{error_from_response, read_json, Http};
use crate::remote::RemoteError;

pub struct GraphApi {
    pub http: Http,
    pub auth: TokenProvider,
    /// `graph_url` without trailing slash, e.g. `https://graph.microsoft.com/v1.0`.
    pub base: String,
    /// `scheme://host[:port]` of `base`.
    origin: String,
}

/// `scheme://host[:port]` of a URL, lower-cased; `None` if not an absolute http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    u.has_host().then(|| u.origin().ascii_serialization())
}

/// The loggable form of a Graph URL: without the query string.
fn log_form(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

impl GraphApi {
    pub fn new(http: Http, auth: TokenProvider, graph_url: &str) -> Result<GraphApi, String> {
        let base = graph_url.trim_end_matches('/').to_string();
        let origin = origin_of(&base).ok_or_else(|| format!("graph_url is not a URL: {base}"))?;
        Ok(GraphApi {
            http,
            auth,
            base,
            origin,
        })
    }

    /// Send an authorized request; returns any response that is not a 401 (the caller
    /// decides which statuses are success). A second 401 becomes `Unauthorized`.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        context: &str,
    ) -> Result<Response, RemoteError> {
        if origin_of(url).as_deref() != Some(self.origin.as_str()) {
            return Err(RemoteError::Protocol(format!(
                "{context}: refusing to send credentials to a URL outside {}",
                self.origin
            )));
        }
        let mut retried = false;
        loop {
            let token = self.auth.token()?;
            let req = build(
                self.http
                    .request(method.clone(), url)
                    .bearer_auth(token.expose()),
            );
            let resp = self.http.send(req, log_form(url))?;
            if resp.status().as_u16() != 401 {
                self.auth.graph_accepted();
                return Ok(resp);
            }
            self.auth.invalidate(&token);
            if retried {
                // A token issued a moment ago refused too: a policy (entry 24), not expiry.
                return Err(self.auth.graph_refused(&error_from_response(resp, context)));
            }
            log::debug!("{context}: 401 from Graph, refreshing the access token and retrying once");
            retried = true;
        }
    }

    /// Send and require a 2xx status.
    pub fn send_ok(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        context: &str,
    ) -> Result<Response, RemoteError> {
        let resp = self.send(method, url, build, context)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from_response(resp, context))
        }
    }

    /// GET and parse JSON.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        context: &str,
    ) -> Result<T, RemoteError> {
        let resp = self.send_ok(Method::GET, url, |r| r, context)?;
        read_json(resp, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://Graph.Microsoft.com/v1.0/drives").as_deref(),
            Some("https://graph.microsoft.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:9000/v1.0").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(origin_of("/relative"), None);
        assert_eq!(
            log_form("https://g/v1.0/x?$skiptoken=1"),
            "https://g/v1.0/x"
        );
    }
}
