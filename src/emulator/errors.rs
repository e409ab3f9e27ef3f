//! Graph-shaped errors: `{"error":{"code","message","innerError":{"code"}}}` with the status,
//! so every handler can return `Result<_, ApiError>` and the shape stays uniform. Codes follow
//! what SharePoint sends (reference §2 and §7); clients branch on codes, never on messages.

use serde_json::json;

use super::http::Response;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub inner: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            inner: None,
            retry_after: None,
        }
    }

    pub fn inner(mut self, code: &'static str) -> ApiError {
        self.inner = Some(code);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalidRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "itemNotFound", message)
    }

    pub fn name_exists(name: &str) -> ApiError {
        ApiError::new(
            409,
            "nameAlreadyExists",
            format!("The specified item name already exists. Name: {name}"),
        )
    }

    pub fn quota() -> ApiError {
        ApiError::new(507, "quotaLimitReached", "Insufficient Space Available")
    }

    /// A status injected by the fault configuration.
    pub fn injected(status: u16, retry_after: Option<u64>) -> ApiError {
        let code = match status {
            429 => "activityLimitReached",
            503 => "serviceNotAvailable",
            504 => "gatewayTimeout",
            507 => "quotaLimitReached",
            409 => "nameAlreadyExists",
            404 => "itemNotFound",
            401 => "unauthenticated",
            s if s >= 500 => "generalException",
            _ => "invalidRequest",
        };
        let mut e = ApiError::new(status, code, "Injected fault.");
        e.retry_after = retry_after;
        e
    }

    pub fn to_response(&self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some(inner) = self.inner {
            err["innerError"] = json!({"code": inner});
        }
        let mut r = Response::json(self.status, &json!({ "error": err }));
        if let Some(s) = self.retry_after {
            r.headers.push(("Retry-After".into(), s.to_string()));
        }
        r
    }
}
