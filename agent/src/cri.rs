//! The CRI log format kubelet writes under `/var/log/pods`, and the merging of its partial
//! lines.
//!
//! Each line is `<RFC 3339 time> <stdout|stderr> <tag> <text>`. The runtime splits long lines
//! (16 KiB in containerd) into parts tagged `P`, ending with one tagged `F`; parts are merged
//! as bytes, since a split may fall inside a UTF-8 character.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use sluice_proto::Stream;

/// One parsed CRI line, borrowing from the raw line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp_ns: i64,
    pub stream: Stream,
    pub partial: bool,
    pub text: &'a [u8],
}

/// The last whole second seen in a file's CRI times, `YYYY-MM-DDTHH:MM:SS`, and its seconds
/// since the epoch: a busy container writes many lines a second, so most lines repeat it.
#[derive(Debug, Default)]
pub struct SecondCache(Option<([u8; 19], i64)>);

/// Parses a CRI line; `None` when it is not one.
pub fn parse(line: &[u8]) -> Option<CriLine<'_>> {
    parse_cached(line, &mut SecondCache::default())
}

/// As [`parse`], reusing the time of the last line parsed with `cache`.
pub fn parse_cached<'a>(line: &'a [u8], cache: &mut SecondCache) -> Option<CriLine<'a>> {
    // Fields found by position rather than a general split: this runs on every line read.
    let space = memchr::memchr(b' ', line)?;
    let (time, rest) = (&line[..space], &line[space + 1..]);
    let stream = match rest.get(..7)? {
        b"stdout " => Stream::Stdout,
        b"stderr " => Stream::Stderr,
        _ => return None,
    };
    let rest = &rest[7..];
    let (tag, text) = match rest {
        // Nearly every tag is one letter.
        [_, b' ', text @ ..] => (&rest[..1], text),
        _ => match memchr::memchr(b' ', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        },
    };
    // Tags are `:`-separated; the first says partial or full.
    let partial = match tag {
        [b'P'] | [b'P', b':', ..] => true,
        [b'F'] | [b'F', b':', ..] => false,
        _ => return None,
    };
    let timestamp_ns = match utc_nanos(time, cache) {
        Some(ns) => ns,
        None => chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(time).ok()?)
            .ok()?
            .timestamp_nanos_opt()?,
    };
    Some(CriLine { timestamp_ns, stream, partial, text })
}

/// Nanoseconds since the epoch of the layout runtimes write, `YYYY-MM-DDTHH:MM:SS[.f…]Z`;
/// `None` for anything else, which chrono's general RFC 3339 parser then reads. Written by
/// hand because chrono's parser was a few percent of the agent's CPU, on every line.
fn utc_nanos(t: &[u8], cache: &mut SecondCache) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        t.get(range)?
            .iter()
            .try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    if t.len() < 20 || t.last() != Some(&b'Z') {
        return None;
    }
    let fraction = &t[19..t.len() - 1];
    let nanos = match fraction {
        [] => 0,
        [b'.', rest @ ..] if (1..=9).contains(&rest.len()) => {
            digits(20..t.len() - 1)? * 10i64.pow(9 - rest.len() as u32)
        }
        _ => return None,
    };
    // Compared in place: copying the bytes into an array first made the comparison's loads
    // wait on the copy's stores (a failed store-to-load forward), a fifth of the CRI parse.
    let seconds = match &cache.0 {
        Some((seen, seconds)) if seen[..] == t[..19] => *seconds,
        _ => {
            let whole: [u8; 19] = t[..19].try_into().expect("checked length");
            let seconds = civil_seconds(&whole)?;
            cache.0 = Some((whole, seconds));
            seconds
        }
    };
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS` in UTC; `None` for anything else.
fn civil_seconds(t: &[u8; 19]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        t[range]
            .iter()
            .try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| t[i] != c) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A merged CRI record: the first part's time and offset, all parts' text. A record of one
/// `F` line lends its text from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged<'a> {
    pub timestamp_ns: i64,
    pub stream: Stream,
    pub start: u64,
    pub end: u64,
    pub text: Cow<'a, [u8]>,
    pub truncated: bool,
}

/// Joins `P` parts until their `F`, per stream (stdout and stderr interleave).
#[derive(Debug)]
pub struct Assembler {
    cap: usize,
    open: [Option<Merged<'static>>; 2],
    /// When each open record last got a part.
    grown: [Option<Instant>; 2],
}

impl Assembler {
    pub fn new(cap: usize) -> Self {
        Self { cap, open: [None, None], grown: [None, None] }
    }

    /// The open records whose last part came `timeout` or more before `now`, or all of them:
    /// a container that died mid-line never writes the `F`.
    pub fn take_stale(
        &mut self,
        now: Instant,
        timeout: Duration,
        all: bool,
    ) -> Vec<Merged<'static>> {
        let mut stale = Vec::new();
        for (slot, grown) in self.open.iter_mut().zip(&mut self.grown) {
            let old = grown.is_some_and(|t| now.saturating_duration_since(t) >= timeout);
            if (all || old)
                && let Some(merged) = slot.take()
            {
                *grown = None;
                stale.push(merged);
            }
        }
        stale.sort_by_key(|m| m.start);
        stale
    }

    /// Adds a part that spans `[start, end)` in the file, read at `now`; returns the record it
    /// completes. (The caller's clock is read once per read, not once per line: it was 3% of
    /// the agent's CPU.)
    pub fn push<'a>(
        &mut self,
        line: &CriLine<'a>,
        start: u64,
        end: u64,
        truncated: bool,
        now: Instant,
    ) -> Option<Merged<'a>> {
        let index = usize::from(line.stream == Stream::Stderr);
        let slot = &mut self.open[index];
        if slot.is_none() && !line.partial {
            let kept = &line.text[..line.text.len().min(self.cap)];
            return Some(Merged {
                timestamp_ns: line.timestamp_ns,
                stream: line.stream,
                start,
                end,
                text: Cow::Borrowed(kept),
                truncated: truncated || kept.len() < line.text.len(),
            });
        }
        self.grown[index] = Some(now);
        let merged = slot.get_or_insert_with(|| Merged {
            timestamp_ns: line.timestamp_ns,
            stream: line.stream,
            start,
            end,
            // Room for this part and one more of its size: one allocation for the common
            // record of two parts, instead of growing from empty.
            text: Cow::Owned(Vec::with_capacity((2 * line.text.len()).min(self.cap))),
            truncated: false,
        });
        let room = self.cap.saturating_sub(merged.text.len());
        merged.truncated |= truncated || line.text.len() > room;
        merged.text.to_mut().extend_from_slice(&line.text[..line.text.len().min(room)]);
        merged.end = end;
        if line.partial {
            None
        } else {
            self.grown[index] = None;
            slot.take()
        }
    }

    /// Offset of the first part still waiting for its `F`: a restart must read from there.
    pub fn pending_start(&self) -> Option<u64> {
        self.open.iter().flatten().map(|m| m.start).min()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The fields as a general split finds them: what `parse_cached` must agree with.
    fn split_reference(line: &[u8]) -> Option<(Stream, bool, &[u8])> {
        let mut fields = line.splitn(4, |&b| b == b' ');
        let time = fields.next()?;
        let stream = match fields.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match fields.next()?.split(|&b| b == b':').next()? {
            b"P" => true,
            b"F" => false,
            _ => return None,
        };
        utc_nanos(time, &mut SecondCache::default())?;
        Some((stream, partial, fields.next().unwrap_or_default()))
    }

    proptest! {
        #[test]
        fn fields_agree_with_a_general_split(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("2026-11-23T10:00:00.002Z"), Just("stdout"), Just("stderr"), Just("stdin"),
                    Just("P"), Just("F"), Just("F:x"), Just("P:"), Just("FP"), Just(""), Just("x y"),
                    Just("订单"),
                ],
                0..6,
            ),
            spaces in prop::collection::vec(prop_oneof![Just(" "), Just("  "), Just("")], 6),
        ) {
            let line: String = parts.iter().zip(&spaces).map(|(p, s)| format!("{p}{s}")).collect();
            let parsed = parse(line.as_bytes()).map(|l| (l.stream, l.partial, l.text));
            prop_assert_eq!(parsed, split_reference(line.as_bytes()), "{:?}", line);
        }

        /// The hand-written parser agrees with chrono wherever it answers, and answers for
        /// every time in the runtimes' layout.
        #[test]
        fn utc_nanos_agrees_with_chrono(
            secs in 0i64..4_102_444_800, nanos in 0u32..1_000_000_000, digits in 0usize..=9
        ) {
            let time = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
            let text = match digits {
                0 => time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                d => format!("{}.{}Z", time.format("%Y-%m-%dT%H:%M:%S"), &format!("{:09}", nanos)[..d]),
            };
            let chrono = chrono::DateTime::parse_from_rfc3339(&text).unwrap().timestamp_nanos_opt();
            prop_assert_eq!(utc_nanos(text.as_bytes(), &mut SecondCache::default()), chrono, "{}", text);
            // The same answer from a cache that holds this second, and from one that holds another.
            let mut cache = SecondCache::default();
            utc_nanos(b"2001-02-03T04:05:06Z", &mut cache);
            prop_assert_eq!(utc_nanos(text.as_bytes(), &mut cache), chrono);
            prop_assert_eq!(utc_nanos(text.as_bytes(), &mut cache), chrono);
        }
    }

    #[test]
    fn open_records_go_stale_and_can_be_taken() {
        let mut a = Assembler::new(1024);
        let part =
            |stream, text: &'static [u8]| CriLine { timestamp_ns: 1, stream, partial: true, text };
        assert!(a.push(&part(Stream::Stderr, b"err "), 50, 60, false, Instant::now()).is_none());
        assert!(a.push(&part(Stream::Stdout, b"out "), 10, 20, false, Instant::now()).is_none());
        let now = Instant::now();
        assert!(a.take_stale(now, Duration::from_secs(60), false).is_empty(), "not yet stale");
        assert_eq!(a.pending_start(), Some(10));
        let stale = a.take_stale(now + Duration::from_secs(61), Duration::from_secs(60), false);
        assert_eq!(stale.iter().map(|m| m.start).collect::<Vec<_>>(), [10, 50], "in file order");
        assert_eq!(a.pending_start(), None);
        assert!(a.push(&part(Stream::Stdout, b"x"), 70, 80, false, Instant::now()).is_none());
        assert_eq!(a.take_stale(now, Duration::from_secs(3600), true).len(), 1, "all when let go");
    }

    #[test]
    fn utc_nanos_leaves_other_shapes_to_chrono() {
        for other in [
            "2026-11-23T18:00:00+08:00",
            "2026-02-30T00:00:00Z",
            "2026-11-23T10:00:00.Z",
            "2026-11-23T10:00:00.0123456789Z",
            "2026-11-23 10:00:00Z",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(utc_nanos(other.as_bytes(), &mut SecondCache::default()), None, "{other}");
        }
        let mut cache = SecondCache::default();
        assert_eq!(
            utc_nanos(b"2024-02-29T23:59:59.5Z", &mut cache),
            Some(1_709_251_199_500_000_000)
        );
        assert_eq!(
            utc_nanos(b"2024-02-29T23:59:59.Z", &mut cache),
            None,
            "a cached second still needs a valid fraction"
        );
    }

    #[test]
    fn parses_full_and_partial_lines() {
        let line = parse(b"2026-11-23T10:00:00.002053958Z stdout F hello world").unwrap();
        assert_eq!(line.timestamp_ns, 1_795_428_000_002_053_958);
        assert_eq!(
            (line.stream, line.partial, line.text),
            (Stream::Stdout, false, &b"hello world"[..])
        );
        let line = parse(b"2026-11-23T18:00:00+08:00 stderr P part").unwrap();
        assert_eq!(line.timestamp_ns, 1_795_428_000_000_000_000);
        assert!(line.partial);
        assert_eq!(parse(b"2026-11-23T10:00:00Z stdout F").unwrap().text, b"");
    }

    #[test]
    fn rejects_what_is_not_cri() {
        for bad in [
            &b"2026-11-23 10:00:00.004 INFO  [order-service] x"[..],
            b"2026-11-23T10:00:00.002Z stdout",
            b"2026-11-23T10:00:00.002Z stdin F x",
            b"2026-11-23T10:00:00.002Z stdout X x",
            b"not-a-time stdout F x",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn merges_parts_per_stream_including_split_characters() {
        let text = "订单".as_bytes();
        let mut a = Assembler::new(1 << 20);
        let p1 =
            CriLine { timestamp_ns: 1, stream: Stream::Stdout, partial: true, text: &text[..4] };
        let e = CriLine { timestamp_ns: 2, stream: Stream::Stderr, partial: false, text: b"err" };
        let p2 =
            CriLine { timestamp_ns: 3, stream: Stream::Stdout, partial: false, text: &text[4..] };
        assert_eq!(a.push(&p1, 0, 10, false, Instant::now()), None);
        assert_eq!(a.pending_start(), Some(0));
        let err = a.push(&e, 10, 20, false, Instant::now()).unwrap();
        assert_eq!((err.start, &err.text[..]), (10, &b"err"[..]));
        assert!(matches!(err.text, Cow::Borrowed(_)), "a whole line is lent, not copied");
        let out = a.push(&p2, 20, 30, false, Instant::now()).unwrap();
        assert_eq!((out.timestamp_ns, out.start, out.end), (1, 0, 30));
        assert_eq!(std::str::from_utf8(&out.text).unwrap(), "订单");
        assert_eq!(a.pending_start(), None);
    }

    #[test]
    fn merged_text_is_capped() {
        let mut a = Assembler::new(4);
        let p = CriLine { timestamp_ns: 1, stream: Stream::Stdout, partial: true, text: b"abc" };
        let f = CriLine { timestamp_ns: 1, stream: Stream::Stdout, partial: false, text: b"def" };
        a.push(&p, 0, 1, false, Instant::now());
        let out = a.push(&f, 1, 2, false, Instant::now()).unwrap();
        assert_eq!((&out.text[..], out.truncated), (&b"abcd"[..], true));
        let whole = a.push(&f, 2, 3, false, Instant::now()).unwrap();
        assert_eq!((&whole.text[..], whole.truncated), (&b"def"[..], false));
        let mut small = Assembler::new(2);
        let cut = small.push(&f, 0, 1, false, Instant::now()).unwrap();
        assert_eq!((&cut.text[..], cut.truncated), (&b"de"[..], true));
    }
}
