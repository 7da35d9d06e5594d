//! Starts the collector: WAL, gRPC receiver, the index sink's runner, and the HTTP API.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::ingest_server::IngestServer;
use sluice_query::Store;
use sluice_query::access::{Authenticator, Open, Users};
use sluice_query::api::{ApiState, MetricsRender, router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::CollectorError;
use crate::auth::{AgentTokens, TlsFiles, TokenCheck};
use crate::enrich::{self, PodCache};
use crate::external::ExternalState;
use crate::ingest::IngestService;
use crate::kafka_source::{self, KafkaSourceConfig};
use crate::otlp::OtlpGrpc;
use crate::runner::{Cursors, Feed, run_sink};
use crate::sink::{Sink, SinkError};
use crate::sinks::blackhole::BlackholeSink;
use crate::sinks::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use crate::sinks::index::IndexSinkConfig;
use crate::sinks::kafka::{KafkaConfig, KafkaSink};
use crate::wal::{Wal, WalLimit};
use crate::{bulk, otlp};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;

/// Largest batch an agent may push; well above the agent's default of 1 MiB.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// HTTP/2 receive windows for agents' pushes: room for every batch an agent has in flight.
const INGEST_CONNECTION_WINDOW: u32 = 16 << 20;
const INGEST_STREAM_WINDOW: u32 = 4 << 20;

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Holds `wal/` and `index/`.
    pub data_dir: PathBuf,
    pub wal_segment_bytes: u64,
    /// A cap on the WAL's size and what happens at it; `None`: it grows while a sink is behind.
    pub wal_limit: Option<WalLimit>,
    pub index: IndexSinkConfig,
    /// Serve agents over TLS with this certificate.
    pub tls: Option<TlsFiles>,
    /// Accept only agents presenting one of these tokens.
    pub agent_tokens: Option<AgentTokens>,
    /// Discard records once they are in the WAL instead of indexing them (benchmarks).
    pub blackhole: bool,
    /// Who may search what; `None` leaves the API open (everyone an admin).
    pub users: Option<Users>,
    /// Bytes an unselective query may read without `force`.
    pub query_budget: Option<u64>,
    /// Where to serve OTLP/gRPC logs (conventionally port 4317); `None`: not served.
    pub otlp_grpc_listen: Option<std::net::SocketAddr>,
    /// More sinks, each fed from its own WAL cursor beside the local index.
    pub elasticsearch: Option<ElasticsearchConfig>,
    pub kafka: Option<KafkaConfig>,
    /// Records read from Kafka topics into the WAL, beside those from agents.
    pub kafka_source: Option<KafkaSourceConfig>,
    /// Watch the cluster's pods (when there is one) for records' labels, node and owner.
    pub pod_metadata: bool,
}

impl CollectorConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            wal_segment_bytes: 64 << 20,
            wal_limit: None,
            index: IndexSinkConfig::default(),
            tls: None,
            agent_tokens: None,
            blackhole: false,
            users: None,
            query_budget: None,
            otlp_grpc_listen: None,
            elasticsearch: None,
            kafka: None,
            kafka_source: None,
            pod_metadata: true,
        }
    }
}

/// Runs until `shutdown` completes, serving agents on `grpc` and the API on `http`.
pub async fn run(
    config: CollectorConfig,
    grpc: TcpListener,
    http: TcpListener,
    metrics: MetricsRender,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let wal_dir = config.data_dir.join("wal");
    let index_dir = config.data_dir.join("index");
    let wal = {
        let dir = wal_dir.clone();
        let (segment_bytes, limit) = (config.wal_segment_bytes, config.wal_limit);
        Arc::new(
            tokio::task::spawn_blocking(move || {
                Wal::open(&dir, segment_bytes).map(|w| w.with_limit(limit))
            })
            .await
            .map_err(|e| CollectorError::Server(e.to_string()))??,
        )
    };
    let store = Store::open(&index_dir)
        .map_err(|e| CollectorError::Sink { sink: "index".to_owned(), message: e.to_string() })?;
    store.set_query_budget(config.query_budget);
    let (stop_tx, stop_rx) = watch::channel(false);

    let flush_interval = config.index.commit_interval;
    let sink: Box<dyn Sink> = if config.blackhole {
        Box::new(BlackholeSink::new(wal.end()))
    } else {
        Box::new(config.index.build(store.clone(), wal.subscribe()))
    };
    // One set of cursors for all sinks: the WAL keeps what the slowest one still needs.
    let cursors = Arc::new(Cursors::default());
    // Until a sink says where it is, the WAL keeps everything it holds now for it, and the
    // Kafka source commits nothing past it.
    let first = wal.first()?;
    cursors.set(sink.name(), first);
    let pods = match config.pod_metadata {
        true => enrich::client().await.map(|client| {
            let cache = Arc::new(PodCache::default());
            tokio::spawn(enrich::watch_pods(client, cache.clone(), stop_rx.clone()));
            cache
        }),
        false => None,
    };
    let feed = Feed { wal: wal.clone(), cursors: cursors.clone(), pods };
    let mut runners =
        vec![tokio::spawn(run_sink(sink, flush_interval, feed.clone(), stop_rx.clone()))];
    let mut more: Vec<(Box<dyn Sink>, Duration)> = Vec::new();
    let refused = |sink: &str| {
        let sink = sink.to_owned();
        move |e: SinkError| CollectorError::Sink { sink, message: e.0 }
    };
    if let Some(es) = config.elasticsearch.clone() {
        let interval = es.flush_interval;
        let sink = ElasticsearchSink::new(es).map_err(refused("elasticsearch"))?;
        if let Err(e) = sink.healthcheck().await {
            // Not fatal: the sink retries, and the WAL keeps its records meanwhile.
            tracing::warn!(error = %e, "Elasticsearch is not reachable yet");
        }
        more.push((Box::new(sink), interval));
    }
    if let Some(kafka) = config.kafka.clone() {
        let interval = kafka.flush_interval;
        more.push((Box::new(KafkaSink::new(kafka).map_err(refused("kafka"))?), interval));
    }
    for (sink, interval) in more {
        cursors.set(sink.name(), first);
        runners.push(tokio::spawn(run_sink(sink, interval, feed.clone(), stop_rx.clone())));
    }
    let source_task = config.kafka_source.clone().map(|source| {
        tokio::spawn(kafka_source::run(source, wal.clone(), cursors.clone(), stop_rx.clone()))
    });

    let external = ExternalState { wal: wal.clone(), tokens: config.agent_tokens.clone() };
    let ingest = IngestServer::new(IngestService::new(wal))
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(MAX_BATCH_BYTES);
    // Agents keep several batches in flight; with hyper's 1 MiB connection window the
    // last of them waited in the agent's memory for window updates.
    let mut builder = tonic::transport::Server::builder()
        .initial_connection_window_size(INGEST_CONNECTION_WINDOW)
        .initial_stream_window_size(INGEST_STREAM_WINDOW);
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.server_config()?).map_err(|e| CollectorError::Config {
            path: tls.cert.clone(),
            reason: format!("unusable certificate or key: {e}"),
        })?;
    }
    let grpc_router = match config.agent_tokens.clone() {
        Some(tokens) => builder.add_service(InterceptedService::new(ingest, TokenCheck { tokens })),
        None => builder.add_service(ingest),
    };
    let grpc_server =
        grpc_router.serve_with_incoming_shutdown(no_delay(grpc), stopped(stop_rx.clone()));
    let auth: Arc<dyn Authenticator> = match config.users.clone() {
        Some(users) => Arc::new(users),
        None => Arc::new(Open),
    };
    // `_bulk` and OTLP/HTTP share the API listener, as Elasticsearch and collectors do.
    let ingest_routes = bulk::routes()
        .merge(otlp::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(external.clone());
    let app = router(ApiState { store, metrics, auth }).merge(ingest_routes);
    let http_server = axum::serve(http, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let otlp_task = match config.otlp_grpc_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                CollectorError::Server(format!("cannot listen on {addr} for OTLP/gRPC: {e}"))
            })?;
            tracing::info!(%addr, "OTLP/gRPC logs");
            let service = LogsServiceServer::new(OtlpGrpc { state: external })
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_BATCH_BYTES);
            let server = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(no_delay(listener), stopped(stop_rx.clone()));
            Some(tokio::spawn(server))
        }
        None => None,
    };
    let grpc_task = tokio::spawn(grpc_server);
    let http_task = tokio::spawn(async move { http_server.await });

    shutdown.await;
    tracing::info!("collector stopping");
    let _ = stop_tx.send(true);
    let grpc_result = grpc_task.await;
    let http_result = http_task.await;
    if let Some(task) = otlp_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "OTLP/gRPC server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "OTLP/gRPC task failed"),
        }
    }
    if let Some(task) = source_task {
        let _ = task.await;
    }
    for runner in runners {
        let _ = runner.await;
    }
    match (grpc_result, http_result) {
        (Ok(Ok(())), Ok(Ok(()))) => Ok(()),
        (Ok(Err(e)), _) => Err(CollectorError::Server(format!("gRPC server: {e}"))),
        (_, Ok(Err(e))) => Err(CollectorError::Server(format!("HTTP server: {e}"))),
        (Err(e), _) | (_, Err(e)) => Err(CollectorError::Server(e.to_string())),
    }
}

/// Accepted connections with Nagle's algorithm off. tonic sets `TCP_NODELAY` only on
/// listeners it binds itself; on these, an ack written while a window update was still
/// unacknowledged waited for the agent's delayed ACK (up to 40 ms on Linux), and an agent with
/// all its pushes in flight has nothing to send that would carry the ACK sooner.
fn no_delay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_acks_to_send() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = no_delay(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
