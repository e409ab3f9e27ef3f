//! Protocol tests of the built-in SharePoint/Graph emulator over real HTTP (reqwest blocking
//! against `Emulator::start` on an ephemeral 127.0.0.1 port, one temp data dir per test):
//! auth grants, site/drive/item addressing, paging, upload sessions and every strictness rule,
//! fault injection (drops with partial acceptance, throttling, expiry), downloads, PATCH,
//! DELETE and persistence.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use shareuplift::emulator::quickxor_ref::quickxor_base64;
use shareuplift::emulator::{Emulator, EmulatorOptions};

const ALIGN: usize = 327_680;

struct Env {
    _dir: tempfile::TempDir,
    emu: Emulator,
    http: Client,
    token: String,
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn env_with(faults: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(EmulatorOptions {
        data_dir: dir.path().join("data"),
        port: 0,
        faults_json: faults.map(str::to_string),
        password: None,
        client_secret: None,
        ..Default::default()
    })
    .unwrap();
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let info = emu.info().clone();
    let token = common::password_token(&http, &info);
    Env {
        _dir: dir,
        emu,
        http,
        token,
    }
}

fn env() -> Env {
    env_with(None)
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.info().graph_url, path)
    }
    fn admin(&self, path: &str) -> String {
        format!("{}{}", self.emu.info().admin_url, path)
    }
    fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
    }
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().unwrap()
    }
    fn site_id(&self) -> String {
        let r = self.get("/sites/emulator.sharepoint.test:/sites/Team");
        assert_eq!(r.status(), 200);
        r.json::<Value>().unwrap()["id"].as_str().unwrap().into()
    }
    fn drive_id(&self) -> String {
        let r = self.get(&format!("/sites/{}/drive", self.site_id()));
        assert_eq!(r.status(), 200);
        r.json::<Value>().unwrap()["id"].as_str().unwrap().into()
    }
    fn seed(&self, path: &str, body: &[u8]) -> Value {
        let r = self
            .http
            .put(self.admin(&format!("/files/Documents/{path}")))
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().unwrap()
    }
    /// createUploadSession by path under the Documents drive; returns (status, body).
    fn session(&self, path: &str, item: Value) -> (u16, Value) {
        let d = self.drive_id();
        let r = self.send(
            "POST",
            &format!("/drives/{d}/root:/{path}:/createUploadSession"),
            Some(item),
        );
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }
    fn upload_url(&self, path: &str) -> String {
        let name = percent_encoding::percent_decode_str(path.rsplit('/').next().unwrap())
            .decode_utf8()
            .unwrap()
            .into_owned();
        let (st, v) = self.session(
            path,
            json!({"item":{"@microsoft.graph.conflictBehavior":"replace","name":name,
                   "fileSystemInfo":{"lastModifiedDateTime":"2021-03-04T05:06:07Z"}}}),
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["nextExpectedRanges"], json!(["0-"]));
        v["uploadUrl"].as_str().unwrap().to_string()
    }
    fn put(&self, url: &str, start: usize, total: usize, body: &[u8]) -> Response {
        self.try_put(url, start, total, body).unwrap()
    }
    fn try_put(
        &self,
        url: &str,
        start: usize,
        total: usize,
        body: &[u8],
    ) -> reqwest::Result<Response> {
        self.http
            .put(url)
            .header(
                "Content-Range",
                format!("bytes {start}-{}/{total}", start + body.len() - 1),
            )
            .body(body.to_vec())
            .send()
    }
    fn status(&self, url: &str) -> Value {
        let r = self.http.get(url).send().unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }
    fn violation_kinds(&self) -> Vec<String> {
        self.emu.violations().into_iter().map(|v| v.kind).collect()
    }
    fn set_faults(&self, faults: &str) {
        let r = self
            .http
            .post(self.admin("/faults"))
            .body(faults.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
    /// Upload `content` in fragments of `chunk`; returns the final response body.
    fn upload_all(&self, url: &str, content: &[u8], chunk: usize) -> Value {
        let mut pos = 0;
        loop {
            let end = (pos + chunk).min(content.len());
            let r = self.put(url, pos, content.len(), &content[pos..end]);
            pos = end;
            if pos == content.len() {
                assert_eq!(r.status(), 201);
                return r.json().unwrap();
            }
            assert_eq!(r.status(), 202);
        }
    }
}

fn error_code(v: &Value) -> (String, String) {
    let e = &v["error"];
    (
        e["code"].as_str().unwrap_or_default().to_string(),
        e["innerError"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Send raw bytes (for requests reqwest will not produce) and return the whole answer.
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn token_grants() {
    let e = env();
    let i = e.emu.info().clone();
    let token_url = format!(
        "{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
        i.authority_url
    );
    let scope = "https://graph.microsoft.com/.default";
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, u16, &str)> = vec![
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &i.client_id),
                ("username", "UPLOADER@emulator.test"),
                ("password", &i.password),
                ("scope", scope),
            ],
            200,
            "",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &i.client_id),
                ("username", &i.username),
                ("password", "nope"),
                ("scope", scope),
            ],
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &i.client_id),
                ("username", "x@y"),
                ("password", &i.password),
                ("scope", scope),
            ],
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &i.client_id),
                ("client_secret", &i.client_secret),
                ("scope", scope),
            ],
            200,
            "",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &i.client_id),
                ("client_secret", "bad"),
                ("scope", scope),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "other"),
                ("username", &i.username),
                ("password", &i.password),
                ("scope", scope),
            ],
            400,
            "unauthorized_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &i.client_id),
                ("username", &i.username),
                ("password", &i.password),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "implicit"),
                ("client_id", &i.client_id),
                ("scope", scope),
            ],
            400,
            "unsupported_grant_type",
        ),
    ];
    for (form, status, err) in cases {
        let r = e.http.post(&token_url).form(&form).send().unwrap();
        assert_eq!(r.status().as_u16(), status, "{form:?}");
        let v: Value = r.json().unwrap();
        if status == 200 {
            assert_eq!(v["token_type"], "Bearer");
            assert_eq!(v["expires_in"], 3600);
            assert!(v["access_token"].as_str().unwrap().len() > 20);
        } else {
            assert_eq!(v["error"], err, "{form:?}");
            assert!(v["error_codes"].is_array());
        }
    }
    let wrong = e
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", &i.client_id),
            ("username", &i.username),
            ("password", "x"),
            ("scope", scope),
        ])
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert!(wrong["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS50126"));
    assert!(e
        .emu
        .stats()
        .tenants_seen
        .contains(&"contoso.onmicrosoft.com".to_string()));
}

#[test]
fn graph_requires_valid_token() {
    let e = env();
    let r = e.http.get(e.url("/drives/x/root")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        error_code(&r.json().unwrap()).0,
        "InvalidAuthenticationToken"
    );
    let r = e
        .http
        .get(e.url("/sites/emulator.sharepoint.test:/sites/Team"))
        .bearer_auth("forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // Scripted expiry of the presented token.
    e.set_faults(r#"{"script":[{"on":"any_graph","action":"expire_access_token"}]}"#);
    assert_eq!(
        e.get("/sites/emulator.sharepoint.test:/sites/Team")
            .status(),
        401
    );
    assert_eq!(
        e.get("/sites/emulator.sharepoint.test:/sites/Team")
            .status(),
        401
    );
}

#[test]
fn short_token_lifetime() {
    let e = env_with(Some(r#"{"access_token_ttl_secs":2}"#));
    assert_eq!(
        e.get("/sites/emulator.sharepoint.test:/sites/Team")
            .status(),
        200
    );
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        e.get("/sites/emulator.sharepoint.test:/sites/Team")
            .status(),
        401
    );
}

#[test]
fn site_and_drive_resolution() {
    let e = env();
    let site = e.site_id();
    assert!(site.starts_with("emulator.sharepoint.test,"));
    for (path, status) in [
        (
            "/sites/emulator.sharepoint.test:/sites/Team".to_string(),
            200,
        ),
        (
            "/sites/emulator.sharepoint.test:/sites/team:".to_string(),
            200,
        ),
        (
            "/sites/emulator.sharepoint.test:/sites/Other".to_string(),
            404,
        ),
        ("/sites/other.sharepoint.com:/sites/Team".to_string(), 404),
        (format!("/sites/{site}"), 200),
        ("/sites/nope".to_string(), 404),
        ("/drives/nope/root".to_string(), 404),
    ] {
        assert_eq!(e.get(&path).status().as_u16(), status, "{path}");
    }
    let v: Value = e.get(&format!("/sites/{site}/drives")).json().unwrap();
    let drives = v["value"].as_array().unwrap();
    let urls: Vec<&str> = drives
        .iter()
        .map(|d| d["webUrl"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        vec![
            "https://emulator.sharepoint.test/sites/Team/Shared%20Documents",
            "https://emulator.sharepoint.test/sites/Team/Archive"
        ]
    );
    assert_eq!(drives[0]["name"], "Documents");
    assert_eq!(drives[0]["driveType"], "documentLibrary");
    assert!(drives[0]["quota"]["remaining"].as_u64().unwrap() > 0);
    let d = drives[0]["id"].as_str().unwrap();
    // The three drive prefixes address the same folder.
    for p in [
        format!("/drives/{d}/root:/Uploads"),
        format!("/drives/{d}/root:/uploads:"),
        format!("/sites/{site}/drives/{d}/root:/Uploads"),
        format!("/sites/{site}/drive/root:/UPLOADS"),
    ] {
        let v: Value = e.get(&p).json().unwrap();
        assert_eq!(v["name"], "Uploads", "{p}");
        assert!(v["folder"].is_object());
        assert_eq!(v["parentReference"]["path"], format!("/drives/{d}/root:"));
    }
    let root: Value = e.get(&format!("/drives/{d}/root")).json().unwrap();
    let by_id: Value = e
        .get(&format!(
            "/drives/{d}/items/{}",
            root["id"].as_str().unwrap()
        ))
        .json()
        .unwrap();
    assert_eq!(root["id"], by_id["id"]);
    assert_eq!(e.get(&format!("/drives/{d}/root:/Nope")).status(), 404);
}

#[test]
fn children_paging_over_a_thousand() {
    let e = env();
    let d = e.drive_id();
    let r = e.send(
        "POST",
        &format!("/drives/{d}/root:/Uploads:/children"),
        Some(json!({"name":"Many","folder":{},"@microsoft.graph.conflictBehavior":"fail"})),
    );
    assert_eq!(r.status(), 201);
    for i in 0..1050 {
        e.seed(&format!("Uploads/Many/f{i:04}.txt"), b"x");
    }
    for (top, pages) in [(None, 6), (Some(500), 3), (Some(5000), 2)] {
        let mut url = match top {
            Some(t) => e.url(&format!(
                "/drives/{d}/root:/Uploads/Many:/children?$top={t}"
            )),
            None => e.url(&format!("/drives/{d}/root:/Uploads/Many:/children")),
        };
        let mut names = Vec::new();
        let mut n = 0;
        loop {
            let v: Value = e
                .http
                .get(&url)
                .bearer_auth(&e.token)
                .send()
                .unwrap()
                .json()
                .unwrap();
            n += 1;
            for it in v["value"].as_array().unwrap() {
                names.push(it["name"].as_str().unwrap().to_string());
            }
            match v["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => break,
            }
        }
        assert_eq!(n, pages, "{top:?}");
        assert_eq!(names.len(), 1050);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 1050);
    }
    let v: Value = e
        .get(&format!("/drives/{d}/root:/Uploads/Many"))
        .json()
        .unwrap();
    assert_eq!(v["folder"]["childCount"], 1050);
}

#[test]
fn upload_session_happy_path() {
    let e = env();
    let content = data(3 * ALIGN + 12_345, 1);
    let url = e.upload_url("Uploads/big%20file.bin");
    assert!(url.starts_with(&format!("http://127.0.0.1:{}/upload/", e.emu.info().port)));
    let r = e.put(&url, 0, content.len(), &content[..2 * ALIGN]);
    assert_eq!(r.status(), 202);
    let v: Value = r.json().unwrap();
    assert_eq!(
        v["nextExpectedRanges"],
        json!([format!("{}-{}", 2 * ALIGN, content.len() - 1)])
    );
    assert!(v["expirationDateTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        e.status(&url)["nextExpectedRanges"],
        json!([format!("{}-{}", 2 * ALIGN, content.len() - 1)])
    );
    let r = e.put(
        &url,
        2 * ALIGN,
        content.len(),
        &content[2 * ALIGN..3 * ALIGN],
    );
    assert_eq!(r.status(), 202);
    let r = e.put(&url, 3 * ALIGN, content.len(), &content[3 * ALIGN..]);
    assert_eq!(r.status(), 201);
    let item: Value = r.json().unwrap();
    assert_eq!(item["name"], "big file.bin");
    assert_eq!(item["size"], content.len() as u64);
    assert_eq!(
        item["file"]["hashes"]["quickXorHash"],
        quickxor_base64(&content)
    );
    assert_eq!(
        item["fileSystemInfo"]["lastModifiedDateTime"],
        "2021-03-04T05:06:07Z"
    );
    assert_eq!(
        item["webUrl"],
        "https://emulator.sharepoint.test/sites/Team/Shared%20Documents/Uploads/big%20file.bin"
    );
    // The session is gone once committed.
    assert_eq!(e.http.get(&url).send().unwrap().status(), 404);
    let items = e.emu.items();
    let it = items
        .iter()
        .find(|i| i.path == "Uploads/big file.bin")
        .unwrap();
    assert_eq!(it.size, content.len() as u64);
    assert_eq!(it.mtime, "2021-03-04T05:06:07Z");
    let admin: Value = e
        .http
        .get(e.admin("/items"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(admin["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["path"] == "Uploads/big file.bin"
            && i["quickXorHash"] == quickxor_base64(&content)));
    let stored = e
        .http
        .get(e.admin("/files/Documents/Uploads/big%20file.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&stored[..], &content[..]);
    assert!(e.emu.violations().is_empty(), "{:?}", e.emu.violations());
    let s = e.emu.stats();
    assert_eq!(
        (s.sessions_created, s.sessions_committed, s.fragment_puts),
        (1, 1, 3)
    );
    assert_eq!(s.fragment_bytes_received, content.len() as u64);
}

#[test]
fn session_addressing_forms() {
    let e = env();
    let d = e.drive_id();
    let up: Value = e.get(&format!("/drives/{d}/root:/Uploads")).json().unwrap();
    let up_id = up["id"].as_str().unwrap();
    let r = e.send(
        "POST",
        &format!("/drives/{d}/items/{up_id}:/by%20parent.bin:/createUploadSession"),
        Some(json!({"item":{"@microsoft.graph.conflictBehavior":"fail","name":"by parent.bin"}})),
    );
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().unwrap()["uploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let item = e.upload_all(&url, b"hello world", ALIGN);
    assert_eq!(
        item["file"]["hashes"]["quickXorHash"],
        "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
    );
    // By item id: replaces the content of the existing item, keeps its id.
    let id = item["id"].as_str().unwrap();
    let r = e.send(
        "POST",
        &format!("/drives/{d}/items/{id}/createUploadSession"),
        Some(json!({})),
    );
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().unwrap()["uploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let again = e.upload_all(&url, b"bye", ALIGN);
    assert_eq!(again["id"], item["id"]);
    assert_eq!(again["size"], 3);
    // Body name must match the URL name; parent must exist; names must be legal.
    for (path, body, status) in [
        ("Uploads/a.bin", json!({"item":{"name":"b.bin"}}), 400),
        ("Nope/a.bin", json!({}), 404),
        ("Uploads/a:b.bin", json!({}), 400),
        ("Uploads/desktop.ini", json!({}), 400),
        (
            "Uploads/a.bin",
            json!({"item":{"@microsoft.graph.conflictBehavior":"sometimes"}}),
            400,
        ),
    ] {
        let (st, v) = e.session(path, body);
        assert_eq!(st, status, "{path}: {v}");
    }
}

#[test]
fn strictness_rules() {
    let e = env();
    let total = 1_000_000;
    let body = data(ALIGN, 2);
    // (description, request → (status, code/inner), violation kind)
    type Case<'a> = (
        &'a str,
        Box<dyn Fn(&Env, &str) -> Response + 'a>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "authorization header",
            Box::new(|e, url| {
                e.http
                    .put(url)
                    .bearer_auth(&e.token)
                    .header("Content-Range", format!("bytes 0-{}/{total}", ALIGN - 1))
                    .body(body.clone())
                    .send()
                    .unwrap()
            }),
            401,
            "",
            Some("authorization_on_upload_url"),
        ),
        (
            "unaligned non-final",
            Box::new(|e, url| e.put(url, 0, total, &body[..1000])),
            400,
            "",
            Some("unaligned_fragment"),
        ),
        (
            "missing content-range",
            Box::new(|e, url| e.http.put(url).body(body.clone()).send().unwrap()),
            400,
            "",
            Some("bad_content_range"),
        ),
        (
            "range beyond total",
            Box::new(|e, url| e.put(url, 0, 10, &body)),
            400,
            "",
            Some("bad_content_range"),
        ),
        (
            "out of order (first time: event only)",
            Box::new(|e, url| e.put(url, ALIGN, total, &body)),
            416,
            "fragmentOutOfOrder",
            None,
        ),
        (
            "wrong tempauth",
            Box::new(|e, url| {
                let bad = format!("{}x", url);
                e.put(&bad, 0, total, &body)
            }),
            401,
            "",
            None,
        ),
        (
            "unknown session",
            Box::new(|e, url| {
                let bad = url.replace("/upload/", "/upload/X");
                e.put(&bad, 0, total, &body)
            }),
            404,
            "uploadSessionNotFound",
            None,
        ),
    ];
    for (i, (what, send, status, inner, violation)) in cases.into_iter().enumerate() {
        let url = e.upload_url(&format!("Uploads/strict{i}.bin"));
        let before = e.violation_kinds().len();
        let r = send(&e, &url);
        assert_eq!(r.status().as_u16(), status, "{what}");
        let v: Value = r.json().unwrap();
        if !inner.is_empty() {
            assert_eq!(error_code(&v).1, inner, "{what}");
        }
        let kinds = e.violation_kinds();
        match violation {
            Some(k) => assert_eq!(kinds[before..], [k.to_string()], "{what}"),
            None => assert_eq!(kinds.len(), before, "{what}: {kinds:?}"),
        }
        // Nothing was accepted.
        assert_eq!(
            e.status(&url)["nextExpectedRanges"],
            json!(["0-"]),
            "{what}"
        );
    }
}

#[test]
fn total_mismatch_and_overlaps() {
    let e = env();
    let body = data(ALIGN, 3);
    let url = e.upload_url("Uploads/t.bin");
    assert_eq!(e.put(&url, 0, 1_000_000, &body).status(), 202);
    let r = e.put(&url, ALIGN, 2_000_000, &body);
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().unwrap()).1, "fragmentLengthMismatch");
    assert_eq!(e.violation_kinds(), vec!["total_mismatch"]);
    // Overlap: first one is an event; after a GET, again only an event.
    let r = e.put(&url, 0, 1_000_000, &body);
    assert_eq!(r.status(), 416);
    let v: Value = r.json().unwrap();
    assert_eq!(
        error_code(&v),
        ("invalidRange".into(), "fragmentOverlap".into())
    );
    e.status(&url);
    assert_eq!(e.put(&url, 0, 1_000_000, &body).status(), 416);
    assert_eq!(e.violation_kinds().len(), 1);
    // The same overlapping fragment twice in a row without a GET: violation.
    assert_eq!(e.put(&url, 0, 1_000_000, &body).status(), 416);
    assert_eq!(
        e.violation_kinds(),
        vec!["total_mismatch", "repeated_overlap"]
    );
    assert_eq!(e.emu.events().len(), 2);
    // Out of order twice: violation.
    let url2 = e.upload_url("Uploads/t2.bin");
    assert_eq!(e.put(&url2, ALIGN, 1_000_000, &body).status(), 416);
    assert_eq!(e.put(&url2, ALIGN, 1_000_000, &body).status(), 416);
    assert_eq!(e.violation_kinds().last().unwrap(), "repeated_out_of_order");
}

#[test]
fn length_mismatch_and_too_large() {
    let e = env();
    let url = e.upload_url("Uploads/len.bin");
    let u = url::Url::parse(&url).unwrap();
    let target = format!("{}?{}", u.path(), u.query().unwrap());
    let req = format!(
        "PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\nContent-Range: bytes 0-{}/1000000\r\nConnection: close\r\n\r\n0123456789",
        ALIGN - 1
    );
    let answer = raw(e.emu.info().port, req.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(e.violation_kinds(), vec!["length_mismatch"]);
    // 60 MiB exactly (192 × 320 KiB) is too large; 191 × 320 KiB is fine.
    let big = vec![7u8; 192 * ALIGN];
    let r = e.put(&url, 0, 100_000_000, &big);
    assert_eq!(r.status(), 400);
    assert_eq!(
        error_code(&r.json().unwrap()).1,
        "maxFragmentLengthExceeded"
    );
    assert_eq!(e.violation_kinds()[1], "fragment_too_large");
    let r = e.put(&url, 0, 100_000_000, &big[..191 * ALIGN]);
    assert_eq!(r.status(), 202);
}

#[test]
fn status_and_cancel() {
    let e = env_with(Some(r#"{"ranges_style":"personal"}"#));
    let url = e.upload_url("Uploads/c.bin");
    assert_eq!(e.put(&url, 0, 700_000, &data(ALIGN, 4)).status(), 202);
    assert_eq!(
        e.status(&url)["nextExpectedRanges"],
        json!([format!("{ALIGN}-")])
    );
    assert_eq!(e.http.delete(&url).send().unwrap().status(), 204);
    let r = e.http.get(&url).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json().unwrap()).1, "uploadSessionNotFound");
    assert_eq!(e.put(&url, ALIGN, 700_000, &data(10, 4)).status(), 404);
    assert!(!e.emu.items().iter().any(|i| i.path == "Uploads/c.bin"));
}

#[test]
fn drop_with_partial_acceptance() {
    let e = env_with(Some(
        r#"{"script":[{"on":"put_fragment","action":"drop","accept_bytes":12345}]}"#,
    ));
    let content = data(3 * ALIGN + 99, 5);
    let url = e.upload_url("Uploads/drop.bin");
    let r = e.try_put(&url, 0, content.len(), &content[..3 * ALIGN]);
    assert!(r.is_err(), "the client must see a broken connection");
    let st = e.status(&url);
    assert_eq!(
        st["nextExpectedRanges"],
        json!([format!("12345-{}", content.len() - 1)])
    );
    // Resume at the unaligned offset with an aligned length: legal.
    let r = e.put(
        &url,
        12345,
        content.len(),
        &content[12345..12345 + 2 * ALIGN],
    );
    assert_eq!(r.status(), 202);
    let r = e.put(
        &url,
        12345 + 2 * ALIGN,
        content.len(),
        &content[12345 + 2 * ALIGN..],
    );
    assert_eq!(r.status(), 201);
    let item: Value = r.json().unwrap();
    assert_eq!(
        item["file"]["hashes"]["quickXorHash"],
        quickxor_base64(&content)
    );
    assert!(e.emu.violations().is_empty(), "{:?}", e.emu.violations());
    let s = e.emu.stats();
    assert_eq!(s.drops, 1);
    assert!(s.fragment_bytes_received >= content.len() as u64);
}

#[test]
fn random_drops_still_converge() {
    let e = env_with(Some(r#"{"seed":9,"drop_rate":0.4,"error_rate":0.2}"#));
    let content = data(10 * ALIGN + 5, 6);
    let url = e.upload_url("Uploads/random.bin");
    let mut done = None;
    for _ in 0..200 {
        let st = e.status(&url);
        let next: usize = st["nextExpectedRanges"][0]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let end = (next + 2 * ALIGN).min(content.len());
        if let Ok(r) = e.try_put(&url, next, content.len(), &content[next..end]) {
            if r.status() == 201 {
                done = Some(r.json::<Value>().unwrap());
                break;
            }
        }
    }
    let item = done.expect("upload finished");
    assert_eq!(
        item["file"]["hashes"]["quickXorHash"],
        quickxor_base64(&content)
    );
    assert!(e.emu.violations().is_empty());
}

#[test]
fn throttling_and_injected_errors() {
    let e = env_with(Some(
        r#"{"script":[{"on":"put_fragment","status":429,"retry_after_secs":7},
                      {"on":"put_fragment","status":503,"count":2}]}"#,
    ));
    let url = e.upload_url("Uploads/th.bin");
    let body = data(ALIGN, 7);
    let r = e.put(&url, 0, ALIGN * 2, &body);
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    for _ in 0..2 {
        assert_eq!(e.put(&url, 0, ALIGN * 2, &body).status(), 503);
    }
    assert_eq!(
        e.status(&url)["nextExpectedRanges"],
        json!([format!("0-{}", 2 * ALIGN - 1)])
    );
    assert_eq!(e.put(&url, 0, ALIGN * 2, &body).status(), 202);
    let s = e.emu.stats();
    assert_eq!((s.throttled, s.errors_injected), (1, 2));
    let f: Value = e
        .http
        .get(e.admin("/faults"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(f["script"][1]["count"], 0);
}

#[test]
fn session_and_upload_token_expiry() {
    let e = env_with(Some(r#"{"session_ttl_secs":1}"#));
    let url = e.upload_url("Uploads/exp.bin");
    std::thread::sleep(Duration::from_millis(1200));
    let r = e.put(&url, 0, 10, b"0123456789");
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json().unwrap()).1, "uploadSessionNotFound");

    e.set_faults(r#"{"upload_url_ttl_secs":1}"#);
    let url = e.upload_url("Uploads/exp2.bin");
    std::thread::sleep(Duration::from_millis(1100));
    let r = e.put(&url, 0, 10, b"0123456789");
    assert_eq!(r.status(), 401);
    assert_eq!(
        error_code(&r.json().unwrap()),
        ("unauthenticated".into(), "expiredToken".into())
    );

    e.set_faults(
        r#"{"script":[{"on":"put_fragment","action":"expire_session"},
                      {"on":"put_fragment","action":"expire_upload_token"}]}"#,
    );
    let url = e.upload_url("Uploads/exp3.bin");
    assert_eq!(e.put(&url, 0, 10, b"0123456789").status(), 404);
    let url = e.upload_url("Uploads/exp4.bin");
    assert_eq!(e.put(&url, 0, 10, b"0123456789").status(), 401);
    assert_eq!(e.put(&url, 0, 10, b"0123456789").status(), 401);
}

#[test]
fn defer_commit() {
    let e = env();
    let (st, v) = e.session(
        "Uploads/deferred.bin",
        json!({"item":{"@microsoft.graph.conflictBehavior":"replace","name":"deferred.bin"},"deferCommit":true}),
    );
    assert_eq!(st, 200);
    let url = v["uploadUrl"].as_str().unwrap();
    let r = e.put(url, 0, 5, b"abcde");
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().unwrap()["nextExpectedRanges"], json!([]));
    assert!(!e
        .emu
        .items()
        .iter()
        .any(|i| i.path == "Uploads/deferred.bin"));
    let r = e
        .http
        .post(url)
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().unwrap()["size"], 5);
    assert!(e
        .emu
        .items()
        .iter()
        .any(|i| i.path == "Uploads/deferred.bin"));
}

#[test]
fn conflicts() {
    let e = env();
    e.seed("Uploads/Exists.txt", b"old");
    let fail =
        |name: &str| json!({"item":{"@microsoft.graph.conflictBehavior":"fail","name":name}});
    let (st, v) = e.session("Uploads/exists.TXT", fail("exists.TXT"));
    assert_eq!(st, 409);
    assert_eq!(error_code(&v).0, "nameAlreadyExists");
    // A conflict that arises during the session is caught at commit.
    let (st, v) = e.session("Uploads/late.txt", fail("late.txt"));
    assert_eq!(st, 200);
    e.seed("Uploads/LATE.txt", b"first");
    let r = e.put(v["uploadUrl"].as_str().unwrap(), 0, 3, b"new");
    assert_eq!(r.status(), 409);
    // rename picks a free name; replace keeps the stored name's case.
    let (_, v) = e.session(
        "Uploads/exists.txt",
        json!({"item":{"@microsoft.graph.conflictBehavior":"rename","name":"exists.txt"}}),
    );
    let item = e.upload_all(v["uploadUrl"].as_str().unwrap(), b"r", ALIGN);
    assert_eq!(item["name"], "exists 1.txt");
    let url = e.upload_url("Uploads/EXISTS.TXT");
    let item = e.upload_all(&url, b"replaced", ALIGN);
    assert_eq!(item["name"], "Exists.txt");
    assert_eq!(item["size"], 8);
    // Scripted 409 at creation.
    e.set_faults(r#"{"script":[{"on":"create_session","status":409}]}"#);
    assert_eq!(e.session("Uploads/x.bin", json!({})).0, 409);
    assert_eq!(e.session("Uploads/x.bin", json!({})).0, 200);
}

#[test]
fn quota() {
    let e = env();
    e.seed("Uploads/filler.bin", &data(2000, 8));
    e.set_faults(r#"{"quota_bytes":1000}"#);
    let (st, v) = e.session("Uploads/q.bin", json!({}));
    assert_eq!(st, 507);
    assert_eq!(error_code(&v).0, "quotaLimitReached");
    // Enough room to open a session but not to commit it.
    e.set_faults(r#"{"quota_bytes":2500}"#);
    let url = e.upload_url("Uploads/q.bin");
    assert_eq!(e.put(&url, 0, 1000, &data(1000, 9)).status(), 507);
    let d = e.drive_id();
    let v: Value = e.get(&format!("/drives/{d}")).json().unwrap();
    assert_eq!(v["quota"]["total"], 2500);
    assert_eq!(v["quota"]["remaining"], 500);
    e.set_faults(r#"{"script":[{"on":"create_session","status":507}]}"#);
    assert_eq!(e.session("Uploads/q2.bin", json!({})).0, 507);
}

#[test]
fn download_with_range() {
    let e = env();
    let content = data(100_000, 10);
    e.seed("Uploads/dl.bin", &content);
    let d = e.drive_id();
    let r = e.get(&format!("/drives/{d}/root:/Uploads/DL.bin:/content"));
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("http://127.0.0.1:"));
    let full = e.http.get(&loc).send().unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(&full.bytes().unwrap()[..], &content[..]);
    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=99990-", 99_990, 99_999),
        ("bytes=-5", 99_995, 99_999),
    ] {
        let r = e.http.get(&loc).header("Range", range).send().unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes {start}-{end}/100000")
        );
        assert_eq!(&r.bytes().unwrap()[..], &content[start..=end]);
    }
    let r = e
        .http
        .get(&loc)
        .header("Range", "bytes=100000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(e.http.get(format!("{loc}x")).send().unwrap().status(), 401);
}

#[test]
fn simple_upload() {
    let e = env();
    let d = e.drive_id();
    let put = |path: &str, body: &[u8]| {
        e.http
            .put(e.url(&format!("/drives/{d}/root:/{path}:/content")))
            .bearer_auth(&e.token)
            .body(body.to_vec())
            .send()
            .unwrap()
    };
    let r = put("Uploads/empty.txt", b"");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    assert_eq!(v["size"], 0);
    assert_eq!(
        v["file"]["hashes"]["quickXorHash"],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    assert_eq!(put("Uploads/EMPTY.txt", b"abc").status(), 200);
    assert_eq!(put("Missing/x.txt", b"abc").status(), 404);
    let r = e
        .http
        .put(e.url(&format!(
            "/drives/{d}/root:/Uploads/empty.txt:/content?@microsoft.graph.conflictBehavior=fail"
        )))
        .bearer_auth(&e.token)
        .body("z")
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        e.emu
            .items()
            .iter()
            .find(|i| i.path == "Uploads/empty.txt")
            .unwrap()
            .size,
        3
    );
}

#[test]
fn patch_and_delete() {
    let e = env();
    let d = e.drive_id();
    let a = e.seed("Uploads/Sub/a.txt", b"aaa");
    e.seed("Uploads/b.txt", b"bbb");
    let up: Value = e.get(&format!("/drives/{d}/root:/Uploads")).json().unwrap();
    let id = a["id"].as_str().unwrap();
    // Rename + move + mtime in one PATCH.
    let r = e.send(
        "PATCH",
        &format!("/drives/{d}/items/{id}"),
        Some(json!({"name":"A2.txt","parentReference":{"id":up["id"]},
                    "fileSystemInfo":{"lastModifiedDateTime":"2020-01-02T03:04:05Z"}})),
    );
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["name"], "A2.txt");
    assert_eq!(
        v["fileSystemInfo"]["lastModifiedDateTime"],
        "2020-01-02T03:04:05Z"
    );
    assert_eq!(
        e.get(&format!("/drives/{d}/root:/Uploads/a2.TXT")).status(),
        200
    );
    // Target name taken (case-insensitively) → 409.
    let r = e.send(
        "PATCH",
        &format!("/drives/{d}/items/{id}"),
        Some(json!({"name":"B.TXT"})),
    );
    assert_eq!(r.status(), 409);
    // if-match mismatch → 412.
    let r = e
        .http
        .patch(e.url(&format!("/drives/{d}/items/{id}")))
        .bearer_auth(&e.token)
        .header("if-match", "\"{nope},1\"")
        .json(&json!({"name":"c.txt"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 412);
    // Folder create: fail → 409 on existing.
    let mk = |name: &str| {
        e.send(
            "POST",
            &format!("/drives/{d}/root:/Uploads:/children"),
            Some(json!({"name":name,"folder":{},"@microsoft.graph.conflictBehavior":"fail"})),
        )
    };
    assert_eq!(mk("sub").status(), 409);
    assert_eq!(mk("New").status(), 201);
    // Recursive delete by path.
    e.seed("Uploads/Sub/deep/x.txt", b"x");
    assert_eq!(
        e.send("DELETE", &format!("/drives/{d}/root:/Uploads/SUB"), None)
            .status(),
        204
    );
    assert_eq!(
        e.get(&format!("/drives/{d}/root:/Uploads/Sub/deep/x.txt"))
            .status(),
        404
    );
    assert_eq!(
        e.send("DELETE", &format!("/drives/{d}/items/{id}"), None)
            .status(),
        204
    );
    assert_eq!(
        e.send("DELETE", &format!("/drives/{d}/items/{id}"), None)
            .status(),
        404
    );
    let paths: Vec<String> = e.emu.items().into_iter().map(|i| i.path).collect();
    assert_eq!(paths, vec!["Uploads", "Uploads/New", "Uploads/b.txt"]);
}

#[test]
fn parallel_put_is_a_violation() {
    let e = env_with(Some(
        r#"{"script":[{"on":"put_fragment","delay_ms":2000}]}"#,
    ));
    let url = e.upload_url("Uploads/par.bin");
    let body = data(ALIGN, 11);
    std::thread::scope(|s| {
        let slow = s.spawn(|| e.put(&url, 0, 3 * ALIGN, &body).status().as_u16());
        std::thread::sleep(Duration::from_millis(600));
        let fast = e.put(&url, ALIGN, 3 * ALIGN, &body);
        assert_eq!(fast.status(), 416);
        assert_eq!(slow.join().unwrap(), 202);
    });
    assert_eq!(e.violation_kinds(), vec!["parallel_put"]);
}

#[test]
fn bandwidth_limit() {
    let e = env_with(Some(r#"{"bandwidth_bytes_per_sec":400000}"#));
    let url = e.upload_url("Uploads/bw.bin");
    let t = std::time::Instant::now();
    assert_eq!(
        e.put(&url, 0, 2 * ALIGN, &data(2 * ALIGN, 12)).status(),
        201
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn admin_endpoints_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmulatorOptions {
        data_dir: dir.path().join("d"),
        port: 0,
        faults_json: None,
        password: Some("pw".into()),
        client_secret: Some("sec".into()),
        ..Default::default()
    };
    let emu = Emulator::start(opts.clone()).unwrap();
    assert_eq!(
        (
            emu.info().password.as_str(),
            emu.info().client_secret.as_str()
        ),
        ("pw", "sec")
    );
    let http = Client::new();
    let admin = emu.info().admin_url.clone();
    let r = http
        .put(format!(
            "{admin}/files/Archive/Old/r%C3%A9sum%C3%A9.txt?mtime=2019-05-06T07:08:09Z"
        ))
        .body("hello world")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        http.post(format!("{admin}/faults"))
            .body(r#"{"eror_rate":1}"#)
            .send()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.post(format!("{admin}/faults"))
            .body(r#"{"error_rate":0.5}"#)
            .send()
            .unwrap()
            .status(),
        200
    );
    let f: Value = http
        .get(format!("{admin}/faults"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(f["error_rate"], 0.5);
    let stats: Value = http
        .get(format!("{admin}/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(stats["requests"].as_u64().unwrap() >= 3);
    assert_eq!(
        http.post(format!("{admin}/reset_stats"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let v: Value = http
        .get(format!("{admin}/violations"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["violations"], json!([]));
    let before = emu.items();
    emu.stop();
    let emu = Emulator::start(opts).unwrap();
    assert_eq!(emu.items(), before);
    let it = before.iter().find(|i| i.path == "Old/résumé.txt").unwrap();
    assert_eq!(it.drive, "Archive");
    assert_eq!(it.mtime, "2019-05-06T07:08:09Z");
    assert_eq!(
        it.quick_xor_hash.as_deref(),
        Some("aCgDG9jwBhDc4Q1yawMZAAAAAAA=")
    );
    let body = http
        .get(format!(
            "{}/files/Archive/Old/r%C3%A9sum%C3%A9.txt",
            emu.info().admin_url
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "hello world");
    let ready = dir.path().join("ready.json");
    shareuplift::emulator::write_ready_file(&ready, emu.info()).unwrap();
    let back: shareuplift::emulator::EmulatorInfo =
        serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    assert_eq!(back.graph_url, emu.info().graph_url);
}

#[test]
fn many_concurrent_connections() {
    let e = env();
    std::thread::scope(|s| {
        for w in 0..8 {
            let e = &e;
            s.spawn(move || {
                for k in 0..3 {
                    let content = data(2 * ALIGN + w * 100 + k, w as u8);
                    let url = e.upload_url(&format!("Uploads/w{w}-{k}.bin"));
                    let item = e.upload_all(&url, &content, ALIGN);
                    assert_eq!(
                        item["file"]["hashes"]["quickXorHash"],
                        quickxor_base64(&content)
                    );
                }
            });
        }
    });
    assert_eq!(e.emu.stats().sessions_committed, 24);
    assert!(e.emu.violations().is_empty());
}

#[test]
fn commit_drop_keeps_the_file() {
    let e = env_with(Some(r#"{"script":[{"on":"commit","action":"drop"}]}"#));
    let content = data(ALIGN + 10, 13);
    let url = e.upload_url("Uploads/lost-answer.bin");
    assert_eq!(
        e.put(&url, 0, content.len(), &content[..ALIGN]).status(),
        202
    );
    assert!(e
        .try_put(&url, ALIGN, content.len(), &content[ALIGN..])
        .is_err());
    // The answer was lost, the file is there; the session is gone.
    assert_eq!(e.http.get(&url).send().unwrap().status(), 404);
    let d = e.drive_id();
    let v: Value = e
        .get(&format!("/drives/{d}/root:/Uploads/lost-answer.bin"))
        .json()
        .unwrap();
    assert_eq!(
        v["file"]["hashes"]["quickXorHash"],
        quickxor_base64(&content)
    );
}

#[test]
fn faults_on_all_graph_requests() {
    let e = env();
    e.set_faults(r#"{"apply_to":"all","throttle_rate":1.0,"retry_after_secs":3}"#);
    let r = e.get("/sites/emulator.sharepoint.test:/sites/Team");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    e.set_faults(r#"{"apply_to":"all","drop_rate":1.0}"#);
    assert!(e
        .http
        .get(e.url("/sites/emulator.sharepoint.test:/sites/Team"))
        .bearer_auth(&e.token)
        .send()
        .is_err());
    // The token endpoint and the admin API are never subject to faults.
    let i = e.emu.info();
    let r = e
        .http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            i.authority_url, i.tenant
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", i.client_id.as_str()),
            ("client_secret", i.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    e.set_faults("{}");
    assert_eq!(
        e.get("/sites/emulator.sharepoint.test:/sites/Team")
            .status(),
        200
    );
}

#[test]
fn raw_http_edges() {
    let e = env();
    let d = e.drive_id();
    let port = e.emu.info().port;
    let too_big = format!(
        "PUT /v1.0/drives/{d}/root:/Uploads/huge.bin:/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 300000000\r\n\r\n",
        e.token
    );
    let answer = raw(port, too_big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let chunked = "PUT /upload/x?tempauth=y HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(raw(port, chunked.as_bytes()).starts_with("HTTP/1.1 411"));
    assert!(raw(port, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    // Keep-alive: two requests on one connection.
    let two = "GET /_admin/stats HTTP/1.1\r\nHost: x\r\n\r\nGET /_admin/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(port, two.as_bytes()).matches("HTTP/1.1 200").count(), 2);
}
