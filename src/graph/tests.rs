//! HTTP-level tests of the Graph client against a tiny scripted server on 127.0.0.1.
//!
//! The server records every request (method, target, headers, body) and answers from a
//! closure, one request per connection. It checks the wire behaviour that unit tests of pure
//! functions cannot: no Authorization on upload URLs and downloads, JSON field order, the
//! one-refresh-then-retry on 401, paging, redirects and connect-time resolution messages.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::protocol::FRAGMENT_UNIT;
use crate::redact::{Secret, SecretUrl};
use crate::remote::{
    ByteRange, Conflict, FragmentBody, FragmentOutcome, Remote, RemoteError, UploadSession,
};

fn frag(offset: u64, data: &[u8]) -> FragmentBody {
    FragmentBody::bytes(offset, data.to_vec())
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query, as sent.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

type Handler = Box<dyn Fn(&Req) -> Reply + Send + Sync>;

struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(Box::new(handler));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handler, reqs) = (handler.clone(), reqs.clone());
                thread::spawn(move || serve(stream, &handler, &reqs));
            }
        });
        Server {
            port,
            requests,
            stop,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn config(&self) -> GraphConfig {
        GraphConfig {
            graph_url: format!("{}/v1.0", self.base()),
            authority_url: self.base(),
            tenant: Some("tenant1".into()),
            client_id: Some("cid".into()),
            client_secret: None,
            username: Some("user@contoso.com".into()),
            password: Some(Secret::new("hunter2-password")),
            site_url: "http://contoso.sharepoint.com/sites/Team".into(),
            folder_url: "/sites/Team/Shared Documents/Up loads".into(),
            timeout: Duration::from_secs(10),
            graph_scope: "https://graph.microsoft.com".into(),
            ..GraphConfig::default()
        }
    }

    fn remote(&self) -> client::GraphRemote {
        client::GraphRemote::from_parts(&self.config(), Tuning::default(), "d!1", &["Up loads"])
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, handler: &Handler, reqs: &Mutex<Vec<Req>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let req = Req {
        method,
        target,
        headers,
        body,
    };
    reqs.lock().unwrap().push(req.clone());
    let r = handler(&req);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(&r.body);
}

/// Token endpoint answering `tok{n}` for the n-th request (1-based).
fn token_reply(counter: &AtomicUsize) -> Reply {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    reply(
        200,
        &format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"tok{n}"}}"#),
    )
}

const ITEM: &str = r#"{"id":"item1","name":"a#b%.txt","size":10,"eTag":"\"e1\"",
    "file":{"hashes":{"quickXorHash":"AAAAAAAAAAAAAAAAAAAAAAAAAAA="}},
    "fileSystemInfo":{"lastModifiedDateTime":"2024-05-01T10:00:00Z"}}"#;

#[test]
fn create_session_sends_ordered_json_with_bearer() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/oauth2/v2.0/token") {
            return token_reply(&t);
        }
        reply(
            200,
            r#"{"uploadUrl":"http://127.0.0.1:1/up/xyz?tempauth=SECRET","expirationDateTime":"2030-01-01T00:00:00Z","nextExpectedRanges":["0-"]}"#,
        )
    });
    let remote = server.remote();
    let mtime = UNIX_EPOCH + Duration::from_secs(1_714_557_600);
    let session = remote
        .create_upload_session("sub dir/a#b%.txt", 10, mtime, Conflict::Fail, None)
        .unwrap();
    assert_eq!(
        session.url.expose(),
        "http://127.0.0.1:1/up/xyz?tempauth=SECRET"
    );
    assert!(session.expires.is_some());
    assert!(!format!("{session:?}").contains("SECRET"));

    let reqs = server.requests();
    let token_req = &reqs[0];
    let form = token_req.body_str();
    assert!(form.contains("grant_type=password"), "{form}");
    // The Graph scope, not the (emulated) graph_url's origin.
    assert!(
        form.contains("scope=https%3A%2F%2Fgraph.microsoft.com%2FFiles.ReadWrite.All"),
        "{form}"
    );
    assert_eq!(token_req.path(), "/tenant1/oauth2/v2.0/token");
    assert_eq!(token_req.header("authorization"), None);

    let create = &reqs[1];
    assert_eq!(create.method, "POST");
    assert_eq!(
        create.target,
        "/v1.0/drives/d!1/root:/Up%20loads/sub%20dir/a%23b%25.txt:/createUploadSession"
    );
    assert_eq!(create.header("authorization"), Some("Bearer tok1"));
    let body = create.body_str();
    assert_eq!(
        body,
        r#"{"item":{"@microsoft.graph.conflictBehavior":"fail","name":"a#b%.txt","fileSystemInfo":{"lastModifiedDateTime":"2024-05-01T10:00:00Z"}}}"#
    );
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
}

fn session(server: &Server) -> UploadSession {
    UploadSession {
        url: SecretUrl::new(format!("{}/up/sess1?tempauth=SECRET", server.base())),
        expires: None,
    }
}

#[test]
fn fragment_put_has_no_authorization_and_parses_ranges() {
    let server = Server::start(|r| match r.header("content-range") {
        Some("bytes 0-4/20") => reply(
            202,
            r#"{"expirationDateTime":"2030-01-01T00:00:00Z","nextExpectedRanges":["5-9","12-"]}"#,
        ),
        Some("bytes 5-19/20") => reply(201, ITEM),
        Some("bytes 0-19/30") => reply(
            200,
            r#"{"expirationDateTime":"2030-01-01T00:00:00Z","nextExpectedRanges":[]}"#,
        ),
        _ => reply(
            416,
            r#"{"error":{"code":"invalidRange","innerError":{"code":"fragmentOverlap"}}}"#,
        ),
    });
    let remote = server.remote();
    let s = session(&server);

    let out = remote.upload_fragment(&s, 20, &frag(0, b"01234")).unwrap();
    assert_eq!(
        out,
        FragmentOutcome::Accepted {
            next_expected: vec![
                ByteRange {
                    start: 5,
                    end: Some(9)
                },
                ByteRange {
                    start: 12,
                    end: None
                }
            ],
            expires: Some(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_893_456_000)
            ),
        }
    );
    match remote
        .upload_fragment(&s, 20, &frag(5, &[7u8; 15]))
        .unwrap()
    {
        FragmentOutcome::Completed(Some(item)) => {
            assert_eq!(item.id, "item1");
            assert_eq!(item.size, 10);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        remote
            .upload_fragment(&s, 30, &frag(0, &[1u8; 20]))
            .unwrap(),
        FragmentOutcome::Completed(None)
    );
    let err = remote
        .upload_fragment(&s, 30, &frag(1, &[1u8; 2]))
        .unwrap_err();
    assert!(matches!(&err, RemoteError::RangeNotSatisfiable(m) if m.contains("fragmentOverlap")));
    assert!(!err.to_string().contains("SECRET"));

    // Not sent at all: empty or past the end.
    assert!(remote.upload_fragment(&s, 30, &frag(0, b"")).is_err());
    assert!(remote
        .upload_fragment(&s, 30, &frag(25, &[0u8; 6]))
        .is_err());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "no token request, no extra PUTs");
    for r in &reqs {
        assert_eq!(r.method, "PUT");
        assert_eq!(r.target, "/up/sess1?tempauth=SECRET");
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.header_count("content-length"), 1);
        assert_eq!(
            r.header("content-length").unwrap(),
            r.body.len().to_string()
        );
    }
    assert_eq!(reqs[0].body, b"01234");
}

#[test]
fn session_status_and_cancel_without_authorization() {
    let server = Server::start(|r| match (r.method.as_str(), r.path()) {
        ("GET", "/up/sess1") => reply(
            200,
            &format!(r#"{{"nextExpectedRanges":["{FRAGMENT_UNIT}-"]}}"#),
        ),
        ("DELETE", "/up/sess1") => reply(404, r#"{"error":{"code":"itemNotFound"}}"#),
        _ => reply(500, ""),
    });
    let remote = server.remote();
    let s = session(&server);
    assert_eq!(
        remote.upload_status(&s).unwrap(),
        [ByteRange {
            start: FRAGMENT_UNIT,
            end: None
        }]
    );
    remote.cancel_upload(&s).unwrap();
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn expired_upload_url_is_unauthorized_without_token_refresh() {
    let server = Server::start(|_| {
        reply(
            401,
            r#"{"error":{"code":"unauthenticated","innerError":{"code":"expiredToken"}}}"#,
        )
    });
    let remote = server.remote();
    let err = remote
        .upload_fragment(&session(&server), 10, &frag(0, &[0; 10]))
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized(_)), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn graph_401_refreshes_token_once_and_retries() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        match r.header("authorization") {
            Some("Bearer tok2") => reply(200, ITEM),
            _ => reply(401, r#"{"error":{"code":"InvalidAuthenticationToken"}}"#),
        }
    });
    let remote = server.remote();
    let item = remote.stat("a").unwrap().unwrap();
    assert_eq!(item.id, "item1");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    let graph: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/v1.0"))
        .collect();
    assert_eq!(graph.len(), 2);
    assert_eq!(graph[0].header("authorization"), Some("Bearer tok1"));
    assert_eq!(graph[1].header("authorization"), Some("Bearer tok2"));
    // The refreshed token is cached.
    remote.stat("a").unwrap();
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

#[test]
fn graph_401_twice_is_a_policy_block_without_a_refresh_storm() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        reply(401, r#"{"error":{"code":"InvalidAuthenticationToken"}}"#)
    });
    let remote = std::sync::Arc::new(server.remote());
    let err = remote.stat("a").unwrap_err();
    // A token issued a moment ago was refused too: entry 24, one line saying what to do.
    assert!(matches!(err, RemoteError::Auth(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("Microsoft Graph refuses freshly issued sign-ins"),
        "{err}"
    );
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    assert_eq!(server.requests().len(), 4);
    // Blocked: the queue pauses and shows the line; no request goes out meanwhile.
    assert!(remote.sign_in().pauses());
    assert!(remote
        .sign_in()
        .needed()
        .is_some_and(|l| l.contains("Conditional Access")));
    for _ in 0..5 {
        assert!(matches!(remote.stat("a"), Err(RemoteError::Auth(_))));
    }
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn conditional_access_refusal_at_the_token_endpoint_blocks_sign_in() {
    let server = Server::start(|r| {
        if r.path().ends_with("/token") {
            return reply(
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.\r\nTrace ID: 1","error_codes":[53003]}"#,
            );
        }
        reply(200, ITEM)
    });
    let remote = std::sync::Arc::new(server.remote());
    let err = remote.stat("a").unwrap_err();
    assert_eq!(
        err.to_string(),
        "authentication failed: sign-in blocked by a Conditional Access policy (AADSTS53003): \
         ask your admin to allow this device/app"
    );
    assert!(
        remote.sign_in().pauses(),
        "a password sign-in pauses too while blocked"
    );
    assert!(remote.sign_in().needed().is_some());
    for _ in 0..5 {
        assert!(remote.stat("a").is_err());
    }
    assert_eq!(server.requests().len(), 1, "one token request, no storm");
}

#[test]
fn wrong_password_is_a_readable_auth_error() {
    let server = Server::start(|r| {
        if r.path().ends_with("/token") {
            return reply(
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: x","error_codes":[50126]}"#,
            );
        }
        reply(500, "")
    });
    let err = client::GraphRemote::connect(server.config()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "invalid_grant: AADSTS50126: Error validating credentials due to invalid username or password."
        ),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
    assert!(matches!(err.remote_error(), Some(RemoteError::Auth(_))));
}

#[test]
fn stat_404_is_none_and_throttling_carries_retry_after() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        if r.path().ends_with("missing:") || r.path().contains("%C3%9C") {
            return reply(404, r#"{"error":{"code":"itemNotFound","message":"gone"}}"#);
        }
        let mut rep = reply(429, r#"{"error":{"code":"activityLimitReached"}}"#);
        rep.headers.push(("Retry-After".into(), "41".into()));
        rep
    });
    let remote = server.remote();
    assert_eq!(remote.stat("missing").unwrap(), None);
    assert_eq!(remote.stat("日本/Übersicht €.pdf").unwrap(), None);
    assert!(server.requests().iter().any(|r| r.target
        == "/v1.0/drives/d!1/root:/Up%20loads/%E6%97%A5%E6%9C%AC/%C3%9Cbersicht%20%E2%82%AC.pdf:"));
    assert_eq!(
        remote.stat("busy").unwrap_err(),
        RemoteError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(41))
        }
    );
}

#[test]
fn list_follows_next_links() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        if r.target.contains("skiptoken=2") {
            return reply(
                200,
                r#"{"value":[{"id":"3","name":"c","folder":{"childCount":0},"lastModifiedDateTime":"2024-01-01T00:00:00Z"}]}"#,
            );
        }
        // More than one page: the folder's id and childCount are asked (listing.rs).
        if r.target.contains("$select=id,folder") {
            return reply(200, r#"{"id":"F","folder":{"childCount":3}}"#);
        }
        let next = format!(
            "{}/v1.0/drives/d!1/items/x/children?$skiptoken=2",
            b.lock().unwrap()
        );
        reply(
            200,
            &format!(
                r#"{{"value":[{{"id":"1","name":"a","size":1,"file":{{}}}},{{"id":"2","name":"b","size":2,"file":{{}}}}],"@odata.nextLink":"{next}"}}"#
            ),
        )
    });
    *base.lock().unwrap() = server.base();
    let items = server.remote().list("").unwrap();
    let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(items[2].is_folder);
    let reqs = server.requests();
    let first = &reqs[1];
    assert_eq!(first.path(), "/v1.0/drives/d!1/root:/Up%20loads:/children");
    assert!(first.target.contains("$top=1000"), "{}", first.target);
    assert!(first.target.contains(
        "$select=id,name,size,eTag,file,folder,fileSystemInfo,lastModifiedDateTime,webUrl"
    ));
    assert_eq!(reqs[2].header("authorization"), Some("Bearer tok1"));
}

#[test]
fn list_refuses_foreign_next_link() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        reply(
            200,
            r#"{"value":[],"@odata.nextLink":"http://evil.example.com/v1.0/steal"}"#,
        )
    });
    let err = server.remote().list("").unwrap_err();
    assert!(matches!(err, RemoteError::Protocol(_)), "{err:?}");
}

#[test]
fn read_range_follows_redirect_without_authorization() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        if r.path().starts_with("/download/") {
            return Reply {
                status: 206,
                headers: vec![("Content-Range".into(), "bytes 2-5/10".into())],
                body: b"2345".to_vec(),
            };
        }
        if r.path().ends_with("eof.bin:/content") {
            return reply(416, "");
        }
        Reply {
            status: 302,
            headers: vec![("Location".into(), "/download/abc?token=DLSECRET".into())],
            body: Vec::new(),
        }
    });
    let remote = server.remote();
    assert_eq!(remote.read_range("f.bin", 2, 4).unwrap(), b"2345");
    assert_eq!(remote.read_range("eof.bin", 100, 4).unwrap(), b"");
    assert_eq!(remote.read_range("f.bin", 0, 0).unwrap(), b"");
    let reqs = server.requests();
    let graph = &reqs[1];
    assert_eq!(
        graph.path(),
        "/v1.0/drives/d!1/root:/Up%20loads/f.bin:/content"
    );
    assert_eq!(graph.header("range"), Some("bytes=2-5"));
    assert_eq!(graph.header("authorization"), Some("Bearer tok1"));
    let download = &reqs[2];
    assert_eq!(download.target, "/download/abc?token=DLSECRET");
    assert_eq!(download.header("authorization"), None);
    assert_eq!(download.header("range"), Some("bytes=2-5"));
}

#[test]
fn mkdir_conflict_returns_existing_folder() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        match r.method.as_str() {
            "POST" => reply(409, r#"{"error":{"code":"nameAlreadyExists"}}"#),
            _ if r.path().ends_with("/dir:") => {
                reply(200, r#"{"id":"f1","name":"dir","folder":{}}"#)
            }
            _ => reply(200, ITEM),
        }
    });
    let remote = server.remote();
    let item = remote.mkdir("p/dir").unwrap();
    assert!(item.is_folder);
    assert!(matches!(
        remote.mkdir("p/file").unwrap_err(),
        RemoteError::Conflict(_)
    ));
    let reqs = server.requests();
    let post = &reqs[1];
    assert_eq!(post.path(), "/v1.0/drives/d!1/root:/Up%20loads/p:/children");
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["name"], "dir");
    assert_eq!(body["@microsoft.graph.conflictBehavior"], "fail");
    assert!(body["folder"].is_object());
}

#[test]
fn rename_moves_by_id_with_parent_reference() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        match (r.method.as_str(), r.path()) {
            ("GET", p) if p.ends_with("/Up%20loads/new%20dir:") => {
                reply(200, r#"{"id":"dir9","name":"new dir","folder":{}}"#)
            }
            ("GET", _) => reply(200, ITEM),
            ("PATCH", "/v1.0/drives/d!1/items/item1") => reply(200, ITEM),
            _ => reply(400, r#"{"error":{"code":"invalidRequest"}}"#),
        }
    });
    let remote = server.remote();
    remote.rename("a.txt", "new dir/b.txt").unwrap();
    remote
        .set_mtime("a.txt", UNIX_EPOCH + Duration::from_secs(1_714_557_600))
        .unwrap();
    let patches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    let body: serde_json::Value = serde_json::from_slice(&patches[0].body).unwrap();
    assert_eq!(body["name"], "b.txt");
    assert_eq!(body["parentReference"]["id"], "dir9");
    assert!(patches[0].target.contains("conflictBehavior=fail"));
    assert_eq!(
        patches[1].body_str(),
        r#"{"fileSystemInfo":{"lastModifiedDateTime":"2024-05-01T10:00:00Z"}}"#
    );
}

#[test]
fn upload_small_and_delete() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        match r.method.as_str() {
            "PUT" => reply(201, ITEM),
            "GET" if r.path().ends_with("gone:") => {
                reply(404, r#"{"error":{"code":"itemNotFound"}}"#)
            }
            "GET" => reply(200, ITEM),
            "DELETE" if r.path().ends_with("gone:") => {
                reply(404, r#"{"error":{"code":"itemNotFound"}}"#)
            }
            "DELETE" => Reply {
                status: 204,
                headers: vec![],
                body: vec![],
            },
            _ => reply(500, ""),
        }
    });
    let remote = server.remote();
    let item = remote
        .upload_small("empty.txt", b"", Conflict::Replace, None)
        .unwrap();
    assert_eq!(item.id, "item1");
    remote.delete("x").unwrap();
    // A 404 from the DELETE itself: the goal is reached.
    remote.delete("gone").unwrap();
    assert!(remote.delete("").is_err());
    let reqs = server.requests();
    assert_eq!(
        reqs[1].target,
        "/v1.0/drives/d!1/root:/Up%20loads/empty.txt:/content?@microsoft.graph.conflictBehavior=replace"
    );
    assert_eq!(reqs[1].header("authorization"), Some("Bearer tok1"));
    // Deleted by path, with no lookup first (a passing 404 of a lookup, field reference
    // entry 10, must not make a delete report a file still there as gone).
    assert!(reqs
        .iter()
        .any(|r| r.method == "DELETE" && r.path() == "/v1.0/drives/d!1/root:/Up%20loads/x:"));
    assert_eq!(reqs.iter().filter(|r| r.method == "DELETE").count(), 2);
    assert_eq!(reqs.iter().filter(|r| r.method == "GET").count(), 0);
}

/// A scripted Graph for connect(): one site with two libraries.
fn site_server(folder_exists: bool) -> Server {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let routes: HashMap<&'static str, String> = HashMap::from([
        (
            "/v1.0/sites/contoso.sharepoint.com:/sites/Team",
            r#"{"id":"contoso.sharepoint.com,g1,g2","webUrl":"x"}"#.to_string(),
        ),
        (
            "/v1.0/sites/contoso.sharepoint.com,g1,g2/drives",
            r#"{"value":[
                {"id":"b!docs","name":"Documents","webUrl":"http://contoso.sharepoint.com/sites/Team/Shared%20Documents"},
                {"id":"b!other","name":"Other","webUrl":"http://contoso.sharepoint.com/sites/Team/Other"}]}"#
                .to_string(),
        ),
    ]);
    Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        if let Some(body) = routes.get(r.path()) {
            return reply(200, body);
        }
        if folder_exists && r.path() == "/v1.0/drives/b!docs/root:/Up%20loads:" {
            return reply(
                200,
                r#"{"id":"fold","name":"Up loads","folder":{"childCount":0}}"#,
            );
        }
        reply(
            404,
            r#"{"error":{"code":"itemNotFound","message":"not here"}}"#,
        )
    })
}

#[test]
fn connect_resolves_site_library_and_folder() {
    let server = site_server(true);
    let remote = client::GraphRemote::connect(server.config()).unwrap();
    assert_eq!(remote.drive_id(), "b!docs");
    assert_eq!(remote.drive_name(), "Documents");
    assert_eq!(remote.folder_path(), "Up loads");

    // Percent-encoded full URL, different case.
    let mut cfg = server.config();
    cfg.folder_url =
        "http://contoso.sharepoint.com/sites/team/shared%20documents/Up%20loads".into();
    let remote = client::GraphRemote::connect(cfg).unwrap();
    assert_eq!(remote.folder_path(), "Up loads");
}

#[test]
fn connect_errors_name_what_to_fix() {
    let server = site_server(false);
    let err = client::GraphRemote::connect(server.config()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "folder not found: Up loads in library Documents — check folder_url"
    );

    let mut cfg = server.config();
    cfg.folder_url = "/sites/Team/Nope/x".into();
    let err = client::GraphRemote::connect(cfg).unwrap_err().to_string();
    assert!(
        err.contains("Documents (/sites/Team/Shared Documents)"),
        "{err}"
    );
    assert!(err.contains("check folder_url"), "{err}");

    let mut cfg = server.config();
    cfg.site_url = "http://contoso.sharepoint.com/sites/Missing".into();
    let err = client::GraphRemote::connect(cfg).unwrap_err().to_string();
    assert_eq!(
        err,
        "site not found: http://contoso.sharepoint.com/sites/Missing — check site_url"
    );

    let mut cfg = server.config();
    cfg.password = None;
    let err = client::GraphRemote::connect(cfg).unwrap_err().to_string();
    assert!(err.contains("missing: password"), "{err}");
}

#[test]
fn connection_refused_is_transport_without_url() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = Server::start(|_| reply(500, ""));
    let remote = server.remote();
    let s = UploadSession {
        url: SecretUrl::new(format!("http://127.0.0.1:{port}/up/x?tempauth=SECRET")),
        expires: None,
    };
    let err = remote.upload_fragment(&s, 1, &frag(0, b"x")).unwrap_err();
    assert!(matches!(err, RemoteError::Transport(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");
    assert!(!format!("{err}").contains("/up/x"), "{err:?}");
}

#[test]
fn concurrent_401s_cause_a_single_refresh() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            thread::sleep(Duration::from_millis(20));
            return token_reply(&t);
        }
        match r.header("authorization") {
            Some("Bearer tok1") => reply(401, r#"{"error":{"code":"InvalidAuthenticationToken"}}"#),
            _ => reply(200, ITEM),
        }
    });
    let remote = Arc::new(server.remote());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let remote = remote.clone();
            thread::spawn(move || remote.stat("a").map(|i| i.is_some()))
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), Ok(true));
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

/// An in-place edit's base eTag goes out as `If-Match` on createUploadSession and on the
/// simple PUT (and only then); a 412 answer is `PreconditionFailed`.
#[test]
fn if_match_is_sent_and_412_is_precondition_failed() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let server = Server::start(move |r| {
        if r.path().ends_with("/token") {
            return token_reply(&t);
        }
        match r.header("if-match") {
            Some("\"stale\"") => reply(
                412,
                r#"{"error":{"code":"preconditionFailed","message":"ETag does not match."}}"#,
            ),
            _ if r.method == "PUT" => reply(201, ITEM),
            _ => reply(
                200,
                r#"{"uploadUrl":"http://127.0.0.1:1/up/x?tempauth=S","nextExpectedRanges":["0-"]}"#,
            ),
        }
    });
    let remote = server.remote();
    let t0 = UNIX_EPOCH;
    remote
        .create_upload_session("a.txt", 10, t0, Conflict::Replace, Some("\"e1\""))
        .unwrap();
    remote
        .create_upload_session("a.txt", 10, t0, Conflict::Replace, None)
        .unwrap();
    assert!(matches!(
        remote.create_upload_session("a.txt", 10, t0, Conflict::Replace, Some("\"stale\"")),
        Err(RemoteError::PreconditionFailed(_))
    ));
    remote
        .upload_small("e.txt", b"", Conflict::Replace, Some("\"e1\""))
        .unwrap();
    assert!(matches!(
        remote.upload_small("e.txt", b"", Conflict::Replace, Some("\"stale\"")),
        Err(RemoteError::PreconditionFailed(_))
    ));
    let sent: Vec<Option<String>> = server
        .requests()
        .iter()
        .filter(|r| !r.path().ends_with("/token"))
        .map(|r| r.header("if-match").map(str::to_string))
        .collect();
    let e1 = Some("\"e1\"".to_string());
    let stale = Some("\"stale\"".to_string());
    assert_eq!(sent, vec![e1.clone(), None, stale.clone(), e1, stale]);
}
