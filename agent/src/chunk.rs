//! The records of one file read in one go, encoded as they are made.
//!
//! A chunk holds the protobuf encoding of a [`sluice_proto::RecordBlock`]: what the records share (source,
//! pod identity, node, path, read time) first, once, then each record as it is finished. The
//! spool compresses those bytes as they are. A plain line therefore never becomes a
//! `LogRecord` with its own allocations, and no block is encoded twice; building and
//! re-encoding `LogRecord`s was a fifth of the agent's CPU.

use std::borrow::Cow;

use prost::encoding::{WireType, message};
use sluice_proto::LogRecord;

/// `RecordBlock.common`.
const COMMON_TAG: u32 = 1;
/// `RecordBlock.records`.
const RECORDS_TAG: u32 = 2;

/// A record's own fields, as the reader makes them: the text is lent from the bytes just read
/// wherever nothing had to change in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: u64,
    pub timestamp_ns: i64,
    /// A [`sluice_proto::Stream`] value.
    pub stream: i32,
    pub flags: u32,
    /// One of [`sluice_proto::level::LEVELS`], or empty.
    pub level: &'static str,
    pub message: Cow<'a, str>,
}

impl Record<'_> {
    /// The record as a `LogRecord` of its own, for the multi-line joiner.
    pub fn into_log_record(self) -> LogRecord {
        LogRecord {
            offset: self.offset,
            timestamp_ns: self.timestamp_ns,
            stream: self.stream,
            flags: self.flags,
            level: self.level.to_owned(),
            message: self.message.into_owned(),
            ..LogRecord::default()
        }
    }

    /// A record the joiner made: the fields a [`Record`] has are all a joined record has.
    pub fn from_log_record(record: LogRecord) -> Record<'static> {
        Record {
            offset: record.offset,
            timestamp_ns: record.timestamp_ns,
            stream: record.stream,
            flags: record.flags,
            level: "",
            message: Cow::Owned(record.message),
        }
    }

    /// Field by field what prost writes for the same `LogRecord`: tag order, zero values left
    /// out (the tests hold the two to the same bytes). Everything but the message is written
    /// to a small stack buffer first, so its length is known without a second pass: sizing
    /// and writing each varint through prost's helpers was a twentieth of the reader's CPU.
    fn encode(&self, buf: &mut Vec<u8>) {
        let mut head = Head::default();
        if self.offset != 0 {
            head.put(OFFSET_KEY);
            head.varint(self.offset);
        }
        if self.timestamp_ns != 0 {
            head.put(TIMESTAMP_KEY);
            // int64 is written as the two's-complement u64, as prost does.
            head.varint(self.timestamp_ns as u64);
        }
        if self.stream != 0 {
            head.put(STREAM_KEY);
            head.varint(i64::from(self.stream) as u64);
        }
        if !self.level.is_empty() {
            head.put(LEVEL_KEY);
            head.varint(self.level.len() as u64);
            head.extend(self.level.as_bytes());
        }
        if !self.message.is_empty() {
            head.put(MESSAGE_KEY);
            head.varint(self.message.len() as u64);
        }
        let tail = match self.flags {
            0 => 0,
            flags => FLAGS_KEY.len() + varint_len(u64::from(flags)),
        };
        let len = head.len + self.message.len() + tail;
        buf.reserve(1 + varint_len(len as u64) + len);
        buf.push(RECORD_KEY);
        put_varint(buf, len as u64);
        buf.extend_from_slice(head.bytes());
        buf.extend_from_slice(self.message.as_bytes());
        if self.flags != 0 {
            buf.extend_from_slice(&FLAGS_KEY);
            put_varint(buf, u64::from(self.flags));
        }
    }
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// The keys of a record's fields, as prost writes them: `(tag << 3) | wire type`, a varint.
const RECORD_KEY: u8 = (RECORDS_TAG << 3) as u8 | WireType::LengthDelimited as u8;
const OFFSET_KEY: u8 = 2 << 3;
const TIMESTAMP_KEY: u8 = 3 << 3;
const STREAM_KEY: u8 = 11 << 3;
const LEVEL_KEY: u8 = 13 << 3 | WireType::LengthDelimited as u8;
const MESSAGE_KEY: u8 = 14 << 3 | WireType::LengthDelimited as u8;
/// Tag 16 needs a second byte.
const FLAGS_KEY: [u8; 2] = [0x80, 0x01];

/// The bytes of a record before its message: at most four keys and varints of up to eleven
/// bytes each, and a level name of five.
struct Head {
    bytes: [u8; 64],
    len: usize,
}

impl Default for Head {
    fn default() -> Self {
        Self { bytes: [0; 64], len: 0 }
    }
}

impl Head {
    fn put(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.put(value as u8 | 0x80);
            value >>= 7;
        }
        self.put(value as u8);
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Records of one file read in one go, with the checkpoint their ack allows.
#[derive(Debug, Clone)]
pub struct Chunk {
    common: LogRecord,
    encoded: Vec<u8>,
    records: usize,
    /// Past the last record, and not past any partial CRI record or multi-line event still
    /// waiting for its end.
    pub resume_offset: u64,
}

impl Chunk {
    /// A chunk of records read at `read_ns` (the read time is shared too), with room for
    /// about `capacity` bytes of them.
    pub(crate) fn new(common: &LogRecord, read_ns: i64, capacity: usize) -> Self {
        let common = LogRecord { ingest_time_ns: read_ns, ..common.clone() };
        let mut encoded = Vec::with_capacity(prost::Message::encoded_len(&common) + 8 + capacity);
        message::encode(COMMON_TAG, &common, &mut encoded);
        Self { common, encoded, records: 0, resume_offset: 0 }
    }

    /// Whole records made elsewhere ([`crate::forward`]), each with its own source and
    /// fields; `common` fills only what they leave empty, and no file's checkpoint moves.
    pub fn of_records(common: &LogRecord, read_ns: i64, records: &[LogRecord]) -> Self {
        let capacity = records.iter().map(|r| prost::Message::encoded_len(r) + 4).sum();
        let mut chunk = Self::new(common, read_ns, capacity);
        for record in records {
            message::encode(RECORDS_TAG, record, &mut chunk.encoded);
        }
        chunk.records = records.len();
        chunk
    }

    pub(crate) fn push(&mut self, record: &Record<'_>, resume_offset: u64) {
        record.encode(&mut self.encoded);
        self.records += 1;
        self.resume_offset = self.resume_offset.max(resume_offset);
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn len(&self) -> usize {
        self.records
    }

    /// The fields the records share: source, pod identity, node and path.
    pub fn common(&self) -> &LogRecord {
        &self.common
    }

    /// The encoded [`sluice_proto::RecordBlock`].
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The block decoded.
    #[cfg(test)]
    fn block(&self) -> sluice_proto::RecordBlock {
        prost::Message::decode(self.encoded()).expect("a chunk encodes a valid block")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;
    use sluice_proto::RecordBlock;

    use super::*;

    const LEVELS: [&str; 3] = ["", "info", "error"];

    proptest! {
        #[test]
        fn varints_are_prosts(value in any::<u64>(), shift in 0u32..64) {
            let value = value >> shift;
            let mut ours = Vec::new();
            put_varint(&mut ours, value);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(value, &mut theirs);
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(varint_len(value), theirs.len());
        }

        /// The hand encoding is prost's, byte for byte.
        #[test]
        fn a_chunk_encodes_what_prost_encodes(
            records in prop::collection::vec(
                (any::<u64>(), any::<i64>(), 0i32..4, any::<u32>(), 0usize..3, ".{0,40}"),
                0..6,
            ),
            source in any::<u64>(),
        ) {
            let common = LogRecord { source, pod: "pay-1".into(), ..LogRecord::default() };
            let mut chunk = Chunk::new(&common, 7, 0);
            let mut block = RecordBlock {
                common: Some(LogRecord { ingest_time_ns: 7, ..common.clone() }),
                records: Vec::new(),
            };
            for (offset, timestamp_ns, stream, flags, level, message) in records {
                let record = Record {
                    offset, timestamp_ns, stream, flags, level: LEVELS[level],
                    message: Cow::Borrowed(&message),
                };
                chunk.push(&record, offset);
                block.records.push(record.clone().into_log_record());
            }
            let expected = block.encode_to_vec();
            prop_assert_eq!(chunk.encoded(), expected.as_slice());
            prop_assert_eq!(chunk.len(), block.records.len());
            prop_assert_eq!(chunk.block(), block);
        }
    }

    #[test]
    fn a_joined_record_round_trips() {
        let record = Record {
            offset: 3,
            timestamp_ns: 4,
            stream: 2,
            flags: 1,
            level: "",
            message: Cow::Borrowed("a\nb"),
        };
        let back = Record::from_log_record(record.clone().into_log_record());
        assert_eq!(back, record);
    }
}
