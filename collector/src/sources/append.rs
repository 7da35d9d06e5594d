//! The one way every source puts records into the WAL, and learns when every sink holds
//! them.
//!
//! A [`Batch`] is appended as one frame and synced, so a source answers or commits only once
//! its records are durable. Each record leaves with a stable id, the key to delivering it
//! once: its own when the source has one ([`Batch::with_ids`]: a Kafka message's topic,
//! partition and offset, or the id our Kafka sink wrote), else one made from the frame's WAL
//! position ([`Batch::without_ids`]: `_bulk`, OTLP), which a replay after a crash gives again.
//!
//! A source with a checkpoint of its own (a consumer group's offsets, a watch's resource
//! version) keeps it in [`Delivery`] beside the end of the frame that holds its records, and
//! commits it only once every sink's cursor is past that frame: a crash anywhere replays
//! rather than loses, and the ids make the replay harmless.

use std::collections::VecDeque;
use std::sync::Arc;

use sluice_proto::{LogBatch, LogRecord, RecordId};

use crate::CollectorError;
use crate::runner::Cursors;
use crate::wal::Wal;
use crate::wal_frame::{self, MAX_EXTERNAL_RECORDS};

/// Where a batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The WAL position just past the batch's frame.
    pub end: u64,
    /// The records' ids, in the batch's order.
    pub ids: Vec<RecordId>,
}

/// A batch encoded as its WAL frame, ready to append (again, when an append failed).
pub struct Batch {
    payload: Arc<[u8]>,
    /// Records, or for metrics data points.
    records: usize,
    metrics: bool,
    /// The ids, when the records carried them; else each record's source key.
    carried: Option<Vec<RecordId>>,
    sources: Vec<u64>,
}

impl Batch {
    /// Records that carry their own ids (source key and offset).
    pub fn with_ids(client: &str, records: Vec<LogRecord>) -> Self {
        let carried = Some(records.iter().map(LogRecord::id).collect());
        let count = records.len();
        let batch = LogBatch { agent: client.to_owned(), records, ..LogBatch::default() };
        let payload = wal_frame::encode_batch(&batch, count as u32);
        Self {
            payload: payload.into(),
            records: count,
            metrics: false,
            carried,
            sources: Vec::new(),
        }
    }

    /// An encoded OTLP `ExportMetricsServiceRequest` of `points` data points.
    pub fn metrics(request: &[u8], points: u32) -> Self {
        let payload = wal_frame::encode_metrics(request, points);
        Self {
            payload: payload.into(),
            records: points as usize,
            metrics: true,
            carried: Some(Vec::new()),
            sources: Vec::new(),
        }
    }

    /// Records without ids of their own: each gets one from the frame's WAL position.
    pub fn without_ids(client: &str, records: Vec<LogRecord>) -> Result<Self, CollectorError> {
        let count = records.len();
        if count > MAX_EXTERNAL_RECORDS {
            return Err(CollectorError::Server(format!(
                "{count} records in one request; the most is {MAX_EXTERNAL_RECORDS}"
            )));
        }
        let sources = records.iter().map(|r| r.source).collect();
        let batch = LogBatch { agent: client.to_owned(), records, ..LogBatch::default() };
        let payload = wal_frame::encode_external(batch);
        Ok(Self { payload: payload.into(), records: count, metrics: false, carried: None, sources })
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Appends the frame and syncs it; a batch of no records appends nothing.
    pub async fn append(&self, wal: &Arc<Wal>) -> Result<Appended, CollectorError> {
        if self.records == 0 {
            return Ok(Appended { end: wal.end(), ids: Vec::new() });
        }
        let (wal, payload) = (wal.clone(), self.payload.clone());
        let end = tokio::task::spawn_blocking(move || wal.append(&payload))
            .await
            .map_err(|e| CollectorError::Server(format!("WAL task failed: {e}")))??;
        let bytes = self.payload.len() as u64;
        if self.metrics {
            metrics::counter!("sluice_collector_metric_points_received_total")
                .increment(self.records as u64);
            metrics::counter!("sluice_collector_metric_bytes_received_total").increment(bytes);
        } else {
            metrics::counter!("sluice_collector_batches_received_total").increment(1);
            metrics::counter!("sluice_collector_records_received_total")
                .increment(self.records as u64);
            metrics::counter!("sluice_collector_bytes_received_total").increment(bytes);
        }
        let ids = match &self.carried {
            Some(ids) => ids.clone(),
            None => {
                let start = end - (sluice_proto::frame::HEADER_BYTES as u64 + bytes);
                let sources = self.sources.iter().enumerate();
                sources.map(|(i, &source)| wal_frame::external_id(source, start, i)).collect()
            }
        };
        Ok(Appended { end, ids })
    }
}

impl Batch {
    /// Appends until the WAL has the batch, retrying every `retry` (a full WAL with `block`, or
    /// a disk error, holds a pulling source here while its upstream keeps the rest); `None`
    /// when `stop` came first, or at once on a failure when `stopping` already.
    pub async fn append_until_stopped(
        &self,
        wal: &Arc<Wal>,
        what: &str,
        retry: std::time::Duration,
        stopping: bool,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Appended> {
        loop {
            match self.append(wal).await {
                Ok(appended) => return Some(appended),
                Err(e) => tracing::warn!(error = %e, "cannot append {what} to the WAL; retrying"),
            }
            if stopping {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
    }
}

/// A source's checkpoints waiting for the sinks: each is released once every sink holds the
/// frame it came with.
#[derive(Debug)]
pub struct Delivery<T> {
    waiting: VecDeque<(u64, T)>,
}

impl<T> Default for Delivery<T> {
    fn default() -> Self {
        Self { waiting: VecDeque::new() }
    }
}

impl<T> Delivery<T> {
    /// Holds `checkpoint` until every sink is past the WAL position `end`.
    pub fn push(&mut self, end: u64, checkpoint: T) {
        self.waiting.push_back((end, checkpoint));
    }

    /// The checkpoints, oldest first, whose frames every sink in `cursors` has flushed.
    pub fn delivered(&mut self, cursors: &Cursors) -> Vec<T> {
        let Some(until) = cursors.min() else { return Vec::new() };
        let mut out = Vec::new();
        while self.waiting.front().is_some_and(|(end, _)| *end <= until) {
            out.push(self.waiting.pop_front().expect("checked").1);
        }
        out
    }

    /// Checkpoints still waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: u64, offset: u64) -> LogRecord {
        LogRecord { source, offset, message: "m".into(), ..LogRecord::default() }
    }

    #[tokio::test]
    async fn records_keep_their_ids_or_get_them_from_the_position_and_a_replay_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), 1 << 20).unwrap());
        let carried = Batch::with_ids("kafka:g", vec![record(7, 70), record(7, 71)]);
        let carried = carried.append(&wal).await.unwrap();
        assert_eq!(carried.ids, [RecordId::new(7, 70), RecordId::new(7, 71)]);
        let made = Batch::without_ids("otlp", vec![record(5, 0), record(6, 0)]).unwrap();
        let made = made.append(&wal).await.unwrap();
        assert_eq!(made.ids.len(), 2);
        assert_ne!(made.ids[0], made.ids[1]);
        // What a sink decodes from the WAL — now or in a replay — has the same ids.
        let mut reader = wal.reader(carried.end);
        let payload = reader.next(wal.end()).unwrap().unwrap();
        let frame = wal_frame::decode_frame_at(&payload, carried.end, None).unwrap();
        let replayed: Vec<RecordId> = frame.records().iter().map(LogRecord::id).collect();
        assert_eq!(replayed, made.ids);
        let none = Batch::without_ids("x", Vec::new()).unwrap().append(&wal).await.unwrap();
        assert_eq!((none.end, none.ids.len()), (made.end, 0), "nothing to append");
    }

    #[test]
    fn checkpoints_are_released_once_every_sink_is_past_their_frame() {
        let cursors = Cursors::default();
        let mut delivery = Delivery::default();
        delivery.push(100, "a");
        delivery.push(200, "b");
        assert!(delivery.delivered(&cursors).is_empty(), "no sink has said where it is");
        cursors.set("index", 150);
        cursors.set("kafka", 250);
        assert_eq!(delivery.delivered(&cursors), ["a"], "the slowest sink decides");
        cursors.set("index", 200);
        assert_eq!(delivery.delivered(&cursors), ["b"]);
        assert!(delivery.is_empty());
    }
}
