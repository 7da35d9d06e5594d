//! The time a plain-file line was written, from the stamp at its start.
//!
//! Automatic detection knows the shapes Loghub's samples and our users' Java apps write:
//! ISO 8601 / RFC 3339 with or without a zone (`2026-12-04T14:03:11.5+08:00`,
//! `2026-12-04 14:03:11,123` as log4j and logback write it), `2026/12/04 14:03:11`,
//! `17/06/09 20:10:40` (Spark), `081109 203615` (HDFS), syslog's `Dec  4 14:03:11` and
//! Android's `12-04 14:03:11.811` (no year: this year, or last year when that would put the
//! line more than a day in the future — the new-year turn), Apache's `[04/Dec/2026:14:03:11
//! +0800]` and `[Sun Dec 04 14:03:11 2005]`, and epoch seconds or milliseconds. A stamp may
//! also follow one leading word (OpenStack's `nova-api.log.1 2017-05-16 00:00:00.008`). A
//! configured strftime `format` replaces detection for the files it is given to.
//!
//! Hand-written rather than through chrono's format parser: that parser interprets its format
//! string for every line, several times slower than reading digits at known places, and
//! detection tries several shapes per file until one fits (then that one first).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// The zone of stamps that carry none.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// The node's zone (`TZ`, else `/etc/localtime`; UTC in a container that has neither).
    Local,
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `local`, `UTC`, an offset such as `+08:00`, or an IANA name such as `Asia/Shanghai`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        if text.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        if let Ok(offset) = text.parse::<chrono::FixedOffset>() {
            return Ok(Zone::Fixed(offset));
        }
        text.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!("{text:?} is no time zone: give local, UTC, an offset such as +08:00 or a name such as Asia/Shanghai")
        })
    }

    fn to_utc(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        // A time in a DST gap has no reading; one in the repeated hour takes its first.
        match self {
            Zone::Local => chrono::Local.from_local_datetime(&local).earliest().map(|t| t.to_utc()),
            Zone::Fixed(offset) => {
                offset.from_local_datetime(&local).earliest().map(|t| t.to_utc())
            }
            Zone::Named(tz) => tz.from_local_datetime(&local).earliest().map(|t| t.to_utc()),
        }
    }

    fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        match self {
            Zone::Local => now.with_timezone(&chrono::Local).date_naive(),
            Zone::Fixed(offset) => now.with_timezone(offset).date_naive(),
            Zone::Named(tz) => now.with_timezone(tz).date_naive(),
        }
    }
}

/// How a file's lines are read for their time.
#[derive(Debug, Clone, PartialEq)]
pub enum Stamps {
    /// Try every known shape.
    Auto,
    /// A strftime format that the line starts with (such as `%d.%m.%Y %H:%M:%S`).
    Format(String),
}

/// Finds the times of one file's lines.
#[derive(Debug, Clone)]
pub struct TimeParser {
    stamps: Stamps,
    zone: Zone,
    /// The shape that fitted last, tried first.
    last: usize,
}

/// A stamp's fields as read, before the zone and a missing year are settled.
struct Read {
    year: Option<i32>,
    date: (u32, u32),
    time: NaiveTime,
    /// Seconds east of UTC, when the stamp says.
    offset: Option<i32>,
}

type Shape = fn(&[u8]) -> Option<Read>;

const SHAPES: [Shape; 10] =
    [iso, slashed, short_slashed, compact, syslog, android, apache, ctime, epoch, after_word];

/// The last possible stamp time: stamps past now by more than this are taken as last year's.
const FUTURE_SLACK_NS: i64 = 86_400 * 1_000_000_000;

impl TimeParser {
    pub fn new(stamps: Stamps, zone: Zone) -> Self {
        TimeParser { stamps, zone, last: 0 }
    }

    /// The line's time in nanoseconds since the epoch, or `None` when it starts with no stamp
    /// this parser reads (or one outside the pipeline's time window).
    pub fn parse(&mut self, line: &[u8], now_ns: i64) -> Option<i64> {
        let read = match &self.stamps {
            Stamps::Format(format) => formatted(line, format),
            Stamps::Auto => {
                let order =
                    std::iter::once(self.last).chain((0..SHAPES.len()).filter(|&i| i != self.last));
                let mut found = None;
                for i in order {
                    if let Some(read) = SHAPES[i](line) {
                        self.last = i;
                        found = Some(read);
                        break;
                    }
                }
                found
            }
        }?;
        let ns = self.settle(read, now_ns)?;
        sluice_proto::time::in_window(ns).then_some(ns)
    }

    fn settle(&self, read: Read, now_ns: i64) -> Option<i64> {
        let at = |year: i32| -> Option<i64> {
            let date = NaiveDate::from_ymd_opt(year, read.date.0, read.date.1)?;
            let local = date.and_time(read.time);
            let utc = match read.offset {
                Some(seconds) => chrono::FixedOffset::east_opt(seconds)?
                    .from_local_datetime(&local)
                    .single()?
                    .to_utc(),
                None => self.zone.to_utc(local)?,
            };
            utc.timestamp_nanos_opt()
        };
        match read.year {
            Some(year) => at(year),
            None => {
                let now = DateTime::from_timestamp_nanos(now_ns);
                let year = chrono::Datelike::year(&self.zone.today(now));
                at(year).filter(|&t| t <= now_ns + FUTURE_SLACK_NS).or_else(|| at(year - 1))
            }
        }
    }
}

fn formatted(line: &[u8], format: &str) -> Option<Read> {
    // A stamp is ASCII and short: the valid UTF-8 prefix of the first 128 bytes holds it.
    let head = &line[..line.len().min(128)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    if let Ok((t, _)) = DateTime::parse_and_remainder(text, format) {
        let t: DateTime<chrono::FixedOffset> = t;
        let utc = t.naive_utc();
        return Some(Read {
            year: Some(chrono::Datelike::year(&utc)),
            date: (chrono::Datelike::month(&utc), chrono::Datelike::day(&utc)),
            time: utc.time(),
            offset: Some(0),
        });
    }
    let (t, _) = NaiveDateTime::parse_and_remainder(text, format).ok()?;
    Some(Read {
        year: Some(chrono::Datelike::year(&t)),
        date: (chrono::Datelike::month(&t), chrono::Datelike::day(&t)),
        time: t.time(),
        offset: None,
    })
}

/// `n` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = b.get(at..at + n)?;
    field
        .iter()
        .try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

fn byte(b: &[u8], at: usize, want: u8) -> Option<()> {
    (b.get(at) == Some(&want)).then_some(())
}

/// The byte after a stamp must not continue it (`2026-12-04 14:03:119` is no stamp).
fn ends(b: &[u8], at: usize) -> Option<()> {
    (!b.get(at).is_some_and(u8::is_ascii_digit)).then_some(())
}

fn clock(b: &[u8], at: usize) -> Option<NaiveTime> {
    byte(b, at + 2, b':')?;
    byte(b, at + 5, b':')?;
    NaiveTime::from_hms_opt(digits(b, at, 2)?, digits(b, at + 3, 2)?, digits(b, at + 6, 2)?)
}

/// A fraction of a second after `.` or `,` at `at`: the time with it, and where it ends.
fn fraction(b: &[u8], at: usize, time: NaiveTime) -> (NaiveTime, usize) {
    if !matches!(b.get(at), Some(b'.' | b',')) {
        return (time, at);
    }
    let run = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if run == 0 {
        return (time, at);
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        let d = if i < run { u32::from(b[at + 1 + i] - b'0') } else { 0 };
        nanos = nanos * 10 + d;
    }
    let end = at + 1 + run;
    (time + chrono::Duration::nanoseconds(i64::from(nanos)), end)
}

/// `Z`, `+08:00`, `+0800` or `+08` at `at`, in seconds east of UTC.
fn offset(b: &[u8], at: usize) -> Option<i32> {
    match b.get(at)? {
        b'Z' => Some(0),
        sign @ (b'+' | b'-') => {
            let hours = digits(b, at + 1, 2)? as i32;
            let minutes = if b.get(at + 3) == Some(&b':') {
                digits(b, at + 4, 2)?
            } else {
                digits(b, at + 3, 2).unwrap_or(0)
            } as i32;
            let seconds = hours * 3600 + minutes * 60;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

/// `2026-12-04T14:03:11`, `2026-12-04 14:03:11,123`, with a fraction and a zone or not; a
/// leading `[` is passed over.
fn iso(b: &[u8]) -> Option<Read> {
    let b = b.strip_prefix(b"[").unwrap_or(b);
    byte(b, 4, b'-')?;
    byte(b, 7, b'-')?;
    if !matches!(b.get(10), Some(b'T' | b' ')) {
        return None;
    }
    let (time, end) = fraction(b, 19, clock(b, 11)?);
    ends(b, end)?;
    let zone_at = if b.get(end) == Some(&b' ') && matches!(b.get(end + 1), Some(b'+' | b'-')) {
        end + 1
    } else {
        end
    };
    Some(Read {
        year: Some(digits(b, 0, 4)? as i32),
        date: (digits(b, 5, 2)?, digits(b, 8, 2)?),
        time,
        offset: offset(b, zone_at),
    })
}

/// `2026/12/04 14:03:11`, with a fraction or not.
fn slashed(b: &[u8]) -> Option<Read> {
    let b = b.strip_prefix(b"[").unwrap_or(b);
    byte(b, 4, b'/')?;
    byte(b, 7, b'/')?;
    byte(b, 10, b' ')?;
    let (time, end) = fraction(b, 19, clock(b, 11)?);
    ends(b, end)?;
    Some(Read {
        year: Some(digits(b, 0, 4)? as i32),
        date: (digits(b, 5, 2)?, digits(b, 8, 2)?),
        time,
        offset: None,
    })
}

/// Spark's `17/06/09 20:10:40`.
fn short_slashed(b: &[u8]) -> Option<Read> {
    byte(b, 2, b'/')?;
    byte(b, 5, b'/')?;
    byte(b, 8, b' ')?;
    let (time, end) = fraction(b, 17, clock(b, 9)?);
    ends(b, end)?;
    Some(Read {
        year: Some(2000 + digits(b, 0, 2)? as i32),
        date: (digits(b, 3, 2)?, digits(b, 6, 2)?),
        time,
        offset: None,
    })
}

/// HDFS's `081109 203615`.
fn compact(b: &[u8]) -> Option<Read> {
    byte(b, 6, b' ')?;
    ends(b, 13)?;
    let time = NaiveTime::from_hms_opt(digits(b, 7, 2)?, digits(b, 9, 2)?, digits(b, 11, 2)?)?;
    Some(Read {
        year: Some(2000 + digits(b, 0, 2)? as i32),
        date: (digits(b, 2, 2)?, digits(b, 4, 2)?),
        time,
        offset: None,
    })
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn month(b: &[u8], at: usize) -> Option<u32> {
    let name = b.get(at..at + 3)?;
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name)).map(|i| i as u32 + 1)
}

/// A day of one or two digits, padded with a space or a zero, in two bytes at `at`.
fn padded_day(b: &[u8], at: usize) -> Option<u32> {
    if b.get(at) == Some(&b' ') { digits(b, at + 1, 1) } else { digits(b, at, 2) }
}

/// syslog's `Dec  4 14:03:11` (no year).
fn syslog(b: &[u8]) -> Option<Read> {
    let month = month(b, 0)?;
    byte(b, 3, b' ')?;
    byte(b, 6, b' ')?;
    let (time, end) = fraction(b, 15, clock(b, 7)?);
    ends(b, end)?;
    Some(Read { year: None, date: (month, padded_day(b, 4)?), time, offset: None })
}

/// Android's `12-04 14:03:11.811` (no year).
fn android(b: &[u8]) -> Option<Read> {
    byte(b, 2, b'-')?;
    byte(b, 5, b' ')?;
    let (time, end) = fraction(b, 14, clock(b, 6)?);
    ends(b, end)?;
    Some(Read { year: None, date: (digits(b, 0, 2)?, digits(b, 3, 2)?), time, offset: None })
}

/// Apache's access log `[04/Dec/2026:14:03:11 +0800]`.
fn apache(b: &[u8]) -> Option<Read> {
    let b = b.strip_prefix(b"[")?;
    byte(b, 2, b'/')?;
    byte(b, 6, b'/')?;
    byte(b, 11, b':')?;
    let time = clock(b, 12)?;
    byte(b, 20, b' ')?;
    Some(Read {
        year: Some(digits(b, 7, 4)? as i32),
        date: (month(b, 3)?, digits(b, 0, 2)?),
        time,
        offset: Some(offset(b, 21)?),
    })
}

/// ctime, as Apache's error log writes it: `[Sun Dec 04 04:47:44 2005]`.
fn ctime(b: &[u8]) -> Option<Read> {
    let b = b.strip_prefix(b"[").unwrap_or(b);
    byte(b, 3, b' ')?;
    byte(b, 7, b' ')?;
    byte(b, 10, b' ')?;
    let (time, end) = fraction(b, 19, clock(b, 11)?);
    byte(b, end, b' ')?;
    ends(b, end + 5)?;
    Some(Read {
        year: Some(digits(b, end + 1, 4)? as i32),
        date: (month(b, 4)?, padded_day(b, 8)?),
        time,
        offset: None,
    })
}

/// Epoch seconds (10 digits, with a fraction or not) or milliseconds (13 digits).
fn epoch(b: &[u8]) -> Option<Read> {
    let run = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let (seconds, nanos) = match run {
        10 => {
            let seconds = i64::from(digits(b, 0, 10)?);
            let (time, end) = fraction(b, 10, NaiveTime::MIN);
            ends(b, end)?;
            (seconds, chrono::Timelike::nanosecond(&time))
        }
        13 => {
            let millis: i64 = std::str::from_utf8(&b[..13]).ok()?.parse().ok()?;
            (millis / 1000, (millis % 1000) as u32 * 1_000_000)
        }
        _ => return None,
    };
    let t = DateTime::from_timestamp(seconds, nanos)?.naive_utc();
    Some(Read {
        year: Some(chrono::Datelike::year(&t)),
        date: (chrono::Datelike::month(&t), chrono::Datelike::day(&t)),
        time: t.time(),
        offset: Some(0),
    })
}

/// An ISO or slashed stamp after one leading word without spaces (a file or host name).
fn after_word(b: &[u8]) -> Option<Read> {
    let word = b.iter().take(64).position(|&c| c == b' ')?;
    let rest = &b[word + 1..];
    iso(rest).or_else(|| slashed(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHANGHAI: Zone = Zone::Named(chrono_tz::Asia::Shanghai);

    fn ns(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_nanos_opt().unwrap()
    }

    fn auto(zone: Zone, line: &str, now: &str) -> Option<i64> {
        TimeParser::new(Stamps::Auto, zone).parse(line.as_bytes(), ns(now))
    }

    #[test]
    fn every_known_shape_is_read() {
        let now = "2026-12-04T12:00:00Z";
        for (line, want) in [
            ("2026-12-04T14:03:11.5+08:00 x", "2026-12-04T06:03:11.5Z"),
            ("2026-12-04T06:03:11Z x", "2026-12-04T06:03:11Z"),
            ("2026-12-04 14:03:11,123 INFO x", "2026-12-04T06:03:11.123Z"),
            ("2026-12-04 14:03:11.123456789 x", "2026-12-04T06:03:11.123456789Z"),
            ("2026-12-04 14:03:11 +0000 x", "2026-12-04T14:03:11Z"),
            ("[2026-12-04 14:03:11] x", "2026-12-04T06:03:11Z"),
            ("2026/12/04 14:03:11 x", "2026-12-04T06:03:11Z"),
            ("17/06/09 20:10:40 INFO x", "2017-06-09T12:10:40Z"),
            ("081109 203615 148 INFO x", "2008-11-09T12:36:15Z"),
            ("Dec  4 14:03:11 host sshd[1]: x", "2026-12-04T06:03:11Z"),
            ("Jun 14 15:16:01 combo x", "2026-06-14T07:16:01Z"),
            ("12-04 14:03:11.811  1702 D x", "2026-12-04T06:03:11.811Z"),
            ("[04/Dec/2026:14:03:11 +0800] GET /", "2026-12-04T06:03:11Z"),
            ("[Sun Dec 04 04:47:44 2005] [notice] x", "2005-12-03T20:47:44Z"),
            ("1764857000 x", "2025-12-04T14:03:20Z"),
            ("1764857000.25 x", "2025-12-04T14:03:20.25Z"),
            ("1764857000123 x", "2025-12-04T14:03:20.123Z"),
            (
                "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 2 INFO",
                "2017-05-15T16:00:00.008Z",
            ),
        ] {
            assert_eq!(auto(SHANGHAI, line, now), Some(ns(want)), "{line}");
        }
    }

    #[test]
    fn lines_without_a_stamp_or_with_a_broken_one_have_none() {
        let now = "2026-12-04T12:00:00Z";
        for line in [
            "",
            "at com.example.Foo.bar(Foo.java:42)",
            "2026-13-04 14:03:11 month 13",
            "2026-12-04 25:03:11 hour 25",
            "2026-12-04 14:03:119 too many digits",
            "123456 654321 not a date",
            "12345678901 eleven digits",
            "Decimal 4 14:03:11",
            "9999999999999999 too long",
        ] {
            assert_eq!(auto(SHANGHAI, line, now), None, "{line}");
        }
    }

    #[test]
    fn a_stamp_without_a_year_is_never_far_in_the_future() {
        // On New Year's Day, December's lines are last year's; January's are this year's.
        let now = "2027-01-01T00:30:00+08:00";
        assert_eq!(
            auto(SHANGHAI, "Dec 31 23:59:58 host x", now),
            Some(ns("2026-12-31T23:59:58+08:00"))
        );
        assert_eq!(
            auto(SHANGHAI, "Jan  1 00:29:00 host x", now),
            Some(ns("2027-01-01T00:29:00+08:00"))
        );
        assert_eq!(
            auto(SHANGHAI, "12-31 23:59:58.000 x", now),
            Some(ns("2026-12-31T23:59:58+08:00"))
        );
    }

    #[test]
    fn zones_apply_only_to_stamps_without_one() {
        let now = "2026-12-04T12:00:00Z";
        let utc = Zone::parse("UTC").unwrap();
        let plus9 = Zone::parse("+09:00").unwrap();
        assert_eq!(
            auto(utc.clone(), "2026-12-04 14:03:11 x", now),
            Some(ns("2026-12-04T14:03:11Z"))
        );
        assert_eq!(auto(plus9, "2026-12-04 14:03:11 x", now), Some(ns("2026-12-04T05:03:11Z")));
        assert_eq!(auto(utc, "2026-12-04T14:03:11+08:00 x", now), Some(ns("2026-12-04T06:03:11Z")));
        assert_eq!(Zone::parse("Asia/Shanghai").unwrap(), SHANGHAI);
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("Asia/Shanghai"));
        // New York's clocks went back at 2026-11-01 02:00: the repeated hour takes its first.
        let new_york = Zone::parse("America/New_York").unwrap();
        assert_eq!(
            auto(new_york, "2026-11-01 01:30:00 x", now),
            Some(ns("2026-11-01T01:30:00-04:00"))
        );
    }

    #[test]
    fn a_format_replaces_detection() {
        let now = ns("2026-12-04T12:00:00Z");
        let mut p = TimeParser::new(Stamps::Format("%d.%m.%Y %H:%M:%S".into()), SHANGHAI);
        assert_eq!(p.parse(b"04.12.2026 14:03:11 x", now), Some(ns("2026-12-04T06:03:11Z")));
        assert_eq!(p.parse(b"2026-12-04 14:03:11 x", now), None, "only the format is tried");
        let mut p = TimeParser::new(Stamps::Format("%Y%m%dT%H%M%S%z".into()), SHANGHAI);
        assert_eq!(p.parse(b"20261204T140311+0100 x", now), Some(ns("2026-12-04T13:03:11Z")));
    }

    #[test]
    fn times_outside_the_window_are_none() {
        let now = "2026-12-04T12:00:00Z";
        assert_eq!(
            auto(
                Zone::Fixed(chrono::FixedOffset::east_opt(0).unwrap()),
                "1969-12-31 23:59:59 x",
                now
            ),
            None
        );
        assert_eq!(auto(SHANGHAI, "2262-04-11 23:47:16 x", now), None);
    }

    /// Detection over every sample of `../shared/testdata`: the share of lines whose time was
    /// read, per file. Lines without a stamp of their own (stack-trace continuations) are the
    /// rest.
    #[test]
    fn the_shared_samples_are_read() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
        let mut files: Vec<_> = ["loghub", "zh"]
            .iter()
            .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "log") && !p.to_string_lossy().contains(".cri.")
            })
            .collect();
        files.sort();
        assert!(files.len() >= 9, "{files:?}");
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            let mut parser = TimeParser::new(Stamps::Auto, SHANGHAI);
            let lines: Vec<&[u8]> =
                bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
            let now = ns("2026-12-04T12:00:00Z");
            let (mut read, mut events, mut missed) = (0, 0, Vec::new());
            for line in &lines {
                let parsed = parser.parse(line, now).is_some();
                read += usize::from(parsed);
                // A continuation: an indented `at …`, `Caused by: …` or an exception's name.
                let continuation = line[0].is_ascii_whitespace()
                    || line.starts_with(b"Caused by")
                    || line.split(|&b| b == b':').next().is_some_and(|w| {
                        w.contains(&b'.')
                            && w.iter().all(|&b| b.is_ascii_alphanumeric() || b"._$".contains(&b))
                    });
                if !continuation {
                    events += 1;
                    if !parsed {
                        missed.push(String::from_utf8_lossy(line).into_owned());
                    }
                }
            }
            eprintln!(
                "{:<22} {read:>5} of {:>5} lines: {:.1}% ({} of {events} event lines)",
                path.file_name().unwrap().to_string_lossy(),
                lines.len(),
                read as f64 * 100.0 / lines.len() as f64,
                events - missed.len(),
            );
            assert!(
                missed.is_empty(),
                "{}: {} event lines without a time, such as {:?}",
                path.display(),
                missed.len(),
                &missed[..missed.len().min(3)]
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_line_is_read_without_a_panic(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = TimeParser::new(Stamps::Auto, Zone::Local).parse(&line, 0);
        }
    }
}
