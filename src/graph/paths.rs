//! Paths and URLs: splitting mount-relative paths into segments, percent-encoding each
//! segment, and building Graph drive-item URLs; decoding site/folder URLs into segments.
//!
//! Invariant: a path reaches a URL only segment by segment, each segment percent-encoded as
//! UTF-8 (reference §6); a whole URL is never encoded at once, so `#`, `%`, `?`, `:` and
//! spaces inside names cannot change the meaning of the URL. `.` and `..` segments are
//! refused because URL parsers would resolve them against the drive root.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::remote::RemoteError;

/// Everything but RFC 3986 unreserved characters and the sub-delimiters `!` and `,` (used in
/// drive ids `b!…` and site ids `host,guid,guid`; harmless in a path segment) is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b',');

/// Percent-encode one path segment.
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Split a mount-relative path (`a/b/c`, `""` = root) into segments. Empty segments (double
/// or trailing slashes) are dropped; `.` and `..` are refused.
pub fn split_rel(path: &str) -> Result<Vec<&str>, RemoteError> {
    let mut out = Vec::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." {
            return Err(RemoteError::Client {
                status: 400,
                code: "invalidPath".into(),
                message: format!("path segment {seg:?} is not allowed: {path}"),
            });
        }
        out.push(seg);
    }
    Ok(out)
}

/// `{graph_url}/drives/{drive}/root:/{seg}/…:` or `{graph_url}/drives/{drive}/root` when there
/// are no segments. Suffixes such as `/children`, `/content` and `/createUploadSession` can be
/// appended to either form.
pub fn drive_item_url<S: AsRef<str>>(graph_url: &str, drive_id: &str, segments: &[S]) -> String {
    let mut url = format!("{graph_url}/drives/{}/root", encode_segment(drive_id));
    if segments.is_empty() {
        return url;
    }
    url.push(':');
    for seg in segments {
        url.push('/');
        url.push_str(&encode_segment(seg.as_ref()));
    }
    url.push(':');
    url
}

/// `{graph_url}/drives/{drive}/items/{item}`.
pub fn drive_item_id_url(graph_url: &str, drive_id: &str, item_id: &str) -> String {
    format!(
        "{graph_url}/drives/{}/items/{}",
        encode_segment(drive_id),
        encode_segment(item_id)
    )
}

/// A URL or server-relative path, split into host (if a URL) and decoded path segments.
/// Parsed by hand rather than with `url::Url` so that unencoded spaces and `#` in a pasted
/// folder URL stay part of the path. A `?query` is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath {
    pub host: Option<String>,
    pub segments: Vec<String>,
}

impl UrlPath {
    pub fn parse(input: &str) -> UrlPath {
        let input = input.trim();
        let (host, path) = match input.find("://") {
            Some(i) => {
                let rest = &input[i + 3..];
                let end = rest.find('/').unwrap_or(rest.len());
                let authority = &rest[..end];
                // Drop userinfo and port: Graph addresses sites by host name only.
                let host = authority.rsplit('@').next().unwrap_or(authority);
                let host = host.split(':').next().unwrap_or(host);
                (Some(host.to_ascii_lowercase()), &rest[end..])
            }
            None => (None, input),
        };
        let path = path.split('?').next().unwrap_or(path);
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        UrlPath { host, segments }
    }

    /// `/a/b` (decoded), `/` for no segments.
    pub fn display_path(&self) -> String {
        display_segments(&self.segments)
    }
}

/// What `folder_url` names: a folder by (host and) server-relative path, or a sharing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderRef {
    Path(UrlPath),
    /// A sharing link (`https://host/:f:/s/Team/E…`), resolved through `/shares/`.
    SharingLink(String),
}

/// Parse every form a user can copy: a URL or server-relative path (trailing slash or not,
/// percent-encoded or not, non-ASCII); a browser library view whose `id=` or `RootFolder=`
/// query parameter is the folder (`…/Forms/AllItems.aspx?id=%2Fsites%2F…&viewid=…`); a
/// library view without one (`…/Shared Documents/Forms/AllItems.aspx` = the library root);
/// and sharing links (`/:f:/`, `/:u:/` and other `/:x:/` forms).
pub fn parse_folder_url(input: &str) -> FolderRef {
    let input = input.trim();
    let mut parsed = UrlPath::parse(input);
    if parsed.host.is_some() {
        let first = parsed.segments.first().map(String::as_str).unwrap_or("");
        if first.len() == 3 && first.starts_with(':') && first.ends_with(':') {
            return FolderRef::SharingLink(input.to_string());
        }
    }
    if let Some((_, query)) = input.split_once('?') {
        let query = query.split('#').next().unwrap_or(query);
        let folder = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("id") || k.eq_ignore_ascii_case("RootFolder"))
            .map(|(_, v)| v.into_owned());
        if let Some(folder) = folder.filter(|f| f.starts_with('/')) {
            // The value is already decoded: split it without decoding again ("%" in names).
            parsed.segments = folder
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            return FolderRef::Path(parsed);
        }
    }
    let n = parsed.segments.len();
    if n >= 2
        && parsed.segments[n - 2].eq_ignore_ascii_case("Forms")
        && parsed.segments[n - 1]
            .to_ascii_lowercase()
            .ends_with(".aspx")
    {
        parsed.segments.truncate(n - 2);
    }
    FolderRef::Path(parsed)
}

/// The site a server-relative folder path belongs to, when `site_url` is not given:
/// `/sites/X`, `/teams/X` and OneDrive's `/personal/X` are site collections; anything else is
/// in the root site. (A subsite needs `site_url`.)
pub fn site_of(segments: &[String]) -> &[String] {
    match segments.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("sites" | "teams" | "personal") if segments.len() >= 2 => &segments[..2],
        _ => &[],
    }
}

/// Graph's share id of a sharing URL: `u!` + unpadded base64url of the URL.
pub fn share_id(url: &str) -> String {
    use base64::Engine;
    format!(
        "u!{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url.trim().as_bytes())
    )
}

/// `/a/b` for segments `[a, b]`, `/` for none.
pub fn display_segments<S: AsRef<str>>(segments: &[S]) -> String {
    if segments.is_empty() {
        return "/".into();
    }
    segments.iter().fold(String::new(), |mut acc, s| {
        acc.push('/');
        acc.push_str(s.as_ref());
        acc
    })
}

/// If `prefix` is a case-insensitive segment-wise prefix of `path`, the remaining segments.
pub fn strip_prefix_ci<'a>(path: &'a [String], prefix: &[String]) -> Option<&'a [String]> {
    if prefix.len() > path.len() {
        return None;
    }
    let same = path
        .iter()
        .zip(prefix)
        .all(|(a, b)| crate::collation::fold(a) == crate::collation::fold(b));
    same.then(|| &path[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_individually() {
        for (input, want) in [
            ("plain.txt", "plain.txt"),
            ("with space.txt", "with%20space.txt"),
            ("hash#tag", "hash%23tag"),
            ("100%", "100%25"),
            ("what?", "what%3F"),
            ("a:b", "a%3Ab"),
            ("a+b&c=d", "a%2Bb%26c%3Dd"),
            ("Übersicht €.pdf", "%C3%9Cbersicht%20%E2%82%AC.pdf"),
            ("日本", "%E6%97%A5%E6%9C%AC"),
            ("b!AbC-_~x", "b!AbC-_~x"),
            ("h.com,1-2,3", "h.com,1-2,3"),
        ] {
            assert_eq!(encode_segment(input), want, "{input}");
        }
    }

    #[test]
    fn item_urls() {
        let g = "https://graph.microsoft.com/v1.0";
        assert_eq!(
            drive_item_url::<&str>(g, "b!x", &[]),
            "https://graph.microsoft.com/v1.0/drives/b!x/root"
        );
        assert_eq!(
            drive_item_url(g, "b!x", &["Up loads", "a#1%.txt"]),
            "https://graph.microsoft.com/v1.0/drives/b!x/root:/Up%20loads/a%231%25.txt:"
        );
        assert_eq!(
            drive_item_id_url(g, "d", "01AB/C"),
            "https://graph.microsoft.com/v1.0/drives/d/items/01AB%2FC"
        );
    }

    #[test]
    fn split_rel_cases() {
        assert_eq!(split_rel("").unwrap(), Vec::<&str>::new());
        assert_eq!(split_rel("a/b").unwrap(), ["a", "b"]);
        assert_eq!(split_rel("/a//b/").unwrap(), ["a", "b"]);
        assert_eq!(split_rel("a/.../b").unwrap(), ["a", "...", "b"]);
        assert!(split_rel("a/../b").is_err());
        assert!(split_rel("./a").is_err());
    }

    #[test]
    fn url_paths() {
        let p =
            UrlPath::parse("https://Contoso.SharePoint.com/sites/Team/Shared%20Documents/Up%23");
        assert_eq!(p.host.as_deref(), Some("contoso.sharepoint.com"));
        assert_eq!(p.segments, ["sites", "Team", "Shared Documents", "Up#"]);

        let p = UrlPath::parse("/sites/Team/Shared Documents/Uploads/");
        assert_eq!(p.host, None);
        assert_eq!(p.segments, ["sites", "Team", "Shared Documents", "Uploads"]);
        assert_eq!(p.display_path(), "/sites/Team/Shared Documents/Uploads");

        let p = UrlPath::parse("http://127.0.0.1:8080/sites/Team/Shared Documents/a#b?web=1");
        assert_eq!(p.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.segments, ["sites", "Team", "Shared Documents", "a#b"]);

        let p = UrlPath::parse("https://contoso.sharepoint.com");
        assert!(p.segments.is_empty());
        assert_eq!(p.display_path(), "/");
    }

    fn folder(input: &str) -> (Option<String>, Vec<String>) {
        match parse_folder_url(input) {
            FolderRef::Path(p) => (p.host, p.segments),
            FolderRef::SharingLink(l) => panic!("{input} parsed as sharing link {l}"),
        }
    }

    #[test]
    fn every_folder_url_form() {
        let host = Some("contoso.sharepoint.com".to_string());
        let want: Vec<String> = ["sites", "Team", "Shared Documents", "Über €"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for input in [
            "https://contoso.sharepoint.com/sites/Team/Shared Documents/Über €",
            "https://contoso.sharepoint.com/sites/Team/Shared Documents/Über €/",
            "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/%C3%9Cber%20%E2%82%AC",
            "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/%C3%9Cber%20%E2%82%AC/",
            "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/Forms/AllItems.aspx\
             ?id=%2Fsites%2FTeam%2FShared%20Documents%2F%C3%9Cber%20%E2%82%AC\
             &viewid=1b2c3d4e%2D0000%2D0000%2D0000%2D000000000000",
            "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/Forms/AllItems.aspx\
             ?RootFolder=%2Fsites%2FTeam%2FShared%20Documents%2F%C3%9Cber%20%E2%82%AC&FolderCTID=0x0120",
            "https://contoso.sharepoint.com/sites/Team/Shared Documents/Forms/AllItems.aspx\
             ?viewid=x&id=/sites/Team/Shared Documents/Über €",
        ] {
            assert_eq!(folder(input), (host.clone(), want.clone()), "{input}");
        }
        for input in [
            "/sites/Team/Shared Documents/Über €",
            "/sites/Team/Shared%20Documents/%C3%9Cber%20%E2%82%AC/",
        ] {
            assert_eq!(folder(input), (None, want.clone()), "{input}");
        }
        // A library view without id= is the library root.
        assert_eq!(
            folder(
                "https://contoso.sharepoint.com/sites/Team/Shared%20Documents/Forms/AllItems.aspx"
            )
            .1,
            want[..3]
        );
        // A name with a literal '%' inside id= is not decoded twice.
        assert_eq!(
            folder("https://c.sharepoint.com/Shared%20Documents/Forms/AllItems.aspx?id=%2FShared%20Documents%2F100%2525").1,
            ["Shared Documents", "100%25"]
        );
        // OneDrive for Business.
        let (h, segs) =
            folder("https://contoso-my.sharepoint.com/personal/ana_contoso_com/Documents/Scans/");
        assert_eq!(h.as_deref(), Some("contoso-my.sharepoint.com"));
        assert_eq!(segs, ["personal", "ana_contoso_com", "Documents", "Scans"]);
        assert_eq!(site_of(&segs), ["personal", "ana_contoso_com"]);
        // Sharing links.
        for link in [
            "https://contoso.sharepoint.com/:f:/s/Team/EabcDEF123?e=xyz",
            "https://contoso.sharepoint.com/:u:/r/sites/Team/Shared%20Documents/a.txt?csf=1",
        ] {
            assert_eq!(
                parse_folder_url(link),
                FolderRef::SharingLink(link.to_string())
            );
        }
    }

    #[test]
    fn sites_and_share_ids() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            site_of(&s(&["sites", "Team", "Docs"])),
            s(&["sites", "Team"])
        );
        assert_eq!(site_of(&s(&["TEAMS", "X"])), s(&["TEAMS", "X"]));
        assert!(site_of(&s(&["Shared Documents", "x"])).is_empty());
        assert!(site_of(&s(&["sites"])).is_empty());
        // Graph's documented example.
        assert_eq!(
            share_id("https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1"),
            "u!aHR0cHM6Ly9vbmVkcml2ZS5saXZlLmNvbS9yZWRpcj9yZXNpZD0xMjMxMjQ0MTkzOTEyITEyJmF1dGhLZXk9MTIwMTkxOSExMjkyMSEx"
        );
    }

    #[test]
    fn prefix_matching_is_segment_wise_and_case_insensitive() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let path = s(&["sites", "Team", "Shared Documents", "Uploads"]);
        assert_eq!(
            strip_prefix_ci(&path, &s(&["SITES", "team", "shared documents"])),
            Some(&path[3..])
        );
        assert_eq!(
            strip_prefix_ci(&path, &s(&["sites", "Team", "Shared"])),
            None
        );
        assert_eq!(strip_prefix_ci(&path[..2], &path), None);
    }
}
