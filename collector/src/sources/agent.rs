//! The gRPC receiver for agents: a batch is acknowledged once it is durable in the WAL.

use std::sync::Arc;

use prost::Message;
use sluice_proto::ingest_server::{Ingest, IngestServer};
use sluice_proto::{Ack, LogBatch};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use crate::CollectorError;
use crate::auth::{AgentGrant, AgentTokens, TlsFiles, TokenCheck};
use crate::wal::Wal;
use crate::wal_frame;

/// Largest batch an agent may push; well above the agent's default of 1 MiB.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// HTTP/2 receive windows for agents' pushes: room for every batch an agent has in flight.
const INGEST_CONNECTION_WINDOW: u32 = 16 << 20;
const INGEST_STREAM_WINDOW: u32 = 4 << 20;

/// The agents' gRPC server, writing to `wal`: over TLS when `tls` is given, and taking only
/// agents presenting one of `tokens` when given (see [`super::serve_grpc`]).
pub fn router(
    wal: Arc<Wal>,
    tls: Option<&TlsFiles>,
    tokens: Option<AgentTokens>,
) -> Result<Router, CollectorError> {
    let ingest = IngestServer::new(IngestService::new(wal))
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(MAX_BATCH_BYTES);
    // Agents keep several batches in flight; with hyper's 1 MiB connection window the
    // last of them waited in the agent's memory for window updates.
    let mut builder = tonic::transport::Server::builder()
        .initial_connection_window_size(INGEST_CONNECTION_WINDOW)
        .initial_stream_window_size(INGEST_STREAM_WINDOW);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config()?).map_err(|e| CollectorError::Config {
            path: tls.cert.clone(),
            reason: format!("unusable certificate or key: {e}"),
        })?;
    }
    Ok(match tokens {
        Some(tokens) => builder.add_service(InterceptedService::new(ingest, TokenCheck { tokens })),
        None => builder.add_service(ingest),
    })
}

pub struct IngestService {
    wal: Arc<Wal>,
}

impl IngestService {
    pub fn new(wal: Arc<Wal>) -> Self {
        Self { wal }
    }
}

/// Refuses a batch with a record of a cluster the agent's token is not bound to: a remote
/// cluster's agent cannot write as another cluster. The agent keeps the batch and retries.
fn check_clusters(grant: &AgentGrant, batch: &LogBatch) -> Result<(), Status> {
    let records = sluice_proto::block::expand(batch.records.clone(), &batch.zstd_blocks, None)
        .map_err(|e| Status::invalid_argument(format!("malformed batch: {e}")))?;
    match records.iter().find(|r| !grant.allows_cluster(&r.cluster)) {
        None => Ok(()),
        Some(r) => {
            metrics::counter!("sluice_collector_batches_refused_total").increment(1);
            tracing::warn!(agent = %grant.name, cluster = %r.cluster, "refusing records of a cluster the agent's token is not bound to");
            Err(Status::permission_denied(format!(
                "agent {} may not write records of cluster {:?}: its token is bound to other clusters",
                grant.name, r.cluster
            )))
        }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(&self, request: Request<LogBatch>) -> Result<Response<Ack>, Status> {
        let grant = request.extensions().get::<AgentGrant>().cloned();
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
        if let Some(grant) = grant.filter(AgentGrant::is_bound) {
            check_clusters(&grant, &batch)?;
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
