//! What a WAL frame's payload holds: a kind byte, then the encoded message.
//!
//! Kind 3 is an agent's batch, whose records carry their ids (source + byte offset in the
//! file), after the record count the collector checked on arrival (`u32`, little-endian), so
//! a sink that only counts never decompresses; kind 1, the same without the count, is what
//! earlier collectors wrote and is still read. Kind 2 is a batch from a client that has no
//! such offsets (`_bulk`, OTLP): its records' offsets are their index in the batch, and
//! decoding turns them into `(frame position << 20) + index`. The frame's position in the WAL never changes, so a
//! replay after a crash gives the same ids, and the index keeps each record once.
//!
//! Kind 4 holds OTLP metrics: an `ExportMetricsServiceRequest` as the client sent it (less what
//! it was refused), after its data point count (`u32`, little-endian). Log sinks find no
//! records in it; metric sinks take [`Frame::metrics`].
//!
//! Sinks take a frame as a [`Frame`]: its records are decoded (and given their pod metadata)
//! on first use, so a sink that forwards an agent's blocks as they are never pays for it.

use std::sync::{Arc, Mutex, OnceLock};

use prost::Message;
use sluice_proto::{LogBatch, LogRecord};

use crate::enrich::PodCache;

const KIND_LOG_BATCH: u8 = 1;
const KIND_EXTERNAL_BATCH: u8 = 2;
const KIND_COUNTED_BATCH: u8 = 3;
const KIND_METRICS: u8 = 4;

/// The most records in one external batch: the index must fit below the position's bits.
pub const MAX_EXTERNAL_RECORDS: usize = 1 << 20;

/// A batch with its ids, whose `records` were counted by [`LogBatch::checked_record_count`].
pub fn encode_batch(batch: &LogBatch, records: u32) -> Vec<u8> {
    encode(KIND_COUNTED_BATCH, &records.to_le_bytes(), batch)
}

/// A batch of records without ids of their own: each record's offset becomes its index in
/// the batch, made unique by the frame's WAL position when decoded (see [`external_id`]).
pub fn encode_external(mut batch: LogBatch) -> Vec<u8> {
    debug_assert!(batch.records.len() <= MAX_EXTERNAL_RECORDS);
    for (i, r) in batch.records.iter_mut().enumerate() {
        r.offset = i as u64;
    }
    encode(KIND_EXTERNAL_BATCH, &[], &batch)
}

/// The id of the `index`th record of an external batch whose frame starts at `position`.
pub fn external_id(source: u64, position: u64, index: usize) -> sluice_proto::RecordId {
    sluice_proto::RecordId::new(source, external_offset(position, index as u64))
}

fn external_offset(position: u64, index: u64) -> u64 {
    (position << 20) | (index & (MAX_EXTERNAL_RECORDS as u64 - 1))
}

/// An encoded OTLP `ExportMetricsServiceRequest` holding `points` data points.
pub fn encode_metrics(request: &[u8], points: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + request.len());
    out.push(KIND_METRICS);
    out.extend_from_slice(&points.to_le_bytes());
    out.extend_from_slice(request);
    out
}

fn encode(kind: u8, head: &[u8], batch: &LogBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + head.len() + batch.encoded_len());
    out.push(kind);
    out.extend_from_slice(head);
    batch.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// Decodes the payload of the frame at WAL `position` into a [`Frame`], giving external
/// records their ids; the error says what is wrong with it.
pub fn decode_frame_at(
    payload: &[u8],
    position: u64,
    pods: Option<Arc<PodCache>>,
) -> Result<Frame, String> {
    if let Some((&KIND_METRICS, body)) = payload.split_first() {
        let Some((points, request)) = body.split_first_chunk::<4>() else {
            return Err("a metrics frame without its point count".to_owned());
        };
        let metrics = Metrics {
            request: prost::bytes::Bytes::copy_from_slice(request),
            points: u32::from_le_bytes(*points) as usize,
        };
        return Ok(Frame::of_metrics(metrics, position));
    }
    let (batch, records) = decode_batch_at(payload, position)?;
    let mut frame = Frame::new(batch, position, pods);
    frame.checked_records = records;
    Ok(frame)
}

/// The batch in a frame's payload, and its checked record count when the payload has one.
fn decode_batch_at(payload: &[u8], position: u64) -> Result<(LogBatch, Option<usize>), String> {
    let undecodable = |e: prost::DecodeError| format!("undecodable log batch: {e}");
    match payload.split_first() {
        Some((&KIND_COUNTED_BATCH, body)) => {
            let Some((count, body)) = body.split_first_chunk::<4>() else {
                return Err("a counted batch without its count".to_owned());
            };
            let batch = LogBatch::decode(body).map_err(undecodable)?;
            Ok((batch, Some(u32::from_le_bytes(*count) as usize)))
        }
        Some((&KIND_LOG_BATCH, body)) => Ok((LogBatch::decode(body).map_err(undecodable)?, None)),
        Some((&KIND_EXTERNAL_BATCH, body)) => {
            let mut batch =
                LogBatch::decode(body).map_err(|e| format!("undecodable external batch: {e}"))?;
            for r in &mut batch.records {
                r.offset = external_offset(position, r.offset);
            }
            let records = batch.records.len();
            Ok((batch, Some(records)))
        }
        Some((kind, _)) => Err(format!("unknown frame kind {kind}")),
        None => Err("empty frame".to_owned()),
    }
}

/// The OTLP metrics of a frame, as the client sent them.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// An encoded `ExportMetricsServiceRequest`.
    pub request: prost::bytes::Bytes,
    /// How many data points it holds, counted when it arrived.
    pub points: usize,
}

/// One WAL frame as its sinks take it.
pub struct Frame {
    /// The frame's WAL position, for logs.
    position: u64,
    /// Taken by the first [`Frame::records`].
    plain: Mutex<Vec<LogRecord>>,
    zstd_blocks: Vec<prost::bytes::Bytes>,
    enrichment: Option<LogRecord>,
    /// Whether the blocks are all the frame holds (an agent's batch).
    only_blocks: bool,
    pods: Option<Arc<PodCache>>,
    records: OnceLock<Vec<LogRecord>>,
    /// How many records the collector counted when the batch arrived, if the WAL kept it.
    checked_records: Option<usize>,
    metrics: Option<Metrics>,
}

impl Frame {
    /// The frame at WAL `position`; `pods` adds labels, owner and node to its records.
    pub fn new(batch: LogBatch, position: u64, pods: Option<Arc<PodCache>>) -> Self {
        let only_blocks =
            batch.records.is_empty() && batch.enrichment.is_none() && !batch.zstd_blocks.is_empty();
        Self {
            position,
            only_blocks,
            plain: Mutex::new(batch.records),
            zstd_blocks: batch.zstd_blocks,
            enrichment: batch.enrichment,
            pods,
            records: OnceLock::new(),
            checked_records: None,
            metrics: None,
        }
    }

    /// A frame of OTLP metrics (see [`encode_metrics`]), which holds no log records.
    pub fn of_metrics(metrics: Metrics, position: u64) -> Self {
        let mut frame = Self::new(LogBatch::default(), position, None);
        frame.checked_records = Some(0);
        frame.metrics = Some(metrics);
        frame
    }

    /// The OTLP metrics the frame holds, if it is a metrics frame.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// The frame's WAL position.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// A frame of these records as they are.
    #[cfg(test)]
    pub fn of_records(records: Vec<LogRecord>) -> Self {
        Self::new(LogBatch { records, ..LogBatch::default() }, 0, None)
    }

    /// Every record, decoded and enriched once. A frame whose blocks do not decode (blocks
    /// are checked on arrival, so only damage the WAL's CRC missed) has none: it is logged,
    /// counted and skipped rather than retried for ever.
    pub fn records(&self) -> &[LogRecord] {
        self.records.get_or_init(|| {
            let plain = std::mem::take(&mut *self.plain.lock().expect("frame poisoned"));
            match sluice_proto::block::expand(plain, &self.zstd_blocks, self.enrichment.as_ref())
            {
                Ok(mut records) => {
                    if let Some(pods) = &self.pods {
                        pods.enrich(&mut records);
                    }
                    records
                }
                Err(e) => {
                    tracing::error!(position = self.position, error = %e, "skipping an undecodable WAL frame");
                    metrics::counter!("sluice_collector_wal_undecodable_frames_total")
                        .increment(1);
                    Vec::new()
                }
            }
        })
    }

    /// How many records the frame holds, without decoding them when the WAL kept their count.
    pub fn record_count(&self) -> usize {
        match (self.checked_records, self.records.get()) {
            (_, Some(records)) => records.len(),
            (Some(count), None) => count,
            (None, None) => self.records().len(),
        }
    }

    /// The frame's compressed blocks as the agent sent them, when they are all it holds.
    pub fn blocks(&self) -> Option<&[prost::bytes::Bytes]> {
        self.only_blocks.then_some(self.zstd_blocks.as_slice())
    }

    /// The pod metadata [`Frame::records`] would add to `records` records of the pod `uid`,
    /// as a batch's enrichment.
    pub fn pod_metadata(&self, uid: &str, records: usize) -> Option<LogRecord> {
        let info = self.pods.as_ref()?.info_for(uid, records)?;
        Some(LogRecord {
            labels: info.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            owner: info.owner.clone(),
            node: info.node.clone(),
            ..LogRecord::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let batch = LogBatch {
            agent: "a".into(),
            sequence: 3,
            records: vec![LogRecord { message: "订单".into(), ..LogRecord::default() }],
            zstd_blocks: vec![b"kept as sent".to_vec().into()],
            ..LogBatch::default()
        };
        assert_eq!(decode_batch_at(&encode_batch(&batch, 7), 0).unwrap(), (batch.clone(), Some(7)));
        assert_eq!(decode_frame_at(&encode_batch(&batch, 7), 0, None).unwrap().record_count(), 7);
        let mut truncated = encode_batch(&batch, 7);
        truncated.truncate(truncated.len() - 2);
        assert!(decode_batch_at(&truncated, 0).unwrap_err().contains("undecodable"));
        assert!(decode_batch_at(&[3, 1, 0], 0).unwrap_err().contains("without its count"));
        let mut earlier = vec![KIND_LOG_BATCH];
        earlier.extend(batch.encode_to_vec());
        assert_eq!(decode_batch_at(&earlier, 0).unwrap(), (batch, None), "earlier WALs still read");
        assert!(decode_batch_at(&[9, 1], 0).unwrap_err().contains("unknown frame kind 9"));
        assert!(decode_batch_at(&[], 0).is_err());
    }

    #[test]
    fn a_metrics_frame_has_its_request_and_no_records() {
        let frame = decode_frame_at(&encode_metrics(b"otlp bytes", 12), 40, None).unwrap();
        let metrics = frame.metrics().unwrap();
        assert_eq!((&metrics.request[..], metrics.points), (&b"otlp bytes"[..], 12));
        assert_eq!((frame.record_count(), frame.records().len(), frame.position()), (0, 0, 40));
        assert!(frame.blocks().is_none());
        assert!(decode_frame_at(&[4, 1, 0], 0, None).is_err(), "a count cut short");
        let logs = decode_frame_at(&encode_batch(&LogBatch::default(), 0), 0, None).unwrap();
        assert!(logs.metrics().is_none());
    }

    #[test]
    fn external_records_get_ids_from_the_frame_position() {
        let batch = LogBatch {
            records: (0..3)
                .map(|i| LogRecord { source: 5, offset: i, ..LogRecord::default() })
                .collect(),
            ..LogBatch::default()
        };
        let payload = encode_external(batch);
        let at = |p| {
            decode_batch_at(&payload, p)
                .unwrap()
                .0
                .records
                .iter()
                .map(|r| r.offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(7), [7 << 20, (7 << 20) + 1, (7 << 20) + 2]);
        assert_eq!(at(7), at(7), "a replay gives the same ids");
        assert_ne!(at(7), at(8));
    }

    #[test]
    fn a_frame_decodes_once_and_a_damaged_one_has_no_records() {
        let block = sluice_proto::RecordBlock {
            common: Some(LogRecord { pod: "api-1".into(), ..LogRecord::default() }),
            records: vec![LogRecord { message: "a".into(), ..LogRecord::default() }],
        };
        let good =
            prost::bytes::Bytes::from(zstd::bulk::compress(&block.encode_to_vec(), 1).unwrap());
        let frame = Frame::new(
            LogBatch { zstd_blocks: vec![good.clone()], ..LogBatch::default() },
            0,
            None,
        );
        assert_eq!(frame.blocks(), Some(&[good.clone()][..]));
        assert_eq!(frame.records()[0].pod, "api-1");
        assert_eq!(frame.records().len(), 1);
        let damaged =
            LogBatch { zstd_blocks: vec![good, b"junk".to_vec().into()], ..LogBatch::default() };
        assert!(Frame::new(damaged, 9, None).records().is_empty());
        let mixed = LogBatch {
            records: vec![LogRecord::default()],
            zstd_blocks: vec![b"x".to_vec().into()],
            ..LogBatch::default()
        };
        assert!(Frame::new(mixed, 0, None).blocks().is_none(), "plain records are not blocks");
    }
}
