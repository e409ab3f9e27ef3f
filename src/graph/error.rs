//! Graph error responses: parsing the JSON error body, reading `Retry-After`, and classifying
//! an HTTP status (plus error codes) into a [`RemoteError`] kind.
//!
//! Callers branch on the kind, never on message text (reference §7). Throttling is 429, 503
//! (with or without `Retry-After`: field reference entries 7 and 8) or 509, or a throttling
//! code on any status; `Retry-After` is read as delay-seconds or an HTTP date. Body keys are matched
//! case-insensitively and nested `innerError`/`innererror` codes are walked, because real
//! servers spell them both ways. Every message built here passes through [`scrub`], which
//! replaces any URL by its scheme and host: a server could echo a request URL back, and for
//! upload URLs that would leak a capability.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::redact::redact_url;
use crate::remote::RemoteError;

/// Longest server message kept in an error (characters).
const MAX_MESSAGE_CHARS: usize = 300;

/// Error codes that mean "throttled" whatever the status (SharePoint also uses 509).
const THROTTLE_CODES: &[&str] = &["activityLimitReached", "throttledRequest"];
const QUOTA_CODES: &[&str] = &["quotaLimitReached", "insufficientStorage"];
/// A 409 for a name SharePoint's collation folds onto another item's (field reference 15).
const SIMILAR_NAME_CODES: &[&str] = &["similarRelationshipNameAlreadyExists"];
/// The code of a lock at any depth of the body (field reference entry 23).
const LOCKED_CODE: &str = "resourceLocked";
/// What SharePoint says when a library's column validation or required columns refuse a
/// file (entry 22, msgraph-sdk-dotnet#2363). Graph gives it no specific code
/// (`generalException`), so this message — or SharePoint REST's exception name in a code —
/// is the one thing matched on text here.
const VALIDATION_MESSAGE: &str = "list data validation failed";
const VALIDATION_CODE: &str = "SPListDataValidationException";

/// The parsed `{"error":{...}}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphError {
    /// Codes from the outermost (`error.code`) to the innermost `innerError.code`.
    pub codes: Vec<String>,
    /// `error.message`, scrubbed and shortened.
    pub message: String,
}

impl GraphError {
    /// The most specific code (innermost), e.g. `fragmentOverlap` under `invalidRange`.
    pub fn specific_code(&self) -> &str {
        self.codes.last().map(String::as_str).unwrap_or("")
    }

    pub fn has_code(&self, wanted: &str) -> bool {
        self.codes.iter().any(|c| c.eq_ignore_ascii_case(wanted))
    }

    /// `outer/inner: message`, for human-readable errors.
    fn describe(&self) -> String {
        let codes = self.codes.join("/");
        match (codes.is_empty(), self.message.is_empty()) {
            (true, true) => String::new(),
            (false, true) => codes,
            (true, false) => self.message.clone(),
            (false, false) => format!("{codes}: {}", self.message),
        }
    }
}

/// Case-insensitive object lookup.
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Parse a Graph error body; `None` if it is not one.
pub fn parse_error_body(body: &str) -> Option<GraphError> {
    let root: Value = serde_json::from_str(body).ok()?;
    let err = get_ci(&root, "error")?;
    if !err.is_object() {
        return None;
    }
    let message = get_ci(err, "message")
        .and_then(Value::as_str)
        .map(scrub)
        .unwrap_or_default();
    let mut codes = Vec::new();
    let mut level = Some(err);
    // Bounded walk: a hostile body cannot make us loop forever (it is a tree anyway).
    for _ in 0..16 {
        let Some(v) = level else { break };
        if let Some(code) = get_ci(v, "code").and_then(Value::as_str) {
            if !code.is_empty() {
                codes.push(code.to_string());
            }
        }
        level = get_ci(v, "innererror");
    }
    Some(GraphError { codes, message })
}

/// `Retry-After`: delay-seconds or an HTTP-date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classify a non-success response. `context` names what was being done (a path, "upload
/// session"), never a URL with secrets.
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    err: Option<&GraphError>,
    context: &str,
) -> RemoteError {
    let detail = err.map(GraphError::describe).unwrap_or_default();
    let msg = if detail.is_empty() {
        context.to_string()
    } else {
        format!("{context} ({detail})")
    };
    let code = err
        .map(|e| e.specific_code().to_string())
        .unwrap_or_default();
    let has = |list: &[&str]| err.is_some_and(|e| list.iter().any(|c| e.has_code(c)));

    match status {
        // SharePoint throttles with 429 or 503, and `Retry-After` may be missing (field
        // reference entry 7); an app blocked for exceeding its limits gets nothing but 503
        // (entry 8). Either way the answer to a 503 is to slow down, so it is throttling.
        429 | 503 | 509 => RemoteError::Throttled {
            status,
            retry_after,
        },
        _ if has(THROTTLE_CODES) => RemoteError::Throttled {
            status,
            retry_after,
        },
        // Locked (entry 23): 423 whatever the body (ODI#912 sends `accessDenied` with it), or
        // 409/403 naming `resourceLocked` at any depth.
        423 => RemoteError::Locked(msg),
        409 | 403 if has(&[LOCKED_CODE]) => RemoteError::Locked(msg),
        500 if is_validation_failure(err) => RemoteError::ValidationFailed(msg),
        401 => RemoteError::Unauthorized(msg),
        403 => RemoteError::Forbidden(msg),
        404 => RemoteError::NotFound(msg),
        409 if has(SIMILAR_NAME_CODES) => RemoteError::NameClash(msg),
        409 => RemoteError::Conflict(msg),
        412 => RemoteError::PreconditionFailed(msg),
        416 => RemoteError::RangeNotSatisfiable(msg),
        507 => RemoteError::QuotaExceeded(msg),
        _ if has(QUOTA_CODES) => RemoteError::QuotaExceeded(msg),
        500..=599 => RemoteError::Server {
            status,
            code: if code.is_empty() {
                "(no error code)".into()
            } else {
                code
            },
        },
        400..=499 => RemoteError::Client {
            status,
            code,
            message: msg,
        },
        _ => RemoteError::Protocol(format!("unexpected HTTP status {status}: {msg}")),
    }
}

/// Column validation or required columns refused the file (entry 22).
fn is_validation_failure(err: Option<&GraphError>) -> bool {
    err.is_some_and(|e| {
        e.message.to_lowercase().contains(VALIDATION_MESSAGE)
            || e.codes.iter().any(|c| c.contains(VALIDATION_CODE))
    })
}

/// A reqwest failure as `Transport` (or `Protocol` for a request we could not even build),
/// with the URL stripped first: it may be an upload URL.
pub fn transport_error(err: reqwest::Error) -> RemoteError {
    let err = err.without_url();
    let builder = err.is_builder();
    let timeout = err.is_timeout();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    let text = scrub(&text);
    if builder {
        RemoteError::Protocol(format!("invalid request: {text}"))
    } else if timeout {
        RemoteError::Transport(format!("timed out: {text}"))
    } else {
        RemoteError::Transport(text)
    }
}

/// Replace every `http://…`/`https://…` word by its redacted form, fold the text onto one
/// line and bound its length.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS));
    // One line: newlines and tabs become spaces.
    let text = text.replace(|c: char| c.is_whitespace(), " ");
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_ascii_lowercase();
        match lower.find("http://").or_else(|| lower.find("https://")) {
            Some(at) => {
                out.push_str(&word[..at]);
                out.push_str(&redact_url(&word[at..]));
            }
            None => out.push_str(word),
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_codes_case_insensitively() {
        let body = r#"{"error":{"code":"invalidRange","message":"Fragment overlaps",
            "innerError":{"code":"fragmentOverlap","innererror":{"CODE":"deeper"}}}}"#;
        let e = parse_error_body(body).unwrap();
        assert_eq!(e.codes, ["invalidRange", "fragmentOverlap", "deeper"]);
        assert_eq!(e.specific_code(), "deeper");
        assert_eq!(e.message, "Fragment overlaps");

        let e = parse_error_body(r#"{"Error":{"Code":"itemNotFound","Message":"gone"}}"#).unwrap();
        assert_eq!(e.codes, ["itemNotFound"]);
        assert_eq!(e.message, "gone");

        assert_eq!(parse_error_body("not json"), None);
        assert_eq!(parse_error_body(r#"{"error":"invalid_grant"}"#), None);
        assert_eq!(parse_error_body(r#"{"value":[]}"#), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for (input, want) in [
            ("41", Some(41)),
            (" 315 ", Some(315)),
            ("0", Some(0)),
            ("Sun, 06 Nov 1994 08:50:37 GMT", Some(60)),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(0)),
            ("soon", None),
            ("-5", None),
        ] {
            assert_eq!(
                parse_retry_after(input, now),
                want.map(Duration::from_secs),
                "{input}"
            );
        }
    }

    #[test]
    fn classification_table() {
        let ra = Some(Duration::from_secs(41));
        let body = |s: &str| parse_error_body(s);
        let overlap = body(
            r#"{"error":{"code":"invalidRange","message":"m","innererror":{"code":"fragmentOverlap"}}}"#,
        );
        let mismatch = body(
            r#"{"error":{"code":"invalidRequest","message":"m","innerError":{"code":"fragmentLengthMismatch"}}}"#,
        );
        let throttled_code = body(r#"{"error":{"code":"activityLimitReached","message":"m"}}"#);
        let quota = body(r#"{"error":{"code":"quotaLimitReached","message":"m"}}"#);
        let similar = body(
            r#"{"error":{"code":"nameAlreadyExists","message":"m","innererror":{"code":"similarRelationshipNameAlreadyExists"}}}"#,
        );
        type Check = fn(&RemoteError) -> bool;
        let cases: Vec<(u16, Option<Duration>, Option<GraphError>, Check)> = vec![
            (404, None, None, |e| matches!(e, RemoteError::NotFound(_))),
            (401, None, None, |e| {
                matches!(e, RemoteError::Unauthorized(_))
            }),
            (403, None, None, |e| matches!(e, RemoteError::Forbidden(_))),
            (409, None, None, |e| matches!(e, RemoteError::Conflict(_))),
            (409, None, similar, |e| {
                matches!(e, RemoteError::NameClash(_))
            }),
            (412, None, None, |e| {
                matches!(e, RemoteError::PreconditionFailed(_))
            }),
            (
                416,
                None,
                overlap.clone(),
                |e| matches!(e, RemoteError::RangeNotSatisfiable(m) if m.contains("fragmentOverlap")),
            ),
            (429, ra, None, |e| {
                *e == RemoteError::Throttled {
                    status: 429,
                    retry_after: Some(Duration::from_secs(41)),
                }
            }),
            (429, None, None, |e| {
                *e == RemoteError::Throttled {
                    status: 429,
                    retry_after: None,
                }
            }),
            (503, ra, None, |e| {
                matches!(e, RemoteError::Throttled { status: 503, .. })
            }),
            (503, None, None, |e| {
                *e == RemoteError::Throttled {
                    status: 503,
                    retry_after: None,
                }
            }),
            (509, None, None, |e| {
                matches!(e, RemoteError::Throttled { status: 509, .. })
            }),
            (400, None, throttled_code, |e| {
                matches!(e, RemoteError::Throttled { status: 400, .. })
            }),
            (507, None, None, |e| {
                matches!(e, RemoteError::QuotaExceeded(_))
            }),
            (403, None, quota, |e| matches!(e, RemoteError::Forbidden(_))),
            (500, None, None, |e| {
                matches!(e, RemoteError::Server { status: 500, .. })
            }),
            (502, None, overlap, |e| {
                *e == RemoteError::Server {
                    status: 502,
                    code: "fragmentOverlap".into(),
                }
            }),
            (
                400,
                None,
                mismatch,
                |e| matches!(e, RemoteError::Client { status: 400, code, .. } if code == "fragmentLengthMismatch"),
            ),
            (418, None, None, |e| {
                matches!(e, RemoteError::Client { status: 418, .. })
            }),
            (302, None, None, |e| matches!(e, RemoteError::Protocol(_))),
        ];
        for (status, retry_after, err, check) in cases {
            let got = classify(status, retry_after, err.as_ref(), "a/b.txt");
            assert!(check(&got), "status {status}: got {got:?}");
        }
    }

    #[test]
    fn locks_in_every_body_shape_and_validation_failures() {
        for (status, body) in [
            (
                423,
                r#"{"error":{"code":"resourceLocked","message":"locked"}}"#,
            ),
            (
                423,
                r#"{"error":{"code":"accessDenied","message":"Lock token does not match existing lock"}}"#,
            ),
            (423, "<html>Locked</html>"),
            (
                409,
                r#"{"error":{"code":"conflict","innerError":{"code":"resourceLocked"}}}"#,
            ),
            (
                403,
                r#"{"error":{"code":"accessDenied","innererror":{"code":"ResourceLocked"}}}"#,
            ),
        ] {
            let e = classify(
                status,
                None,
                parse_error_body(body).as_ref(),
                "delete a.docx",
            );
            assert!(
                matches!(e, RemoteError::Locked(_)),
                "{status} {body}: {e:?}"
            );
        }
        // Without the code, 409 and 403 keep their meaning.
        let plain409 = parse_error_body(r#"{"error":{"code":"nameAlreadyExists"}}"#);
        assert!(matches!(
            classify(409, None, plain409.as_ref(), "x"),
            RemoteError::Conflict(_)
        ));
        let denied = parse_error_body(r#"{"error":{"code":"accessDenied"}}"#);
        assert!(matches!(
            classify(403, None, denied.as_ref(), "x"),
            RemoteError::Forbidden(_)
        ));
        let validation = parse_error_body(
            r#"{"error":{"code":"generalException","message":"List data validation failed."}}"#,
        );
        assert!(matches!(
            classify(500, None, validation.as_ref(), "upload a.csv"),
            RemoteError::ValidationFailed(_)
        ));
        let rest = parse_error_body(
            r#"{"error":{"code":"-2130575162, Microsoft.SharePoint.SPListDataValidationException"}}"#,
        );
        assert!(matches!(
            classify(500, None, rest.as_ref(), "x"),
            RemoteError::ValidationFailed(_)
        ));
        // Any other 500 is a server error.
        let other = parse_error_body(r#"{"error":{"code":"generalException","message":"x"}}"#);
        assert!(matches!(
            classify(500, None, other.as_ref(), "x"),
            RemoteError::Server { status: 500, .. }
        ));
    }

    #[test]
    fn quota_code_without_507_on_other_status() {
        let quota = parse_error_body(r#"{"error":{"code":"quotaLimitReached"}}"#);
        assert!(matches!(
            classify(400, None, quota.as_ref(), "x"),
            RemoteError::QuotaExceeded(_)
        ));
    }

    #[test]
    fn messages_are_scrubbed() {
        let body = r#"{"error":{"code":"x","message":"bad url https://t.sharepoint.com/up?tempauth=SECRET here"}}"#;
        let e = classify(400, None, parse_error_body(body).as_ref(), "upload session");
        let text = e.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("https://t.sharepoint.com/…"), "{text}");
        let long = "x".repeat(1000);
        assert!(scrub(&long).chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert_eq!(scrub("(https://a.b/c?d)"), "(https://a.b/…");
        assert_eq!(scrub("a\r\nb\tc"), "a  b c");
    }
}
