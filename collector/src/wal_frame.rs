//! What a WAL frame's payload holds: a kind byte, then the encoded message.
//!
//! Kind 1 is an agent's batch, whose records carry their ids (source + byte offset in the
//! file). Kind 2 is a batch from a client that has no such offsets (`_bulk`, OTLP): its
//! records' offsets are their index in the batch, and decoding turns them into
//! `(frame position << 20) + index`. The frame's position in the WAL never changes, so a
//! replay after a crash gives the same ids, and the index keeps each record once.

use prost::Message;
use sluice_proto::LogBatch;

const KIND_LOG_BATCH: u8 = 1;
const KIND_EXTERNAL_BATCH: u8 = 2;

/// The most records in one external batch: the index must fit below the position's bits.
pub const MAX_EXTERNAL_RECORDS: usize = 1 << 20;

pub fn encode_batch(batch: &LogBatch) -> Vec<u8> {
    encode(KIND_LOG_BATCH, batch)
}

/// A batch whose record offsets are their index in it, made unique by the WAL position.
pub fn encode_external(batch: &LogBatch) -> Vec<u8> {
    debug_assert!(batch.records.len() <= MAX_EXTERNAL_RECORDS);
    encode(KIND_EXTERNAL_BATCH, batch)
}

fn encode(kind: u8, batch: &LogBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + batch.encoded_len());
    out.push(kind);
    batch.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// Decodes the payload of the frame at WAL `position`, giving external records their ids;
/// the error says what is wrong with it.
pub fn decode_batch_at(payload: &[u8], position: u64) -> Result<LogBatch, String> {
    match payload.split_first() {
        Some((&KIND_LOG_BATCH, body)) => {
            LogBatch::decode(body).map_err(|e| format!("undecodable log batch: {e}"))
        }
        Some((&KIND_EXTERNAL_BATCH, body)) => {
            let mut batch =
                LogBatch::decode(body).map_err(|e| format!("undecodable external batch: {e}"))?;
            for r in &mut batch.records {
                r.offset = (position << 20) | (r.offset & (MAX_EXTERNAL_RECORDS as u64 - 1));
            }
            Ok(batch)
        }
        Some((kind, _)) => Err(format!("unknown frame kind {kind}")),
        None => Err("empty frame".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::LogRecord;

    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let batch = LogBatch {
            agent: "a".into(),
            sequence: 3,
            records: vec![LogRecord { message: "订单".into(), ..LogRecord::default() }],
            zstd_blocks: vec![b"kept as sent".to_vec()],
        };
        assert_eq!(decode_batch_at(&encode_batch(&batch), 0).unwrap(), batch);
        let mut truncated = encode_batch(&batch);
        truncated.truncate(truncated.len() - 2);
        assert!(decode_batch_at(&truncated, 0).unwrap_err().contains("undecodable"));
        assert!(decode_batch_at(&[9, 1], 0).unwrap_err().contains("unknown frame kind 9"));
        assert!(decode_batch_at(&[], 0).is_err());
    }

    #[test]
    fn external_records_get_ids_from_the_frame_position() {
        let batch = LogBatch {
            records: (0..3)
                .map(|i| LogRecord { source: 5, offset: i, ..LogRecord::default() })
                .collect(),
            ..LogBatch::default()
        };
        let payload = encode_external(&batch);
        let at = |p| {
            decode_batch_at(&payload, p)
                .unwrap()
                .records
                .iter()
                .map(|r| r.offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(7), [7 << 20, (7 << 20) + 1, (7 << 20) + 2]);
        assert_eq!(at(7), at(7), "a replay gives the same ids");
        assert_ne!(at(7), at(8));
    }
}
