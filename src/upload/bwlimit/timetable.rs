//! The `bwlimit` value: one rate (`"2MiB"`, `"off"`) or a timetable of rates in the shape
//! rclone's `--bwlimit` uses (`"08:00,2MiB 19:00,off"`, `"Mon-08:00,512KiB Sat-00:00,off"`),
//! parsed into a [`Timetable`] that answers "which limit is in force at this minute of the
//! week, and when does it change".
//!
//! Pure: no clock, no I/O. Times are minutes of a local week starting Monday 00:00; the caller
//! (`BwLimit`) turns the wall clock into that minute. Rules, as in rclone: an entry applies from
//! its time until the next entry; before the first entry of the week the last one is in force
//! (a timetable wraps over midnight and over Sunday night); an entry without a day applies every
//! day. Two entries for the same minute are an error. Rates are bytes per second with binary
//! units: `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB` (any case; all are powers of
//! 1024, as in rclone), decimals allowed (`1.5M`); a bare number is KiB/s, as in rclone. An
//! rclone `UP:DOWN` pair is accepted and only `UP` is used (this mount only uploads). The text
//! of a parsed timetable ([`Timetable::text`]) parses back to an equal timetable.

use std::fmt;

/// Minutes in a week.
pub const WEEK_MINUTES: u32 = 7 * 24 * 60;
/// The smallest limit accepted: below it one 256 KiB piece would wait minutes.
pub const MIN_RATE: u64 = 1024;
/// The largest limit accepted (1 TiB/s): anything above is "off".
pub const MAX_RATE: u64 = 1 << 40;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const EXAMPLES: &str = "examples: \"2MiB\", \"off\", \"08:00,2MiB 19:00,off\"";

/// A limit: bytes per second, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Off,
    BytesPerSec(u64),
}

impl Limit {
    /// Bytes per second, `None` for off.
    pub fn bytes_per_sec(self) -> Option<u64> {
        match self {
            Limit::Off => None,
            Limit::BytesPerSec(n) => Some(n),
        }
    }

    /// `off`, `2MiB`, `512KiB`, `1000B`: the value form, parsed back by [`parse_limit`].
    pub fn value_text(self) -> String {
        match self {
            Limit::Off => "off".to_string(),
            Limit::BytesPerSec(n) => {
                let (v, unit) = exact_unit(n);
                format!("{v}{unit}")
            }
        }
    }

    /// `off`, `2 MiB/s`, `1.5 MiB/s`: the form `.status` shows.
    pub fn display_text(self) -> String {
        match self {
            Limit::Off => "off".to_string(),
            Limit::BytesPerSec(n) if n >= 1024 * 1024 && !n.is_multiple_of(1024 * 1024) => {
                let mib = n as f64 / (1024.0 * 1024.0);
                let s = format!("{mib:.2}");
                format!("{} MiB/s", s.trim_end_matches('0').trim_end_matches('.'))
            }
            Limit::BytesPerSec(n) => {
                let (v, unit) = exact_unit(n);
                format!("{v} {unit}/s")
            }
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_text())
    }
}

/// The largest binary unit that divides `n` exactly.
fn exact_unit(n: u64) -> (u64, &'static str) {
    for (mult, unit) in [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= mult && n.is_multiple_of(mult) {
            return (n / mult, unit);
        }
    }
    (n, "B")
}

/// One entry as written: an optional day (0 = Monday), a minute of the day, a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    day: Option<u8>,
    minute: u32,
    limit: Limit,
}

/// A parsed `bwlimit` value. `entries` is empty for a single rate (`constant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    constant: Limit,
    /// As written, in the user's order (for [`Timetable::text`]).
    entries: Vec<Entry>,
    /// Expanded to the week, sorted by minute of the week; empty for a single rate.
    week: Vec<(u32, Limit)>,
}

/// The limit in force at a minute, and the next change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    pub limit: Limit,
    /// The minute of the week at which the limit next changes to `.1` (`None`: never).
    pub next: Option<(u32, Limit)>,
}

impl Default for Timetable {
    fn default() -> Self {
        Timetable::constant(Limit::Off)
    }
}

impl Timetable {
    /// One limit at all times.
    pub fn constant(limit: Limit) -> Self {
        Timetable {
            constant: limit,
            entries: Vec::new(),
            week: Vec::new(),
        }
    }

    /// Parse a `bwlimit` value. Errors are one line without the key's name (callers add it).
    pub fn parse(text: &str) -> Result<Timetable, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("empty value; {EXAMPLES}"));
        }
        if !t.contains(',') {
            if t.contains(':') && t.contains(char::is_whitespace) {
                return Err(format!(
                    "\"{t}\": timetable entries are TIME,RATE; {EXAMPLES}"
                ));
            }
            return parse_limit(t).map(Timetable::constant);
        }
        let mut entries = Vec::new();
        for token in t.split_whitespace() {
            let Some((time, rate)) = token.split_once(',') else {
                return Err(format!(
                    "\"{token}\" is not a TIME,RATE entry of a timetable; {EXAMPLES}"
                ));
            };
            if rate.contains(',') {
                return Err(format!(
                    "\"{token}\": separate the entries with spaces; {EXAMPLES}"
                ));
            }
            let (day, minute) = parse_time(time)?;
            let limit = parse_limit(rate)?;
            entries.push(Entry { day, minute, limit });
        }
        let mut week: Vec<(u32, Limit)> = Vec::new();
        for e in &entries {
            let days: Vec<u8> = match e.day {
                Some(d) => vec![d],
                None => (0..7).collect(),
            };
            for d in days {
                let at = u32::from(d) * 24 * 60 + e.minute;
                if week.iter().any(|(m, _)| *m == at) {
                    return Err(format!(
                        "two entries for {}; give each time once",
                        minute_text(at, true)
                    ));
                }
                week.push((at, e.limit));
            }
        }
        week.sort_by_key(|(m, _)| *m);
        Ok(Timetable {
            constant: Limit::Off,
            entries,
            week,
        })
    }

    /// The value form, parsed back by [`Timetable::parse`] into an equal timetable.
    pub fn text(&self) -> String {
        if self.entries.is_empty() {
            return self.constant.value_text();
        }
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let time = format!("{:02}:{:02}", e.minute / 60, e.minute % 60);
                let time = match e.day {
                    Some(d) => format!("{}-{time}", DAYS[usize::from(d)]),
                    None => time,
                };
                format!("{time},{}", e.limit.value_text())
            })
            .collect();
        parts.join(" ")
    }

    /// One limit at all times (no entries with times).
    pub fn is_constant(&self) -> bool {
        self.week.is_empty()
    }

    /// Off at all times: the default, nothing to show.
    pub fn is_off(&self) -> bool {
        self.week.iter().all(|(_, l)| *l == Limit::Off) && self.constant == Limit::Off
    }

    /// Whether some entry names a day (times are then shown with their day).
    pub fn is_weekly(&self) -> bool {
        self.entries.iter().any(|e| e.day.is_some())
    }

    /// The limit in force at `minute` of the week (0 = Monday 00:00) and the next change.
    pub fn at(&self, minute: u32) -> InForce {
        if self.week.is_empty() {
            return InForce {
                limit: self.constant,
                next: None,
            };
        }
        let minute = minute % WEEK_MINUTES;
        // The last entry at or before `minute`; before the first one, the week's last entry.
        let idx = match self.week.iter().rposition(|(m, _)| *m <= minute) {
            Some(i) => i,
            None => self.week.len() - 1,
        };
        let limit = self.week[idx].1;
        let n = self.week.len();
        let next = (1..n)
            .map(|k| self.week[(idx + k) % n])
            .find(|(_, l)| *l != limit);
        InForce { limit, next }
    }

    /// `19:00`, or `Fri 19:00` in a weekly timetable: how `.status` names a minute of the week.
    pub fn minute_text(&self, minute: u32) -> String {
        minute_text(minute, self.is_weekly())
    }
}

impl fmt::Display for Timetable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

fn minute_text(minute: u32, with_day: bool) -> String {
    let minute = minute % WEEK_MINUTES;
    let day = (minute / (24 * 60)) as usize;
    let hm = minute % (24 * 60);
    let time = format!("{:02}:{:02}", hm / 60, hm % 60);
    if with_day {
        format!("{} {time}", DAYS[day])
    } else {
        time
    }
}

/// `HH:MM` or `Day-HH:MM` (`Mon`…`Sun` or the full English name, any case).
fn parse_time(text: &str) -> Result<(Option<u8>, u32), String> {
    let bad = || format!("\"{text}\" is not a time of day (HH:MM or Mon-HH:MM)");
    let (day, hm) = match text.split_once('-') {
        Some((d, hm)) => {
            let d = d.to_ascii_lowercase();
            let idx = (0..7u8)
                .find(|&i| {
                    let i = usize::from(i);
                    d == DAYS[i].to_ascii_lowercase() || d == FULL_DAYS[i]
                })
                .ok_or_else(|| format!("\"{text}\": unknown day (use Mon, Tue, … Sun)"))?;
            (Some(idx), hm)
        }
        None => (None, text),
    };
    let (h, m) = hm.split_once(':').ok_or_else(bad)?;
    // One or two digits for the hour, two for the minutes (`8:05`, `08:05`; not `8:5`).
    let digits = |s: &str, lens: std::ops::RangeInclusive<usize>| {
        lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h >= 24 || m >= 60 {
        return Err(bad());
    }
    Ok((day, h * 60 + m))
}

/// One rate: `off`, `2MiB`, `1.5M`, `512k`, `100000B`, `2048` (KiB/s), or rclone's `UP:DOWN`.
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    let t = text.trim();
    // rclone's `UP:DOWN`: this mount only uploads, but both must be rates.
    let t = match t.split_once(':') {
        Some((up, down)) => {
            parse_limit(down.trim()).map_err(|e| format!("in \"{text}\" (UP:DOWN): {e}"))?;
            up.trim()
        }
        None => t,
    };
    if t.eq_ignore_ascii_case("off") {
        return Ok(Limit::Off);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = match num.parse() {
        Ok(v) if !num.is_empty() && !num.starts_with('.') => v,
        _ => return Err(format!("\"{text}\" is not a rate or off; {EXAMPLES}")),
    };
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "k" | "kb" | "ki" | "kib" => 1024,
        "b" => 1,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit \"{other}\" in \"{text}\" (use B, KiB, MiB, GiB or K, M, G)"
            ))
        }
    };
    let bytes = value * mult as f64;
    if bytes == 0.0 {
        return Err(format!("\"{text}\" is no limit at all; write off for none"));
    }
    if bytes < MIN_RATE as f64 {
        return Err(format!(
            "\"{text}\" is below the smallest limit, 1KiB (per second); write off for none"
        ));
    }
    if bytes > MAX_RATE as f64 {
        return Err(format!(
            "\"{text}\" is above 1TiB per second; write off for none"
        ));
    }
    Ok(Limit::BytesPerSec(bytes.round() as u64))
}
