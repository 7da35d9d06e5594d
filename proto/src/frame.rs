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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_damaged_one_fails_its_check() {
        let mut log = Vec::new();
        encode(b"first", &mut log);
        encode("订单".as_bytes(), &mut log);
        let (len, crc) = header(log[..HEADER_BYTES].try_into().unwrap());
        assert_eq!(len, 5);
        assert!(verify(&log[HEADER_BYTES..HEADER_BYTES + 5], crc));
        let at = HEADER_BYTES + 5;
        let (len, crc) = header(log[at..at + HEADER_BYTES].try_into().unwrap());
        let payload = &log[at + HEADER_BYTES..];
        assert_eq!((len as usize, std::str::from_utf8(payload).unwrap()), (6, "订单"));
        let mut damaged = payload.to_vec();
        damaged[0] ^= 1;
        assert!(verify(payload, crc));
        assert!(!verify(&damaged, crc));
    }
}
