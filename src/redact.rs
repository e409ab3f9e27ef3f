//! Redaction of secrets: passwords, client secrets, access tokens and upload URLs.
//!
//! Every secret the program holds lives in a [`Secret`] or [`SecretUrl`]; their `Debug` and
//! `Display` never show the value, so a secret cannot reach a log line, `.status`, an error
//! message or a panic by accident. The value is read only with `expose()`, at the single
//! place it goes on the wire.

use std::fmt;

/// A secret string (password, client secret, access token).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL that is itself a bearer capability (a Graph upload URL, a pre-authenticated
/// download URL). Shown as scheme and host only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        SecretUrl(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `scheme://host[:port]/…` with path and query removed.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Keep scheme and authority of a URL, replace the rest with `/…`.
pub fn redact_url(url: &str) -> String {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map(|i| i + after_scheme)
        .unwrap_or(url.len());
    if end == url.len() {
        url.to_string()
    } else {
        format!("{}/…", &url[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        let u = SecretUrl::new("https://t.sharepoint.com/upload?tempauth=abc");
        assert_eq!(format!("{u}"), "https://t.sharepoint.com/…");
        assert!(!format!("{u:?}").contains("tempauth"));
    }

    #[test]
    fn redact_url_cases() {
        for (input, want) in [
            (
                "http://127.0.0.1:8080/up/abc?x=1",
                "http://127.0.0.1:8080/…",
            ),
            ("https://host", "https://host"),
            ("no-scheme/path", "no-scheme/…"),
        ] {
            assert_eq!(redact_url(input), want);
        }
    }
}
