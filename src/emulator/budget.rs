//! The emulator's request budget, modelled on SharePoint's documented throttling (field
//! reference entries 5–8; Microsoft Learn, "Avoid getting throttled or blocked in SharePoint
//! Online"). One budget for the whole emulator: it serves one app registration and one user,
//! so "per app per tenant" is per emulator.
//!
//! What it does, and the knobs that change it (`field.rs`):
//! - **Resource units** (entry 7): each metered request costs units by kind ([`cost`]):
//!   single-item GETs, delta with a token, downloads and upload-status GETs 1; listings,
//!   delta without a token, creates (folders, upload sessions), uploads (fragment PUTs,
//!   simple PUTs), updates and deletes 2. `budget_units: "requests"` makes every request 1.
//! - **Enforcement** is a token bucket of `budget_per_sec` units a second holding at most
//!   `budget_burst` (default one second's worth): a request is admitted while the bucket holds
//!   its cost. **Refused requests still cost** (entry 5: "throttled requests count towards
//!   usage limits"): a refusal debits its units too, so the bucket goes into debt (down to
//!   one minute's worth at most) and every request sent into a 429 makes the wait for the
//!   next admission longer. `refusals_cost: false` restores the friendlier model.
//! - **The app's one-minute budget** (entry 6): `Limit` = 60 × `budget_per_sec` units per
//!   fixed one-minute window (the first window starts at the first metered request). Every
//!   unit charged (admitted or refused) counts in the window; a request that would take the
//!   window past `Limit` is refused too, with `Retry-After` at least until the window resets.
//!   From 80 % of the window used on, answers (admitted or refused) carry `RateLimit-Limit`
//!   (units per minute), `RateLimit-Remaining` (units left in this window) and
//!   `RateLimit-Reset` (seconds until the window resets) — best effort, as SharePoint sends
//!   them; `rate_limit_headers: false` never sends them (the per-user limit, or delegated
//!   permissions).
//! - **Retry-After** is whole seconds until the refused request's cost is back in the bucket
//!   (at least 1), or until the window resets if that is later; `field.rs` decides how it is
//!   written (seconds, an HTTP date, or not at all) and the status (429 or 503).
//!
//! Invariants: `tokens` ≤ capacity and ≥ −[`DEBT_SECS`] × rate; `window_used` counts units
//! charged since `window_start`, which is always at most one minute ago after `roll`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::graph_api::{parse_route, ItemOp, Route};
use super::http::Request;

/// Length of the app budget's window (SharePoint: per app per minute).
pub const WINDOW: Duration = Duration::from_secs(60);

/// From this share of the window's units used on, answers carry the `RateLimit-*` headers.
pub const HEADERS_FROM: f64 = 0.8;

/// The deepest debt refusals can run the bucket into, in seconds of refill.
pub const DEBT_SECS: f64 = 60.0;

/// How requests are charged (field knob `budget_units`, entry 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetUnits {
    /// SharePoint's resource units per request kind ([`cost`]).
    #[default]
    ResourceUnits,
    /// One unit per request.
    Requests,
}

/// The units a metered request costs (entry 7). Unknown shapes cost 1.
pub fn cost(req: &Request, units: BudgetUnits) -> u32 {
    if units == BudgetUnits::Requests {
        return 1;
    }
    let m = req.method.as_str();
    let p = req.path.as_str();
    if p.starts_with("/upload/") {
        // A fragment PUT is an upload; cancelling (DELETE) or committing (POST) a session
        // changes an item; the status GET is a single-item query.
        return if m == "GET" { 1 } else { 2 };
    }
    let Some(rest) = p.strip_prefix("/v1.0") else {
        return 1;
    };
    match (m, parse_route(rest)) {
        ("GET", Ok(Route::Item { op, .. })) => match op {
            ItemOp::Children => 2,
            // Delta with a token (a deltaLink or nextLink) is 1; a fresh enumeration is a
            // multi-item query.
            ItemOp::Delta if req.query("token").is_some() => 1,
            ItemOp::Delta => 2,
            _ => 1,
        },
        ("GET", _) => 1,
        _ => 2,
    }
}

/// The budget's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go ahead; attach these `RateLimit-*` headers (none below 80 % of the window).
    Admit(Vec<(String, String)>),
    /// Refuse (throttled) for `retry_after_secs` whole seconds, with these headers.
    Refuse {
        retry_after_secs: u64,
        headers: Vec<(String, String)>,
    },
}

/// The budget's state (module documentation).
#[derive(Debug, Clone)]
pub struct Budget {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
    refusals_cost: bool,
    headers: bool,
    window_start: Option<Instant>,
    window_used: f64,
}

impl Budget {
    /// A full bucket of `capacity` units refilled at `rate` units a second.
    pub fn new(
        rate: f64,
        capacity: f64,
        refusals_cost: bool,
        headers: bool,
        now: Instant,
    ) -> Budget {
        Budget {
            rate,
            capacity: capacity.max(1.0),
            tokens: capacity.max(1.0),
            at: now,
            refusals_cost,
            headers,
            window_start: None,
            window_used: 0.0,
        }
    }

    /// Units per one-minute window (`RateLimit-Limit`).
    pub fn limit(&self) -> u64 {
        (self.rate * WINDOW.as_secs_f64()).round().max(1.0) as u64
    }

    /// Units in the bucket now (negative: in debt).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Start the window at the first request; move it on by whole minutes.
    fn roll(&mut self, now: Instant) -> Instant {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return start;
        }
        let minutes = (elapsed.as_secs_f64() / WINDOW.as_secs_f64()).floor();
        let start = start + WINDOW.mul_f64(minutes);
        self.window_start = Some(start);
        self.window_used = 0.0;
        start
    }

    /// Charge a request of `cost` units arriving `now`.
    pub fn admit(&mut self, now: Instant, cost: u32) -> Admission {
        self.refill(now);
        let start = self.roll(now);
        let cost = f64::from(cost.max(1));
        let limit = self.limit() as f64;
        // A request dearer than the whole bucket needs a full bucket, not more.
        let needed = cost.min(self.capacity);
        let window_ok = self.window_used + cost <= limit;
        if window_ok && self.tokens >= needed {
            self.tokens -= cost;
            self.window_used += cost;
            return Admission::Admit(self.headers(now, start));
        }
        if self.refusals_cost {
            self.tokens = (self.tokens - cost).max(-DEBT_SECS * self.rate);
            self.window_used += cost;
        }
        // When the same request would be admitted again.
        let mut wait = ((needed - self.tokens) / self.rate).max(0.0);
        if self.window_used + cost > limit {
            let reset = (start + WINDOW)
                .saturating_duration_since(now)
                .as_secs_f64();
            wait = wait.max(reset);
        }
        Admission::Refuse {
            retry_after_secs: (wait.ceil() as u64).max(1),
            headers: self.headers(now, start),
        }
    }

    /// The `RateLimit-*` headers of an answer leaving `now`: from 80 % of the window on.
    fn headers(&self, now: Instant, start: Instant) -> Vec<(String, String)> {
        let limit = self.limit();
        if !self.headers || self.window_used < HEADERS_FROM * limit as f64 {
            return Vec::new();
        }
        let remaining = (limit as f64 - self.window_used).max(0.0).floor() as u64;
        let reset = (start + WINDOW)
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64;
        vec![
            ("RateLimit-Limit".into(), limit.to_string()),
            ("RateLimit-Remaining".into(), remaining.to_string()),
            ("RateLimit-Reset".into(), reset.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(h: &[(String, String)], name: &str) -> Option<String> {
        h.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    fn refused_for(a: &Admission) -> Option<u64> {
        match a {
            Admission::Refuse {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Admission::Admit(_) => None,
        }
    }

    #[test]
    fn refusals_cost_and_deepen_the_debt() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = Budget::new(10.0, 10.0, true, true, t0);
        for i in 0..10 {
            assert_eq!(refused_for(&b.admit(t0, 1)), None, "request {i}");
        }
        // Empty: refused, and the refusal costs a unit (the bucket is at -1).
        assert_eq!(refused_for(&b.admit(t0, 1)), Some(1));
        assert!((b.tokens() + 1.0).abs() < 1e-9);
        // 100 ms later a friendlier bucket would admit; this one is still in debt.
        assert_eq!(refused_for(&b.admit(ms(100), 1)), Some(1));
        assert!((b.tokens() + 1.0).abs() < 1e-9, "{}", b.tokens());
        // Hammering deepens the debt: each 429 makes the wait longer.
        let mut last = 0;
        for _ in 0..30 {
            last = refused_for(&b.admit(ms(100), 1)).unwrap();
        }
        assert_eq!(last, 4, "31 units of debt at 10 a second");
        // The debt is bounded (a minute of refill).
        for _ in 0..2000 {
            b.admit(ms(100), 2);
        }
        assert!(b.tokens() >= -DEBT_SECS * 10.0 - 1e-9);
        // The friendly model: refusals are free.
        let mut f = Budget::new(10.0, 10.0, false, true, t0);
        for _ in 0..10 {
            f.admit(t0, 1);
        }
        for _ in 0..5 {
            assert_eq!(refused_for(&f.admit(t0, 1)), Some(1));
        }
        assert_eq!(refused_for(&f.admit(ms(100), 1)), None);
    }

    #[test]
    fn headers_describe_the_one_minute_window_from_80_percent() {
        let t0 = Instant::now();
        let s = |n: f64| t0 + Duration::from_secs_f64(n);
        // 2 units a second, bucket of 2: 120 units a minute.
        let mut b = Budget::new(2.0, 2.0, true, true, t0);
        assert_eq!(b.limit(), 120);
        // One unit every 0.5 s: 95 requests (47 s) stay below 96 units (80 %).
        for i in 0..95 {
            match b.admit(s(i as f64 * 0.5), 1) {
                Admission::Admit(h) => assert!(h.is_empty(), "request {i}: {h:?}"),
                r => panic!("request {i}: {r:?}"),
            }
        }
        match b.admit(s(47.5), 1) {
            Admission::Admit(h) => {
                assert_eq!(header(&h, "RateLimit-Limit").as_deref(), Some("120"));
                assert_eq!(header(&h, "RateLimit-Remaining").as_deref(), Some("24"));
                // 12.5 s left in the window, rounded up.
                assert_eq!(header(&h, "RateLimit-Reset").as_deref(), Some("13"));
            }
            r => panic!("{r:?}"),
        }
        // A new window: no headers again.
        match b.admit(s(60.5), 1) {
            Admission::Admit(h) => assert!(h.is_empty(), "{h:?}"),
            r => panic!("{r:?}"),
        }
        // Never sent with the knob off.
        let mut quiet = Budget::new(2.0, 2.0, true, false, t0);
        for i in 0..100 {
            if let Admission::Admit(h) = quiet.admit(s(i as f64 * 0.5), 1) {
                assert!(h.is_empty());
            }
        }
    }

    #[test]
    fn an_exhausted_window_refuses_until_it_resets() {
        let t0 = Instant::now();
        let s = |n: f64| t0 + Duration::from_secs_f64(n);
        // A bucket of a whole minute: the window is what binds.
        let mut b = Budget::new(1.0, 60.0, true, true, t0);
        for i in 0..60 {
            assert_eq!(refused_for(&b.admit(s(i as f64 * 0.1), 1)), None, "{i}");
        }
        // 6 s in, the window's 60 units are used (the bucket has 6 again): wait 54 s.
        match b.admit(s(6.0), 1) {
            Admission::Refuse {
                retry_after_secs,
                headers,
            } => {
                assert_eq!(retry_after_secs, 54);
                assert_eq!(
                    header(&headers, "RateLimit-Remaining").as_deref(),
                    Some("0")
                );
                assert_eq!(header(&headers, "RateLimit-Reset").as_deref(), Some("54"));
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(refused_for(&b.admit(s(60.0), 1)), None);
    }

    #[test]
    fn dear_requests_need_their_units() {
        let t0 = Instant::now();
        let mut b = Budget::new(4.0, 4.0, true, true, t0);
        assert_eq!(refused_for(&b.admit(t0, 2)), None);
        assert_eq!(refused_for(&b.admit(t0, 1)), None);
        // One unit left: a 2-unit request is refused (and costs 2: the bucket is at -1),
        // back after 3 units of refill = 0.75 s, rounded up.
        assert_eq!(refused_for(&b.admit(t0, 2)), Some(1));
        assert!((b.tokens() + 1.0).abs() < 1e-9);
        // A bucket smaller than the cost admits from a full bucket.
        let mut tiny = Budget::new(1.0, 1.0, true, true, t0);
        assert_eq!(refused_for(&tiny.admit(t0, 2)), None);
    }
}
