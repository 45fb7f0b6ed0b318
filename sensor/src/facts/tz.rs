//! Time zone facts: the zone's name and its UTC offset now.
//!
//! The offset comes from the zone's TZif file (RFC 8536) read by a small
//! bounded reader: the last transition at or before the instant, or, past the
//! last transition, the footer's POSIX TZ rule. No crate dependency is needed
//! for this, and the reader works on a copied tree as well as on `/`.

use std::{fs, path::Path};

use super::{
    FactKind, Strength,
    source::{Found, Sources, read_bytes, read_text, under},
};

/// Where zone files live (under the root).
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Zone names that all mean UTC; they say nothing about where a host is.
const UTC_NAMES: &[&str] = &[
    "UTC",
    "UCT",
    "Universal",
    "Zulu",
    "GMT",
    "GMT0",
    "GMT+0",
    "GMT-0",
    "Greenwich",
];

/// Timezone and offset facts of the host: `TZ` of the sensor's environment,
/// `/etc/timezone`, the `/etc/localtime` link; `now` is seconds since the epoch.
pub(crate) fn host_facts(src: &Sources, now: i64, out: &mut Found) {
    let mut offsets = 0;
    if let Some(tz) = src.env_var("TZ") {
        offsets += tz_var_facts(&src.root, "TZ", tz, now, out);
    }
    if let Some(zone) = read_text(&src.path("/etc/timezone")).and_then(|t| first_word(&t)) {
        offsets += zone_facts(&src.root, "/etc/timezone", &zone, now, out);
    }
    let localtime = src.path("/etc/localtime");
    match fs::read_link(&localtime) {
        Ok(target) => {
            if let Some(zone) = zone_from_path(&target.to_string_lossy()) {
                zone_facts(&src.root, "/etc/localtime", &zone, now, out);
            }
        }
        // A copied (not linked) localtime has no name, but still an offset;
        // only worth reading when no named zone gave one.
        Err(_) if offsets == 0 => {
            if let Some(minutes) = file_offset(&localtime, now) {
                out.push(
                    FactKind::UtcOffset,
                    "/etc/localtime",
                    &minutes.to_string(),
                    Strength::Weak,
                );
            }
        }
        Err(_) => {}
    }
}

/// Facts of a `TZ` variable (the sensor's or a process's) named `name`:
/// `:Europe/Berlin`, `/usr/share/zoneinfo/Europe/Berlin`, a zone name, or a
/// POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`. Returns how many offset
/// facts were added.
pub(crate) fn tz_var_facts(
    root: &Path,
    name: &str,
    value: &str,
    now: i64,
    out: &mut Found,
) -> usize {
    let value = value.trim();
    let bare = value.strip_prefix(':').unwrap_or(value);
    if let Some(zone) = zone_from_path(bare) {
        return zone_facts(root, name, &zone, now, out);
    }
    if bare.starts_with('/') {
        // A zone file outside zoneinfo: an offset but no name.
        return push_offset(out, name, file_offset(&under(root, bare), now));
    }
    if is_zone_name(bare) && (bare.contains('/') || is_utc(bare) || zone_file(root, bare).is_some())
    {
        return zone_facts(root, name, bare, now, out);
    }
    push_offset(out, name, Rule::parse(bare).map(|r| r.offset_at(now) / 60))
}

/// A timezone fact for `zone` found at `name`, and the zone's offset now.
fn zone_facts(root: &Path, name: &str, zone: &str, now: i64, out: &mut Found) -> usize {
    if !is_zone_name(zone) {
        return 0;
    }
    let strength = if is_utc(zone) {
        Strength::Weak
    } else {
        Strength::Strong
    };
    out.push(FactKind::Timezone, name, zone, strength);
    let minutes = zone_file(root, zone)
        .and_then(|z| z.offset_at(now))
        .map(|s| s / 60);
    push_offset(out, zone, minutes)
}

/// Record an offset (minutes east of UTC) if there is one.
fn push_offset(out: &mut Found, name: &str, minutes: Option<i32>) -> usize {
    match minutes {
        Some(m) => {
            out.push(FactKind::UtcOffset, name, &m.to_string(), Strength::Weak);
            1
        }
        None => 0,
    }
}

/// The parsed zone file of a (validated) zone name under `root`.
fn zone_file(root: &Path, zone: &str) -> Option<Zone> {
    if !is_zone_name(zone) {
        return None;
    }
    Zone::parse(&read_bytes(&under(root, &format!("{ZONEINFO}/{zone}")))?)
}

/// Offset in minutes of the TZif file at `path` at `now`.
fn file_offset(path: &Path, now: i64) -> Option<i32> {
    Zone::parse(&read_bytes(path)?)?
        .offset_at(now)
        .map(|s| s / 60)
}

/// The zone name in a path into a zoneinfo tree (`../usr/share/zoneinfo/Europe/Berlin`,
/// `/usr/share/zoneinfo/posix/Europe/Berlin` → `Europe/Berlin`).
fn zone_from_path(path: &str) -> Option<String> {
    let (_, rest) = path.rsplit_once("zoneinfo/")?;
    let rest = rest
        .strip_prefix("posix/")
        .or_else(|| rest.strip_prefix("right/"))
        .unwrap_or(rest);
    is_zone_name(rest).then(|| rest.to_owned())
}

/// The first word of a file such as `/etc/timezone` (comments skipped).
fn first_word(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}

/// Whether `zone` is shaped like an IANA zone name; this also keeps it from
/// escaping the zoneinfo directory when joined to it.
fn is_zone_name(zone: &str) -> bool {
    zone.len() <= 128
        && zone.starts_with(|c: char| c.is_ascii_alphabetic())
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-.".contains(&b))
        && zone
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Whether a zone name is one of the UTC aliases (`Etc/` prefix optional).
fn is_utc(zone: &str) -> bool {
    let bare = zone.strip_prefix("Etc/").unwrap_or(zone);
    UTC_NAMES.contains(&bare)
}

/// What a TZif file says about UTC offsets over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Zone {
    /// Transition instants (seconds since the epoch), ascending.
    transitions: Vec<i64>,
    /// For each transition, the index into `offsets` in effect from it on.
    types: Vec<u8>,
    /// Each local time type's offset in seconds east of UTC.
    offsets: Vec<i32>,
    /// The footer rule for instants after the last transition (v2+).
    footer: Option<Rule>,
}

/// The counts of a TZif header.
struct Counts {
    isut: usize,
    isstd: usize,
    leap: usize,
    time: usize,
    types: usize,
    chars: usize,
}

/// Length of a TZif header.
const HEADER: usize = 44;

impl Counts {
    /// The header at the start of `b`, and the version byte.
    fn parse(b: &[u8]) -> Option<(u8, Self)> {
        if b.get(..4)? != b"TZif" {
            return None;
        }
        let version = *b.get(4)?;
        let n = |i: usize| -> Option<usize> {
            let at = 20 + 4 * i;
            let raw: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_be_bytes(raw)).ok()
        };
        let counts = Self {
            isut: n(0)?,
            isstd: n(1)?,
            leap: n(2)?,
            time: n(3)?,
            types: n(4)?,
            chars: n(5)?,
        };
        // A zone has at least one type, and type indices are single bytes.
        (1..=256)
            .contains(&counts.types)
            .then_some((version, counts))
    }

    /// Length of the data block following the header, with `t` bytes per time.
    fn data_len(&self, t: usize) -> Option<usize> {
        let parts = [
            self.time.checked_mul(t)?,
            self.time,
            self.types.checked_mul(6)?,
            self.chars,
            self.leap.checked_mul(t + 4)?,
            self.isstd,
            self.isut,
        ];
        parts.iter().try_fold(0usize, |acc, p| acc.checked_add(*p))
    }
}

impl Zone {
    /// Parse a TZif file (any version); `None` if it is malformed or truncated.
    pub(crate) fn parse(b: &[u8]) -> Option<Self> {
        let (version, v1) = Counts::parse(b)?;
        let v1_len = v1.data_len(4)?;
        if version == 0 {
            return Self::parse_block(b.get(HEADER..)?, &v1, 4);
        }
        // Version 2+: a second header and 64-bit block follow the v1 block,
        // then the footer `\n<POSIX TZ>\n`.
        let second = b.get(HEADER.checked_add(v1_len)?..)?;
        let (_, v2) = Counts::parse(second)?;
        let body = second.get(HEADER..)?;
        let mut zone = Self::parse_block(body, &v2, 8)?;
        zone.footer = footer(body.get(v2.data_len(8)?..)?);
        Some(zone)
    }

    /// The transitions and types of one data block.
    fn parse_block(body: &[u8], c: &Counts, t: usize) -> Option<Self> {
        if body.len() < c.data_len(t)? {
            return None;
        }
        let transitions = (0..c.time)
            .map(|i| read_time(body.get(i * t..i * t + t)?))
            .collect::<Option<Vec<i64>>>()?;
        let types = body.get(c.time * t..c.time * t + c.time)?.to_vec();
        if types.iter().any(|&i| usize::from(i) >= c.types) {
            return None;
        }
        let base = c.time * t + c.time;
        let offsets = (0..c.types)
            .map(|i| {
                let raw: [u8; 4] = body.get(base + 6 * i..base + 6 * i + 4)?.try_into().ok()?;
                Some(i32::from_be_bytes(raw))
            })
            .collect::<Option<Vec<i32>>>()?;
        Some(Self {
            transitions,
            types,
            offsets,
            footer: None,
        })
    }

    /// Offset in seconds east of UTC at `t` (seconds since the epoch).
    pub(crate) fn offset_at(&self, t: i64) -> Option<i32> {
        let last = self.transitions.last().copied();
        if let Some(rule) = &self.footer
            && last.is_none_or(|l| t >= l)
        {
            return Some(rule.offset_at(t));
        }
        // Before the first transition type 0 applies (RFC 8536 §3.2).
        let idx = match self.transitions.partition_point(|&tr| tr <= t) {
            0 => 0,
            n => usize::from(*self.types.get(n - 1)?),
        };
        self.offsets.get(idx).copied()
    }
}

/// A big-endian 32- or 64-bit transition time.
fn read_time(b: &[u8]) -> Option<i64> {
    match b.len() {
        4 => Some(i64::from(i32::from_be_bytes(b.try_into().ok()?))),
        8 => Some(i64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// The footer rule: `\n<rule>\n` (an empty rule means none).
fn footer(b: &[u8]) -> Option<Rule> {
    let rest = b.strip_prefix(b"\n")?;
    let end = rest.iter().position(|&c| c == b'\n')?;
    Rule::parse(std::str::from_utf8(rest.get(..end)?).ok()?)
}

/// A POSIX TZ rule (`CET-1CEST,M3.5.0,M10.5.0/3`, `<+05>-5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Standard time offset, seconds east of UTC.
    std: i32,
    /// Daylight saving time, if the zone has it.
    dst: Option<Dst>,
}

/// The daylight-saving part of a POSIX TZ rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dst {
    /// Offset in seconds east of UTC.
    offset: i32,
    /// When it starts (in standard local time).
    start: Change,
    /// When it ends (in daylight local time).
    end: Change,
}

/// A yearly change: a day and a local time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    day: Day,
    /// Seconds after local midnight; may be negative or past 24 h (RFC 8536).
    time: i32,
}

/// The day of a yearly change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Day {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian(u16),
    /// `n`: day 0..=365, February 29 counted.
    Zero(u16),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    Month { month: u8, week: u8, weekday: u8 },
}

/// A cursor over a POSIX TZ string.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.at += usize::from(hit);
        hit
    }

    /// A zone abbreviation: `<...>` or at least three letters.
    fn name(&mut self) -> Option<()> {
        if self.eat(b'<') {
            while self.peek()? != b'>' {
                self.at += 1;
            }
            self.at += 1;
            return Some(());
        }
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.at += 1;
        }
        (self.at - start >= 3).then_some(())
    }

    /// An unsigned decimal number no greater than `max`.
    fn number(&mut self, max: u32) -> Option<u32> {
        let start = self.at;
        let mut n: u32 = 0;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
            self.at += 1;
        }
        (self.at > start && n <= max).then_some(n)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds (hours up to 167, as RFC 8536 allows).
    fn hms(&mut self) -> Option<i32> {
        let negative = self.eat(b'-');
        if !negative {
            self.eat(b'+');
        }
        let mut secs = self.number(167)? * 3600;
        if self.eat(b':') {
            secs += self.number(59)? * 60;
            if self.eat(b':') {
                secs += self.number(59)?;
            }
        }
        let secs = i32::try_from(secs).ok()?;
        Some(if negative { -secs } else { secs })
    }

    /// A change: a day, optionally `/time` (default 02:00).
    fn change(&mut self) -> Option<Change> {
        let day = if self.eat(b'J') {
            Day::Julian(u16::try_from(self.number(365)?).ok().filter(|&n| n >= 1)?)
        } else if self.eat(b'M') {
            let month = u8::try_from(self.number(12)?).ok().filter(|&m| m >= 1)?;
            self.eat(b'.').then_some(())?;
            let week = u8::try_from(self.number(5)?).ok().filter(|&w| w >= 1)?;
            self.eat(b'.').then_some(())?;
            let weekday = u8::try_from(self.number(6)?).ok()?;
            Day::Month {
                month,
                week,
                weekday,
            }
        } else {
            Day::Zero(u16::try_from(self.number(365)?).ok()?)
        };
        let time = if self.eat(b'/') { self.hms()? } else { 7200 };
        Some(Change { day, time })
    }
}

impl Rule {
    /// Parse a POSIX TZ string; `None` unless the whole string is valid.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let mut c = Cursor {
            s: s.as_bytes(),
            at: 0,
        };
        c.name()?;
        // POSIX offsets count west of UTC; facts count east.
        let std = -c.hms()?;
        if c.peek().is_none() {
            return Some(Self { std, dst: None });
        }
        c.name()?;
        let offset = match c.peek() {
            Some(b'+' | b'-' | b'0'..=b'9') => -c.hms()?,
            _ => std + 3600,
        };
        let (start, end) = if c.eat(b',') {
            let start = c.change()?;
            c.eat(b',').then_some(())?;
            (start, c.change()?)
        } else {
            // No rule given: POSIX leaves it to the implementation; glibc and
            // tzcode use the current US rules.
            let us = |month, week| Change {
                day: Day::Month {
                    month,
                    week,
                    weekday: 0,
                },
                time: 7200,
            };
            (us(3, 2), us(11, 1))
        };
        c.peek().is_none().then_some(Self {
            std,
            dst: Some(Dst { offset, start, end }),
        })
    }

    /// Offset in seconds east of UTC at `t`.
    pub(crate) fn offset_at(&self, t: i64) -> i32 {
        let Some(dst) = &self.dst else {
            return self.std;
        };
        let year = civil_year((t + i64::from(self.std)).div_euclid(86_400));
        // Each change happens at a local time: the start in standard time, the
        // end in daylight time.
        let start = change_instant(year, dst.start) - i64::from(self.std);
        let end = change_instant(year, dst.end) - i64::from(dst.offset);
        let in_dst = if start < end {
            (start..end).contains(&t)
        } else {
            // Southern hemisphere: daylight time spans the new year.
            !(end..start).contains(&t)
        };
        if in_dst { dst.offset } else { self.std }
    }
}

/// Seconds since the epoch of a change in `year`, as if local time were UTC.
fn change_instant(year: i64, c: Change) -> i64 {
    let day = match c.day {
        Day::Julian(n) => {
            // Day 60 and later are one later in leap years (Feb 29 skipped).
            let leap_shift = i64::from(is_leap(year) && n >= 60);
            days_from_civil(year, 1, 1) + i64::from(n) - 1 + leap_shift
        }
        Day::Zero(n) => days_from_civil(year, 1, 1) + i64::from(n),
        Day::Month {
            month,
            week,
            weekday,
        } => month_day(year, month, week, weekday),
    };
    day * 86_400 + i64::from(c.time)
}

/// Days since the epoch of weekday `weekday` in week `week` (5 = last) of `month`.
fn month_day(year: i64, month: u8, week: u8, weekday: u8) -> i64 {
    let first = days_from_civil(year, u32::from(month), 1);
    // 1970-01-01 was a Thursday (weekday 4).
    let first_weekday = (first + 4).rem_euclid(7);
    let mut day =
        first + (i64::from(weekday) - first_weekday).rem_euclid(7) + 7 * (i64::from(week) - 1);
    let next_month = first + i64::from(days_in_month(year, month));
    while day >= next_month {
        day -= 7;
    }
    day
}

/// Whether `year` is a Gregorian leap year.
fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1..=12) of `year`.
fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day counted from 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_year(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    yoe + era * 400 + i64::from(mp >= 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-07-01 12:00 UTC and 2024-01-15 12:00 UTC.
    const SUMMER: i64 = 1_719_835_200;
    const WINTER: i64 = 1_705_320_000;

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_year(11_017), 2000);
        assert_eq!(civil_year(-1), 1969);
        assert_eq!(civil_year(days_from_civil(2024, 12, 31)), 2024);
        // Last Sunday of March 2024 is the 31st, of October the 27th.
        assert_eq!(month_day(2024, 3, 5, 0), days_from_civil(2024, 3, 31));
        assert_eq!(month_day(2024, 10, 5, 0), days_from_civil(2024, 10, 27));
        // Second Sunday of March 2024 is the 10th.
        assert_eq!(month_day(2024, 3, 2, 0), days_from_civil(2024, 3, 10));
    }

    #[test]
    fn posix_rules() {
        let berlin = Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3").expect("valid");
        assert_eq!(berlin.offset_at(SUMMER), 7200);
        assert_eq!(berlin.offset_at(WINTER), 3600);
        // 2024-03-31 01:00 UTC is the switch.
        assert_eq!(berlin.offset_at(1_711_846_800 - 1), 3600);
        assert_eq!(berlin.offset_at(1_711_846_800), 7200);
        let sydney = Rule::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").expect("valid");
        assert_eq!(sydney.offset_at(SUMMER), 36_000);
        assert_eq!(sydney.offset_at(WINTER), 39_600);
        assert_eq!(
            Rule::parse("<+05>-5").map(|r| r.offset_at(SUMMER)),
            Some(18_000)
        );
        assert_eq!(
            Rule::parse("<-0330>3:30").map(|r| r.offset_at(SUMMER)),
            Some(-12_600)
        );
        assert_eq!(
            Rule::parse("EST5EDT").map(|r| r.offset_at(SUMMER)),
            Some(-14_400)
        );
        assert_eq!(
            Rule::parse("IST-5:30").map(|r| r.offset_at(WINTER)),
            Some(19_800)
        );
        // Permanent daylight time (RFC 8536 example).
        assert_eq!(
            Rule::parse("EST5EDT,0/0,J365/25").map(|r| r.offset_at(WINTER)),
            Some(-14_400)
        );
        for bad in [
            "",
            "X1",
            "CET",
            "CET-1CEST,M13.1.0,M1.1.0",
            "CET-1CEST,M3.5.0",
            "UTC0ju",
            "<ab",
        ] {
            assert_eq!(Rule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn tzif_garbage_is_refused() {
        assert_eq!(Zone::parse(b""), None);
        assert_eq!(Zone::parse(b"TZif2"), None);
        let mut b = b"TZif2".to_vec();
        b.resize(HEADER, 0);
        b[20 + 4 * 3..20 + 4 * 4].copy_from_slice(&u32::MAX.to_be_bytes());
        b[20 + 4 * 4..20 + 4 * 5].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(Zone::parse(&b), None);
    }

    #[test]
    fn tzif_v1_and_v2() {
        // v1: one transition at 1000 from type 0 (+1h) to type 1 (+2h).
        let mut v1 = b"TZif".to_vec();
        v1.push(0);
        v1.resize(20, 0);
        for n in [0u32, 0, 0, 1, 2, 4] {
            v1.extend(n.to_be_bytes());
        }
        v1.extend(1000i32.to_be_bytes());
        v1.push(1);
        v1.extend(3600i32.to_be_bytes());
        v1.extend([0, 0]);
        v1.extend(7200i32.to_be_bytes());
        v1.extend([1, 0]);
        v1.extend(b"AB\0\0");
        let zone = Zone::parse(&v1).expect("v1");
        assert_eq!(zone.offset_at(999), Some(3600));
        assert_eq!(zone.offset_at(1000), Some(7200));
        assert_eq!(zone.offset_at(i64::MAX), Some(7200));
        // Truncated: refused.
        assert_eq!(Zone::parse(&v1[..v1.len() - 1]), None);
    }

    #[test]
    fn zone_names() {
        assert_eq!(
            zone_from_path("/usr/share/zoneinfo/Europe/Berlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(
            zone_from_path("../usr/share/zoneinfo/posix/Asia/Kolkata").as_deref(),
            Some("Asia/Kolkata")
        );
        assert_eq!(
            zone_from_path("/usr/share/zoneinfo/../../../etc/shadow"),
            None
        );
        assert_eq!(zone_from_path("/etc/other"), None);
        assert!(is_utc("Etc/UTC") && is_utc("UTC") && is_utc("Zulu") && !is_utc("Europe/London"));
        assert!(
            !is_zone_name("/etc/passwd") && !is_zone_name("a/../b") && is_zone_name("Etc/GMT-5")
        );
    }
}
