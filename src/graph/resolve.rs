//! Connect-time resolution of the configuration into "drive id + folder inside the drive"
//! (reference §6), and [`ConnectError`], the one-line message that tells the user which
//! setting to fix.
//!
//! Steps: sign in (a wrong password fails here, not at the first upload), `GET
//! /sites/{host}:/{path}` from `site_url`, `GET /sites/{id}/drives`, pick the library whose
//! decoded `webUrl` is the longest segment-wise, case-insensitive prefix of the folder URL
//! (the rest is the folder inside that library), then check the folder exists and is a
//! folder. Matching is a pure function so it is unit-tested without a server. Messages
//! never contain a secret: only URLs from the configuration and names from the server.

use std::fmt;

use super::api::GraphApi;
use super::paths::{
    display_segments, drive_item_url, encode_segment, parse_folder_url, share_id, site_of,
    strip_prefix_ci, FolderRef, UrlPath,
};
use super::wire::{Drive, DriveItem, DrivesPage, SharedItem, Site};
use super::GraphConfig;
use crate::remote::RemoteError;

/// Mounting failed; `Display` is a one-line message naming what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    message: String,
    cause: Option<RemoteError>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: one_line(message.into()),
            cause: None,
        }
    }

    fn with_cause(message: impl Into<String>, cause: RemoteError) -> ConnectError {
        ConnectError {
            message: one_line(message.into()),
            cause: Some(cause),
        }
    }

    /// The remote error behind this one, if any (lets a caller retry transient failures).
    pub fn remote_error(&self) -> Option<&RemoteError> {
        self.cause.as_ref()
    }

    /// Whether trying again later may succeed (network, server error, throttling).
    /// A certificate the client does not trust is not transient: waiting will not fix it.
    pub fn is_transient(&self) -> bool {
        match &self.cause {
            Some(RemoteError::Transport(m)) => !m.to_ascii_lowercase().contains("certificate"),
            Some(RemoteError::Server { .. } | RemoteError::Throttled { .. }) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

fn one_line(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

/// Where the mount lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub drive_id: String,
    /// Library name, for messages.
    pub drive_name: String,
    /// Decoded folder segments inside the drive (empty = library root).
    pub folder: Vec<String>,
}

/// A generic message for a failed step; specific cases are handled by the callers.
fn step_failed(step: &str, hint: &str, err: RemoteError) -> ConnectError {
    let msg = match &err {
        RemoteError::Transport(m) => format!("{step}: cannot connect ({m}) — {hint}"),
        RemoteError::Forbidden(_) => format!(
            "{step}: access denied (403) — the account or app needs access to the site \
             (e.g. Sites.ReadWrite.All or Sites.Selected)"
        ),
        RemoteError::Unauthorized(_) => format!(
            "{step}: the access token was refused (401) — check tenant and that the app may \
             call Microsoft Graph"
        ),
        RemoteError::Auth(m) if super::policy::is_policy_line(m) => m.clone(),
        other => format!("{step}: {other}"),
    };
    ConnectError::with_cause(msg, err)
}

/// Sign in once, so credential problems surface at mount time.
pub fn sign_in(api: &GraphApi, cfg: &GraphConfig) -> Result<(), ConnectError> {
    match api.auth.token() {
        Ok(_) => Ok(()),
        Err(RemoteError::Auth(m)) => {
            let hint = match cfg.auth {
                super::AuthMethod::DeviceCode => "run shareuplift login --config FILE",
                super::AuthMethod::Certificate => {
                    "check tenant, client_id and the certificate registered for the app"
                }
                super::AuthMethod::ClientSecret => "check tenant, client_id and client_secret",
                super::AuthMethod::Password => "check tenant, client_id, username and password",
            };
            let msg = if super::policy::is_policy_line(&m) {
                m.clone()
            } else if m.starts_with("sign-in needed") {
                format!("{m} — {hint}")
            } else {
                format!("sign-in failed: {m} — {hint}")
            };
            Err(ConnectError::with_cause(msg, RemoteError::Auth(m)))
        }
        Err(e) => Err(step_failed(
            &format!("sign-in at {}", cfg.authority_url),
            "check authority_url and the network",
            e,
        )),
    }
}

/// Resolve site → library → folder.
pub fn resolve(api: &GraphApi, cfg: &GraphConfig) -> Result<Resolved, ConnectError> {
    resolve_steps(api, cfg, &mut |_| {})
}

/// [`resolve`], reporting each step found (`site …`, `library …`, `folder …`) to `step`.
pub fn resolve_steps(
    api: &GraphApi,
    cfg: &GraphConfig,
    step: &mut dyn FnMut(String),
) -> Result<Resolved, ConnectError> {
    let folder = match parse_folder_url(&cfg.folder_url) {
        FolderRef::SharingLink(link) => return resolve_share(api, &link, step),
        FolderRef::Path(p) => p,
    };
    let site_url = cfg.site_url.trim().trim_end_matches('/');
    let site = if site_url.is_empty() {
        // Derived from a full folder URL (config validation guarantees a host then).
        UrlPath {
            host: folder.host.clone(),
            segments: site_of(&folder.segments).to_vec(),
        }
    } else {
        UrlPath::parse(site_url)
    };
    let Some(host) = site.host.clone() else {
        return Err(ConnectError::new(format!(
            "site_url must be a full URL such as https://contoso.sharepoint.com/sites/Team, \
             got {site_url:?}"
        )));
    };
    let site_url = if site_url.is_empty() {
        format!(
            "https://{host}{}",
            display_segments(&site.segments).trim_end_matches('/')
        )
    } else {
        site_url.to_string()
    };
    let site_url = site_url.as_str();

    // 1. The site.
    let mut url = format!("{}/sites/{}", api.base, encode_segment(&host));
    if !site.segments.is_empty() {
        url.push(':');
        for s in &site.segments {
            url.push('/');
            url.push_str(&encode_segment(s));
        }
    }
    let (site_id, site_name) = match api.get_json::<Site>(&url, "site") {
        Ok(s) => (s.id, s.display_name),
        Err(RemoteError::NotFound(_)) => {
            return Err(ConnectError::new(format!(
                "site not found: {site_url} — check site_url"
            )))
        }
        Err(e) => {
            return Err(step_failed(
                &format!("site {site_url}"),
                "check graph_url",
                e,
            ))
        }
    };
    step(format!("site: {site_name} ({site_url})"));

    // 2. Its document libraries.
    let mut drives = Vec::new();
    let mut next = Some(format!(
        "{}/sites/{}/drives",
        api.base,
        encode_segment(&site_id)
    ));
    while let Some(url) = next.take() {
        let page: DrivesPage = api
            .get_json(&url, "document libraries")
            .map_err(|e| step_failed(&format!("listing libraries of {site_url}"), "", e))?;
        drives.extend(page.value);
        next = page.next_link.filter(|n| *n != url);
    }

    // 3. The library containing the folder.
    if let Some(fh) = &folder.host {
        if *fh != host {
            return Err(ConnectError::new(format!(
                "folder_url is on host {fh} but site_url on {host} — they must match"
            )));
        }
    }
    let mut candidates = vec![folder.segments.clone()];
    if folder.host.is_none() && !cfg.folder_url.trim_start().starts_with('/') {
        // A site-relative path such as "Shared Documents/Uploads".
        candidates.push(
            site.segments
                .iter()
                .chain(&folder.segments)
                .cloned()
                .collect(),
        );
    }
    let Some((drive, rest)) = candidates
        .iter()
        .find_map(|c| match_drive(&drives, c).map(|(i, rest)| (&drives[i], rest)))
    else {
        let libraries = drives
            .iter()
            .map(|d| format!("{} ({})", d.name, UrlPath::parse(&d.web_url).display_path()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ConnectError::new(format!(
            "library not found: folder_url {} is in no document library of {site_url} \
             (libraries: {}) — check folder_url",
            folder.display_path(),
            if libraries.is_empty() {
                "none".into()
            } else {
                libraries
            }
        )));
    };
    step(format!("library: {} ({})", drive.name, drive.web_url));
    check_folder(api, drive, rest, step)
}

/// Step 4: the folder inside the library exists and is a folder.
fn check_folder(
    api: &GraphApi,
    drive: &Drive,
    rest: Vec<String>,
    step: &mut dyn FnMut(String),
) -> Result<Resolved, ConnectError> {
    let url = drive_item_url(&api.base, &drive.id, &rest);
    let shown = if rest.is_empty() {
        "(library root)".to_string()
    } else {
        display_segments(&rest).trim_start_matches('/').to_string()
    };
    match api.get_json::<DriveItem>(&url, "mount folder") {
        Ok(item) if item.folder.is_some() => {
            step(format!("folder: {shown} in library {}", drive.name));
            Ok(Resolved {
                drive_id: drive.id.clone(),
                drive_name: drive.name.clone(),
                folder: rest,
            })
        }
        Ok(_) => Err(ConnectError::new(format!(
            "folder_url points to a file, not a folder: {shown} in library {} — check \
             folder_url",
            drive.name
        ))),
        Err(RemoteError::NotFound(_)) => Err(ConnectError::new(format!(
            "folder not found: {shown} in library {} — check folder_url",
            drive.name
        ))),
        Err(e) => Err(step_failed(
            &format!("folder {shown} in library {}", drive.name),
            "",
            e,
        )),
    }
}

/// A sharing link: `GET /shares/u!…/driveItem`, then the item's drive
/// (`parentReference.driveId`); the folder is the item's `webUrl` inside the drive's.
fn resolve_share(
    api: &GraphApi,
    link: &str,
    step: &mut dyn FnMut(String),
) -> Result<Resolved, ConnectError> {
    let shown = link.split('?').next().unwrap_or(link);
    let url = format!("{}/shares/{}/driveItem", api.base, share_id(link));
    let item: SharedItem = match api.get_json(&url, "sharing link") {
        Ok(i) => i,
        Err(RemoteError::NotFound(_)) => {
            return Err(ConnectError::new(format!(
                "sharing link not found: {shown} — check folder_url (the link may have \
                 expired, or the account may not be allowed to use it)"
            )))
        }
        Err(e) => return Err(step_failed(&format!("sharing link {shown}"), "", e)),
    };
    let Some(drive_id) = item.parent_reference.and_then(|p| p.drive_id) else {
        return Err(ConnectError::new(format!(
            "sharing link {shown} names no item in a document library — check folder_url"
        )));
    };
    step(format!("sharing link {shown}: {} found", item.name));
    let drive: Drive = api
        .get_json(
            &format!("{}/drives/{}", api.base, encode_segment(&drive_id)),
            "document library",
        )
        .map_err(|e| step_failed("library of the sharing link", "", e))?;
    let rest = match_drive(
        std::slice::from_ref(&drive),
        &UrlPath::parse(&item.web_url).segments,
    )
    .map(|(_, rest)| rest)
    .ok_or_else(|| {
        ConnectError::new(format!(
            "sharing link {shown}: the item is not inside library {} — check folder_url",
            drive.name
        ))
    })?;
    step(format!("library: {} ({})", drive.name, drive.web_url));
    check_folder(api, &drive, rest, step)
}

/// The drive whose decoded `webUrl` path is the longest prefix of `folder` (segment-wise,
/// case-insensitive), and the remaining segments.
pub fn match_drive(drives: &[Drive], folder: &[String]) -> Option<(usize, Vec<String>)> {
    drives
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let web = UrlPath::parse(&d.web_url).segments;
            if web.is_empty() {
                return None;
            }
            strip_prefix_ci(folder, &web).map(|rest| (i, web.len(), rest.to_vec()))
        })
        .max_by_key(|(_, len, _)| *len)
        .map(|(i, _, rest)| (i, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(id: &str, name: &str, web: &str) -> Drive {
        Drive {
            id: id.into(),
            name: name.into(),
            web_url: web.into(),
        }
    }

    #[test]
    fn drive_matching() {
        let drives = vec![
            drive(
                "d1",
                "Documents",
                "https://contoso.sharepoint.com/sites/Team/Shared%20Documents",
            ),
            drive(
                "d2",
                "Shared",
                "https://contoso.sharepoint.com/sites/Team/Shared",
            ),
            drive(
                "d3",
                "Sub",
                "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/Sub",
            ),
            drive("d4", "Empty", ""),
        ];
        let path = |s: &str| UrlPath::parse(s).segments;
        type Want<'a> = Option<(&'a str, Vec<&'a str>)>;
        let cases: Vec<(&str, Want)> = vec![
            (
                "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/Uploads",
                Some(("d1", vec!["Uploads"])),
            ),
            (
                "/sites/team/shared documents/Up loads/2024",
                Some(("d1", vec!["Up loads", "2024"])),
            ),
            ("/sites/Team/Shared Documents", Some(("d1", vec![]))),
            (
                "/sites/Team/Shared Documents/Sub/x",
                Some(("d3", vec!["x"])),
            ),
            ("/sites/Team/Shared/x%23y", Some(("d2", vec!["x#y"]))),
            ("/sites/Team/SharedStuff", None),
            ("/sites/Other/Shared Documents", None),
        ];
        for (input, want) in cases {
            let got =
                match_drive(&drives, &path(input)).map(|(i, rest)| (drives[i].id.clone(), rest));
            let want = want.map(|(id, rest)| {
                (
                    id.to_string(),
                    rest.into_iter().map(String::from).collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn connect_error_is_one_line_and_knows_transience() {
        let e = step_failed(
            "site x",
            "check graph_url",
            RemoteError::Transport("refused".into()),
        );
        assert!(e.is_transient());
        assert!(!e.to_string().contains('\n'));
        assert!(!ConnectError::new("folder not found").is_transient());
        let tls = RemoteError::Transport("invalid peer certificate: UnknownIssuer".into());
        assert!(!step_failed("sign-in", "", tls).is_transient());
        assert_eq!(ConnectError::new("a\r\n  b").to_string(), "a b");
    }
}
