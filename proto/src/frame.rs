//! Checksummed frames, the on-disk unit of the collector's WAL and the agent's spool:
//! `[len u32][crc32 u32][payload]`, little-endian, the CRC over the payload.
//!
//! Both logs append frames to segment files and must tell, after a crash, where the whole
//! frames end; keeping one definition keeps their recovery rules the same.

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 8;

/// Appends the frame of `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The payload length and checksum a header announces.
pub fn header(bytes: &[u8; HEADER_BYTES]) -> (u64, u32) {
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..].try_into().expect("4 bytes"));
    (u64::from(len), crc)
}

/// Whether `payload` is what a header with checksum `crc` announced.
pub fn verify(payload: &[u8], crc: u32) -> bool {
    crc32fast::hash(payload) == crc
}

/// The length of the whole, intact frames at the start of `bytes`.
pub fn valid_prefix(bytes: &[u8]) -> usize {
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEADER_BYTES) {
        let (len, crc) = header(head.try_into().expect("header length"));
        let end = at + HEADER_BYTES + len as usize;
        match bytes.get(at + HEADER_BYTES..end) {
            Some(payload) if verify(payload, crc) => at = end,
            _ => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_damaged_one_ends_the_valid_prefix() {
        let mut log = Vec::new();
        encode(b"first", &mut log);
        let first = log.len();
        encode(b"", &mut log);
        let second = log.len();
        encode("订单".as_bytes(), &mut log);
        assert_eq!(valid_prefix(&log), log.len());
        assert_eq!(valid_prefix(&log[..log.len() - 1]), second, "a torn tail is not counted");
        let (len, crc) = header(log[..HEADER_BYTES].try_into().unwrap());
        assert_eq!(len, 5);
        assert!(verify(b"first", crc));
        let mut damaged = log.clone();
        damaged[second + HEADER_BYTES] ^= 1;
        assert_eq!(valid_prefix(&damaged), second);
        damaged[HEADER_BYTES] ^= 1;
        assert_eq!(valid_prefix(&damaged), 0);
        assert_eq!(first, HEADER_BYTES + 5);
    }
}
