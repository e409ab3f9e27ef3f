//! Field conditions of the emulator over real HTTP: latency (applied, and concurrent requests
//! wait in parallel), the request budget (resource units, refusals that cost, the one-minute
//! window and its RateLimit-* headers from 80 %, 429 or 503 with Retry-After in seconds, as a
//! date or absent, the blocked app, the inside-Retry-After counter), per-kind counters, `root/delta` (paging, admin-made changes,
//! deletions, 410 resyncRequired, delta_disabled) and one open upload session per path.

mod common;

use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use shareuplift::emulator::{Emulator, EmulatorOptions};

struct Env {
    _dir: tempfile::TempDir,
    emu: Emulator,
    http: Client,
    token: String,
    drive: String,
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn env_with(faults: Option<&str>, field: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(EmulatorOptions {
        data_dir: dir.path().join("data"),
        faults_json: faults.map(str::to_string),
        field_json: field.map(str::to_string),
        ..Default::default()
    })
    .unwrap();
    let http = client();
    let info = emu.info().clone();
    let token = common::password_token(&http, &info);
    let mut e = Env {
        _dir: dir,
        emu,
        http,
        token,
        drive: String::new(),
    };
    let r = e.get(&format!("{}/sites/root/drive", e.emu.info().graph_url));
    e.drive = r.json::<Value>().unwrap()["id"].as_str().unwrap().into();
    e
}

impl Env {
    fn graph(&self, path: &str) -> String {
        format!("{}{}", self.emu.info().graph_url, path)
    }
    fn admin_url(&self, path: &str) -> String {
        format!("{}/{}", self.emu.info().admin_url, path)
    }
    fn get(&self, url: &str) -> Response {
        self.http.get(url).bearer_auth(&self.token).send().unwrap()
    }
    fn stats(&self) -> Value {
        self.http
            .get(self.admin_url("stats"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
    fn set_field(&self, v: Value) -> Value {
        let r = self
            .http
            .post(self.admin_url("field"))
            .json(&v)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }
    fn seed(&self, rel: &str, body: &[u8]) {
        let r = self
            .http
            .put(self.admin_url(&format!("files/Documents/{rel}")))
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    fn create_session(&self, rel: &str, conflict: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.graph(&format!(
                "/drives/{}/root:/{rel}:/createUploadSession",
                self.drive
            )))
            .bearer_auth(&self.token)
            .json(&json!({"item": {"@microsoft.graph.conflictBehavior": conflict}}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }
    fn sessions(&self) -> Value {
        self.http
            .get(self.admin_url("sessions"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
    /// Follow a delta round from `url` to its deltaLink; returns (items, pages, deltaLink).
    fn delta_round(&self, url: &str) -> (Vec<Value>, usize, String) {
        let (mut items, mut pages, mut next) = (Vec::new(), 0, url.to_string());
        loop {
            let r = self.get(&next);
            assert_eq!(r.status(), 200);
            let v: Value = r.json().unwrap();
            pages += 1;
            items.extend(v["value"].as_array().unwrap().iter().cloned());
            if let Some(n) = v["@odata.nextLink"].as_str() {
                assert!(v.get("@odata.deltaLink").is_none());
                next = n.to_string();
                continue;
            }
            let link = v["@odata.deltaLink"]
                .as_str()
                .expect("deltaLink")
                .to_string();
            return (items, pages, link);
        }
    }
}

fn names(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn latency_is_applied_to_graph_not_admin_and_concurrent_requests_overlap() {
    let e = env_with(None, Some(r#"{"latency_ms": 100}"#));
    let url = e.graph(&format!("/drives/{}/root", e.drive));
    let t = Instant::now();
    assert_eq!(e.get(&url).status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    e.stats();
    assert!(
        t.elapsed() < Duration::from_millis(80),
        "admin is not delayed"
    );
    // 16 concurrent requests on 16 connections: about one latency period, not sixteen.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..16 {
            let (url, token) = (url.clone(), e.token.clone());
            s.spawn(move || {
                let r = client().get(&url).bearer_auth(&token).send().unwrap();
                assert_eq!(r.status(), 200);
            });
        }
    });
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(600), "serialized? {took:?}");
    // The knob changes at run time.
    assert_eq!(e.set_field(json!({"latency_ms": 0}))["latency_ms"], 0);
    let t = Instant::now();
    e.get(&url);
    assert!(t.elapsed() < Duration::from_millis(80));
    assert_eq!(e.stats()["by_kind"]["item_get"], 19);
}

#[test]
fn budget_charges_units_and_refusals_and_announces_the_minute_from_80_percent() {
    let e = env_with(None, None);
    // 1 unit a second = 60 units a minute; a bucket of a whole minute, so the one-minute
    // window is what binds here.
    e.set_field(json!({"budget_per_sec": 1, "budget_burst": 60}));
    let url = e.graph(&format!("/drives/{}/root/children", e.drive));
    let h = |r: &Response, n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    // A listing costs 2 units (entry 7): 24 listings use 48 units, 80 % of the minute.
    for i in 0..23 {
        let r = e.get(&url);
        assert_eq!(r.status(), 200, "listing {i}");
        assert_eq!(h(&r, "RateLimit-Limit"), None, "listing {i}");
    }
    let r = e.get(&url);
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "RateLimit-Limit").as_deref(), Some("60"));
    assert_eq!(h(&r, "RateLimit-Remaining").as_deref(), Some("12"));
    let reset: u64 = h(&r, "RateLimit-Reset").unwrap().parse().unwrap();
    assert!((50..=60).contains(&reset), "{reset}");
    for _ in 0..6 {
        assert_eq!(e.get(&url).status(), 200);
    }
    // The minute's 60 units are spent: refused until the window resets, with the headers.
    let r = e.get(&url);
    assert_eq!(r.status(), 429);
    let ra: u64 = h(&r, "Retry-After").unwrap().parse().unwrap();
    assert!((50..=60).contains(&ra), "{ra}");
    assert_eq!(h(&r, "RateLimit-Remaining").as_deref(), Some("0"));
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "activityLimitReached");
    assert_eq!(body["error"]["innerError"]["code"], "throttledRequest");
    // A client that ignores Retry-After is counted, and its refusal costs too (entry 5).
    assert_eq!(e.get(&url).status(), 429);
    let st = e.stats();
    assert_eq!(st["requests_inside_retry_after"], 1);
    assert_eq!(st["budget_refused"], 2);
    assert_eq!(st["budget_units_admitted"], 60);
    assert_eq!(st["budget_units_refused"], 4);
    assert_eq!(st["by_kind"]["list_children"], 32);

    // Entry 7: 503 with an HTTP-date Retry-After; the per-second bucket binds (one unit a
    // second, one in the bucket), and a refusal puts it into debt.
    e.set_field(
        json!({"budget_per_sec": 1, "budget_burst": 1, "throttle_status": 503,
                       "retry_after": "date", "budget_units": "requests"}),
    );
    let item = e.graph(&format!("/drives/{}/root", e.drive));
    assert_eq!(e.get(&item).status(), 200);
    let r = e.get(&item);
    assert_eq!(r.status(), 503);
    let when = httpdate::parse_http_date(&h(&r, "Retry-After").unwrap()).unwrap();
    let ahead = when
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    // One unit of debt: two seconds until a unit is back (the date rounds up).
    assert!(ahead >= Duration::from_millis(1000), "{ahead:?}");
    assert!(ahead <= Duration::from_secs(3), "{ahead:?}");
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "serviceNotAvailable"
    );
    // No Retry-After at all.
    e.set_field(json!({"retry_after": "absent"}));
    let r = e.get(&item);
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("Retry-After").is_none());

    // Entry 8: blocked; every metered request 503, whatever the budget.
    e.set_field(json!({"budget_per_sec": null, "app_blocked": true}));
    for _ in 0..3 {
        let r = e.get(&item);
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("Retry-After").is_none());
    }
    assert_eq!(e.stats()["blocked_refused"], 3);
    e.set_field(json!({"app_blocked": false}));
    assert_eq!(e.get(&item).status(), 200);
}

/// Injected 429s open a Retry-After window too; `reset_stats` clears the counters.
#[test]
fn injected_throttling_opens_a_window_too() {
    let e = env_with(None, None);
    let url = e.graph(&format!("/drives/{}/root/children", e.drive));
    e.emu
        .set_faults(r#"{"script":[{"on":"any_graph","status":429,"retry_after_secs":3}]}"#)
        .unwrap();
    assert_eq!(e.get(&url).status(), 429);
    assert_eq!(e.get(&url).status(), 200);
    assert_eq!(e.stats()["requests_inside_retry_after"], 1);
    let r = e.http.post(e.admin_url("reset_stats")).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(e.stats()["by_kind"]["list_children"], 0);
}

/// Entry 6: no `RateLimit-*` headers at all when the knob says so (the per-user limit),
/// however much of the minute is used; refusals still come, with Retry-After.
#[test]
fn budget_without_rate_limit_headers() {
    let e = env_with(
        None,
        Some(r#"{"budget_per_sec": 2, "budget_burst": 120, "rate_limit_headers": false}"#),
    );
    let url = e.graph(&format!("/drives/{}/root", e.drive));
    let mut refused = 0;
    // 120 units a minute: the whole minute is spent, and then some.
    for _ in 0..125 {
        let r = e.get(&url);
        assert!(r.headers().get("RateLimit-Limit").is_none());
        assert!(r.headers().get("RateLimit-Remaining").is_none());
        if r.status() == 429 {
            refused += 1;
            assert!(r.headers().get("Retry-After").is_some());
        }
    }
    assert!(refused > 0);
}

#[test]
fn delta_pages_reports_admin_changes_and_deletions_then_resyncs() {
    let e = env_with(None, None);
    for i in 0..5 {
        e.seed(&format!("Uploads/f{i}.txt"), b"one");
    }
    let start = e.graph(&format!("/drives/{}/root/delta?$top=2", e.drive));
    let (items, pages, link) = e.delta_round(&start);
    // root, Uploads, 5 files.
    assert_eq!(items.len(), 7, "{}", names(&items).join(","));
    assert_eq!(pages, 4);
    assert!(items.iter().any(|i| i.get("root").is_some()));
    // Nothing changed: an empty round.
    let (items, _, link) = e.delta_round(&link);
    assert!(items.is_empty(), "{items:?}");
    // A colleague changes f1, deletes f2, adds g.txt, all through the admin API.
    e.seed("Uploads/f1.txt", b"changed");
    let r = e
        .http
        .delete(e.admin_url("files/Documents/Uploads/f2.txt"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    e.seed("Uploads/g.txt", b"new");
    let (items, _, link) = e.delta_round(&link);
    let n = names(&items);
    assert!(
        n.contains(&"f1.txt".to_string()) && n.contains(&"g.txt".to_string()),
        "{n:?}"
    );
    assert!(!n.contains(&"f0.txt".to_string()), "{n:?}");
    let gone: Vec<&Value> = items
        .iter()
        .filter(|i| i.get("deleted").is_some())
        .collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["name"], "f2.txt");
    assert!(gone[0].get("file").is_some());
    let f1 = items.iter().find(|i| i["name"] == "f1.txt").unwrap();
    assert_eq!(f1["size"], 7);
    assert_eq!(e.stats()["by_kind"]["delta"], 6);
    // Tokens too old: 410 resyncRequired; a fresh enumeration works.
    let r = e.http.post(e.admin_url("delta/expire")).send().unwrap();
    assert_eq!(r.status(), 204);
    let r = e.get(&link);
    assert_eq!(r.status(), 410);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "resyncRequired"
    );
    let (items, _, _) = e.delta_round(&e.graph(&format!("/drives/{}/root/delta", e.drive)));
    assert_eq!(items.len(), 7);
    // token=latest: no items, a usable link.
    let r = e.get(&e.graph(&format!("/drives/{}/root/delta?token=latest", e.drive)));
    let v: Value = r.json().unwrap();
    assert!(v["value"].as_array().unwrap().is_empty());
    let (items, _, _) = e.delta_round(v["@odata.deltaLink"].as_str().unwrap());
    assert!(items.is_empty());
    // Refused delta, for the client's fallback.
    e.set_field(json!({"delta_disabled": true}));
    assert_eq!(e.get(&link).status(), 501);
    e.set_field(json!({"delta_disabled_status": 403}));
    assert_eq!(e.get(&link).status(), 403);
}

#[test]
fn one_open_upload_session_per_path() {
    let e = env_with(Some(r#"{"session_ttl_secs": 2}"#), None);
    let (s, first) = e.create_session("Uploads/a.bin", "replace");
    assert_eq!(s, 200);
    for conflict in ["replace", "fail", "rename"] {
        let (s, v) = e.create_session("Uploads/A.bin", conflict);
        assert_eq!(s, 409, "{conflict}");
        assert_eq!(v["error"]["code"], "nameAlreadyExists");
        assert_eq!(
            v["error"]["message"],
            "Another upload session is already open for this path."
        );
    }
    assert_eq!(e.create_session("Uploads/b.bin", "replace").0, 200);
    let st = e.sessions();
    assert_eq!(st["count"], 2);
    assert_eq!(st["paths"], json!(["Uploads/a.bin", "Uploads/b.bin"]));
    assert!(!st.to_string().contains("tempauth"));
    // Cancel releases the path.
    let url = first["uploadUrl"].as_str().unwrap();
    assert_eq!(e.http.delete(url).send().unwrap().status(), 204);
    let (s, second) = e.create_session("Uploads/a.bin", "replace");
    assert_eq!(s, 200);
    // Commit releases it.
    let r = e
        .http
        .put(second["uploadUrl"].as_str().unwrap())
        .header("Content-Range", "bytes 0-2/3")
        .body(b"abc".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(e.create_session("Uploads/a.bin", "replace").0, 200);
    // Expiry (2 s idle) releases it.
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(e.create_session("Uploads/a.bin", "replace").0, 200);
    assert_eq!(e.stats()["sessions_refused_path_busy"], 3);
    std::thread::sleep(Duration::from_millis(2300));
    let st = e.stats();
    assert_eq!(st["open_sessions"], 0, "{st}");
    // The lenient knob.
    e.set_field(json!({"allow_parallel_sessions": true}));
    assert_eq!(e.create_session("Uploads/c.bin", "replace").0, 200);
    assert_eq!(e.create_session("Uploads/c.bin", "replace").0, 200);
    assert_eq!(e.emu.open_session_paths().len(), 2);
}
