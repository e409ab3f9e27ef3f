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
