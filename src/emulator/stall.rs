//! Stalls (field-reference entry 20): requests that connect and then get nothing for tens of
//! seconds or forever, as SharePoint's front ends sometimes do. Driven by the field knobs
//! `stall_rate`, `stall_kinds`, `stall_secs` and `stall_phase` (`field.rs`), applied by the
//! emulator's request handler around routing (`mod.rs`).
//!
//! A stall hits a *fraction* of the requests of each kind, spread evenly (the n-th request of a
//! kind stalls when ⌈n·rate⌉ grows: the first one, then every 1/rate-th), so a retry right after a stalled request is not stalled
//! again unless other requests of that kind came in between, and a run is reproducible. The
//! phase says where: `head` holds the request before it is handled (a PUT's body is not read;
//! nothing is answered), `body` handles it and then stops the answer after part of its body
//! (a fragment PUT is read and stored, and its answer withheld: the status line never comes),
//! `mixed` alternates, head first. A stall lasts `stall_secs`, or until the client gives up
//! and closes (`null`); a request whose client is still there afterwards is answered late,
//! normally. Counters: `field_faults` in `GET /_admin/stats`.
//!
//! Also here: the run-time state of every read-side knob (evenly spread counters and the
//! seeded generator `read_faults.rs` uses), its validation, and its counters. The state lives
//! in `FieldState` (the `field` lock; a leaf for these calls).

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::field::FieldConfig;
use super::graph_api::{parse_route, ItemOp, Route};
use super::http::{Interrupt, Reply, Request};
use super::state::{lock, EmulatorState};

/// The request kinds a stall can name (the keys of `by_kind` in `GET /_admin/stats`).
pub const KINDS: &[&str] = &[
    "list_children",
    "item_get",
    "create_upload_session",
    "fragment_put",
    "upload_url_other",
    "mkdir",
    "delete",
    "patch",
    "delta",
    "content_get",
    "simple_upload",
    "token",
    "other",
];

/// The `by_kind` name of a request; `None` for `/_admin`.
pub fn kind_name(req: &Request) -> Option<&'static str> {
    let p = req.path.as_str();
    let m = req.method.as_str();
    if p.starts_with("/_admin/") {
        return None;
    }
    if p.starts_with("/upload/") {
        return Some(if m == "PUT" {
            "fragment_put"
        } else {
            "upload_url_other"
        });
    }
    if p.starts_with("/auth/") {
        return Some("token");
    }
    if p.starts_with("/download/") {
        return Some("content_get");
    }
    let Some(rest) = p.strip_prefix("/v1.0") else {
        return Some("other");
    };
    Some(match (m, parse_route(rest)) {
        ("GET", Ok(Route::Item { op, .. })) => match op {
            ItemOp::Children => "list_children",
            ItemOp::Content => "content_get",
            ItemOp::Delta => "delta",
            _ => "item_get",
        },
        ("GET", Ok(_)) => "item_get",
        ("POST", Ok(Route::Item { op, .. })) => match op {
            ItemOp::CreateUploadSession => "create_upload_session",
            ItemOp::Children => "mkdir",
            _ => "other",
        },
        (
            "PUT",
            Ok(Route::Item {
                op: ItemOp::Content,
                ..
            }),
        ) => "simple_upload",
        ("PATCH", Ok(Route::Item { .. })) => "patch",
        ("DELETE", Ok(Route::Item { .. })) => "delete",
        _ => "other",
    })
}

/// Validate the read-side knobs (called by `FieldConfig::merged`).
pub fn validate(cfg: &FieldConfig) -> Result<(), String> {
    for (name, rate) in [
        ("stall_rate", cfg.stall_rate),
        ("download_html_rate", cfg.download_html_rate),
        ("download_cut_rate", cfg.download_cut_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be within 0..=1"));
        }
    }
    if let Some(k) = cfg
        .stall_kinds
        .iter()
        .find(|k| !KINDS.contains(&k.as_str()))
    {
        return Err(format!(
            "stall_kinds: unknown kind '{k}' (one of {})",
            KINDS.join(", ")
        ));
    }
    if !matches!(cfg.stall_phase.as_str(), "head" | "body" | "mixed") {
        return Err("stall_phase must be \"head\", \"body\" or \"mixed\"".into());
    }
    if cfg.children_page_max == Some(0) {
        return Err("children_page_max must be at least 1".into());
    }
    if let Some(code) = cfg.token_refusal {
        if super::auth::policy_refusal(code).is_none() {
            return Err(format!(
                "token_refusal: {code} is not one of 53003, 50076, 50079, 70043, 700082"
            ));
        }
    }
    Ok(())
}

/// Counters of the read-side knobs (`field_faults` in `GET /_admin/stats`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FieldFaultCounts {
    /// Requests held before they were handled.
    pub stalls_head: u64,
    /// Answers stopped after part of their body (or withheld after a PUT body was read).
    pub stalls_body: u64,
    /// Stalls that ended because the client closed the connection.
    pub stalls_client_gave_up: u64,
    /// Downloads answered 200 with an HTML page.
    pub html_pages: u64,
    /// Downloads whose connection was cut after part of the body.
    pub downloads_cut: u64,
    /// Ranged downloads answered 200 with the whole file.
    pub ranges_ignored: u64,
    /// Children pages whose `@odata.nextLink` pointed at the drive root.
    pub next_links_to_root: u64,
    /// Token requests refused by the Conditional Access knob.
    pub token_refusals: u64,
    /// Graph requests answered 401 although their token was valid.
    pub graph_refusals: u64,
}

/// Run-time state of the read-side knobs (inside `FieldState`).
#[derive(Debug)]
pub struct FieldFaultState {
    /// Requests seen per key (a kind, or a knob name) for the evenly spread rates.
    seen: HashMap<&'static str, u64>,
    /// Stalls decided so far (for `mixed`).
    stalls: u64,
    rng: StdRng,
}

impl Default for FieldFaultState {
    fn default() -> Self {
        FieldFaultState {
            seen: HashMap::new(),
            stalls: 0,
            rng: StdRng::seed_from_u64(20),
        }
    }
}

impl FieldFaultState {
    /// Whether this request of `key` is one of the `rate` fraction (evenly spread).
    pub fn spread(&mut self, key: &'static str, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let n = self.seen.entry(key).or_insert(0);
        *n += 1;
        let (before, after) = ((*n - 1) as f64 * rate, *n as f64 * rate);
        after.ceil() > before.ceil()
    }

    /// A random number in `0..n` (`0` when `n` is 0), from the seeded generator.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.rng.gen_range(0..n)
        }
    }
}

/// Where a stall hits one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Hold before handling.
    Head(Option<Duration>),
    /// Handle, then stop the answer part-way (or withhold it, for a PUT).
    Body(Option<Duration>),
}

/// Decide whether `req` stalls, and where.
pub fn decide(shared: &EmulatorState, req: &Request) -> Option<Stall> {
    let kind = kind_name(req)?;
    let mut f = lock(&shared.field);
    let cfg = f.config();
    let (rate, secs, phase) = (cfg.stall_rate, cfg.stall_secs, cfg.stall_phase.clone());
    let listed = cfg.stall_kinds.is_empty() || cfg.stall_kinds.iter().any(|k| k == kind);
    if rate <= 0.0 || !listed {
        return None;
    }
    let st = &mut f.faults_state;
    if !st.spread(kind, rate) {
        return None;
    }
    st.stalls += 1;
    let hold = secs.map(Duration::from_secs);
    let head = match phase.as_str() {
        "head" => true,
        "body" => false,
        _ => st.stalls % 2 == 1,
    };
    Some(if head {
        Stall::Head(hold)
    } else {
        Stall::Body(hold)
    })
}

/// Apply a head stall: `Some(reply)` when the client gave up meanwhile (the request is then
/// dropped unhandled).
pub fn before(
    shared: &EmulatorState,
    stall: Option<Stall>,
    body: &super::http::BodyReader<'_>,
) -> Option<Reply> {
    let Some(Stall::Head(hold)) = stall else {
        return None;
    };
    log::debug!("emulator: stalling a request before handling it");
    let held = body.hold(hold);
    shared.stat(|s| {
        s.read_faults.stalls_head += 1;
        if held == super::http::Held::Closed {
            s.read_faults.stalls_client_gave_up += 1;
        }
    });
    (held == super::http::Held::Closed).then_some(Reply::Drop)
}

/// Apply a body stall to a handled request's answer.
pub fn after(shared: &EmulatorState, stall: Option<Stall>, req: &Request, reply: Reply) -> Reply {
    let (hold, mut resp) = match (stall, reply) {
        (Some(Stall::Body(hold)), Reply::Respond(resp)) => (hold, resp),
        (_, reply) => return reply,
    };
    let len = match &resp.body {
        super::http::Body::Bytes(b) => b.len() as u64,
        super::http::Body::File(_, n) => *n,
    };
    // A PUT's answer is withheld entirely (the body was read); other answers stop part-way
    // through their body (or before the status line when there is no body to split).
    let after = if req.method == "PUT" || len < 2 {
        None
    } else {
        Some(1 + lock(&shared.field).faults_state.below(len - 1))
    };
    resp.interrupt = Some(Interrupt {
        after,
        hold,
        cut: false,
    });
    shared.stat(|s| s.read_faults.stalls_body += 1);
    Reply::Respond(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_even_and_never_twice_in_a_row_below_one_half() {
        let mut st = FieldFaultState::default();
        let hits: Vec<bool> = (0..20).map(|_| st.spread("list_children", 0.2)).collect();
        assert_eq!(hits.iter().filter(|h| **h).count(), 4);
        assert!(hits.windows(2).all(|w| !(w[0] && w[1])), "{hits:?}");
        assert!(
            hits[0] && hits[5] && hits[10],
            "the first, then every fifth: {hits:?}"
        );
        // Kinds count separately; rate 0 never, rate 1 always.
        assert!(!st.spread("token", 0.0));
        assert!((0..5).all(|_| st.spread("token", 1.0)));
    }

    #[test]
    fn knobs_validate() {
        let ok = FieldConfig::from_json(
            r#"{"stall_rate":0.2,"stall_kinds":["fragment_put","token"],"stall_phase":"body",
                "download_html_rate":0.5,"token_refusal":53003}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
        for bad in [
            r#"{"stall_rate":2}"#,
            r#"{"stall_kinds":["uploads"]}"#,
            r#"{"stall_phase":"middle"}"#,
            r#"{"token_refusal":12345}"#,
            r#"{"children_page_max":0}"#,
        ] {
            assert!(FieldConfig::from_json(bad).is_err(), "{bad}");
        }
    }
}
