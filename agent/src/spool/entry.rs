//! What one spool frame holds: `[records u32][SpoolEntry]`, a chunk's records as one zstd
//! block and what the shipper needs to know of them without decompressing.

use prost::Message;

/// What one frame holds: a chunk's records, compressed, and what the shipper needs to know
/// of them without decompressing.
#[derive(Clone, PartialEq, Message)]
pub struct SpoolEntry {
    /// The file's source key.
    #[prost(fixed64, tag = "1")]
    pub source: u64,
    #[prost(string, tag = "2")]
    pub path: String,
    /// The file's checkpoint once these records are acknowledged.
    #[prost(uint64, tag = "3")]
    pub resume_offset: u64,
    #[prost(uint32, tag = "4")]
    pub records: u32,
    /// The encoded block's size before compression, for batch sizing.
    #[prost(uint64, tag = "5")]
    pub raw_bytes: u64,
    /// A zstd frame of the encoded [`sluice_proto::RecordBlock`]; the last field (see
    /// [`ZSTD_BLOCK_TAG`]).
    #[prost(bytes = "bytes", tag = "6")]
    pub zstd_block: prost::bytes::Bytes,
}

/// `SpoolEntry.zstd_block`, which the writer appends to the other fields' encoding.
const ZSTD_BLOCK_TAG: u32 = 6;

/// Writes the payload of a frame holding `entry` (whose own `zstd_block` is left empty) and
/// the compressed `block` into `out`.
pub(super) fn encode_payload(entry: &SpoolEntry, block: &Vec<u8>, out: &mut Vec<u8>) {
    debug_assert!(entry.zstd_block.is_empty());
    out.clear();
    out.extend_from_slice(&entry.records.to_le_bytes());
    entry.encode(out).expect("a Vec grows as needed");
    // The block is the entry's last field: appended, the bytes are prost's for the whole.
    prost::encoding::bytes::encode(ZSTD_BLOCK_TAG, block, out);
}

/// The entry in a frame's payload.
pub(super) fn decode_payload(payload: Vec<u8>) -> Result<SpoolEntry, String> {
    if payload.len() < 4 {
        return Err("a spool frame without its record count".to_owned());
    }
    // Decoded from `Bytes`, the entry's block is a view of the payload, not a copy.
    SpoolEntry::decode(prost::bytes::Bytes::from(payload).slice(4..))
        .map_err(|e| format!("undecodable spool entry: {e}"))
}

/// The records a frame's payload says it holds, read without decoding it.
pub(super) fn records_in(payload: &[u8]) -> u64 {
    payload.first_chunk::<4>().map_or(0, |count| u64::from(u32::from_le_bytes(*count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_and_says_its_record_count() {
        let entry = SpoolEntry {
            source: 9,
            path: "/var/log/pods/a/app/0.log".into(),
            resume_offset: 4096,
            records: 12,
            raw_bytes: 777,
            zstd_block: prost::bytes::Bytes::new(),
        };
        let mut payload = Vec::new();
        encode_payload(&entry, &b"compressed".to_vec(), &mut payload);
        assert_eq!(records_in(&payload), 12);
        let decoded = decode_payload(payload).unwrap();
        assert_eq!(decoded.zstd_block.as_ref(), b"compressed");
        assert_eq!(SpoolEntry { zstd_block: prost::bytes::Bytes::new(), ..decoded }, entry);
        assert!(decode_payload(vec![1, 0]).unwrap_err().contains("record count"));
        assert_eq!(records_in(&[1, 0]), 0);
    }
}
