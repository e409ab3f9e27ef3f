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
//! Timeouts (field-reference entry 20: requests that connect and then stall): every request
//! has a whole-request bound (`request` for metadata, `transfer` for data) *and* an idle
//! bound. A metadata read (GET, and the token endpoint) must start answering within `answer`
//! (a third of `idle`), writes (POST, PATCH, DELETE, PUT) within `idle`, because a retry after
//! a lost answer to a write costs more; bodies are read with reqwest's per-read timeout (an
//! idle timeout: it starts afresh at every read) plus the whole-request deadline
//! (`idle::BoundedReader`). Fragment PUTs go through [`Http::put_watched`] (`transfer.rs`):
//! idle while sending, the idle timeout again for an answer, and for the file's last
//! fragment (its commit) twice that plus a minute per GiB ([`Timeouts::commit_wait`]).
//!
//! Rate-limit headers: every answer's `RateLimit-Limit` / `RateLimit-Remaining` /
//! `RateLimit-Reset` (SharePoint sends them once 80 % of a budget is used) are recorded in the
//! shared [`crate::remote::hints::RateHints`]: the latest answer wins, and an answer without them clears the
//! record (the budget is no longer nearly spent). The upload limiter reads it through
//! `Remote::rate_limit` to slow down before the budget is gone (`upload/limiter.rs`).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
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
    /// Longest a body (download, upload, answer) may move no byte.
    pub idle: Duration,
    /// Longest a metadata read (GET, token) may wait for the first byte of its answer.
    pub answer: Duration,
}

impl Timeouts {
    /// Derive every bound from the metadata `request` timeout, the `transfer` timeout, the
    /// `connect` timeout and the `idle` timeout: `answer` is a third of `idle` (at least 2 s),
    /// nothing waits longer than its whole-request bound, connecting not longer than `idle`.
    pub fn new(request: Duration, transfer: Duration, connect: Duration, idle: Duration) -> Self {
        let idle = idle.max(Duration::from_secs(1));
        Timeouts {
            request,
            transfer: transfer.max(request),
            connect: connect.min(idle),
            idle: idle.min(transfer.max(request)),
            answer: (idle / 3)
                .max(Duration::from_secs(2))
                .min(idle)
                .min(request),
        }
    }

    /// How long a final fragment's answer may take after its last byte: twice the idle
    /// timeout plus a minute per GiB of the file (SharePoint assembles the file before it
    /// answers; entry 12 — a 40 s commit of a small file is reported), within the transfer
    /// timeout.
    pub fn commit_wait(&self, file_size: u64) -> Duration {
        let per_gib = Duration::from_secs(60).mul_f64(file_size as f64 / (1u64 << 30) as f64);
        (self.idle * 2 + per_gib).min(self.transfer)
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client,
    pub timeouts: Timeouts,
    /// The latest answer's `RateLimit-*` headers (shared by every clone).
    pub rate: Arc<crate::remote::hints::RateHints>,
    /// Extra trusted roots (`ca_file`), for the transfer client.
    certs: Arc<Vec<reqwest::Certificate>>,
    /// The watched-PUT client and its runtime thread, started on first use.
    transfers: Arc<std::sync::OnceLock<Result<super::transfer::Transfers, RemoteError>>>,
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
        let certs = match ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let client =
            reqwest::blocking::ClientBuilder::from(Self::client_builder(&timeouts, &certs))
                .timeout(timeouts.answer)
                .build()
                .map_err(transport_error)?;
        Ok(Http {
            client,
            timeouts,
            rate: Arc::default(),
            certs: Arc::new(certs),
            transfers: Arc::default(),
        })
    }

    /// The configuration both clients share: roots, `ca_file`, connect timeout, no redirects,
    /// user agent (proxies from the environment, reqwest's default).
    fn client_builder(
        timeouts: &Timeouts,
        certs: &[reqwest::Certificate],
    ) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        for cert in certs {
            builder = builder.add_root_certificate(cert.clone());
        }
        builder
            .tls_built_in_native_certs(true)
            .tls_built_in_webpki_certs(true)
            .connect_timeout(timeouts.connect)
            .redirect(redirect::Policy::none())
            .user_agent(concat!(
                "ISV|ShareUplift|ShareUplift/",
                env!("CARGO_PKG_VERSION")
            ))
    }

    pub fn request(&self, method: reqwest::Method, url: &str) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Send and log. `log_url` is what may appear in logs for this request. A request without
    /// its own timeout gets the answer timeout (reads) or the idle timeout (writes).
    pub fn send(&self, req: RequestBuilder, log_url: &str) -> Result<Response, RemoteError> {
        let started = Instant::now();
        let (client, built) = req.build_split();
        let mut request = built.map_err(transport_error)?;
        let method = request.method().clone();
        if request.timeout().is_none() {
            let t = match method {
                reqwest::Method::GET | reqwest::Method::HEAD => self.timeouts.answer,
                _ => self.timeouts.idle,
            };
            *request.timeout_mut() = Some(t);
        }
        let result = client.execute(request);
        let ms = started.elapsed().as_millis();
        match result {
            Ok(resp) => {
                self.observe(resp.status().as_u16(), resp.headers());
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

    /// Record an answer's rate-limit headers and Retry-After.
    fn observe(&self, status: u16, headers: &reqwest::header::HeaderMap) {
        self.rate.record(parse_rate_limit(headers));
        if matches!(status, 429 | 503) {
            let ra = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            if let Some(d) = ra {
                self.rate.record_retry_after(d);
            }
        }
    }

    /// PUT `body` with an idle timeout while sending and `answer_wait` for the answer after
    /// the last byte (`transfer.rs`), within the transfer timeout. Logged like [`Http::send`].
    pub fn put_watched(
        &self,
        url: &str,
        log_url: &str,
        headers: reqwest::header::HeaderMap,
        body: &crate::remote::FragmentBody,
        answer_wait: Duration,
    ) -> Result<super::transfer::Answer, RemoteError> {
        let transfers = self.transfers.get_or_init(|| {
            super::transfer::Transfers::start(Self::client_builder(&self.timeouts, &self.certs))
        });
        let transfers = transfers.as_ref().map_err(Clone::clone)?;
        let started = Instant::now();
        let t = &self.timeouts;
        let result = transfers.put(url, headers, body, t.idle, answer_wait, t.transfer);
        let ms = started.elapsed().as_millis();
        match &result {
            Ok(a) => {
                self.observe(a.status, &a.headers);
                log::debug!("PUT {log_url} -> {} in {ms} ms", a.status);
            }
            Err(e) => log::debug!("PUT {log_url} -> failed in {ms} ms: {e}"),
        }
        result
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
    let headers = resp.headers().clone();
    let body = read_body_limited(resp, MAX_ERROR_BODY);
    error_from_parts(status, &headers, &body, context)
}

/// A failed answer's status, headers and body text as a classified error.
pub fn error_from_parts(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
    context: &str,
) -> RemoteError {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    classify(
        status,
        retry_after,
        parse_error_body(body).as_ref(),
        context,
    )
}

/// Up to `limit` bytes of the body as text; empty on read errors (we are already failing).
/// A stalled error body costs at most the read timeout once.
pub fn read_body_limited(resp: Response, limit: u64) -> String {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let _ = super::idle::BoundedReader::new(resp, deadline, limit).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Most bytes of a JSON answer (a listing page of 1,000 items is about 1 MB).
const MAX_JSON: u64 = 64 * 1024 * 1024;

/// Read a whole answer body: idle timeout per read underneath, `whole` for all of it.
pub fn read_bytes(resp: Response, whole: Duration, context: &str) -> Result<Vec<u8>, RemoteError> {
    super::idle::read_all(resp, Instant::now() + whole, MAX_JSON, context)
}

/// Parse a success body as JSON (read within the metadata request timeout).
pub fn read_json<T: DeserializeOwned>(resp: Response, context: &str) -> Result<T, RemoteError> {
    read_json_within(resp, Duration::from_secs(60), context)
}

/// [`read_json`] with an explicit whole-body bound.
pub fn read_json_within<T: DeserializeOwned>(
    resp: Response,
    whole: Duration,
    context: &str,
) -> Result<T, RemoteError> {
    let bytes = read_bytes(resp, whole, context)?;
    parse_json(&bytes, context)
}

/// Parse JSON bytes of an answer.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], context: &str) -> Result<T, RemoteError> {
    serde_json::from_slice(bytes).map_err(|e| {
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
    fn timeouts_derive_from_idle() {
        let s = Duration::from_secs;
        let t = Timeouts::new(s(60), s(600), s(15), s(30));
        assert_eq!((t.idle, t.answer, t.connect), (s(30), s(10), s(15)));
        let small = t.commit_wait(1 << 20);
        assert!(small > s(60) && small < s(61), "{small:?}");
        assert_eq!(
            t.commit_wait(10 << 30),
            s(600),
            "within the transfer timeout"
        );
        let short = Timeouts::new(s(60), s(600), s(15), s(6));
        assert_eq!((short.answer, short.connect), (s(2), s(6)));
    }

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
        let obs = crate::remote::hints::RateHints::default();
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
