//! Takes batches of records from the spool, pushes them to the collector, and records its
//! ack: the files' acknowledged offsets and the spool's position, whose segments can go.
//!
//! One batch is in flight at a time, so acks arrive in spool order and a file's acknowledged
//! offset is simply the resume offset of its last acknowledged record. A failed push is
//! retried, with capped exponential backoff and jitter, until it succeeds or the agent stops:
//! nothing is ever dropped here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::LogBatch;
use sluice_proto::ingest_client::IngestClient;
use tokio::sync::watch;
use tonic::Status;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::AgentError;
use crate::checkpoint::Checkpoints;
use crate::config::AgentConfig;
use crate::spool::{SpoolEntry, SpoolReader};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Adds the agent's bearer token, when it has one, to every push.
#[derive(Clone)]
struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Client = IngestClient<InterceptedService<Channel, BearerToken>>;

/// A lazily connecting client for one collector endpoint.
fn client(config: &AgentConfig, address: &str) -> Result<Client, AgentError> {
    let endpoint_error =
        |message: String| AgentError::Endpoint { endpoint: address.to_owned(), message };
    let mut endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|e| endpoint_error(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some(name) = &tls.server_name {
            tls_config = tls_config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(tls_config)
            .map_err(|e| endpoint_error(format!("TLS settings: {e}")))?;
    }
    let token = match &config.token {
        Some(token) => Some(
            format!("Bearer {}", token.0)
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| endpoint_error("the token is not printable ASCII".to_owned()))?,
        ),
        None => None,
    };
    // Requests are not compressed again: their records are zstd blocks from the spool.
    Ok(IngestClient::with_interceptor(endpoint.connect_lazy(), BearerToken(token))
        .accept_compressed(CompressionEncoding::Zstd))
}

pub struct Shipper {
    config: Arc<AgentConfig>,
    /// Collector endpoints in failover order, and the one in use.
    clients: Vec<(String, Client)>,
    current: usize,
    checkpoints: Arc<Mutex<Checkpoints>>,
    sequence: u64,
}

impl Shipper {
    pub fn new(
        config: Arc<AgentConfig>,
        checkpoints: Arc<Mutex<Checkpoints>>,
    ) -> Result<Self, AgentError> {
        let mut clients = Vec::with_capacity(config.collectors.len());
        for address in &config.collectors {
            clients.push((address.clone(), client(&config, address)?));
        }
        Ok(Self { config, clients, current: 0, checkpoints, sequence: 0 })
    }

    /// Ships until `stop` turns true.
    pub async fn run(mut self, mut spool: SpoolReader, mut stop: watch::Receiver<bool>) {
        let (max_bytes, linger) = (self.config.batch_max_bytes, self.config.batch_linger);
        while let Some((batch, end)) = spool.next_batch(max_bytes, linger, &mut stop).await {
            if !self.deliver(batch, end, &mut stop).await {
                return;
            }
            spool.acknowledge(end);
        }
    }

    /// Pushes one batch, which ends at spool position `end`, until acknowledged; false if the
    /// agent stopped first.
    async fn deliver(
        &mut self,
        batch: Vec<SpoolEntry>,
        end: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        self.sequence += 1;
        let mut resume: HashMap<u64, (u64, String)> = HashMap::new();
        let mut blocks = Vec::with_capacity(batch.len());
        let mut count = 0;
        for item in batch {
            let entry = resume.entry(item.source).or_insert((0, String::new()));
            entry.0 = entry.0.max(item.resume_offset);
            if entry.1 != item.path {
                entry.1 = item.path;
            }
            count += u64::from(item.records);
            blocks.push(item.zstd_block);
        }
        let request = LogBatch {
            agent: self.config.source_identity(),
            sequence: self.sequence,
            records: Vec::new(),
            zstd_blocks: blocks,
        };
        let mut backoff = BACKOFF_START;
        // Endpoints tried since the last pause: each gets a turn before the agent backs off.
        let mut tried = 0;
        loop {
            let (address, client) = &mut self.clients[self.current];
            let failure = match client.push(request.clone()).await {
                Ok(ack) if u64::from(ack.get_ref().records) == count => {
                    let ack = ack.into_inner();
                    tracing::debug!(
                        sequence = ack.sequence,
                        wal_position = ack.wal_position,
                        "batch acknowledged"
                    );
                    break;
                }
                // A collector that ignored the blocks would lose them while saying yes.
                Ok(ack) => Status::failed_precondition(format!(
                    "the collector acknowledged {} of {count} records; is it older than this agent?",
                    ack.get_ref().records
                )),
                // The collector cannot decode the batch: sending it again cannot help, and
                // must not stop everything behind it.
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    tracing::error!(collector = %address, records = count, message = status.message(), "the collector refused a batch as malformed; its records are lost");
                    metrics::counter!("sluice_agent_records_rejected_total").increment(count);
                    break;
                }
                Err(status) => status,
            };
            let status = failure;
            metrics::counter!("sluice_agent_push_failures_total").increment(1);
            if status.code() == tonic::Code::Unauthenticated {
                tracing::error!(collector = %address, "the collector refused this agent's token; check token_file");
            }
            tracing::warn!(collector = %address, code = ?status.code(), message = status.message(), "push to collector failed");
            tried += 1;
            if self.clients.len() > 1 {
                self.current = (self.current + 1) % self.clients.len();
                metrics::counter!("sluice_agent_failovers_total").increment(1);
                tracing::info!(collector = %self.clients[self.current].0, "failing over");
                if tried < self.clients.len() {
                    continue;
                }
            }
            tried = 0;
            tracing::info!(
                retry_in_ms = backoff.as_millis() as u64,
                "every collector failed; waiting"
            );
            tokio::select! {
                _ = tokio::time::sleep(jitter(backoff)) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        metrics::counter!("sluice_agent_batches_acked_total").increment(1);
        metrics::counter!("sluice_agent_records_acked_total").increment(count);
        let checkpoints = self.checkpoints.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let mut c = checkpoints.lock().expect("checkpoints poisoned");
            for (source, (offset, path)) in resume {
                c.acknowledge(source, &path, offset);
            }
            c.acknowledge_spool(end);
            c.save()
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            // The data is delivered; a checkpoint that failed to persist only means a re-read
            // after a restart, which the collector deduplicates.
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save checkpoints"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
        true
    }
}

/// ±25 % so agents that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(factor)
}
