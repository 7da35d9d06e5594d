//! What a WAL frame's payload holds: a kind byte, then the encoded message. The kind lets
//! later versions log other things (OTLP, `_bulk` input) in the same WAL.

use prost::Message;
use sluice_proto::LogBatch;

const KIND_LOG_BATCH: u8 = 1;

pub fn encode_batch(batch: &LogBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + batch.encoded_len());
    out.push(KIND_LOG_BATCH);
    batch.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// Decodes a payload; the error says what is wrong with it.
pub fn decode_batch(payload: &[u8]) -> Result<LogBatch, String> {
    match payload.split_first() {
        Some((&KIND_LOG_BATCH, body)) => {
            LogBatch::decode(body).map_err(|e| format!("undecodable log batch: {e}"))
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
        assert_eq!(decode_batch(&encode_batch(&batch)).unwrap(), batch);
        let mut truncated = encode_batch(&batch);
        truncated.truncate(truncated.len() - 2);
        assert!(decode_batch(&truncated).unwrap_err().contains("undecodable"));
        assert!(decode_batch(&[9, 1]).unwrap_err().contains("unknown frame kind 9"));
        assert!(decode_batch(&[]).is_err());
    }
}
