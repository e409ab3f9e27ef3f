//! The HTTP transport: one blocking reqwest `Client` shared by token, Graph and upload-URL
//! requests, request logging, and turning failed responses into [`RemoteError`]s.
//!
//! Invariants: the client has no default headers (Authorization is added per Graph request by
//! `api.rs`, never here) and follows no redirects, so a bearer token can never be replayed to
//! another URL; the one redirect we expect (download `…/content` → 302) is followed by hand,
//! without the token. TLS trusts the system certificate store (rustls-native-certs, which
//! honours `SSL_CERT_FILE`/`SSL_CERT_DIR`), the bundled web roots and `ca_file`; proxies come
//! from `HTTPS_PROXY`/`NO_PROXY` (reqwest's default). Logs show method, a caller-chosen loggable URL (upload URLs redacted),
//! status and duration — never headers or bodies.
//!
//! Rate-limit headers: every answer's `RateLimit-Limit` / `RateLimit-Remaining` /
//! `RateLimit-Reset` (SharePoint sends them once 80 % of a budget is used) are recorded in the
//! shared [`RateObserver`]: the latest answer wins, and an answer without them clears the
//! record (the budget is no longer nearly spent). The upload limiter reads it through
//! `Remote::rate_limit` to slow down before the budget is gone (`upload/limiter.rs`).

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::RETRY_AFTER;
use reqwest::redirect;
use serde::de::DeserializeOwned;

use super::error::{classify, parse_error_body, parse_retry_after, scrub, transport_error};
use crate::remote::{RateLimitHint, RemoteError};

/// Error bodies are read up to this size.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Timeouts of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole-request timeout of metadata calls.
    pub request: Duration,
    /// Whole-request timeout of data transfers (fragment PUTs, downloads, simple uploads).
    pub transfer: Duration,
    /// TCP + TLS connect timeout.
    pub connect: Duration,
}

#[derive(Clone)]
pub struct Http {
    client: Client,
    pub timeouts: Timeouts,
    /// The latest answer's `RateLimit-*` headers (shared by every clone).
    pub rate: Arc<RateObserver>,
}

/// The `RateLimit-*` headers of the latest answer (module documentation).
#[derive(Debug, Default)]
pub struct RateObserver {
    latest: Mutex<Option<RateLimitHint>>,
    /// The latest 429/503 + Retry-After: until when the service asked us to send nothing.
    /// Recorded the moment the status line is in, before the body is read or the error
    /// classified, so every other thread can see it before its next request.
    retry_until: Mutex<Option<Instant>>,
}

impl RateObserver {
    /// Record an answer's headers (`None`: it carried none).
    pub fn record(&self, hint: Option<RateLimitHint>) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = hint;
    }

    /// What the latest answer said.
    pub fn latest(&self) -> Option<RateLimitHint> {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 429/503 asked for `d` of silence from now (never shortens a later end).
    pub fn record_retry_after(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut r = self.retry_until.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none_or(|cur| cur < until) {
            *r = Some(until);
        }
    }

    /// Until when the latest Retry-After asks for silence, if that is still ahead.
    pub fn retry_until(&self) -> Option<Instant> {
        let r = *self.retry_until.lock().unwrap_or_else(|e| e.into_inner());
        r.filter(|t| *t > Instant::now())
    }
}

/// The `RateLimit-*` headers of an answer, if all three are present and numeric. Pure.
pub fn parse_rate_limit(headers: &reqwest::header::HeaderMap) -> Option<RateLimitHint> {
    let num = |name: &str| -> Option<u64> {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .split([',', ';'])
            .next()?
            .trim()
            .parse()
            .ok()
    };
    Some(RateLimitHint {
        limit: num("ratelimit-limit")?,
        remaining: num("ratelimit-remaining")?,
        reset: Duration::from_secs(num("ratelimit-reset")?),
    })
}

impl Http {
    /// The client trusts the system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), the
    /// bundled web roots, and the certificates in `ca_file` if given.
    pub fn new(timeouts: Timeouts, ca_file: Option<&Path>) -> Result<Http, RemoteError> {
        let mut builder = Client::builder();
        if let Some(path) = ca_file {
            for cert in read_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .tls_built_in_native_certs(true)
            .tls_built_in_webpki_certs(true)
            .timeout(timeouts.request)
            .connect_timeout(timeouts.connect)
            .redirect(redirect::Policy::none())
            .user_agent(concat!(
                "ISV|ShareUplift|ShareUplift/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(transport_error)?;
        Ok(Http {
            client,
            timeouts,
            rate: Arc::default(),
        })
    }

    pub fn request(&self, method: reqwest::Method, url: &str) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Send and log. `log_url` is what may appear in logs for this request.
    pub fn send(&self, req: RequestBuilder, log_url: &str) -> Result<Response, RemoteError> {
        let started = Instant::now();
        let (client, built) = req.build_split();
        let request = built.map_err(transport_error)?;
        let method = request.method().clone();
        let result = client.execute(request);
        let ms = started.elapsed().as_millis();
        match result {
            Ok(resp) => {
                self.rate.record(parse_rate_limit(resp.headers()));
                if matches!(resp.status().as_u16(), 429 | 503) {
                    let ra = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    if let Some(d) = ra {
                        self.rate.record_retry_after(d);
                    }
                }
                log::debug!(
                    "{method} {log_url} -> {} in {ms} ms",
                    resp.status().as_u16()
                );
                Ok(resp)
            }
            Err(e) => {
                let err = transport_error(e);
                log::debug!("{method} {log_url} -> failed in {ms} ms: {err}");
                Err(err)
            }
        }
    }
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks).
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, RemoteError> {
    let bad = |why: String| RemoteError::Protocol(format!("ca_file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// Read a failed response's body and headers into a classified error.
pub fn error_from_response(resp: Response, context: &str) -> RemoteError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = read_body_limited(resp, MAX_ERROR_BODY);
    classify(
        status,
        retry_after,
        parse_error_body(&body).as_ref(),
        context,
    )
}

/// Up to `limit` bytes of the body as text; empty on read errors (we are already failing).
pub fn read_body_limited(resp: Response, limit: u64) -> String {
    let mut buf = Vec::new();
    let _ = resp.take(limit).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Parse a success body as JSON.
pub fn read_json<T: DeserializeOwned>(resp: Response, context: &str) -> Result<T, RemoteError> {
    let bytes = resp.bytes().map_err(transport_error)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        RemoteError::Protocol(format!(
            "{context}: unexpected JSON: {}",
            scrub(&e.to_string())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn rate_limit_headers_parse_only_when_complete() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_rate_limit(&h), None);
        h.insert("RateLimit-Limit", HeaderValue::from_static("20"));
        h.insert("RateLimit-Remaining", HeaderValue::from_static("3"));
        assert_eq!(parse_rate_limit(&h), None, "no Reset");
        h.insert("RateLimit-Reset", HeaderValue::from_static("2"));
        assert_eq!(
            parse_rate_limit(&h),
            Some(RateLimitHint {
                limit: 20,
                remaining: 3,
                reset: Duration::from_secs(2)
            })
        );
        h.insert("RateLimit-Remaining", HeaderValue::from_static("x"));
        assert_eq!(parse_rate_limit(&h), None);
        let obs = RateObserver::default();
        obs.record(Some(RateLimitHint {
            limit: 1,
            remaining: 0,
            reset: Duration::ZERO,
        }));
        assert!(obs.latest().is_some());
        obs.record(None);
        assert_eq!(obs.latest(), None);
        assert_eq!(obs.retry_until(), None);
        obs.record_retry_after(Duration::from_secs(30));
        obs.record_retry_after(Duration::from_secs(1)); // shorter: ignored
        let left = obs.retry_until().unwrap() - Instant::now();
        assert!(left > Duration::from_secs(25), "{left:?}");
    }
}
