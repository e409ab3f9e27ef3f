//! Unit tests of the registry's bounds and summary form (`registry.rs`, `status_summary.rs`):
//! retention by count, the summary above the threshold, the full list on demand.

use super::*;

fn limits(summary_at: usize, max_done: usize) -> StatusLimits {
    StatusLimits {
        summary_at,
        max_done,
    }
}

/// `n` jobs submitted and finished in order, ids 1..=n, 10 bytes each.
fn finish_n(reg: &StatusRegistry, t0: Instant, n: u64) {
    for id in 1..=n {
        reg.queued(id, &format!("f{id}"), 10);
        reg.started(id, t0, SystemTime::UNIX_EPOCH, 1);
        reg.finished(
            id,
            t0 + Duration::from_millis(id),
            SystemTime::UNIX_EPOCH,
            Ok(()),
        );
    }
}

#[test]
fn small_status_lists_everything() {
    let reg = StatusRegistry::with_limits(Duration::from_secs(600), limits(20, 100));
    let t0 = Instant::now();
    finish_n(&reg, t0, 20);
    let s = reg.snapshot(t0, None);
    assert_eq!(s.uploads.len(), 20);
    assert_eq!(s.totals.done, 20);
    assert!(s.done_summary.is_none());
    assert!(!s.render_json().contains("done_summary"));
}

#[test]
fn summary_lists_busy_failed_and_the_last_done() {
    let reg = StatusRegistry::with_limits(Duration::from_secs(600), limits(20, 100));
    let t0 = Instant::now();
    finish_n(&reg, t0, 30);
    reg.queued(100, "waiting", 5);
    reg.queued(101, "moving", 7);
    reg.started(101, t0, SystemTime::UNIX_EPOCH, 1);
    reg.queued(102, "broken", 9);
    reg.finished(102, t0, SystemTime::UNIX_EPOCH, Err("quota"));
    let s = reg.snapshot(t0, None);
    let paths: Vec<&str> = s.uploads.iter().map(|u| u.path.as_str()).collect();
    // Active, queued, failed, then the last 10 done (listed_done = 20 / 2) in id order.
    let mut want = vec!["moving", "waiting", "broken"];
    let last: Vec<String> = (21..=30).map(|i| format!("f{i}")).collect();
    want.extend(last.iter().map(String::as_str));
    assert_eq!(paths, want);
    assert_eq!(s.totals.done, 30, "totals count every retained done entry");
    assert_eq!(
        (s.totals.queued, s.totals.uploading, s.totals.failed),
        (1, 1, 1)
    );
    let d = s.done_summary.clone().expect("summary form");
    assert_eq!((d.count, d.bytes, d.listed), (30, 300, 10));
    assert_eq!((d.since_start, d.bytes_since_start), (30, 300));
    let v: serde_json::Value = serde_json::from_str(&s.render_json()).expect("json");
    assert_eq!(v["done_summary"]["count"], 30);
    assert_eq!(v["done_summary"]["full_list"], ".status.all.json");
    assert_eq!(v["totals"]["done"], 30);
    assert!(s
        .render_table()
        .contains("done: 30 (300 B), the last 10 listed"));
    // The full list on demand.
    let all = reg.snapshot_all(t0, None);
    assert_eq!(all.uploads.len(), 33);
    assert!(all.done_summary.is_none());
}

#[test]
fn done_entries_are_bounded_by_count_and_time() {
    let reg = StatusRegistry::with_limits(Duration::from_secs(600), limits(1000, 50));
    let t0 = Instant::now();
    finish_n(&reg, t0, 120);
    let all = reg.snapshot_all(t0, None);
    assert_eq!(all.uploads.len(), 50, "only the newest 50 done are kept");
    assert_eq!(all.uploads[0].path, "f71");
    let s = reg.snapshot(t0 + Duration::from_secs(1), None);
    assert_eq!(s.totals.done, 50);
    // Time retention still applies.
    let later = reg.snapshot_all(t0 + Duration::from_secs(601), None);
    assert!(later.uploads.is_empty());
    // Since-start counters survive pruning (seen in the summary form).
    let reg = StatusRegistry::with_limits(Duration::from_secs(600), limits(4, 6));
    finish_n(&reg, t0, 9);
    let d = reg.snapshot(t0, None).done_summary.expect("summary");
    assert_eq!((d.count, d.listed, d.since_start), (6, 2, 9));
}

#[test]
fn requeued_and_removed_done_entries_keep_the_count_right() {
    let reg = StatusRegistry::with_limits(Duration::from_secs(600), limits(1000, 3));
    let t0 = Instant::now();
    finish_n(&reg, t0, 3);
    // A done entry put back in the queue is no longer done; a removed one is gone.
    reg.queued(1, "f1", 10);
    reg.remove(2);
    finish_n_from(&reg, t0, 10, 12);
    let all = reg.snapshot_all(t0, None);
    let paths: Vec<&str> = all.uploads.iter().map(|u| u.path.as_str()).collect();
    assert_eq!(paths, ["f1", "f10", "f11", "f12"]);
    assert_eq!(all.totals.done, 3);
    assert_eq!(all.totals.queued, 1);
    // Stale items of the finish order do not pile up.
    for round in 0..200u64 {
        reg.queued(1, "f1", 10);
        reg.finished(
            1,
            t0 + Duration::from_secs(round),
            SystemTime::UNIX_EPOCH,
            Ok(()),
        );
        reg.queued(1, "f1", 10);
    }
    let entries = reg.lock();
    assert!(entries.done_order.len() <= 2 * entries.done + 64);
}

fn finish_n_from(reg: &StatusRegistry, t0: Instant, from: u64, to: u64) {
    for id in from..=to {
        reg.queued(id, &format!("f{id}"), 10);
        reg.finished(
            id,
            t0 + Duration::from_millis(id),
            SystemTime::UNIX_EPOCH,
            Ok(()),
        );
    }
}

#[test]
fn a_long_backlog_is_counted_not_listed() {
    let reg = StatusRegistry::with_limits(Duration::from_secs(600), limits(20, 100));
    let t0 = Instant::now();
    for id in 1..=50 {
        reg.queued(id, &format!("q{id}"), 10);
    }
    reg.started(1, t0, SystemTime::UNIX_EPOCH, 1);
    let s = reg.snapshot(t0, None);
    let queued: Vec<&str> = s
        .uploads
        .iter()
        .filter(|u| u.state == UploadState::Queued)
        .map(|u| u.path.as_str())
        .collect();
    assert_eq!(queued.len(), 20, "the first 20 queued, in submission order");
    assert_eq!((queued[0], queued[19]), ("q2", "q21"));
    assert_eq!(s.queued_not_listed, 29);
    assert_eq!(s.totals.queued, 49, "totals count them all");
    assert_eq!(s.totals.bytes_pending, 500);
    assert_eq!(s.uploads[0].path, "q1", "the active one first");
    let v: serde_json::Value = serde_json::from_str(&s.render_json()).expect("json");
    assert_eq!(v["queued_not_listed"], 29);
    assert!(s.render_table().contains("queued: 29 more not listed"));
    assert_eq!(reg.snapshot_all(t0, None).uploads.len(), 50);
    assert_eq!(reg.snapshot_all(t0, None).queued_not_listed, 0);
}
