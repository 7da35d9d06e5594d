//! Record blocks: records of one file with their shared fields sent once, compressed with
//! zstd. Agents compress each block once, into their spool, and send it from there unchanged;
//! the collector checks blocks when a batch arrives and expands them when its sinks read.

use prost::Message;

use crate::{LogBatch, LogRecord, RecordBlock};

/// The most a block may expand to; a larger announced size is refused (no zip bombs).
pub const MAX_BLOCK_BYTES: u64 = 64 << 20;

/// Why a batch's blocks cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {index}: {reason}")]
pub struct BlockError {
    pub index: usize,
    pub reason: String,
}

/// Decompresses and decodes one zstd block.
pub fn decode_block(compressed: &[u8]) -> Result<RecordBlock, String> {
    let encoded = decompress(compressed)?;
    RecordBlock::decode(encoded.as_slice()).map_err(|e| format!("undecodable record block: {e}"))
}

/// What [`block_head`] reads of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockHead {
    /// What the block's records share.
    pub common: LogRecord,
    pub first: Option<LogRecord>,
    pub records: usize,
}

/// A block's shared fields, first record and record count, read without decoding the other
/// records: a sink that forwards blocks as they are needs no more to route them.
pub fn block_head(compressed: &[u8]) -> Result<BlockHead, String> {
    let encoded = decompress(compressed)?;
    let undecodable = |e: prost::DecodeError| format!("undecodable record block: {e}");
    let (mut common, mut first, mut records) = (LogRecord::default(), None, 0);
    let mut rest = encoded.as_slice();
    while !rest.is_empty() {
        let (tag, wire_type) = prost::encoding::decode_key(&mut rest).map_err(undecodable)?;
        if wire_type != prost::encoding::WireType::LengthDelimited {
            let context = prost::encoding::DecodeContext::default();
            prost::encoding::skip_field(wire_type, tag, &mut rest, context).map_err(undecodable)?;
            continue;
        }
        let len = prost::encoding::decode_varint(&mut rest).map_err(undecodable)? as usize;
        if len > rest.len() {
            return Err("undecodable record block: a field runs past its end".to_owned());
        }
        let (field, after) = rest.split_at(len);
        rest = after;
        match tag {
            1 => common.merge(field).map_err(undecodable)?,
            2 => {
                records += 1;
                if first.is_none() {
                    first = Some(LogRecord::decode(field).map_err(undecodable)?);
                }
            }
            _ => {}
        }
    }
    Ok(BlockHead { common, first, records })
}

/// How many records a block holds, having checked that it decodes as [`decode_block`] would
/// decode it, without building its records: the collector checks every block on arrival,
/// and making and dropping each record's strings there cost more than the rest of the check.
pub fn check_block(compressed: &[u8]) -> Result<usize, String> {
    thread_local! {
        // Kept from block to block: a fresh buffer per block was a tenth of the collector's
        // CPU in page faults, the kernel zeroing each new page.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|encoded| {
        decompress_into(compressed, encoded)?;
        let checked = check_encoded_block(encoded);
        // A rare huge block is not held on to.
        if encoded.capacity() > SCRATCH_KEPT_BYTES {
            *encoded = Vec::new();
        }
        checked
    })
}

/// The most [`check_block`]'s buffer keeps between blocks: an agent's blocks are at most a
/// few hundred KiB.
const SCRATCH_KEPT_BYTES: usize = 4 << 20;

fn check_encoded_block(encoded: &[u8]) -> Result<usize, String> {
    let undecodable = |e: String| format!("undecodable record block: {e}");
    let mut records = 0;
    for field in Fields(encoded) {
        let (tag, value) = field.map_err(undecodable)?;
        match (tag, value) {
            (1 | 2, Value::Bytes(record)) => {
                check_record(record).map_err(undecodable)?;
                records += usize::from(tag == 2);
            }
            (1 | 2, _) => return Err(undecodable(format!("field {tag} is not a message"))),
            _ => {}
        }
    }
    Ok(records)
}

/// Checks one encoded [`LogRecord`] the way prost decodes it: each known field with its own
/// wire type, strings in UTF-8, label entries as string pairs; unknown fields skipped.
fn check_record(encoded: &[u8]) -> Result<(), String> {
    for field in Fields(encoded) {
        match field? {
            (1, Value::Fixed64) | (2 | 3 | 4 | 11 | 16, Value::Varint) => {}
            (tag @ (5..=10 | 12..=14 | 17), Value::Bytes(text)) => check_text(text, tag)?,
            (15, Value::Bytes(entry)) => {
                for field in Fields(entry) {
                    match field? {
                        (1 | 2, Value::Bytes(text)) => check_text(text, 15)?,
                        (1 | 2, _) => return Err("a label is not a string".to_owned()),
                        _ => {}
                    }
                }
            }
            (18, Value::Bytes(event)) => check_event(event)?,
            (tag @ 1..=18, _) => return Err(format!("record field {tag} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks an encoded [`KubeEvent`](crate::v1::KubeEvent) as prost decodes it.
fn check_event(encoded: &[u8]) -> Result<(), String> {
    for field in Fields(encoded) {
        match field? {
            (6..=8, Value::Varint) => {}
            (tag @ (1..=5 | 9), Value::Bytes(text)) => {
                simdutf8::basic::from_utf8(text)
                    .map_err(|_| format!("event field {tag} is not UTF-8"))?;
            }
            (tag @ 1..=9, _) => return Err(format!("event field {tag} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(())
}

fn check_text(text: &[u8], tag: u32) -> Result<(), String> {
    simdutf8::basic::from_utf8(text)
        .map(drop)
        .map_err(|_| format!("record field {tag} is not UTF-8"))
}

/// One field's value, as far as its wire type tells.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Group,
    Bytes(&'a [u8]),
}

/// The top-level fields of an encoded message, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        use prost::encoding::{WireType, decode_key, decode_varint};
        if self.0.is_empty() {
            return None;
        }
        let rest = &mut self.0;
        let field = (|| {
            // Keys of fields 1 to 15 are one byte: read here, the rest by prost's rules.
            let (tag, wire_type) = match rest.first() {
                Some(&key) if key < 0x80 && key >> 3 != 0 && key & 7 < 6 => {
                    *rest = &rest[1..];
                    let wire_type = WireType::try_from(u64::from(key & 7)).expect("checked above");
                    (u32::from(key >> 3), wire_type)
                }
                _ => decode_key(rest).map_err(|e| e.to_string())?,
            };
            let value = match wire_type {
                WireType::Varint => {
                    decode_varint(rest).map_err(|e| e.to_string())?;
                    Value::Varint
                }
                WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                    let (width, value) = if wire_type == WireType::SixtyFourBit {
                        (8, Value::Fixed64)
                    } else {
                        (4, Value::Fixed32)
                    };
                    if rest.len() < width {
                        return Err("a field runs past its end".to_owned());
                    }
                    *rest = &rest[width..];
                    value
                }
                WireType::LengthDelimited => {
                    let len = match rest.first() {
                        Some(&len) if len < 0x80 => {
                            *rest = &rest[1..];
                            u64::from(len)
                        }
                        _ => decode_varint(rest).map_err(|e| e.to_string())?,
                    };
                    if len > rest.len() as u64 {
                        return Err("a field runs past its end".to_owned());
                    }
                    let (bytes, after) = rest.split_at(len as usize);
                    *rest = after;
                    Value::Bytes(bytes)
                }
                WireType::StartGroup | WireType::EndGroup => {
                    let context = prost::encoding::DecodeContext::default();
                    prost::encoding::skip_field(wire_type, tag, rest, context)
                        .map_err(|e| e.to_string())?;
                    Value::Group
                }
            };
            Ok((tag, value))
        })();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

fn decompress(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    decompress_into(compressed, &mut out)?;
    Ok(out)
}

/// Decompresses a block into `out`, replacing what it held.
fn decompress_into(compressed: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let size = match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size <= MAX_BLOCK_BYTES => size,
        Ok(Some(size)) => return Err(format!("expands to {size} bytes, over {MAX_BLOCK_BYTES}")),
        Ok(None) => return Err("zstd frame without a content size".to_owned()),
        Err(_) => return Err("not a zstd frame".to_owned()),
    };
    thread_local! {
        // A decompression context costs more to make than a block to decompress.
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    out.clear();
    out.reserve(size as usize);
    CONTEXT
        .with_borrow_mut(|context| {
            let context = match context {
                Some(c) => c,
                None => context.insert(zstd::bulk::Decompressor::new()?),
            };
            context.decompress_to_buffer(compressed, out)
        })
        .map_err(|e| format!("undecodable zstd frame: {e}"))?;
    Ok(())
}

impl RecordBlock {
    /// The block's records with the shared fields filled in.
    pub fn into_records(self) -> Vec<LogRecord> {
        let common = self.common.unwrap_or_default();
        let fill = |own: &mut String, shared: &String| {
            if own.is_empty() {
                own.clone_from(shared);
            }
        };
        self.records
            .into_iter()
            .map(|mut r| {
                if r.source == 0 {
                    r.source = common.source;
                }
                if r.ingest_time_ns == 0 {
                    r.ingest_time_ns = common.ingest_time_ns;
                }
                fill(&mut r.cluster, &common.cluster);
                fill(&mut r.node, &common.node);
                fill(&mut r.namespace, &common.namespace);
                fill(&mut r.pod, &common.pod);
                fill(&mut r.pod_uid, &common.pod_uid);
                fill(&mut r.container, &common.container);
                fill(&mut r.file_path, &common.file_path);
                r
            })
            .collect()
    }
}

impl LogBatch {
    /// How many records the batch carries, checking that every block decodes.
    pub fn checked_record_count(&self) -> Result<usize, BlockError> {
        let mut count = self.records.len();
        for (index, block) in self.zstd_blocks.iter().enumerate() {
            count += check_block(block).map_err(|reason| BlockError { index, reason })?;
        }
        Ok(count)
    }

    /// Every record of the batch: its plain records, then those of its blocks in order, with
    /// the batch's enrichment where a record has none of its own.
    pub fn into_records(self) -> Result<Vec<LogRecord>, BlockError> {
        expand(self.records, &self.zstd_blocks, self.enrichment.as_ref())
    }
}

/// A batch's records from its parts (see [`LogBatch::into_records`]), for a holder that keeps
/// the blocks as they are.
pub fn expand(
    mut records: Vec<LogRecord>,
    zstd_blocks: &[prost::bytes::Bytes],
    enrichment: Option<&LogRecord>,
) -> Result<Vec<LogRecord>, BlockError> {
    // The blocks are decoded before the result is sized: growing a vector of thousands of
    // records step by step copied it several times over.
    let blocks = zstd_blocks
        .iter()
        .enumerate()
        .map(|(index, block)| decode_block(block).map_err(|reason| BlockError { index, reason }))
        .collect::<Result<Vec<_>, _>>()?;
    records.reserve_exact(blocks.iter().map(|b| b.records.len()).sum());
    for block in blocks {
        records.extend(block.into_records());
    }
    if let Some(e) = enrichment.filter(|e| **e != LogRecord::default()) {
        for r in &mut records {
            if r.labels.is_empty() {
                r.labels.clone_from(&e.labels);
            }
            if r.owner.is_empty() {
                r.owner.clone_from(&e.owner);
            }
            if r.node.is_empty() {
                r.node.clone_from(&e.node);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> RecordBlock {
        RecordBlock {
            common: Some(LogRecord {
                source: 9,
                cluster: "c".into(),
                namespace: "shop".into(),
                pod: "api-1".into(),
                file_path: "/var/log/pods/x/0.log".into(),
                ..LogRecord::default()
            }),
            records: vec![
                LogRecord {
                    offset: 0, message: "订单创建失败".into(), ..LogRecord::default()
                },
                LogRecord {
                    offset: 40,
                    pod: "own".into(),
                    message: "b".into(),
                    ..LogRecord::default()
                },
            ],
        }
    }

    #[test]
    fn blocks_expand_with_their_shared_fields() {
        let compressed = zstd::bulk::compress(&block().encode_to_vec(), 1).unwrap();
        let batch = LogBatch {
            records: vec![LogRecord { message: "plain".into(), ..LogRecord::default() }],
            zstd_blocks: vec![compressed.into()],
            ..LogBatch::default()
        };
        assert_eq!(batch.checked_record_count(), Ok(3));
        let records = batch.into_records().unwrap();
        assert_eq!(records[0].message, "plain");
        assert_eq!((records[1].source, records[1].pod.as_str()), (9, "api-1"));
        assert_eq!(records[1].message, "订单创建失败");
        assert_eq!(records[2].pod, "own", "a record's own value wins");
        assert_eq!(records[2].file_path, "/var/log/pods/x/0.log");
    }

    fn compress(encoded: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(encoded, 1).unwrap()
    }

    #[test]
    fn checking_a_block_counts_its_records_and_names_what_is_wrong() {
        let mut labelled = block();
        labelled.records[0].labels.insert("app".into(), "订单".into());
        assert_eq!(check_block(&compress(&labelled.encode_to_vec())), Ok(2));
        let mut bad_text = block().encode_to_vec();
        let at = bad_text.windows(3).position(|w| w == "订".as_bytes()).unwrap();
        bad_text[at] = 0xff;
        let err = check_block(&compress(&bad_text)).unwrap_err();
        assert!(err.contains("record field 14 is not UTF-8"), "{err}");
        // An event's count (field 6) sent as a string; a record's event (field 18) as a number.
        let mut wrong_event = RecordBlock::default().encode_to_vec();
        wrong_event.extend([0x12, 0x06, 0x92, 0x01, 0x03, 0x32, 0x01, b'x']);
        let err = check_block(&compress(&wrong_event)).unwrap_err();
        assert!(err.contains("event field 6 has the wrong wire type"), "{err}");
        let mut numbered = block().encode_to_vec();
        numbered.extend([0x12, 0x03, 0x90, 0x01, 0x07]);
        let err = check_block(&compress(&numbered)).unwrap_err();
        assert!(err.contains("record field 18 has the wrong wire type"), "{err}");
        // Field 3 (timestamp_ns) sent as a string.
        let wrong_type = RecordBlock { records: vec![], common: None }.encode_to_vec();
        let mut wrong_type = wrong_type;
        wrong_type.extend([0x12, 0x03, 0x1a, 0x01, b'x']);
        let err = check_block(&compress(&wrong_type)).unwrap_err();
        assert!(err.contains("field 3 has the wrong wire type"), "{err}");
        assert!(check_block(b"not zstd").unwrap_err().contains("not a zstd frame"));
    }

    proptest::proptest! {
        /// Whatever damage a block has, the check accepts it only when prost decodes it, and
        /// then counts the records prost finds.
        #[test]
        fn the_check_agrees_with_prost(
            flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..4),
            cut in 0usize..400,
        ) {
            let mut labelled = block();
            labelled.records[1].labels.insert("team".into(), "支付".into());
            labelled.records[1].flags = 3;
            labelled.records[1].timestamp_ns = -5;
            labelled.records[0].event = Some(crate::KubeEvent {
                uid: "e-1".into(),
                reason: "BackOff".into(),
                count: 300,
                first_seen_ns: -1,
                ..crate::KubeEvent::default()
            });
            let mut encoded = labelled.encode_to_vec();
            for (at, byte) in flips {
                let len = encoded.len();
                encoded[at % len] = byte;
            }
            encoded.truncate(cut.max(1));
            let decoded = RecordBlock::decode(encoded.as_slice());
            match check_block(&compress(&encoded)) {
                Ok(count) => proptest::prop_assert_eq!(Some(count), decoded.ok().map(|b| b.records.len())),
                Err(_) => proptest::prop_assert!(decoded.is_err(), "refused a block prost decodes"),
            }
        }
    }

    #[test]
    fn a_blocks_head_is_its_shared_fields_and_first_record() {
        let compressed = zstd::bulk::compress(&block().encode_to_vec(), 1).unwrap();
        let head = block_head(&compressed).unwrap();
        assert_eq!(head.common, block().common.unwrap());
        assert_eq!(head.first.unwrap().message, "订单创建失败");
        assert_eq!(head.records, 2);
        let empty = RecordBlock { common: block().common, records: vec![] };
        let head = block_head(&zstd::bulk::compress(&empty.encode_to_vec(), 1).unwrap()).unwrap();
        assert!(head.first.is_none() && head.records == 0);
        let mut cut = block().encode_to_vec();
        cut.truncate(cut.len() - 1);
        let err = block_head(&zstd::bulk::compress(&cut, 1).unwrap()).unwrap_err();
        assert!(err.contains("undecodable record block"), "{err}");
    }

    #[test]
    fn a_batchs_enrichment_fills_what_records_lack() {
        let compressed = zstd::bulk::compress(&block().encode_to_vec(), 1).unwrap();
        let mut own = LogRecord { owner: "Job/mine".into(), ..LogRecord::default() };
        own.labels.insert("team".into(), "a".into());
        let mut enrichment = LogRecord {
            owner: "ReplicaSet/api-7d9f8".into(),
            node: "node-3".into(),
            ..LogRecord::default()
        };
        enrichment.labels.insert("app".into(), "api".into());
        let batch = LogBatch {
            records: vec![own],
            zstd_blocks: vec![compressed.into()],
            enrichment: Some(enrichment),
            ..LogBatch::default()
        };
        let records = batch.into_records().unwrap();
        assert_eq!((records[0].owner.as_str(), records[0].labels.len()), ("Job/mine", 1));
        assert_eq!(records[0].labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(records[1].owner, "ReplicaSet/api-7d9f8");
        assert_eq!(records[1].labels.get("app").map(String::as_str), Some("api"));
        assert_eq!(records[2].node, "node-3");
    }

    #[test]
    fn damaged_blocks_are_named_errors() {
        let good = zstd::bulk::compress(&block().encode_to_vec(), 1).unwrap();
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 3);
        let bomb = zstd::bulk::compress(&vec![0u8; (MAX_BLOCK_BYTES + 1) as usize], 1).unwrap();
        let not_proto = zstd::bulk::compress(&[0xff; 20], 1).unwrap();
        for (bad, wanted) in [
            (b"garbage".to_vec(), "not a zstd frame"),
            (truncated, "undecodable zstd frame"),
            (bomb, "over"),
            (not_proto, "undecodable record block"),
        ] {
            let batch = LogBatch {
                zstd_blocks: vec![good.clone().into(), bad.into()],
                ..LogBatch::default()
            };
            let err = batch.checked_record_count().unwrap_err();
            assert_eq!(err.index, 1);
            assert!(err.to_string().contains(wanted), "{err} should say {wanted}");
        }
    }
}
