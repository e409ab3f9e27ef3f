//! `shareuplift check`: what a mount would do at start-up, step by step, each on one line
//! (`ok   …` or `FAIL … — what to change`), plus who the mount acts as, the library's quota
//! and, with `--write`, a zero-byte probe file created and deleted.
//!
//! The steps are the mount's own (`resolve::sign_in`, `resolve::resolve_steps`), so `check`
//! and a failing mount say the same words. `check` does not retry transient errors (it
//! reports them); it never prints a secret: lines carry only configuration URLs, names from
//! the server and the errors' already-scrubbed text.

use serde::Deserialize;

use super::client::GraphRemote;
use super::paths::encode_segment;
use super::resolve::{resolve_steps, sign_in};
use super::{GraphConfig, Tuning};
use crate::remote::{Conflict, Remote};

#[derive(Deserialize)]
struct Me {
    #[serde(rename = "displayName", default)]
    display_name: String,
    #[serde(rename = "userPrincipalName", default)]
    upn: String,
}

#[derive(Deserialize, Default)]
struct Quota {
    #[serde(default)]
    used: u64,
    #[serde(default)]
    total: u64,
}

#[derive(Deserialize)]
struct DriveQuota {
    #[serde(default)]
    quota: Option<Quota>,
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Run the checks, reporting each line to `out`; `true` when a mount would work.
pub fn check(cfg: &GraphConfig, write: bool, out: &mut dyn FnMut(String)) -> bool {
    let api = match GraphRemote::api_for(cfg, Tuning::default()) {
        Ok(a) => a,
        Err(e) => {
            out(format!("FAIL setup: {e}"));
            return false;
        }
    };
    if let Err(e) = sign_in(&api, cfg) {
        out(format!("FAIL {e}"));
        return false;
    }
    out(format!("ok   sign-in: as {}", api.auth.acting_as()));
    if cfg.auth.app_only() {
        out(format!(
            "ok   acting as app {} (application permissions)",
            cfg.client_id.as_deref().unwrap_or("")
        ));
    } else {
        match api.get_json::<Me>(&format!("{}/me", api.base), "me") {
            Ok(me) => out(format!("ok   account: {} <{}>", me.display_name, me.upn)),
            Err(e) => out(format!("warn account: cannot read /me ({e})")),
        }
    }
    let mut step = |s: String| out(format!("ok   {s}"));
    let resolved = match resolve_steps(&api, cfg, &mut step) {
        Ok(r) => r,
        Err(e) => {
            out(format!("FAIL {e}"));
            return false;
        }
    };
    let url = format!(
        "{}/drives/{}?$select=quota",
        api.base,
        encode_segment(&resolved.drive_id)
    );
    match api.get_json::<DriveQuota>(&url, "library quota") {
        Ok(DriveQuota { quota: Some(q) }) => out(format!(
            "ok   quota: {} used of {} ({} free)",
            gib(q.used),
            gib(q.total),
            gib(q.total.saturating_sub(q.used))
        )),
        Ok(_) => out("ok   quota: not reported by the server".into()),
        Err(e) => out(format!("warn quota: {e}")),
    }
    if !write {
        return true;
    }
    let remote = GraphRemote::from_resolved(api, resolved);
    let probe = format!(".shareuplift-check-{}.tmp", std::process::id());
    match remote.upload_small(&probe, &[], Conflict::Fail, None) {
        Ok(_) => match remote.delete(&probe) {
            Ok(()) => {
                out(format!("ok   write: created and deleted {probe}"));
                true
            }
            Err(e) => {
                out(format!(
                    "FAIL write: created {probe} but cannot delete it: {e}"
                ));
                false
            }
        },
        Err(e) => {
            out(format!(
                "FAIL write: cannot create {probe}: {e} — the account or app needs write \
                 access (Files.ReadWrite.All / Sites.ReadWrite.All, or Sites.Selected with write)"
            ));
            false
        }
    }
}
