//! Unit tests of the change log: paged snapshot rounds, loose rounds (repeats, reordering,
//! dropped deletes), lag, the initial enumeration and token expiry.

use super::*;

fn log_with(n: usize) -> ChangeLog {
    let mut l = ChangeLog::default();
    for i in 0..n {
        l.touched(&format!("i{i}"));
    }
    l
}

fn ids(v: &[Change]) -> Vec<String> {
    v.iter()
        .map(|c| match c {
            Change::Live(i) => i.clone(),
            Change::Gone(i) => format!("-{i}"),
            Change::Earlier(p) => format!("{}@{}", p.id, p.name),
        })
        .collect()
}

#[test]
fn pages_cover_a_snapshot_and_later_changes_come_next_round() {
    let mut l = log_with(5);
    let start = Cursor {
        since: 0,
        upto: None,
        after: 0,
    };
    let (p1, next, upto) = l.page(start, 2, |_| true);
    assert_eq!(ids(&p1), ["i0", "i1"]);
    assert_eq!(upto, 5);
    let next = next.unwrap();
    // i0 changes while the client pages; i2 is deleted; i9 is created.
    l.touched("i0");
    l.deleted(
        "i2",
        Tombstone {
            drive_id: "d".into(),
            parent_id: None,
            name: "i2".into(),
            folder: false,
            seq: 0,
        },
    );
    l.touched("i9");
    let (p2, next2, _) = l.page(next, 2, |_| true);
    assert_eq!(ids(&p2), ["i3", "i4"]);
    assert!(next2.is_none(), "last page of the round");
    // Next round from the deltaLink token (upto 5).
    let c = l.parse(&l.token(upto)).unwrap();
    let (p3, n3, _) = l.page(c, 10, |_| true);
    assert_eq!(ids(&p3), ["i0", "-i2", "i9"]);
    assert!(n3.is_none());
}

fn ids_loose(v: &[Change]) -> Vec<String> {
    ids(v)
}

fn tomb(name: &str) -> Tombstone {
    Tombstone {
        drive_id: "d".into(),
        parent_id: Some("p".into()),
        name: name.into(),
        folder: false,
        seq: 0,
    }
}

#[test]
fn loose_rounds_repeat_reorder_and_drop() {
    let mut l = ChangeLog::default();
    l.touched("a");
    l.placed("a", Some("p"), "a.txt");
    let since = l.seq();
    // a renamed twice; x deleted; y created at x's path.
    l.touched("a");
    l.placed("a", Some("p"), "b.txt");
    l.deleted("x", tomb("x.txt"));
    l.touched("a");
    l.placed("a", Some("p"), "c.txt");
    l.touched("y");
    l.placed("y", Some("p"), "x.txt");
    let c = l.parse(&l.token(since)).unwrap();
    let round = |loose: Looseness| ids_loose(&l.page_loose(c, 10, l.seq(), loose, |_| true).0);
    assert_eq!(round(Looseness::default()), ["-x", "a", "y"]);
    let dup = Looseness {
        duplicates: true,
        ..Looseness::default()
    };
    assert_eq!(round(dup), ["a@b.txt", "-x", "a", "y"]);
    let last = Looseness {
        deletes_last: true,
        ..Looseness::default()
    };
    assert_eq!(round(last), ["a", "y", "-x"]);
    let drop = Looseness {
        drop_deletes: true,
        ..Looseness::default()
    };
    assert_eq!(round(drop), ["a", "y"]);
}

#[test]
fn lag_holds_young_changes_back() {
    let mut l = log_with(2);
    assert_eq!(l.seq_aged(Duration::ZERO), 2);
    assert_eq!(l.seq_aged(Duration::from_secs(60)), 0, "all younger");
    std::thread::sleep(Duration::from_millis(30));
    l.touched("late");
    assert_eq!(l.seq_aged(Duration::from_millis(20)), 2);
    assert_eq!(l.seq_aged(Duration::ZERO), 3);
}

#[test]
fn initial_enumeration_has_no_tombstones() {
    let mut l = log_with(2);
    l.deleted(
        "i0",
        Tombstone {
            drive_id: "d".into(),
            parent_id: None,
            name: "i0".into(),
            folder: false,
            seq: 0,
        },
    );
    let (p, _, _) = l.page(
        Cursor {
            since: 0,
            upto: None,
            after: 0,
        },
        10,
        |_| true,
    );
    assert_eq!(ids(&p), ["i1"]);
}

#[test]
fn tokens_expire_and_foreign_tokens_are_refused() {
    let mut l = log_with(3);
    let t = l.token(l.seq());
    let mid = l.next_token(Cursor {
        since: 1,
        upto: Some(3),
        after: 2,
    });
    assert!(l.parse(&t).is_ok());
    assert_eq!(l.parse(&mid).unwrap().after, 2);
    l.expire_tokens();
    for old in [&t, &mid] {
        let e = l.parse(old).unwrap_err();
        assert_eq!((e.status, e.code), (410, "resyncRequired"));
    }
    assert!(l.parse(&l.token(l.seq())).is_ok(), "a fresh token works");
    let other = ChangeLog::default();
    assert_eq!(other.parse(&t).unwrap_err().status, 410);
    for bad in [
        "",
        "x",
        &format!("{}-zz", l.epoch),
        &format!("{}-999", l.epoch),
    ] {
        assert_eq!(l.parse(bad).unwrap_err().status, 400, "{bad}");
    }
}
