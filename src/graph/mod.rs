//! Microsoft Graph client: authentication, site/library/folder resolution, and the `Remote`
//! implementation over drive items and upload sessions.
//!
//! Files: `auth` (tokens), `cache` (the device-code token cache), `assertion` (certificate
//! client assertions), `login` (device-code `login`/`logout`), `check` (`shareuplift check`),
//! `http` (the reqwest transport and logging), `idle` (idle timeouts), `transfer` (fragment
//! PUTs watched for stalls), `download` (checked, resumed ranged downloads), `listing`
//! (children pages checked against their folder), `api` (bearer token
//! and 401-retry for Graph calls), `error` (error bodies → `RemoteError`), `paths` (segment
//! encoding and URL building), `wire` (JSON shapes), `resolve` (site → library → folder at
//! connect time), `library` (drive quota, check-in), `client` (`GraphRemote`, the `Remote`
//! impl). Secrets never leave `Secret`/`SecretUrl` except into the one request that needs
//! them; no lock is held across a Graph call.

mod api;
mod assertion;
mod auth;
pub mod cache;
mod check;
mod client;
pub mod cloud;
mod delta;
mod download;
mod error;
mod http;
mod idle;
mod library;
mod listing;
mod login;
mod paths;
mod policy;
mod resolve;
#[cfg(test)]
mod tests;
mod transfer;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use crate::redact::Secret;

pub use cloud::{AuthMethod, Cloud};

pub use check::check;
pub use client::GraphRemote;
pub use login::{login, logout};
pub use resolve::ConnectError;
pub use wire::parse_ranges;

/// Connection settings, from the mount configuration.
#[derive(Debug, Clone, Default)]
pub struct GraphConfig {
    /// e.g. `https://graph.microsoft.com/v1.0` (no trailing slash).
    pub graph_url: String,
    /// e.g. `https://login.microsoftonline.com`.
    pub authority_url: String,
    /// The Graph resource scopes are built from, e.g. `https://graph.microsoft.com`.
    pub graph_scope: String,
    /// The sign-in method (validated against the keys by `cloud::choose_auth`).
    pub auth: AuthMethod,
    /// Tenant id or domain; `None` = `organizations` (delegated flows only).
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM with the private key (and the certificate unless `certificate_key_file` is set).
    pub certificate_file: Option<PathBuf>,
    pub certificate_key_file: Option<PathBuf>,
    /// Where the token cache lives (`None`: `$XDG_STATE_HOME/shareuplift` or
    /// `~/.local/state/shareuplift`).
    pub state_dir: Option<PathBuf>,
    /// Extra trusted root certificate(s), PEM.
    pub ca_file: Option<PathBuf>,
    /// e.g. `https://contoso.sharepoint.com/sites/Team`; empty = derived from `folder_url`.
    pub site_url: String,
    /// Full URL or server-relative path of the folder to mount.
    pub folder_url: String,
    /// Per-request timeout for metadata calls (fragment PUTs get a longer one).
    pub timeout: Duration,
    /// How long connecting retries throttling, 5xx and network errors (zero: no retry).
    pub startup_timeout: Duration,
    /// Longest a transfer may move no byte before it is abandoned and resumed (zero: the
    /// default, 30 s); metadata reads must start answering within a third of it.
    pub idle_timeout: Duration,
}

/// Metadata request timeout used when `GraphConfig::timeout` is zero.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle timeout used when `GraphConfig::idle_timeout` is zero.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Transport settings that rarely need changing; kept out of [`GraphConfig`] so the mount
/// configuration stays small. `Default` is what `GraphRemote::connect` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Whole-request timeout of data transfers: fragment PUTs, simple uploads, downloads.
    /// A 60 MiB fragment at 1 Mbit/s takes 8 minutes.
    pub transfer_timeout: Duration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            transfer_timeout: Duration::from_secs(10 * 60),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

impl Tuning {
    fn timeouts(&self, cfg: &GraphConfig) -> http::Timeouts {
        // A zero timeout would fail every request at once: treat it as "unset".
        let request = if cfg.timeout.is_zero() {
            DEFAULT_REQUEST_TIMEOUT
        } else {
            cfg.timeout
        };
        let idle = if cfg.idle_timeout.is_zero() {
            DEFAULT_IDLE_TIMEOUT
        } else {
            cfg.idle_timeout
        };
        http::Timeouts::new(request, self.transfer_timeout, self.connect_timeout, idle)
    }
}
