//! Takes batches of records from the spool, pushes them to the collector, and records its
//! ack: the files' acknowledged offsets and the spool's position, whose segments can go.
//!
//! A few batches are in flight at a time, and their acks are taken in spool order, so a
//! file's acknowledged offset is simply the resume offset of its last acknowledged record. A
//! failed push is retried, with capped exponential backoff and jitter, until it succeeds or
//! the agent stops: nothing is dropped here, except a batch the collector refuses as
//! malformed, which is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::LogBatch;
use sluice_proto::ingest_client::IngestClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::AgentError;
use crate::checkpoint::{Checkpoints, Resume};
use crate::config::{AgentConfig, WhenFull};
use crate::spool::{Batch, SpoolEntry, SpoolReader};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Batches pushed before the first of them is acknowledged. While an ack waited for its
/// checkpoint's fsync, the pace was the collector's ack latency times this (twelve were
/// needed for ~270 MB/s). Now the reader sets the pace: on a 1 GiB file four, six and
/// twelve in flight ship alike (240–260 MB/s on the same machine), and each costs about
/// 0.35 MiB of peak RSS (tonic's encoding of the batch; a retry reads it from the spool
/// again): 8.6 MiB at six against 10.5 at twelve. Six leave room for a collector farther
/// away than loopback.
const IN_FLIGHT: usize = 6;

/// How long an ack may stay in memory only. The reader saves the checkpoints at each spool
/// sync (every `sync_interval_ms` while it reads), and those snapshots carry the acks too, so
/// under load the shipper rarely writes; an ack lost in a crash is only a resend, which the
/// collector deduplicates. Writing (and fsyncing) the file at every ack instead took a fifth
/// of the agent's CPU on a 1 GiB file and held the shipper's loop for each fsync.
const ACK_SAVE_DELAY: Duration = Duration::from_millis(100);

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
    // Requests are not compressed again: their records are zstd blocks from the spool. Nor
    // are acks, a few bytes each: decoding a compressed one made a zstd context and a 2.4 MB
    // window per push, the largest thing on the agent's heap.
    Ok(IngestClient::with_interceptor(endpoint.connect_lazy(), BearerToken(token)))
}

pub struct Shipper {
    config: Arc<AgentConfig>,
    /// Collector endpoints in failover order, and the one in use.
    clients: Vec<Collector>,
    current: usize,
    checkpoints: Arc<Mutex<Checkpoints>>,
    sequence: u64,
}

/// One collector endpoint: its address, for logs, and its client.
struct Collector {
    address: String,
    client: Client,
}

/// A batch on its way, and what its ack moves. Its records are not kept: they are in the
/// spool, from `start` to `end`.
struct Outgoing {
    sequence: u64,
    start: u64,
    end: u64,
    /// Per source: the checkpoint the ack allows.
    resume: HashMap<u64, Resume>,
    records: u64,
}

/// A batch pushed, and the endpoint it went to.
struct Push {
    out: Outgoing,
    task: JoinHandle<Outcome>,
    endpoint: usize,
}

/// Acks recorded in memory and not yet on disk.
#[derive(Debug, Clone, Copy)]
struct Unsaved {
    /// The snapshots taken when the last of them was recorded: a later one carries them.
    snapshots: u64,
    /// When the first of them must be saved.
    due: tokio::time::Instant,
}

/// How one push ended.
enum Outcome {
    Acked,
    /// The collector cannot decode the batch: sending it again cannot help, and must not
    /// stop everything behind it.
    Rejected(Status),
    Failed(Status),
}

/// One push of `request`, which carries `records` records.
async fn push(mut client: Client, request: LogBatch, records: u64) -> Outcome {
    match client.push(request).await {
        Ok(ack) if u64::from(ack.get_ref().records) == records => {
            let ack = ack.into_inner();
            tracing::debug!(
                sequence = ack.sequence,
                wal_position = ack.wal_position,
                "batch acknowledged"
            );
            Outcome::Acked
        }
        // A collector that ignored the blocks would lose them while saying yes.
        Ok(ack) => Outcome::Failed(Status::failed_precondition(format!(
            "the collector acknowledged {} of {records} records; is it older than this agent?",
            ack.get_ref().records
        ))),
        Err(status) if status.code() == tonic::Code::InvalidArgument => Outcome::Rejected(status),
        Err(status) => Outcome::Failed(status),
    }
}

/// What the shipper's loop waits for.
enum Event {
    Batch(Option<Batch>),
    Done(Outcome),
    Stop,
    /// Acks have waited [`ACK_SAVE_DELAY`] for a snapshot to carry them to disk.
    Save,
}

impl Shipper {
    pub fn new(
        config: Arc<AgentConfig>,
        checkpoints: Arc<Mutex<Checkpoints>>,
    ) -> Result<Self, AgentError> {
        let mut clients = Vec::with_capacity(config.collectors.len());
        for address in &config.collectors {
            clients.push(Collector { address: address.clone(), client: client(&config, address)? });
        }
        Ok(Self { config, clients, current: 0, checkpoints, sequence: 0 })
    }

    /// Ships until `stop` turns true. Up to `IN_FLIGHT` batches are pushed at once, so the
    /// collector's fsync per batch does not set the pace; their acks are taken in spool
    /// order, and a batch whose push failed is retried (with backoff and failover) before
    /// any ack behind it counts.
    pub async fn run(mut self, mut spool: SpoolReader, mut stop: watch::Receiver<bool>) {
        let (max_bytes, linger) = (self.config.batch_max_bytes, self.config.batch_linger);
        let mut reader_stop = stop.clone();
        let mut in_flight: VecDeque<Push> = VecDeque::new();
        let mut unsaved: Option<Unsaved> = None;
        loop {
            let can_send = in_flight.len() < IN_FLIGHT;
            let save_at = unsaved.map(|u| u.due);
            let event = tokio::select! {
                batch = spool.next_batch(max_bytes, linger, &mut reader_stop), if can_send => {
                    Event::Batch(batch)
                }
                done = async { (&mut in_flight.front_mut().expect("not empty").task).await },
                    if !in_flight.is_empty() =>
                {
                    Event::Done(done.unwrap_or_else(|e| {
                        Outcome::Failed(Status::internal(format!("push task failed: {e}")))
                    }))
                }
                _ = stop.wait_for(|s| *s), if !can_send => Event::Stop,
                _ = tokio::time::sleep_until(save_at.unwrap_or_else(tokio::time::Instant::now)),
                    if save_at.is_some() => Event::Save,
            };
            match event {
                Event::Batch(None) | Event::Stop => {
                    if unsaved.is_some() {
                        self.save().await;
                    }
                    return;
                }
                Event::Save => {
                    let Unsaved { snapshots, .. } = unsaved.take().expect("a save is due");
                    let written = self
                        .checkpoints
                        .lock()
                        .expect("checkpoints poisoned")
                        .written_since(snapshots);
                    if !written {
                        self.save().await;
                    }
                }
                Event::Batch(Some(batch)) => {
                    let (out, request) = self.prepare(batch);
                    let client = self.clients[self.current].client.clone();
                    let task = tokio::spawn(push(client, request, out.records));
                    in_flight.push_back(Push { out, task, endpoint: self.current });
                }
                Event::Done(outcome) => {
                    let Push { mut out, endpoint, .. } = in_flight.pop_front().expect("not empty");
                    let delivered = match outcome {
                        Outcome::Acked => true,
                        Outcome::Rejected(status) => {
                            self.rejected(&out, &status);
                            true
                        }
                        Outcome::Failed(status) => {
                            self.failed(endpoint, &status);
                            self.retry(&mut out, &mut spool, &mut stop).await
                        }
                    };
                    if !delivered {
                        if unsaved.is_some() {
                            self.save().await;
                        }
                        return;
                    }
                    let end = out.end;
                    let snapshots = self.acknowledged(out);
                    let due = unsaved
                        .map_or_else(|| tokio::time::Instant::now() + ACK_SAVE_DELAY, |u| u.due);
                    unsaved = Some(Unsaved { snapshots, due });
                    spool.acknowledge(end);
                }
            }
        }
    }

    fn prepare(&mut self, batch: Batch) -> (Outgoing, LogBatch) {
        self.sequence += 1;
        let mut resume: HashMap<u64, Resume> = HashMap::new();
        for item in &batch.entries {
            resume.entry(item.source).or_default().raise(item.resume_offset, &item.path);
        }
        let (request, records) = self.request(self.sequence, batch.entries);
        let out = Outgoing {
            sequence: self.sequence,
            start: batch.start,
            end: batch.end,
            resume,
            records,
        };
        (out, request)
    }

    /// The push of `entries`, and the records in it.
    fn request(&self, sequence: u64, entries: Vec<SpoolEntry>) -> (LogBatch, u64) {
        let records = entries.iter().map(|e| u64::from(e.records)).sum();
        let request = LogBatch {
            agent: self.config.source_identity(),
            sequence,
            records: Vec::new(),
            zstd_blocks: entries.into_iter().map(|e| e.zstd_block).collect(),
            enrichment: None,
        };
        (request, records)
    }

    fn rejected(&self, out: &Outgoing, status: &Status) {
        let collector = &self.clients[self.current].address;
        tracing::error!(%collector, records = out.records, message = status.message(), "the collector refused a batch as malformed; its records are lost");
        metrics::counter!("sluice_agent_records_rejected_total").increment(out.records);
    }

    /// Logs a failed push to `endpoint` and, when that is the one in use, moves to the next,
    /// if there is one. (Batches sent before a failover fail on the old endpoint too; they
    /// must not move the agent back to it.)
    fn failed(&mut self, endpoint: usize, status: &Status) {
        let collector = &self.clients[endpoint].address;
        metrics::counter!("sluice_agent_push_failures_total").increment(1);
        if status.code() == tonic::Code::Unauthenticated {
            tracing::error!(%collector, "the collector refused this agent's token; check token_file");
        }
        if status.code() == tonic::Code::PermissionDenied {
            tracing::error!(%collector, message = status.message(), "the collector refused records of this agent's cluster; check `cluster` and the token's clusters= in the collector's agent tokens");
        }
        tracing::warn!(%collector, code = ?status.code(), message = status.message(), "push to collector failed");
        if self.clients.len() > 1 && endpoint == self.current {
            self.current = (self.current + 1) % self.clients.len();
            metrics::counter!("sluice_agent_failovers_total").increment(1);
            tracing::info!(collector = %self.clients[self.current].address, "failing over");
        }
    }

    /// Pushes a batch whose push failed until it is delivered, reading it from the spool
    /// again; each endpoint gets a turn before the agent backs off. False if the agent
    /// stopped first.
    async fn retry(
        &mut self,
        out: &mut Outgoing,
        spool: &mut SpoolReader,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let (request, records) = self.request(out.sequence, spool.reread(out.start, out.end));
        if records < out.records {
            // Fewer when drop_oldest deleted their segment while they were in flight (a frame
            // found corrupt now is counted by the spool).
            if self.config.spool.when_full == WhenFull::DropOldest {
                metrics::counter!("sluice_agent_spool_dropped_records_total", "policy" => "drop_oldest")
                    .increment(out.records - records);
            }
            tracing::warn!(
                records = out.records - records,
                "records of a failed push left the spool before its retry"
            );
            out.records = records;
        }
        if records == 0 {
            return true;
        }
        let mut backoff = BACKOFF_START;
        // The endpoint that just failed had its turn.
        let mut tried = 1;
        loop {
            if tried >= self.clients.len() {
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
            let client = self.clients[self.current].client.clone();
            let outcome = tokio::select! {
                outcome = push(client, request.clone(), out.records) => outcome,
                _ = stop.wait_for(|s| *s) => return false,
            };
            match outcome {
                Outcome::Acked => return true,
                Outcome::Rejected(status) => {
                    self.rejected(out, &status);
                    return true;
                }
                Outcome::Failed(status) => {
                    self.failed(self.current, &status);
                    tried += 1;
                }
            }
        }
    }

    /// Records the ack of `out` in memory: the files' acknowledged offsets and the spool
    /// position. Returns the snapshots taken before it: a snapshot numbered above carries it.
    fn acknowledged(&self, out: Outgoing) -> u64 {
        metrics::counter!("sluice_agent_batches_acked_total").increment(1);
        metrics::counter!("sluice_agent_records_acked_total").increment(out.records);
        let mut c = self.checkpoints.lock().expect("checkpoints poisoned");
        for (source, Resume { offset, path }) in out.resume {
            c.acknowledge(source, &path, offset);
        }
        c.acknowledge_spool(out.end);
        c.snapshots_taken()
    }

    /// Writes the checkpoints as they are now.
    async fn save(&self) {
        let checkpoints = self.checkpoints.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let snapshot = checkpoints.lock().expect("checkpoints poisoned").snapshot();
            snapshot.write()
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            // The data is delivered; a checkpoint that failed to persist only means a resend
            // after a restart, which the collector deduplicates.
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save checkpoints"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
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
