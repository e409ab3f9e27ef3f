//! National clouds and sign-in methods: the one table that gives the identity endpoint, the
//! Graph endpoint and the Graph resource (scope) of each Microsoft cloud, and the choice of
//! sign-in method from the keys a configuration sets.
//!
//! Invariant: the token scope comes from the cloud (or an explicit `graph_scope`), never from
//! `graph_url`, so a `graph_url` that points at a proxy, gateway or emulator still asks for the
//! real Graph resource. The tenant is never guessed from a host name: delegated flows default
//! to `organizations`, app-only flows require it.

use std::fmt;

/// A Microsoft cloud with its own identity and Graph endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Global,
    UsGov,
    UsGovDod,
    China,
}

/// Endpoints of one cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authority_url: &'static str,
    pub graph_url: &'static str,
    /// The Graph resource the scopes are built from (no trailing slash).
    pub graph_resource: &'static str,
}

impl Cloud {
    pub fn parse(s: &str) -> Result<Cloud, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" | "public" => Ok(Cloud::Global),
            "usgov" | "usgovhigh" | "gcchigh" => Ok(Cloud::UsGov),
            "usgov-dod" | "dod" => Ok(Cloud::UsGovDod),
            "china" => Ok(Cloud::China),
            other => Err(format!(
                "cloud = \"{other}\" is not one of global, usgov, usgov-dod, china"
            )),
        }
    }

    /// The table (Microsoft Graph "national cloud deployments").
    pub fn endpoints(self) -> Endpoints {
        match self {
            Cloud::Global => Endpoints {
                authority_url: "https://login.microsoftonline.com",
                graph_url: "https://graph.microsoft.com/v1.0",
                graph_resource: "https://graph.microsoft.com",
            },
            Cloud::UsGov => Endpoints {
                authority_url: "https://login.microsoftonline.us",
                graph_url: "https://graph.microsoft.us/v1.0",
                graph_resource: "https://graph.microsoft.us",
            },
            Cloud::UsGovDod => Endpoints {
                authority_url: "https://login.microsoftonline.us",
                graph_url: "https://dod-graph.microsoft.us/v1.0",
                graph_resource: "https://dod-graph.microsoft.us",
            },
            Cloud::China => Endpoints {
                authority_url: "https://login.chinacloudapi.cn",
                graph_url: "https://microsoftgraph.chinacloudapi.cn/v1.0",
                graph_resource: "https://microsoftgraph.chinacloudapi.cn",
            },
        }
    }
}

/// How the mount signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// Delegated: tokens from `shareuplift login` (device code), kept in the token cache.
    DeviceCode,
    /// App-only: client id + secret.
    ClientSecret,
    /// App-only: client id + certificate (signed JWT client assertion).
    Certificate,
    /// Delegated: resource-owner password grant (no MFA, no federation).
    #[default]
    Password,
}

impl AuthMethod {
    pub fn parse(s: &str) -> Result<AuthMethod, String> {
        match s.trim() {
            "device_code" => Ok(AuthMethod::DeviceCode),
            "client_secret" => Ok(AuthMethod::ClientSecret),
            "certificate" => Ok(AuthMethod::Certificate),
            "password" => Ok(AuthMethod::Password),
            other => Err(format!(
                "auth = \"{other}\" is not one of device_code, client_secret, certificate, password"
            )),
        }
    }

    /// App-only (client credentials) rather than acting as a user.
    pub fn app_only(self) -> bool {
        matches!(self, AuthMethod::ClientSecret | AuthMethod::Certificate)
    }

    /// The config keys this method needs.
    fn required(self) -> &'static [&'static str] {
        match self {
            AuthMethod::DeviceCode => &["client_id"],
            AuthMethod::ClientSecret => &["client_id", "client_secret", "tenant"],
            AuthMethod::Certificate => &["client_id", "certificate_file", "tenant"],
            AuthMethod::Password => &["client_id", "username", "password"],
        }
    }

    /// The scope of a token request for `resource` (e.g. `https://graph.microsoft.com`).
    pub fn scope(self, resource: &str) -> String {
        let r = resource.trim_end_matches('/');
        if self.app_only() {
            format!("{r}/.default")
        } else {
            format!("{r}/Files.ReadWrite.All {r}/Sites.ReadWrite.All offline_access")
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMethod::DeviceCode => "device_code",
            AuthMethod::ClientSecret => "client_secret",
            AuthMethod::Certificate => "certificate",
            AuthMethod::Password => "password",
        })
    }
}

/// Which credential keys a configuration sets (values are not needed to choose).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeysSet {
    pub client_id: bool,
    pub client_secret: bool,
    pub certificate_file: bool,
    pub username: bool,
    pub password: bool,
    pub tenant: bool,
}

impl KeysSet {
    fn has(&self, key: &str) -> bool {
        match key {
            "client_id" => self.client_id,
            "client_secret" => self.client_secret,
            "certificate_file" => self.certificate_file,
            "username" => self.username,
            "password" => self.password,
            "tenant" => self.tenant,
            _ => false,
        }
    }
}

/// The sign-in method: `explicit` (the `auth` key) checked against the keys, or inferred when
/// exactly one method's distinctive keys are set. Errors are one line naming the keys.
pub fn choose_auth(explicit: Option<&str>, keys: KeysSet) -> Result<AuthMethod, String> {
    let method = match explicit.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => AuthMethod::parse(s)?,
        None => {
            let mut found = Vec::new();
            if keys.certificate_file {
                found.push(AuthMethod::Certificate);
            }
            if keys.client_secret {
                found.push(AuthMethod::ClientSecret);
            }
            if keys.password || keys.username {
                found.push(AuthMethod::Password);
            }
            match found.as_slice() {
                [] if keys.client_id => AuthMethod::DeviceCode,
                [] => {
                    return Err("no credentials: set client_id (device code: then run \
                                `shareuplift login`), or client_id + client_secret + tenant, \
                                or client_id + certificate_file + tenant, or client_id + \
                                username + password; or choose with auth = ..."
                        .into())
                }
                [one] => *one,
                many => {
                    let names: Vec<String> = many.iter().map(|m| m.to_string()).collect();
                    return Err(format!(
                        "credentials for more than one sign-in method are set ({}): choose \
                         one with auth = \"{}\"",
                        names.join(", "),
                        names.join("\" or \"")
                    ));
                }
            }
        }
    };
    let missing: Vec<&str> = method
        .required()
        .iter()
        .copied()
        .filter(|k| !keys.has(k))
        .collect();
    if missing.is_empty() {
        return Ok(method);
    }
    let why = if method.app_only() && missing.contains(&"tenant") {
        " (app-only sign-in needs the tenant id or domain, e.g. contoso.onmicrosoft.com)"
    } else {
        ""
    };
    Err(format!(
        "auth = \"{method}\" needs {}; missing: {}{why}",
        method.required().join(" + "),
        missing.join(", ")
    ))
}

/// The tenant segment of the authority: as configured, else `organizations` for delegated
/// flows (app-only flows are refused earlier by [`choose_auth`] without one).
pub fn tenant_or_default(tenant: Option<&str>) -> String {
    tenant
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("organizations")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usgov_sets_all_three_endpoints() {
        let e = Cloud::parse("usgov").unwrap().endpoints();
        assert_eq!(e.authority_url, "https://login.microsoftonline.us");
        assert_eq!(e.graph_url, "https://graph.microsoft.us/v1.0");
        assert_eq!(
            AuthMethod::ClientSecret.scope(e.graph_resource),
            "https://graph.microsoft.us/.default"
        );
        let d = Cloud::parse("usgov-dod").unwrap().endpoints();
        assert_eq!(d.graph_url, "https://dod-graph.microsoft.us/v1.0");
        let c = Cloud::parse("China").unwrap().endpoints();
        assert_eq!(c.authority_url, "https://login.chinacloudapi.cn");
        assert!(Cloud::parse("mars").unwrap_err().contains("cloud"));
    }

    #[test]
    fn scopes_per_method() {
        let g = Cloud::Global.endpoints().graph_resource;
        assert_eq!(
            AuthMethod::Certificate.scope(g),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            AuthMethod::DeviceCode.scope(g),
            "https://graph.microsoft.com/Files.ReadWrite.All \
             https://graph.microsoft.com/Sites.ReadWrite.All offline_access"
        );
        assert_eq!(
            AuthMethod::Password.scope(g),
            AuthMethod::DeviceCode.scope(g)
        );
    }

    #[test]
    fn method_inference() {
        let k = |f: &dyn Fn(&mut KeysSet)| {
            let mut s = KeysSet {
                client_id: true,
                ..Default::default()
            };
            f(&mut s);
            s
        };
        assert_eq!(choose_auth(None, k(&|_| {})), Ok(AuthMethod::DeviceCode));
        assert_eq!(
            choose_auth(
                None,
                k(&|s| {
                    s.username = true;
                    s.password = true
                })
            ),
            Ok(AuthMethod::Password)
        );
        assert_eq!(
            choose_auth(
                None,
                k(&|s| {
                    s.client_secret = true;
                    s.tenant = true
                })
            ),
            Ok(AuthMethod::ClientSecret)
        );
        let e = choose_auth(None, k(&|s| s.client_secret = true)).unwrap_err();
        assert!(
            e.contains("missing: tenant") && e.contains("app-only"),
            "{e}"
        );
        let e = choose_auth(None, k(&|s| s.username = true)).unwrap_err();
        assert!(e.contains("missing: password"), "{e}");
        let e = choose_auth(
            None,
            k(&|s| {
                s.client_secret = true;
                s.certificate_file = true
            }),
        )
        .unwrap_err();
        assert!(e.contains("auth = "), "{e}");
        assert_eq!(
            choose_auth(
                Some("password"),
                k(&|s| {
                    s.client_secret = true;
                    s.username = true;
                    s.password = true
                })
            ),
            Ok(AuthMethod::Password)
        );
        let e = choose_auth(Some("certificate"), k(&|_| {})).unwrap_err();
        assert!(e.contains("certificate_file, tenant"), "{e}");
        assert!(choose_auth(None, KeysSet::default())
            .unwrap_err()
            .contains("no credentials"));
        assert!(choose_auth(Some("kerberos"), k(&|_| {})).is_err());
        for m in [&choose_auth(None, KeysSet::default()).unwrap_err(), &e] {
            assert!(!m.contains('\n'));
        }
    }

    #[test]
    fn tenant_default_is_organizations() {
        assert_eq!(tenant_or_default(None), "organizations");
        assert_eq!(tenant_or_default(Some(" ")), "organizations");
        assert_eq!(
            tenant_or_default(Some("contoso.onmicrosoft.com")),
            "contoso.onmicrosoft.com"
        );
    }
}
