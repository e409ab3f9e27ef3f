//! Unit tests of the `bwlimit` parser, the timetable and the bucket, on a `ManualClock` (its
//! sleeps advance time at once) and UTC, so nothing here sleeps for real.

use super::*;
use crate::upload::clock::ManualClock;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// Monday 2026-12-07 00:00:00 UTC.
const MONDAY: u64 = 1_796_601_600;

fn at(day: u64, h: u64, m: u64, s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(MONDAY + day * 86_400 + h * 3600 + m * 60 + s)
}

fn limit_at(value: &str, wall: SystemTime) -> (Arc<ManualClock>, BwLimit) {
    let clock = Arc::new(ManualClock::new(wall));
    let tt = Timetable::parse(value).unwrap();
    let lim = BwLimit::with_clock(tt, clock.clone(), utc_week_minute);
    (clock, lim)
}

#[test]
fn rates_parse_with_rclone_units() {
    for (input, want) in [
        ("2MiB", Limit::BytesPerSec(2 * MIB)),
        ("2 MiB", Limit::BytesPerSec(2 * MIB)),
        ("2M", Limit::BytesPerSec(2 * MIB)),
        ("2mb", Limit::BytesPerSec(2 * MIB)),
        ("1.5M", Limit::BytesPerSec(3 * MIB / 2)),
        ("512k", Limit::BytesPerSec(512 * KIB)),
        ("512KiB", Limit::BytesPerSec(512 * KIB)),
        ("1G", Limit::BytesPerSec(1024 * MIB)),
        ("100000B", Limit::BytesPerSec(100_000)),
        // A bare number is KiB/s, as in rclone.
        ("2048", Limit::BytesPerSec(2 * MIB)),
        // rclone's UP:DOWN: the upload side.
        ("10M:100k", Limit::BytesPerSec(10 * MIB)),
        ("off", Limit::Off),
        ("OFF", Limit::Off),
    ] {
        assert_eq!(parse_limit(input), Ok(want), "{input}");
    }
}

#[test]
fn bad_values_are_one_clear_line() {
    for (input, says) in [
        ("", "empty value"),
        ("   ", "empty value"),
        ("2X", "unknown unit \"x\""),
        ("fast", "not a rate or off"),
        ("0", "write off for none"),
        ("100B", "below the smallest limit"),
        ("2T", "unknown unit"),
        ("5000G", "above 1TiB"),
        ("10M:fast", "UP:DOWN"),
        ("25:00,1M", "not a time of day"),
        ("08:60,1M", "not a time of day"),
        ("8:5,1M", "not a time of day"),
        ("Xyz-08:00,1M", "unknown day"),
        ("08:00,1M 08:00,off", "two entries for Mon 08:00"),
        ("08:00,1M Tue-08:00,off", "two entries for Tue 08:00"),
        ("08:00 2M", "entries are TIME,RATE"),
        ("08:00,2M,19:00,off", "separate the entries with spaces"),
        ("08:00,2M 19:00", "not a TIME,RATE entry"),
        ("08:00,", "not a rate or off"),
    ] {
        let e = Timetable::parse(input).unwrap_err();
        assert!(e.contains(says), "{input:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn text_parses_back_to_the_same_timetable() {
    for (input, text) in [
        ("2 MiB", "2MiB"),
        ("1.5M", "1536KiB"),
        ("off", "off"),
        ("8:00,2M 19:00,off", "08:00,2MiB 19:00,off"),
        (
            "mon-08:00,512k Saturday-00:00,off",
            "Mon-08:00,512KiB Sat-00:00,off",
        ),
    ] {
        let tt = Timetable::parse(input).unwrap();
        assert_eq!(tt.text(), text);
        assert_eq!(Timetable::parse(&tt.text()).unwrap(), tt);
    }
}

#[test]
fn limits_display_for_people() {
    for (bytes, want) in [
        (2 * MIB, "2 MiB/s"),
        (3 * MIB / 2, "1.5 MiB/s"),
        (512 * KIB, "512 KiB/s"),
        (1024 * MIB, "1 GiB/s"),
        (100_000, "100000 B/s"),
    ] {
        assert_eq!(Limit::BytesPerSec(bytes).display_text(), want);
    }
    assert_eq!(Limit::Off.to_string(), "off");
}

#[test]
fn timetable_entry_in_force_and_next_change() {
    let tt = Timetable::parse("08:00,2MiB 19:00,off").unwrap();
    let m = |h: u32, min: u32| h * 60 + min;
    let two = Limit::BytesPerSec(2 * MIB);
    // Monday 07:59 is still Sunday 19:00's off (wraps over midnight and the week).
    assert_eq!(tt.at(m(7, 59)).limit, Limit::Off);
    assert_eq!(tt.at(m(7, 59)).next, Some((m(8, 0), two)));
    assert_eq!(tt.at(m(8, 0)).limit, two);
    assert_eq!(tt.at(m(18, 59)).next, Some((m(19, 0), Limit::Off)));
    assert_eq!(tt.at(m(19, 0)).limit, Limit::Off);
    // Sunday 23:59: off until Monday 08:00.
    let sunday_late = 6 * 1440 + m(23, 59);
    assert_eq!(tt.at(sunday_late).limit, Limit::Off);
    assert_eq!(tt.at(sunday_late).next, Some((m(8, 0), two)));
    assert_eq!(tt.minute_text(m(19, 0)), "19:00");

    let weekly = Timetable::parse("Mon-08:00,512KiB Sat-00:00,off").unwrap();
    assert_eq!(
        weekly.at(0).limit,
        Limit::Off,
        "Monday 00:00: Saturday's off"
    );
    assert_eq!(weekly.at(2 * 1440).limit, Limit::BytesPerSec(512 * KIB));
    assert_eq!(weekly.minute_text(5 * 1440), "Sat 00:00");

    // Entries that do not change the limit are no change.
    let same = Timetable::parse("08:00,1M 12:00,1M").unwrap();
    assert_eq!(same.at(m(9, 0)).next, None);
    let constant = Timetable::parse("2MiB").unwrap();
    assert_eq!(constant.at(1234).limit, two);
    assert!(constant.is_constant() && !constant.is_off());
    assert!(Timetable::default().is_off());
}

#[test]
fn utc_minutes_of_the_week() {
    assert_eq!(utc_week_minute(at(0, 0, 0, 0)), 0);
    assert_eq!(utc_week_minute(at(1, 8, 30, 59)), 1440 + 8 * 60 + 30);
    assert_eq!(utc_week_minute(at(6, 23, 59, 0)), WEEK_MINUTES - 1);
    assert_eq!(utc_week_minute(at(7, 0, 0, 0)), 0);
    // 1970-01-01 00:00 UTC was a Thursday.
    assert_eq!(utc_week_minute(SystemTime::UNIX_EPOCH), 3 * 1440);
}

#[test]
fn the_limit_switches_at_the_listed_minute() {
    let (clock, lim) = limit_at("08:00,2MiB 19:00,off", at(0, 7, 59, 30));
    assert_eq!(lim.rate(), None);
    clock.advance(Duration::from_secs(29));
    assert_eq!(lim.rate(), None, "07:59:59");
    clock.advance(Duration::from_secs(1));
    assert_eq!(lim.rate(), Some(2 * MIB), "08:00:00");
    clock.advance(Duration::from_secs(11 * 3600 - 1));
    assert_eq!(lim.rate(), Some(2 * MIB), "18:59:59");
    clock.advance(Duration::from_secs(1));
    assert_eq!(lim.rate(), None, "19:00:00");
    // Tuesday 08:00 again.
    clock.advance(Duration::from_secs(13 * 3600));
    assert_eq!(lim.rate(), Some(2 * MIB));
}

#[test]
fn a_night_limit_wraps_over_midnight() {
    let (clock, lim) = limit_at("22:00,1MiB 06:00,off", at(0, 23, 59, 0));
    assert_eq!(lim.rate(), Some(MIB));
    clock.advance(Duration::from_secs(120));
    assert_eq!(lim.rate(), Some(MIB), "Tuesday 00:01");
    clock.advance(Duration::from_secs(6 * 3600 - 60));
    assert_eq!(lim.rate(), None, "Tuesday 06:00");
    let st = lim.status().unwrap();
    assert_eq!(
        st.line(),
        "bandwidth limit: off (until 22:00, then 1 MiB/s)"
    );
}

#[test]
fn rate_math_in_256_kib_pieces() {
    let (clock, lim) = limit_at("2MiB", at(0, 12, 0, 0));
    let t0 = clock.now();
    for _ in 0..200 {
        lim.take(256 * KIB);
    }
    // 50 MiB at 2 MiB/s, the first 1 MiB (the burst: half a second) at once.
    let took = clock.now() - t0;
    assert!(
        (took.as_secs_f64() - 24.5).abs() < 0.01,
        "50 MiB took {took:?}"
    );
    // Every sleep is at most the re-check interval and the pieces are evenly spaced.
    assert!(clock.sleeps().iter().all(|s| *s <= RECHECK));
}

#[test]
fn reservations_queue_and_follow_rate_changes() {
    let (clock, lim) = limit_at("2MiB", at(0, 12, 0, 0));
    // The bucket starts full: half a second of the rate.
    assert_eq!(lim.wait_for(MIB), Duration::ZERO);
    let w = lim.wait_for(MIB);
    assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
    // A second caller queues behind the first.
    let w = lim.wait_for(MIB);
    assert!((w.as_secs_f64() - 1.0).abs() < 1e-6, "{w:?}");
    // The debt (2 MiB) is paid at a new rate.
    lim.set(Timetable::parse("4MiB").unwrap());
    let w = lim.wait_for(4 * MIB);
    assert!((w.as_secs_f64() - 1.5).abs() < 1e-6, "{w:?}");
    // Off forgives it; back on starts with a full bucket (2 MiB at 4 MiB/s).
    lim.set(Timetable::parse("off").unwrap());
    assert_eq!(lim.wait_for(100 * MIB), Duration::ZERO);
    lim.set(Timetable::parse("4MiB").unwrap());
    assert_eq!(lim.wait_for(2 * MIB), Duration::ZERO);
    clock.advance(Duration::from_secs(3600));
    // Idle time does not bank more than the burst.
    assert_eq!(lim.wait_for(2 * MIB), Duration::ZERO);
    let w = lim.wait_for(MIB);
    assert!((w.as_secs_f64() - 0.25).abs() < 1e-6, "{w:?}");
}

#[test]
fn small_limits_keep_a_piece_sized_burst() {
    let (_clock, lim) = limit_at("100KiB", at(0, 12, 0, 0));
    assert_eq!(lim.wait_for(256 * KIB), Duration::ZERO);
    let w = lim.wait_for(100 * KIB);
    assert!((w.as_secs_f64() - 1.0).abs() < 1e-6, "{w:?}");
}

#[test]
fn a_waiter_is_freed_when_the_timetable_turns_the_limit_off() {
    let (clock, lim) = limit_at("08:00,off 19:00,1MiB", at(0, 7, 59, 0));
    let t0 = clock.now();
    // 600 MiB at 1 MiB/s would take ten minutes; at 08:00 the limit is off.
    assert!(lim.take_or_interrupt(600 * MIB, &Interrupt::new()));
    let took = (clock.now() - t0).as_secs_f64();
    assert!((60.0..=60.3).contains(&took), "took {took} s");
    let intr = Interrupt::new();
    intr.trigger();
    lim.set(Timetable::parse("1MiB").unwrap());
    lim.take(MIB / 2);
    assert!(!lim.take_or_interrupt(10 * MIB, &intr), "interrupted");
    // Released (shutdown): nobody waits any more.
    let before = clock.sleeps().len();
    lim.release();
    lim.take(100 * MIB);
    assert_eq!(lim.wait_for(100 * MIB), Duration::ZERO);
    assert_eq!(clock.sleeps().len(), before);
}

#[test]
fn status_shows_the_limit_in_force() {
    let (clock, lim) = limit_at("08:00,2MiB 19:00,off", at(0, 10, 0, 0));
    let st = lim.status().unwrap();
    assert_eq!(
        st.line(),
        "bandwidth limit: 2 MiB/s (until 19:00, then off)"
    );
    assert_eq!(st.bytes_per_sec, Some(2 * MIB));
    assert_eq!(st.timetable, "08:00,2MiB 19:00,off");
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["until"], "19:00");
    assert_eq!(json["then"], "off");
    assert_eq!(json["source"], "config");

    lim.set(Timetable::parse("4MiB").unwrap());
    let st = lim.status().unwrap();
    assert_eq!(st.line(), "bandwidth limit: 4 MiB/s (set through .control)");
    assert_eq!(serde_json::to_value(&st).unwrap()["source"], "control");
    lim.reset();
    clock.advance(Duration::from_secs(9 * 3600));
    assert_eq!(
        lim.status().unwrap().line(),
        "bandwidth limit: off (until 08:00, then 2 MiB/s)"
    );

    let weekly = limit_at("Mon-08:00,512KiB Sat-00:00,off", at(2, 9, 0, 0)).1;
    assert_eq!(
        weekly.status().unwrap().line(),
        "bandwidth limit: 512 KiB/s (until Sat 00:00, then off)"
    );

    // Nothing configured: nothing shown, until a limit is set live.
    let (_c, none) = limit_at("off", at(0, 10, 0, 0));
    assert_eq!(none.status(), None);
    assert_eq!(none.wait_for(u64::MAX / 4), Duration::ZERO);
    none.set(Timetable::parse("off").unwrap());
    assert_eq!(
        none.status().unwrap().line(),
        "bandwidth limit: off (set through .control)"
    );
}

#[test]
fn status_table_and_json_carry_the_line() {
    use crate::upload::status::StatusSnapshot;
    let (_c, lim) = limit_at("08:00,2MiB 19:00,off", at(0, 10, 0, 0));
    let mut snap = StatusSnapshot::new(Vec::new(), None);
    let table = snap.render_table();
    assert!(!table.contains("bandwidth"), "{table}");
    assert!(!snap.render_json().contains("bandwidth_limit"));
    snap.bandwidth_limit = lim.status();
    let table = snap.render_table();
    assert_eq!(
        table.lines().nth(1),
        Some("bandwidth limit: 2 MiB/s (until 19:00, then off)"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&snap.render_json()).unwrap();
    assert_eq!(json["bandwidth_limit"]["bytes_per_sec"], 2 * MIB);
    assert_eq!(json["bandwidth_limit"]["until"], "19:00");
}
