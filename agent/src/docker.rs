//! Docker's `json-file` log driver: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-24T10:00:00.000000001Z"}`.
//!
//! Docker splits lines longer than 16 KiB into several objects; only the last one's `log`
//! ends with `\n`, so a part without it is partial, as a CRI `P` line is, and the same
//! per-stream [`crate::cri::Assembler`] merges them.

use serde::Deserialize;
use sluice_proto::Stream;

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// One parsed json-file line, its text without the final newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerLine {
    pub timestamp_ns: i64,
    pub stream: Stream,
    pub partial: bool,
    pub text: Vec<u8>,
}

/// Parses a json-file line; `None` when it is not one.
pub fn parse(line: &[u8]) -> Option<DockerLine> {
    if !line.starts_with(b"{") {
        return None;
    }
    let entry: Entry = serde_json::from_slice(line).ok()?;
    let stream = match entry.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let timestamp_ns =
        chrono::DateTime::parse_from_rfc3339(&entry.time).ok()?.timestamp_nanos_opt()?;
    let mut text = entry.log.into_bytes();
    let partial = text.last() != Some(&b'\n');
    if !partial {
        text.pop();
        if text.last() == Some(&b'\r') {
            text.pop();
        }
    }
    Some(DockerLine { timestamp_ns, stream, partial, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_entries() {
        let full = parse(
            br#"{"log":"\u8ba2\u5355 \"ok\"\r\n","stream":"stderr","time":"2026-11-23T10:00:00.002053958Z"}"#,
        )
        .unwrap();
        assert_eq!(full.timestamp_ns, 1_795_428_000_002_053_958);
        assert_eq!(full.stream, Stream::Stderr);
        assert!(!full.partial);
        assert_eq!(full.text, "订单 \"ok\"".as_bytes());
        let part =
            parse(br#"{"log":"first half","stream":"stdout","time":"2026-11-23T10:00:00Z"}"#)
                .unwrap();
        assert!(part.partial);
        assert_eq!(part.text, b"first half");
    }

    #[test]
    fn rejects_other_lines() {
        for line in [
            &b"plain text"[..],
            br#"{"log":"x\n","stream":"stdin","time":"2026-11-23T10:00:00Z"}"#,
            br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#,
            br#"{"log":"x\n","stream":"stdout"}"#,
            br#"{"log":"x\n","stream":"stdout","time":"2026-11-23T10:00:00Z""#,
            b"{\"log\":\"\xff\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-23T10:00:00Z\"}",
        ] {
            assert_eq!(parse(line), None, "{}", String::from_utf8_lossy(line));
        }
    }
}
