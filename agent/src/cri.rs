//! The CRI log format kubelet writes under `/var/log/pods`, and the merging of its partial
//! lines.
//!
//! Each line is `<RFC 3339 time> <stdout|stderr> <tag> <text>`. The runtime splits long lines
//! (16 KiB in containerd) into parts tagged `P`, ending with one tagged `F`; parts are merged
//! as bytes, since a split may fall inside a UTF-8 character.

use sluice_proto::Stream;

/// One parsed CRI line, borrowing from the raw line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp_ns: i64,
    pub stream: Stream,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses a CRI line; `None` when it is not one.
pub fn parse(line: &[u8]) -> Option<CriLine<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tag = fields.next()?;
    // Tags are `:`-separated; the first says partial or full.
    let partial = match tag.split(|&b| b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let text = fields.next().unwrap_or_default();
    let timestamp_ns = chrono::DateTime::parse_from_rfc3339(time).ok()?.timestamp_nanos_opt()?;
    Some(CriLine { timestamp_ns, stream, partial, text })
}

/// A merged CRI record: the first part's time and offset, all parts' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub timestamp_ns: i64,
    pub stream: Stream,
    pub start: u64,
    pub end: u64,
    pub text: Vec<u8>,
    pub truncated: bool,
}

/// Joins `P` parts until their `F`, per stream (stdout and stderr interleave).
#[derive(Debug)]
pub struct Assembler {
    cap: usize,
    open: [Option<Merged>; 2],
}

impl Assembler {
    pub fn new(cap: usize) -> Self {
        Self { cap, open: [None, None] }
    }

    /// Adds a part that spans `[start, end)` in the file; returns the record it completes.
    pub fn push(
        &mut self,
        line: &CriLine<'_>,
        start: u64,
        end: u64,
        truncated: bool,
    ) -> Option<Merged> {
        let slot = &mut self.open[usize::from(line.stream == Stream::Stderr)];
        let merged = slot.get_or_insert_with(|| Merged {
            timestamp_ns: line.timestamp_ns,
            stream: line.stream,
            start,
            end,
            text: Vec::new(),
            truncated: false,
        });
        let room = self.cap.saturating_sub(merged.text.len());
        merged.truncated |= truncated || line.text.len() > room;
        merged.text.extend_from_slice(&line.text[..line.text.len().min(room)]);
        merged.end = end;
        if line.partial { None } else { slot.take() }
    }

    /// Offset of the first part still waiting for its `F`: a restart must read from there.
    pub fn pending_start(&self) -> Option<u64> {
        self.open.iter().flatten().map(|m| m.start).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(a.push(&p1, 0, 10, false), None);
        assert_eq!(a.pending_start(), Some(0));
        let err = a.push(&e, 10, 20, false).unwrap();
        assert_eq!((err.start, err.text.as_slice()), (10, &b"err"[..]));
        let out = a.push(&p2, 20, 30, false).unwrap();
        assert_eq!((out.timestamp_ns, out.start, out.end), (1, 0, 30));
        assert_eq!(std::str::from_utf8(&out.text).unwrap(), "订单");
        assert_eq!(a.pending_start(), None);
    }

    #[test]
    fn merged_text_is_capped() {
        let mut a = Assembler::new(4);
        let p = CriLine { timestamp_ns: 1, stream: Stream::Stdout, partial: true, text: b"abc" };
        let f = CriLine { timestamp_ns: 1, stream: Stream::Stdout, partial: false, text: b"def" };
        a.push(&p, 0, 1, false);
        let out = a.push(&f, 1, 2, false).unwrap();
        assert_eq!((out.text.as_slice(), out.truncated), (&b"abcd"[..], true));
    }
}
