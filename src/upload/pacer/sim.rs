//! Convergence of the rate controller against the emulator's own budget model
//! (`emulator::budget`: a token bucket whose refusals cost, a one-minute window, late
//! `RateLimit-*` headers), in virtual time: `workers` clients each send one request at a time,
//! every answer comes `latency` after its request left, the server charges it on arrival,
//! and the client honours `Retry-After` and the controller's pacing the way `limiter.rs`
//! does (a shared gate, slots taken when due, probes one at a time).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::{Outcome, RateControl};
use crate::emulator::budget::{Admission, Budget};
use crate::remote::RateLimitHint;

/// One run's setting.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Budget units a second, and the bucket (units).
    pub rate: f64,
    pub burst: f64,
    /// Whether the server sends `RateLimit-*` from 80 % of its window.
    pub headers: bool,
    /// Whether throttled answers carry `Retry-After` (seconds).
    pub retry_after: bool,
    /// Units per request, cycled through.
    pub costs: &'static [u32],
    pub workers: usize,
    pub latency: Duration,
    /// Requests to get through.
    pub requests: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub sent: usize,
    pub refused: usize,
    /// Virtual seconds to get every request through.
    pub secs: f64,
    /// The least time the budget allows: the units admitted / the rate (after the bucket's
    /// initial content).
    pub floor_secs: f64,
    /// Refused and sent after the first fifth of the requests got through.
    pub refused_late: usize,
    pub sent_late: usize,
}

impl Run {
    pub fn refused_share(&self) -> f64 {
        self.refused as f64 / self.sent as f64
    }
    pub fn late_refused_share(&self) -> f64 {
        self.refused_late as f64 / self.sent_late.max(1) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Worker `0` wants to send its current request.
    Ready(usize),
    /// Worker's request sent at virtual nanos `1` is answered.
    Answer(usize, u64),
}

fn parse_hint(headers: &[(String, String)]) -> Option<RateLimitHint> {
    let num = |name: &str| -> Option<u64> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    Some(RateLimitHint {
        limit: num("RateLimit-Limit")?,
        remaining: num("RateLimit-Remaining")?,
        reset: Duration::from_secs(num("RateLimit-Reset")?),
    })
}

/// Run one setting to its end (or a virtual hour).
pub fn run(setup: Setup) -> Run {
    let t0 = Instant::now();
    let at = |ns: u64| t0 + Duration::from_nanos(ns);
    let ns = |t: Instant| t.saturating_duration_since(t0).as_nanos() as u64;
    let mut server = Budget::new(setup.rate, setup.burst, true, setup.headers, t0);
    let mut control = RateControl::new();
    let mut gate: Option<Instant> = None;
    let mut queue = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |q: &mut BinaryHeap<_>, t: u64, e: Event| {
        seq += 1;
        q.push(Reverse((t, seq, e)));
    };
    for w in 0..setup.workers {
        push(&mut queue, 0, Event::Ready(w));
    }
    let mut in_flight = 0usize;
    let mut waiting: Vec<usize> = Vec::new();
    let mut next_request = 0usize;
    let mut current: Vec<Option<usize>> = vec![None; setup.workers];
    let (mut sent, mut refused, mut done) = (0, 0, 0);
    let (mut sent_late, mut refused_late) = (0, 0);
    let mut admitted_units = 0.0;
    let warm = setup.requests / 5;
    let mut end = 0u64;
    while let Some(Reverse((t, _, e))) = queue.pop() {
        let now = at(t);
        if now > t0 + Duration::from_secs(3600) {
            break;
        }
        match e {
            Event::Ready(w) => {
                if current[w].is_none() {
                    if next_request >= setup.requests {
                        continue;
                    }
                    current[w] = Some(next_request);
                    next_request += 1;
                }
                if let Some(g) = gate.filter(|g| *g > now) {
                    push(&mut queue, ns(g), Event::Ready(w));
                    continue;
                }
                if control.concurrency().is_some_and(|c| in_flight >= c) {
                    waiting.push(w);
                    continue;
                }
                match control.reserve(now, Duration::ZERO) {
                    Err(slot) => push(&mut queue, ns(slot), Event::Ready(w)),
                    Ok(_) => {
                        in_flight += 1;
                        sent += 1;
                        if done >= warm {
                            sent_late += 1;
                        }
                        push(
                            &mut queue,
                            t + setup.latency.as_nanos() as u64,
                            Event::Answer(w, t),
                        );
                    }
                }
            }
            Event::Answer(w, sent_ns) => {
                in_flight -= 1;
                let req = current[w].unwrap_or(0);
                let cost = setup.costs[req % setup.costs.len()];
                let (outcome, hint) = match server.admit(now, cost) {
                    Admission::Admit(h) => {
                        admitted_units += f64::from(cost);
                        current[w] = None;
                        done += 1;
                        end = t;
                        (Outcome::Admitted, parse_hint(&h))
                    }
                    Admission::Refuse {
                        retry_after_secs,
                        headers,
                    } => {
                        refused += 1;
                        if done >= warm {
                            refused_late += 1;
                        }
                        let ra = setup
                            .retry_after
                            .then(|| Duration::from_secs(retry_after_secs));
                        (
                            Outcome::Throttled {
                                status: 429,
                                retry_after: ra,
                            },
                            parse_hint(&headers),
                        )
                    }
                };
                if let Some(d) = control.on_answer(at(sent_ns), now, outcome, hint) {
                    let until = now + d;
                    if gate.is_none_or(|g| g < until) {
                        gate = Some(until);
                    }
                }
                push(&mut queue, t, Event::Ready(w));
                for v in waiting.drain(..) {
                    push(&mut queue, t, Event::Ready(v));
                }
            }
        }
        if done >= setup.requests {
            break;
        }
    }
    Run {
        sent,
        refused,
        secs: Duration::from_nanos(end).as_secs_f64(),
        floor_secs: ((admitted_units - setup.burst) / setup.rate).max(0.0),
        refused_late,
        sent_late,
    }
}

const REQUESTS: &[u32] = &[1];
/// createUploadSession (2) and a fragment PUT (2), then a listing (2) and an item GET (1)
/// now and then: the resource-unit mix of an rsync of small files.
const MIX: &[u32] = &[2, 2, 2, 2, 2, 2, 2, 2, 2, 1];

fn setup(rate: f64, headers: bool, retry_after: bool, costs: &'static [u32]) -> Setup {
    Setup {
        rate,
        burst: rate,
        headers,
        retry_after,
        costs,
        workers: 20,
        latency: Duration::from_millis(50),
        requests: ((rate * 100.0) as usize).max(2000),
    }
}

/// The table of the issue (16, item 2): budgets of 5, 20 and 100 units a second whose
/// refusals cost, with and without headers, with and without `Retry-After`.
#[test]
fn converges_with_few_refusals_near_the_budget() {
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for rate in [5.0, 20.0, 100.0] {
        for (headers, retry_after, costs) in [
            (false, true, REQUESTS),
            (true, true, REQUESTS),
            (false, false, REQUESTS),
            (false, true, MIX),
            (true, true, MIX),
        ] {
            let s = setup(rate, headers, retry_after, costs);
            let r = run(s);
            let line = format!(
                "rate {rate:>5} headers {headers:<5} retry-after {retry_after:<5} costs {:?}: \
                 {} sent, {} refused ({:.2} %, {:.2} % after warm-up), {:.1} s vs floor {:.1} s \
                 ({:.3}x)",
                costs.len(),
                r.sent,
                r.refused,
                100.0 * r.refused_share(),
                100.0 * r.late_refused_share(),
                r.secs,
                r.floor_secs,
                r.secs / r.floor_secs
            );
            let limit = if headers { 0.01 } else { 0.03 };
            if r.refused_share() > limit || r.secs > 1.10 * r.floor_secs {
                bad.push(line.clone());
            }
            report.push(line);
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(bad.is_empty(), "out of bounds:\n{}", bad.join("\n"));
}
