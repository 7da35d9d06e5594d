//! Lines into records: the file's format found from its first line (CRI, Docker json-file
//! or plain), partial lines merged, multi-line events joined, then redaction, flags and level.

use std::borrow::Cow;
use std::time::Instant;

use sluice_proto::{LogRecord, Stream, flags};

use super::file::TrackedFile;
use super::{PARTIAL_TIMEOUT, Tailer, now_ns};
use crate::chunk::{Chunk, Record};
use crate::cri::{self, Assembler, CriLine, Merged, SecondCache};
use crate::decode::decode;
use crate::docker;
use crate::line_reader::Line;
use crate::multiline::Joiner;
use crate::timestamp::TimeParser;
use sluice_proto::level;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Unknown,
    Cri,
    Docker,
    Plain,
}

/// What turns a file's lines into records.
pub(super) struct Parse {
    /// What every record of the file shares, sent once per chunk.
    pub(super) common: LogRecord,
    pub(super) format: Format,
    /// The last CRI time's second.
    pub(super) seconds: SecondCache,
    pub(super) cri: Assembler,
    pub(super) joiner: Joiner,
    /// The time given to the last line without a time of its own.
    pub(super) last_read_ns: i64,
    /// Reads plain lines' own times; `None` when they keep the time they are read.
    pub(super) time: Option<TimeParser>,
    /// The time of the file's last plain line that had one (or inherited one).
    pub(super) last_stamp_ns: Option<i64>,
}

impl Parse {
    /// Lines without a time of their own get the read time, made strictly increasing per
    /// file (by nanoseconds) so that newest-first keeps their order.
    pub(super) fn read_time(&mut self, now: i64) -> i64 {
        self.last_read_ns = now.max(self.last_read_ns + 1);
        self.last_read_ns
    }

    /// A plain line's time, with the flag to set: its own stamp; else, when the file is
    /// read for stamps, the time of the line before it (a nanosecond later, to keep their
    /// order), flagged — so a backfilled stack trace stays beside its event rather than at the
    /// read time, days away — or, in a file that has shown no stamp yet, the read time,
    /// unflagged as before stamps were read (a file of stampless lines is not damaged).
    fn plain_time(&mut self, line: &[u8], now: i64) -> (i64, u32) {
        let Some(parser) = &mut self.time else { return (self.read_time(now), 0) };
        if let Some(ns) = parser.parse(line, now) {
            self.last_stamp_ns = Some(ns);
            return (ns, 0);
        }
        match self.last_stamp_ns {
            Some(before) => {
                self.last_stamp_ns = Some(before + 1);
                (before + 1, flags::TIME_NOT_FOUND)
            }
            None => (self.read_time(now), 0),
        }
    }
}

impl Tailer {
    /// The record a line completes, if any, into `out`; `now` and `read_at` are when the
    /// bytes were read.
    pub(super) fn record(
        &self,
        parse: &mut Parse,
        line: Line<'_>,
        now: i64,
        read_at: Instant,
        out: &mut Chunk,
    ) {
        if parse.format == Format::Unknown {
            parse.format = if cri::parse(line.bytes).is_some() {
                Format::Cri
            } else if docker::parse(line.bytes).is_some() {
                Format::Docker
            } else {
                Format::Plain
            };
        }
        // The shared fields, read time included, stay in the chunk's common record.
        let docker_line;
        let (part, malformed) = match parse.format {
            Format::Cri => {
                (cri::parse_cached(line.bytes, &mut parse.seconds), flags::CRI_MALFORMED)
            }
            Format::Docker => {
                docker_line = docker::parse(line.bytes);
                let part = docker_line.as_ref().map(|d| CriLine {
                    timestamp_ns: d.timestamp_ns,
                    stream: d.stream,
                    partial: d.partial,
                    text: &d.text,
                });
                (part, flags::DOCKER_MALFORMED)
            }
            Format::Plain | Format::Unknown => (None, 0),
        };
        let record = match part {
            Some(part) => {
                let Some(merged) =
                    parse.cri.push(&part, line.start, line.end, line.truncated, read_at)
                else {
                    return;
                };
                merged_record(merged, 0)
            }
            None => {
                let (message, decode_flags) = decode(Cow::Borrowed(line.bytes), line.truncated);
                // A malformed CRI or Docker line keeps the read time: its stamp, if any, is
                // the runtime's, which did not parse.
                let (timestamp_ns, time_flags) = if parse.format == Format::Plain {
                    parse.plain_time(line.bytes, now)
                } else {
                    (parse.read_time(now), 0)
                };
                Record {
                    offset: line.start,
                    timestamp_ns,
                    stream: Stream::File as i32,
                    flags: malformed | decode_flags | time_flags,
                    level: "",
                    message,
                }
            }
        };
        self.complete(parse, record, line.end, read_at, out);
    }

    /// A record that ends at `end`, through the multi-line joiner when there is one.
    pub(super) fn complete(
        &self,
        parse: &mut Parse,
        record: Record<'_>,
        end: u64,
        read_at: Instant,
        out: &mut Chunk,
    ) {
        match &self.config.multiline {
            Some(multiline) => {
                let record = record.into_log_record();
                for (record, end) in parse.joiner.push(multiline, record, end, read_at) {
                    self.finish(parse, Record::from_log_record(record), end, out);
                }
            }
            None => self.finish(parse, record, end, out),
        }
    }

    /// What waits for more and has waited long enough, or everything when the file is being
    /// let go: CRI records whose `F` never came (once the file is read to its end, so an
    /// unread `F` is not taken for a missing one), then multi-line events.
    pub(super) fn flush_pending(&self, f: &mut TrackedFile, all: bool) -> Chunk {
        let Some(reading) = f.reading.as_mut() else {
            return Chunk::new(&LogRecord::default(), 0, 0);
        };
        let now = Instant::now();
        let parse = &mut reading.parse;
        let mut out = Chunk::new(&parse.common, now_ns(), 0);
        let read_to_end =
            || f.file.metadata().is_ok_and(|m| reading.splitter.position() >= m.len());
        if parse.cri.pending_start().is_some() && (all || read_to_end()) {
            for merged in parse.cri.take_stale(now, PARTIAL_TIMEOUT, all) {
                let end = merged.end;
                let record = merged_record(merged, flags::PARTIAL);
                self.complete(parse, record, end, now, &mut out);
            }
        }
        if let Some(multiline) = &self.config.multiline {
            for (record, end) in parse.joiner.flush(multiline, now, all) {
                self.finish(parse, Record::from_log_record(record), end, &mut out);
            }
        }
        out
    }

    /// Redaction, flags and level on a complete record, added to `out` with the checkpoint
    /// its ack allows: past its last line, but not past the first line of anything still
    /// being assembled.
    pub(super) fn finish(&self, parse: &Parse, mut record: Record<'_>, end: u64, out: &mut Chunk) {
        if !self.config.redact.is_empty() {
            let mut text = record.message.into_owned();
            if self.config.redact.apply(&mut text) {
                record.flags |= flags::REDACTED;
            }
            record.message = Cow::Owned(text);
        }
        if record.flags != 0 {
            for name in flags::names(record.flags) {
                metrics::counter!("sluice_agent_records_flagged_total", "flag" => name)
                    .increment(1);
            }
        }
        record.level = level::detect(&record.message).unwrap_or_default();
        let resume_offset = [parse.cri.pending_start(), parse.joiner.pending_start()]
            .into_iter()
            .flatten()
            .fold(end, u64::min);
        out.push(&record, resume_offset);
    }
}

/// A record from a merged CRI or Docker record.
fn merged_record(merged: Merged<'_>, flag_bits: u32) -> Record<'_> {
    let (message, decode_flags) = decode(merged.text, merged.truncated);
    Record {
        offset: merged.start,
        timestamp_ns: merged.timestamp_ns,
        stream: merged.stream as i32,
        flags: flag_bits | decode_flags,
        level: "",
        message,
    }
}
