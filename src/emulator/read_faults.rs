//! Read-side field knobs: how SharePoint's downloads and listings go wrong (field-reference
//! entries 18, 19 and 24), applied by small hooks in `graph_api/`.
//!
//! - `download_html_rate` / `download_html_name` (entry 18): a download answered 200 with
//!   `Content-Type: text/html` and a few hundred bytes of error page, whatever `Range` asked.
//! - `download_cut_rate`: the connection is reset after a random part of the download's body
//!   (at least one byte, never all of it).
//! - `download_ignore_range` (entry 18): `Range` is ignored; 200 with the whole file.
//! - `children_next_link_to_root` (entry 19, GDI#3341): the first page of a folder's children
//!   (any folder but the drive root) links to the drive root's children, second page onwards;
//!   `children_page_max` caps every page whatever `$top` asks (servers may page smaller).
//! - `graph_refuses_tokens` (entry 24): Graph answers 401 to a valid token, the way a
//!   location policy evaluated by continuous access evaluation does.
//!
//! Rates are spread evenly (`stall::FieldFaultState::spread`); the counters are in
//! `field_faults` of `GET /_admin/stats`. Locks: `field` then `stats`, one at a time.

use serde_json::json;

use super::http::{Body, Interrupt, Response};
use super::state::{lock, EmulatorState};

/// The error page of entry 18 (an IIS/SharePoint-style "something went wrong" page).
const HTML_PAGE: &str = "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>Sorry, \
something went wrong</title></head>\r\n<body><div id=\"ms-error\"><h1>Sorry, something went \
wrong</h1><p>An unexpected error has occurred.</p><p>Technical Details</p><p>Troubleshoot \
issues with Microsoft SharePoint Foundation.</p><p>Correlation ID: \
5f3c2a9e-0d41-4b6e-9b1a-7d2e00c0ffee</p><p>Date and Time: 1/1/2025 12:00:00 PM</p></div>\
</body></html>\r\n";

/// Entry 18: `Some(page)` when this download of `name` is answered with the HTML page.
pub fn html_page(shared: &EmulatorState, name: &str) -> Option<Response> {
    let hit = {
        let mut f = lock(&shared.field);
        let named = f
            .config()
            .download_html_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name));
        let rate = f.config().download_html_rate;
        named || f.faults_state.spread("download_html", rate)
    };
    if !hit {
        return None;
    }
    shared.stat(|s| s.read_faults.html_pages += 1);
    let mut r = Response::new(200)
        .with_header("Content-Type", "text/html; charset=utf-8")
        .with_header("Cache-Control", "private");
    r.body = Body::Bytes(HTML_PAGE.as_bytes().to_vec());
    Some(r)
}

/// Entry 18: whether downloads ignore `Range` (counted when a Range was asked).
pub fn ignore_range(shared: &EmulatorState, asked: bool) -> bool {
    let ignore = lock(&shared.field).config().download_ignore_range;
    if ignore && asked {
        shared.stat(|s| s.read_faults.ranges_ignored += 1);
    }
    ignore
}

/// A download cut mid-body: maybe make `resp` (with a body of `len` bytes) reset after a
/// random part of it.
pub fn maybe_cut(shared: &EmulatorState, resp: &mut Response, len: u64) {
    if len < 2 {
        return;
    }
    let after = {
        let mut f = lock(&shared.field);
        let rate = f.config().download_cut_rate;
        if !f.faults_state.spread("download_cut", rate) {
            return;
        }
        1 + f.faults_state.below(len - 1)
    };
    shared.stat(|s| s.read_faults.downloads_cut += 1);
    resp.interrupt = Some(Interrupt {
        after: Some(after),
        hold: Some(std::time::Duration::ZERO),
        cut: true,
    });
}

/// Entry 19: the page size a children listing may use, given what `$top` asked.
pub fn page_size(shared: &EmulatorState, top: usize) -> usize {
    match lock(&shared.field).config().children_page_max {
        Some(max) => top.min(max),
        None => top,
    }
}

/// Entry 19: the wrong `@odata.nextLink` for the first page of a non-root folder's children
/// (`None`: link correctly).
pub fn next_link_to_root(
    shared: &EmulatorState,
    drive: &str,
    folder_is_root: bool,
    skip: usize,
    top: usize,
) -> Option<String> {
    if folder_is_root || skip != 0 || !lock(&shared.field).config().children_next_link_to_root {
        return None;
    }
    shared.stat(|s| s.read_faults.next_links_to_root += 1);
    Some(format!(
        "{}/v1.0/drives/{drive}/root/children?$top={top}&$skiptoken={top}",
        shared.base_url
    ))
}

/// Entry 24: `Some(401)` when Graph refuses valid tokens (a location policy via continuous
/// access evaluation: a claims challenge the app cannot satisfy by refreshing).
pub fn graph_refusal(shared: &EmulatorState) -> Option<Response> {
    if !lock(&shared.field).config().graph_refuses_tokens {
        return None;
    }
    shared.stat(|s| {
        s.read_faults.graph_refusals += 1;
        s.auth_failures += 1;
    });
    let body = json!({"error": {
        "code": "InvalidAuthenticationToken",
        "message": "Continuous access evaluation resulted in challenge with result: \
                    InteractionRequired and code: LocationConditionEvaluationSatisfied",
        "innerError": {"date": super::store::fmt_time(super::store::now_secs())},
    }});
    Some(Response::json(401, &body).with_header(
        "WWW-Authenticate",
        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
         error=\"insufficient_claims\", \
         claims=\"eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ==\"",
    ))
}
