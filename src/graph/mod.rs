//! Microsoft Graph client: authentication, site/library/folder resolution, and the `Remote`
//! implementation over drive items and upload sessions.
//!
//! PLACEHOLDER API: filled in by the Graph client work.

use std::time::Duration;

use crate::redact::Secret;

/// Connection settings, from the mount configuration.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// e.g. `https://graph.microsoft.com/v1.0` (no trailing slash).
    pub graph_url: String,
    /// e.g. `https://login.microsoftonline.com`.
    pub authority_url: String,
    /// Tenant id or domain; `None` derives `{first label of site host}.onmicrosoft.com`.
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// e.g. `https://contoso.sharepoint.com/sites/Team`.
    pub site_url: String,
    /// Full URL or server-relative path of the folder to mount.
    pub folder_url: String,
    /// Per-request timeout for metadata calls (fragment PUTs get a longer one).
    pub timeout: Duration,
}
