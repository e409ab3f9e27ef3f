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

/// PLACEHOLDER until the Graph client lands.
pub struct GraphRemote;

/// PLACEHOLDER until the Graph client lands.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl GraphRemote {
    pub fn connect(_cfg: GraphConfig) -> Result<GraphRemote, ConnectError> {
        Err(ConnectError("Graph client not built yet".into()))
    }
}

impl crate::remote::Remote for GraphRemote {
    fn stat(
        &self,
        _: &str,
    ) -> Result<Option<crate::remote::RemoteItem>, crate::remote::RemoteError> {
        Ok(None)
    }
    fn list(&self, _: &str) -> Result<Vec<crate::remote::RemoteItem>, crate::remote::RemoteError> {
        Ok(vec![])
    }
    fn mkdir(&self, p: &str) -> Result<crate::remote::RemoteItem, crate::remote::RemoteError> {
        Err(crate::remote::RemoteError::NotFound(p.into()))
    }
    fn create_upload_session(
        &self,
        p: &str,
        _: u64,
        _: std::time::SystemTime,
        _: crate::remote::Conflict,
    ) -> Result<crate::remote::UploadSession, crate::remote::RemoteError> {
        Err(crate::remote::RemoteError::NotFound(p.into()))
    }
    fn upload_fragment(
        &self,
        _: &crate::remote::UploadSession,
        _: u64,
        _: u64,
        _: &[u8],
    ) -> Result<crate::remote::FragmentOutcome, crate::remote::RemoteError> {
        Err(crate::remote::RemoteError::NotFound(String::new()))
    }
    fn upload_status(
        &self,
        _: &crate::remote::UploadSession,
    ) -> Result<Vec<crate::remote::ByteRange>, crate::remote::RemoteError> {
        Ok(vec![])
    }
    fn cancel_upload(
        &self,
        _: &crate::remote::UploadSession,
    ) -> Result<(), crate::remote::RemoteError> {
        Ok(())
    }
    fn upload_small(
        &self,
        p: &str,
        _: &[u8],
        _: crate::remote::Conflict,
    ) -> Result<crate::remote::RemoteItem, crate::remote::RemoteError> {
        Err(crate::remote::RemoteError::NotFound(p.into()))
    }
    fn delete(&self, _: &str) -> Result<(), crate::remote::RemoteError> {
        Ok(())
    }
    fn rename(
        &self,
        p: &str,
        _: &str,
    ) -> Result<crate::remote::RemoteItem, crate::remote::RemoteError> {
        Err(crate::remote::RemoteError::NotFound(p.into()))
    }
    fn set_mtime(
        &self,
        p: &str,
        _: std::time::SystemTime,
    ) -> Result<crate::remote::RemoteItem, crate::remote::RemoteError> {
        Err(crate::remote::RemoteError::NotFound(p.into()))
    }
    fn read_range(&self, _: &str, _: u64, _: u64) -> Result<Vec<u8>, crate::remote::RemoteError> {
        Ok(vec![])
    }
}
