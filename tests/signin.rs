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
                      {"on":"any_graph","status":429,"retry_after_secs":1,"count":2}]}"#,
    ));
    let started = std::time::Instant::now();
    let m = Mount::try_start(&emu, "startup_timeout = 60\n", &[])
        .unwrap_or_else(|(_, log)| panic!("mount failed:\n{log}"));
    assert!(started.elapsed() >= Duration::from_secs(3), "no waits?");
    let log = m.log_text();
    assert!(log.matches("trying again in").count() >= 4, "{log}");
    m.unmount();

    let t0 = std::time::Instant::now();
    let (_, log) = Mount::try_start(&emu, "", &["--password", "wrong-password-xyz"])
        .err()
        .expect("wrong password must not mount");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(log.contains("sign-in failed"), "{log}");
    assert!(!log.contains("wrong-password-xyz"));
}
