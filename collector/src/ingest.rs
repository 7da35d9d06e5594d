//! The gRPC receiver for agents: a batch is acknowledged once it is durable in the WAL.

use std::sync::Arc;

use prost::Message;
use sluice_proto::ingest_server::Ingest;
use sluice_proto::{Ack, LogBatch};
use tonic::{Request, Response, Status};

use crate::wal::Wal;
use crate::wal_frame;

pub struct IngestService {
    wal: Arc<Wal>,
}

impl IngestService {
    pub fn new(wal: Arc<Wal>) -> Self {
        Self { wal }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(&self, request: Request<LogBatch>) -> Result<Response<Ack>, Status> {
        let batch = request.into_inner();
        let sequence = batch.sequence;
        // Blocks are kept compressed in the WAL, but only after they are known to decode:
        // a batch the sinks could not read must be refused now, while the agent still has it.
        let records = batch.checked_record_count().map_err(|e| {
            metrics::counter!("sluice_collector_batches_refused_total").increment(1);
            tracing::warn!(agent = %batch.agent, sequence, error = %e, "refusing a malformed batch");
            Status::invalid_argument(format!("malformed batch: {e}"))
        })? as u32;
        if records == 0 {
            return Ok(Response::new(Ack { sequence, wal_position: self.wal.end(), records }));
        }
        let payload = wal_frame::encode_batch(&batch, records);
        let wal = self.wal.clone();
        let position = tokio::task::spawn_blocking(move || wal.append(&payload))
            .await
            .map_err(|e| Status::internal(format!("WAL task failed: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, agent = %batch.agent, "cannot append batch to the WAL");
                Status::unavailable(format!("collector cannot persist the batch: {e}"))
            })?;
        metrics::counter!("sluice_collector_batches_received_total").increment(1);
        metrics::counter!("sluice_collector_records_received_total").increment(u64::from(records));
        metrics::counter!("sluice_collector_bytes_received_total")
            .increment(batch.encoded_len() as u64);
        Ok(Response::new(Ack { sequence, wal_position: position, records }))
    }
}
