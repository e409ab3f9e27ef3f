//! Unit tests of the field faults: name wildcards, knob parsing and checks, the locked
//! answer shapes and the last-fragment counter.

use super::*;

#[test]
fn wildcards() {
    for (p, n, want) in [
        ("*.csv", "a.csv", true),
        ("*.csv", "A.CSV", true),
        ("*.csv", "a.csv.txt", false),
        ("report*", "Report 2024.docx", true),
        ("*", "", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("exact.txt", "exact.txt", true),
        ("exact.txt", "exact.txtx", false),
    ] {
        assert_eq!(wildcard_match(p, n), want, "{p} {n}");
    }
}

#[test]
fn knobs_parse_and_are_checked() {
    let c = FieldConfig::from_json(
        r#"{"last_fragment": {"status": 503, "committed": true, "html": true},
            "locked_shape": "conflict", "max_open_sessions": 3,
            "validation_pattern": "*.csv", "hash_delay_secs": 5}"#,
    )
    .unwrap();
    let l = c.last_fragment.clone().unwrap();
    assert_eq!(
        (l.status, l.committed, l.then, l.count),
        (503, true, AfterFailure::Empty, 1)
    );
    assert_eq!(c.locked_shape, LockedShape::Conflict);
    for bad in [
        r#"{"last_fragment": {"status": 404}}"#,
        r#"{"last_fragment": {"status": 500, "count": 0}}"#,
        r#"{"last_fragment": {"status": 500, "bogus": 1}}"#,
        r#"{"passing_404_rate": 1.5}"#,
        r#"{"locked_shape": "sideways"}"#,
        r#"{"validation_pattern": ""}"#,
    ] {
        assert!(FieldConfig::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn lock_shapes() {
    let body = |s| {
        let r = locked_error(s).to_response();
        let Body::Bytes(b) = r.body else { panic!() };
        (r.status, serde_json::from_slice::<Value>(&b).unwrap())
    };
    assert_eq!(body(LockedShape::ResourceLocked).0, 423);
    let (st, v) = body(LockedShape::AccessDenied);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (423, Some("accessDenied"))
    );
    let (st, v) = body(LockedShape::Conflict);
    assert_eq!(st, 409);
    assert_eq!(v["error"]["innerError"]["code"], "resourceLocked");
    assert_eq!(body(LockedShape::Forbidden).0, 403);
}

#[test]
fn last_fragment_count_restarts_when_the_knob_changes() {
    let mut rt = FaultRuntime::default();
    let off = FieldConfig::default();
    let on = FieldConfig::from_json(r#"{"last_fragment": {"status": 500, "count": 2}}"#).unwrap();
    rt.configure(&off, &on);
    assert_eq!(rt.last_fragment_left, 2);
    rt.last_fragment_left = 0;
    rt.configure(&on, &on.clone());
    assert_eq!(rt.last_fragment_left, 0, "unchanged knob: no new faults");
    rt.configure(&on, &off);
    assert_eq!(rt.last_fragment_left, 0);
}
