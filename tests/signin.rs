//! Connecting to a tenant: every `folder_url` form mounts the same folder, the token request
//! asks for the Graph scope (not the emulator's origin), and start-up errors name the setting.

mod common;

use std::fs;
use std::time::Duration;

use common::{Emu, Mount};

const SUB: &str = "Über €";

fn share_link(emu: &Emu, path: &str) -> String {
    let url = format!(
        "{}/share?drive=Documents&path={}",
        emu.info.admin_url,
        percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC)
    );
    let v: serde_json::Value = reqwest::blocking::get(&url).unwrap().json().unwrap();
    v["url"].as_str().unwrap().to_string()
}

#[test]
fn every_folder_url_form_mounts_the_same_folder() {
    let emu = Emu::start(None);
    emu.seed(&format!("{SUB}/marker.txt"), b"here".to_vec());
    let host = "https://emulator.sharepoint.test";
    let enc = "%C3%9Cber%20%E2%82%AC";
    let forms: Vec<(String, &[&str])> = vec![
        (format!("{host}/sites/Team/Shared Documents/Uploads/{SUB}/"), &[]),
        (format!("{host}/sites/Team/Shared%20Documents/Uploads/{enc}"), &[]),
        (format!("/sites/Team/Shared Documents/Uploads/{SUB}"), &[]),
        (
            format!(
                "{host}/sites/Team/Shared%20Documents/Forms/AllItems.aspx?id=%2Fsites%2FTeam%2FShared%20Documents%2FUploads%2F{enc}&viewid=0a1b2c3d%2D4e5f"
            ),
            &[],
        ),
        (
            format!(
                "{host}/sites/Team/Shared%20Documents/Forms/AllItems.aspx?RootFolder=%2Fsites%2FTeam%2FShared%20Documents%2FUploads%2F{enc}&FolderCTID=0x012000"
            ),
            &[],
        ),
        (share_link(&emu, &format!("Uploads/{SUB}")), &[]),
        // No site_url: derived from the folder URL.
        (
            format!("{host}/sites/Team/Shared%20Documents/Uploads/{enc}"),
            &["--site-url", ""],
        ),
        (share_link(&emu, &format!("Uploads/{SUB}")), &["--site-url", ""]),
    ];
    for (form, extra_args) in forms {
        let mut args = vec!["--folder-url", form.as_str()];
        args.extend_from_slice(extra_args);
        let m = Mount::try_start(&emu, "", &args)
            .unwrap_or_else(|(_, log)| panic!("{form} {extra_args:?}: mount failed:\n{log}"));
        let text = fs::read_to_string(m.path("marker.txt"))
            .unwrap_or_else(|e| panic!("{form}: marker.txt not in the mount: {e}"));
        assert_eq!(text, "here", "{form}");
        m.unmount();
    }
    // A sharing link to something that does not exist names the link.
    let bogus = "https://emulator.sharepoint.test/:f:/s/Team/Ebm9uZQ";
    let (_, log) = Mount::try_start(&emu, "", &["--folder-url", bogus])
        .err()
        .expect("a dead link must not mount");
    assert!(log.contains("sharing link not found"), "{log}");
}

/// A OneDrive for Business URL (`-my` host, `/personal/USER/Documents/…`, as copied from the
/// browser) mounts that user's OneDrive folder: the emulator serves the personal site too.
#[test]
fn a_onedrive_personal_url_mounts_the_personal_drive() {
    let emu = Emu::start(None);
    let r = reqwest::blocking::Client::new()
        .put(format!(
            "{}/files/OneDrive/Scans/2026/marker.txt",
            emu.info.admin_url
        ))
        .body(b"personal".to_vec())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let folder =
        "https://emulator-my.sharepoint.test/personal/ana_emulator_test/Documents/Scans/2026/";
    let site = "https://emulator-my.sharepoint.test/personal/ana_emulator_test";
    for extra in [["--site-url", ""], ["--site-url", site]] {
        let mut args = vec!["--folder-url", folder];
        args.extend_from_slice(&extra);
        let m = Mount::try_start(&emu, "", &args)
            .unwrap_or_else(|(_, log)| panic!("{extra:?}: mount failed:\n{log}"));
        assert_eq!(
            fs::read_to_string(m.path("marker.txt")).unwrap(),
            "personal"
        );
        m.unmount();
    }
    // Written through the mount, it lands in the OneDrive drive, not in the team site's.
    let m = Mount::try_start(&emu, "", &["--folder-url", folder, "--site-url", ""]).unwrap();
    fs::write(m.path("new.txt"), b"scanned").unwrap();
    m.settle(Duration::from_secs(20));
    m.unmount();
    let url = format!("{}/files/OneDrive/Scans/2026/new.txt", emu.info.admin_url);
    let got = reqwest::blocking::get(url).unwrap();
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().unwrap().as_ref(), b"scanned");
    assert!(emu.item("new.txt").is_none());
}

/// The token request carries the Graph scope although graph_url points at the emulator: the
/// emulator (like Azure AD) refuses any other scope, for both grants.
#[test]
fn token_requests_ask_for_the_graph_scope() {
    let emu = Emu::start(None);
    let http = reqwest::blocking::Client::new();
    let token_url = format!(
        "{}/{}/oauth2/v2.0/token",
        emu.info.authority_url, emu.info.tenant
    );
    let origin = emu.info.graph_url.trim_end_matches("/v1.0").to_string();
    let r = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", emu.info.client_id.as_str()),
            ("client_secret", emu.info.client_secret.as_str()),
            ("scope", &format!("{origin}/.default")),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("invalid_scope"));
    // The mount signs in with both methods.
    for extra in [
        "",
        &format!(
            "auth = \"client_secret\"\nclient_secret = \"{}\"\n",
            emu.info.client_secret
        ),
    ] {
        let m = Mount::start(&emu, extra);
        fs::write(m.path("scope.txt"), b"x").unwrap();
        m.wait_state("scope.txt", "done", Duration::from_secs(30));
        let log = m.log_text();
        assert!(!log.contains(&emu.info.password) && !log.contains(&emu.info.client_secret));
        m.unmount();
    }
}

/// A private CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn test_ca(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ShareUplift Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// Over TLS with a private CA: the mount works when the CA is trusted through `ca_file` or
/// `SSL_CERT_FILE`, and fails with a certificate error otherwise.
#[test]
fn tls_with_a_private_ca() {
    let emu = Emu::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(tmp.path());
    let front = shareuplift::emulator::tls::start(emu.info.port, 0, &cert, &key).unwrap();
    let base = format!("https://127.0.0.1:{}", front.port);
    let graph = format!("{base}/v1.0");
    let authority = format!("{base}/auth");
    let tls_args = [
        "--graph-url",
        graph.as_str(),
        "--authority-url",
        authority.as_str(),
    ];

    let (_, log) = Mount::try_start(&emu, "", &tls_args)
        .err()
        .expect("an untrusted certificate must not mount");
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("shareuplift: "))
        .unwrap_or("");
    assert!(last.to_lowercase().contains("certificate"), "{log}");

    let ca_str = ca.display().to_string();
    let mut args = tls_args.to_vec();
    args.extend(["--ca-file", ca_str.as_str()]);
    let m = Mount::try_start(&emu, "", &args)
        .unwrap_or_else(|(_, log)| panic!("ca_file: mount failed:\n{log}"));
    fs::write(m.path("tls.txt"), b"over tls").unwrap();
    m.wait_state("tls.txt", "done", Duration::from_secs(30));
    m.unmount();

    // SAFETY of the test: only this test's children read SSL_CERT_FILE.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let r = Mount::try_start(&emu, "", &tls_args);
    std::env::remove_var("SSL_CERT_FILE");
    let m = r.unwrap_or_else(|(_, log)| panic!("SSL_CERT_FILE: mount failed:\n{log}"));
    assert!(m.path("tls.txt").exists());
    m.unmount();
}

/// Start-up rides out throttling of the token endpoint and of Graph (429 + Retry-After) and
/// comes up; a wrong password ends start-up at once even with retries configured.
#[test]
fn startup_waits_out_throttling_but_not_wrong_credentials() {
    let emu = Emu::start(Some(
        r#"{"script":[{"on":"token","status":503,"retry_after_secs":1,"count":2},
                      {"on":"any_graph","status":429,"retry_after_secs":1,"count":5}]}"#,
    ));
    // Graph answers 429 + Retry-After: 1 five times in a row: 5 s of throttling (issue 9).
    let started = std::time::Instant::now();
    let m = Mount::try_start(&emu, "startup_timeout = 60\n", &[])
        .unwrap_or_else(|(_, log)| panic!("mount failed:\n{log}"));
    assert!(started.elapsed() >= Duration::from_secs(6), "no waits?");
    let log = m.log_text();
    assert!(log.matches("trying again in").count() >= 7, "{log}");
    // And it works.
    fs::write(m.path("after-throttling.txt"), b"up").unwrap();
    m.settle(Duration::from_secs(20));
    assert!(emu.item("after-throttling.txt").is_some());
    m.unmount();

    let t0 = std::time::Instant::now();
    let (_, log) = Mount::try_start(&emu, "", &["--password", "wrong-password-xyz"])
        .err()
        .expect("wrong password must not mount");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(log.contains("sign-in failed"), "{log}");
    assert!(!log.contains("wrong-password-xyz"));
}

fn post(url: &str, body: &str) -> serde_json::Value {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
    r.json().unwrap()
}

fn admin_get(emu: &Emu, path: &str) -> serde_json::Value {
    reqwest::blocking::get(format!("{}/{path}", emu.info.admin_url))
        .unwrap()
        .json()
        .unwrap()
}

/// Run `shareuplift ARGS`; (success, stdout + stderr).
fn run_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shareuplift");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A config file for the emulator with `extra` lines; `replace` pairs edit the base text.
fn config_file(emu: &Emu, dir: &std::path::Path, extra: &str, replace: &[(&str, &str)]) -> String {
    let mut text = common::config_for(&emu.info, &dir.join("spool"), extra);
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    let p = dir.join(format!("cfg-{}.toml", text.len()));
    fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The state directory's files whose names start with `prefix` (`tokens-`, `folder-`).
fn state_files(state: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

fn refresh_token_in(state: &std::path::Path) -> String {
    let f = state_files(state, "tokens-").remove(0);
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(f).unwrap()).unwrap();
    v["refresh_token"].as_str().unwrap().to_string()
}

/// Device code: `login` completes after two `authorization_pending` polls and stores a 0600
/// cache; mounts sign in from it with no prompt (twice: the rotated token was saved); a
/// revoked refresh token pauses the queue (`sign-in needed`, files keep spooling, none
/// fails), and after `login` the queued files upload by themselves; `logout` removes it.
#[test]
fn device_code_login_cache_pause_and_resume() {
    use std::os::unix::fs::PermissionsExt;
    let emu = Emu::start(Some(r#"{"access_token_ttl_secs":3}"#));
    let tmp = tempfile::tempdir().unwrap();
    let (state, extra, cfg) = device_code_config(&emu, tmp.path());

    // Mounting before login names the fix.
    let (_, log) = Mount::try_start(&emu, &extra, &[])
        .err()
        .expect("no sign-in yet");
    assert!(
        log.contains("sign-in needed: run shareuplift login"),
        "{log}"
    );

    let (ok, out) = run_cli(&["login", "--config", &cfg]);
    assert!(ok, "{out}");
    assert!(out.contains("enter the code"), "{out}");
    let st = admin_get(&emu, "signin");
    assert_eq!(st["device_polls"], 3, "2 pending + 1 approved: {st}");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let file = fs::read_dir(&state)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&file), 0o600);
    let first_rt = refresh_token_in(&state);

    let m = Mount::start(&emu, &extra);
    fs::write(m.path("dc1.txt"), b"one").unwrap();
    m.wait_state("dc1.txt", "done", Duration::from_secs(30));
    let mut logs = m.log_text();
    m.unmount();
    let rotated = refresh_token_in(&state);
    assert_ne!(rotated, first_rt, "the rotated refresh token must be saved");
    let m = Mount::start(&emu, &extra);
    fs::write(m.path("dc2.txt"), b"two").unwrap();
    m.wait_state("dc2.txt", "done", Duration::from_secs(30));

    // Revoke: the next refresh (tokens live 3 s) fails; the queue pauses.
    post(&format!("{}/revoke_refresh_tokens", emu.info.admin_url), "");
    std::thread::sleep(Duration::from_secs(4));
    for n in ["p1.txt", "p2.txt"] {
        fs::write(m.path(n), n.as_bytes()).unwrap();
    }
    wait_sign_in_needed(&m);
    std::thread::sleep(Duration::from_secs(3));
    let status = m.status_json();
    assert_eq!(status["totals"]["failed"], 0, "{status:#}");
    assert!(emu.item("p1.txt").is_none());
    assert!(status.to_string().contains("sign-in needed"));

    let (ok, out) = run_cli(&["login", "--config", &cfg]);
    assert!(ok, "{out}");
    for n in ["p1.txt", "p2.txt"] {
        m.wait_state(n, "done", Duration::from_secs(30));
    }
    // The queue is no longer paused (done rows may still show the error they waited out).
    let st = m.status_text();
    let header = st.lines().next().unwrap_or_default();
    assert!(!header.contains("sign-in needed"), "{st}");
    assert!(m.status_json().get("paused").is_none(), "{st}");
    let status_all = format!("{}{}", m.status_text(), m.status_json());
    logs.push_str(&m.log_text());
    m.unmount();

    let last_rt = refresh_token_in(&state);
    for secret in [
        &first_rt,
        &rotated,
        &last_rt,
        &emu.info.password,
        &emu.info.client_secret,
    ] {
        assert!(!logs.contains(secret.as_str()), "secret in the log");
        assert!(!status_all.contains(secret.as_str()), "secret in .status");
        assert!(!out.contains(secret.as_str()), "secret in login output");
    }
    assert!(!logs.contains("access_token\":"), "token body in the log");

    let (ok, out) = run_cli(&["logout", "--config", &cfg]);
    assert!(ok && out.contains("Signed out"), "{out}");
    assert_eq!(fs::read_dir(&state).unwrap().count(), 0);
}

/// A self-signed certificate + key made with the openssl CLI: (cert.pem, key.pem).
fn client_cert(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.crt.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={name}")])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Certificate sign-in: a registered certificate works (key in the same PEM, and in its own
/// file); an unregistered one fails with one line naming the certificate file.
#[test]
fn certificate_sign_in() {
    let emu = Emu::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = client_cert(tmp.path(), "good");
    let both = tmp.path().join("good.both.pem");
    fs::write(
        &both,
        [fs::read(&key).unwrap(), fs::read(&cert).unwrap()].concat(),
    )
    .unwrap();
    let reg = post(
        &format!("{}/certificates", emu.info.admin_url),
        &fs::read_to_string(&cert).unwrap(),
    );
    assert_eq!(reg["registered"], 1);
    for extra in [
        format!(
            "auth = \"certificate\"\ncertificate_file = \"{}\"\n",
            both.display()
        ),
        format!(
            "auth = \"certificate\"\ncertificate_file = \"{}\"\ncertificate_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    ] {
        let m = Mount::start(&emu, &extra);
        fs::write(m.path("cert.txt"), b"app-only").unwrap();
        m.wait_state("cert.txt", "done", Duration::from_secs(30));
        let log = m.log_text();
        assert!(!log.contains("eyJhbGciOi"), "assertion in the log");
        m.unmount();
    }
    let (bad, _) = client_cert(tmp.path(), "stranger");
    let bad_both = tmp.path().join("stranger.both.pem");
    let bad_key = tmp.path().join("stranger.key.pem");
    fs::write(
        &bad_both,
        [fs::read(&bad_key).unwrap(), fs::read(&bad).unwrap()].concat(),
    )
    .unwrap();
    let extra = format!(
        "auth = \"certificate\"\ncertificate_file = \"{}\"\n",
        bad_both.display()
    );
    let (_, log) = Mount::try_start(&emu, &extra, &[])
        .err()
        .expect("unregistered cert");
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("shareuplift: "))
        .unwrap_or("");
    assert!(
        last.contains("certificate not registered for this app"),
        "{log}"
    );
    assert!(last.contains("stranger.both.pem"), "{last}");
    assert!(!log.contains("eyJhbGciOi"));
}

/// `check` prints each step and exits 0 for a working config (with `--write`, the probe is
/// created and deleted); a wrong password, a missing library and a missing folder exit
/// non-zero and name the failing step.
#[test]
fn check_reports_each_step() {
    let emu = Emu::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let good = config_file(&emu, tmp.path(), "", &[]);
    let (ok, out) = run_cli(&["check", "--config", &good, "--write"]);
    assert!(ok, "{out}");
    for want in [
        "ok   sign-in: as user",
        "ok   account: Emulated Uploader",
        "ok   site: ",
        "ok   library: Documents (https://",
        "ok   folder: ",
        "ok   quota:",
        "ok   write: created and deleted",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(emu
        .items()
        .iter()
        .all(|i| !i["rel"].as_str().unwrap_or("").contains("check")));

    let pw = emu.info.password.clone();
    let cases = [
        (
            vec![(pw.as_str(), "wrong-password-xyz")],
            "FAIL sign-in failed",
        ),
        (
            vec![("Shared Documents/Uploads", "NoSuchLibrary/Uploads")],
            "FAIL library not found",
        ),
        (
            vec![("Shared Documents/Uploads", "Shared Documents/NoSuchFolder")],
            "FAIL folder not found: NoSuchFolder",
        ),
    ];
    for (replace, want) in cases {
        let cfg = config_file(&emu, tmp.path(), "", &replace);
        let (ok, out) = run_cli(&["check", "--config", &cfg]);
        assert!(!ok, "{want}: must fail:\n{out}");
        assert!(out.contains(want), "{want:?} missing:\n{out}");
        assert!(
            !out.contains(&pw) && !out.contains("wrong-password-xyz"),
            "{out}"
        );
    }
}

/// The emulated device-code endpoint: `slow_down` for a poll faster than the interval,
/// `expired_token` after expiry; `login` ends with a clear error when the code expires.
#[test]
fn device_code_slow_down_and_expiry() {
    let emu = Emu::start(None);
    post(
        &format!("{}/device_code", emu.info.admin_url),
        r#"{"pending_polls":100,"interval_secs":2,"expires_in_secs":3}"#,
    );
    let base = format!("{}/{}/oauth2/v2.0", emu.info.authority_url, emu.info.tenant);
    let http = reqwest::blocking::Client::new();
    let scope = "https://graph.microsoft.com/Files.ReadWrite.All offline_access";
    let dc: serde_json::Value = http
        .post(format!("{base}/devicecode"))
        .form(&[("client_id", emu.info.client_id.as_str()), ("scope", scope)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(dc["interval"], 2);
    let code = dc["device_code"].as_str().unwrap().to_string();
    let poll = || -> serde_json::Value {
        http.post(format!("{base}/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", emu.info.client_id.as_str()),
                ("device_code", code.as_str()),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(poll()["error"], "authorization_pending");
    assert_eq!(poll()["error"], "slow_down");
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(poll()["error"], "expired_token");

    let tmp = tempfile::tempdir().unwrap();
    let extra = format!(
        "auth = \"device_code\"\nstate_dir = \"{}\"\n",
        tmp.path().join("state").display()
    );
    let cfg = config_file(&emu, tmp.path(), &extra, &[]);
    let (ok, out) = run_cli(&["login", "--config", &cfg]);
    assert!(!ok, "{out}");
    assert!(out.contains("expired"), "{out}");
}

/// A mount started while the saved sign-in is already dead (refresh token revoked) comes up
/// paused when an earlier start-up found the folder: it spools, `.status` says `sign-in
/// needed`, nothing fails, and after `login` the files upload by themselves. Without a
/// remembered folder, start-up still fails with the one-line message.
#[test]
fn dead_sign_in_at_start_up_comes_up_paused_when_the_folder_is_known() {
    let emu = Emu::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let (state, extra, cfg) = device_code_config(&emu, tmp.path());
    let revoke = || post(&format!("{}/revoke_refresh_tokens", emu.info.admin_url), "");
    let login = || {
        let (ok, out) = run_cli(&["login", "--config", &cfg]);
        assert!(ok, "{out}");
    };

    // Signed in once, but no start-up has found the folder: a dead sign-in ends start-up.
    login();
    revoke();
    let (_, log) = Mount::try_start(&emu, &extra, &[])
        .err()
        .expect("no folder known yet: start-up must fail");
    assert!(
        log.contains("sign-in needed: run shareuplift login"),
        "{log}"
    );
    assert!(state_files(&state, "folder-").is_empty());

    // A start-up that works remembers the folder (no secret in that file).
    login();
    let m = Mount::start(&emu, &extra);
    fs::write(m.path("before.txt"), b"before").unwrap();
    m.wait_state("before.txt", "done", Duration::from_secs(30));
    let mut logs = m.log_text();
    m.unmount();
    let folder_files = state_files(&state, "folder-");
    assert_eq!(folder_files.len(), 1, "{folder_files:?}");
    let folder_text = fs::read_to_string(&folder_files[0]).unwrap();
    let rt = refresh_token_in(&state);
    assert!(
        !folder_text.contains(&rt),
        "refresh token in the folder cache"
    );
    assert!(folder_text.contains("drive_id"), "{folder_text}");

    // Dead again before the next start: the mount comes up anyway, paused.
    revoke();
    let m = Mount::start(&emu, &extra);
    fs::write(m.path("late.txt"), b"written while signed out").unwrap();
    wait_sign_in_needed(&m);
    std::thread::sleep(Duration::from_secs(2));
    let status = m.status_json();
    assert_eq!(status["totals"]["failed"], 0, "{status:#}");
    assert!(emu.item("late.txt").is_none(), "uploaded while signed out");
    assert_eq!(
        fs::read(m.path("late.txt")).unwrap(),
        b"written while signed out"
    );

    login();
    m.wait_state("late.txt", "done", Duration::from_secs(30));
    assert!(m.status_json().get("paused").is_none());
    assert!(emu.item("late.txt").is_some());
    logs.push_str(&m.log_text());
    m.unmount();
    assert!(
        logs.contains("mounting with the folder found at the last start-up"),
        "{}",
        common::tail(&logs, 20)
    );
    for secret in [&rt, &refresh_token_in(&state)] {
        assert!(!logs.contains(secret.as_str()), "refresh token in the log");
    }

    // logout forgets the folder as well as the sign-in.
    let (ok, out) = run_cli(&["logout", "--config", &cfg]);
    assert!(ok, "{out}");
    assert_eq!(fs::read_dir(&state).unwrap().count(), 0);
}

/// Wait (20 s at most) until the mount's `.status` says the queue waits for a sign-in.
fn wait_sign_in_needed(m: &Mount) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !m
        .status_text()
        .contains("sign-in needed: run shareuplift login")
    {
        assert!(std::time::Instant::now() < deadline, "{}", m.status_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A device-code configuration with its state directory under `dir`: (state dir, the extra
/// config lines, the config file).
fn device_code_config(emu: &Emu, dir: &std::path::Path) -> (std::path::PathBuf, String, String) {
    let state = dir.join("state");
    let extra = format!(
        "auth = \"device_code\"\nstate_dir = \"{}\"\n",
        state.display()
    );
    let cfg = config_file(emu, dir, &extra, &[]);
    (state, extra, cfg)
}
