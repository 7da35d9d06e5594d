//! `sluice up` and `sluice collector`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sluice_agent::config::ReadFrom;
use sluice_collector::CollectorConfig;
use tokio::net::TcpListener;

#[derive(Debug, Args)]
pub(crate) struct CollectorArgs {
    /// Holds the WAL and the index.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// The search API and web page.
    #[arg(long, default_value = "127.0.0.1:7280")]
    listen: SocketAddr,
    /// Where agents push records (gRPC).
    #[arg(long, default_value = "127.0.0.1:7281")]
    grpc_listen: SocketAddr,
    /// How often the index commits: the longest a record waits to become searchable.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    commit_interval: std::time::Duration,
    /// Acknowledge and keep batches in the WAL, then discard them instead of indexing: for
    /// measuring agents and ingest.
    #[arg(long)]
    blackhole: bool,
    /// YAML file of search users: name, token, and admin or the clusters and namespaces each
    /// may read. Without it the search API is open to whoever reaches --listen.
    #[arg(long)]
    users: Option<PathBuf>,
    /// Drop day partitions of the index once the whole day is older than this (such as 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    retention: Option<std::time::Duration>,
    /// Drop the oldest day partitions while the index is larger than this (such as 50GiB);
    /// the newest is always kept.
    #[arg(long)]
    max_index_size: Option<bytesize::ByteSize>,
    /// Refuse searches, histograms and facets that have no word or field value to look up
    /// and would read more than this (such as 32GiB) of index, unless they pass force=true.
    #[arg(long)]
    query_budget: Option<bytesize::ByteSize>,
    /// Cap the WAL (such as 8GiB): while a sink is behind it holds that much, then does what
    /// --wal-when-full says.
    #[arg(long)]
    wal_max_size: Option<bytesize::ByteSize>,
    /// At --wal-max-size: `block` refuses new batches (agents keep them in their spools and
    /// retry; nothing is lost) or `drop-oldest` deletes the oldest segments (the sinks behind
    /// lose them, counted in sluice_collector_wal_lost_bytes_total; the others go on).
    #[arg(long, value_enum, default_value = "block", requires = "wal_max_size")]
    wal_when_full: WhenFullArg,
    /// The size of one WAL segment file; space is freed a whole segment at a time.
    #[arg(long, default_value = "64MiB")]
    wal_segment_size: bytesize::ByteSize,
    /// Also send every record to Elasticsearch or OpenSearch at this URL (`_bulk`, each
    /// record once by its id; refused records go to <data-dir>/sinks/elasticsearch/dead-letter.ndjson).
    #[arg(long)]
    elasticsearch: Option<String>,
    /// Index name template for --elasticsearch: {cluster}, {namespace}, {pod}, {container},
    /// {yyyy.MM.dd}.
    #[arg(long, default_value = "logs-{namespace}-{yyyy.MM.dd}")]
    es_index: String,
    /// Write to data streams named by --es-index (such as 'logs-{namespace}', no date: a
    /// data stream rolls over by itself).
    #[arg(long, requires = "elasticsearch")]
    es_data_stream: bool,
    /// PEM certificates to trust for an https:// --elasticsearch, besides the system's.
    #[arg(long, requires = "elasticsearch")]
    es_ca_file: Option<PathBuf>,
    /// User for --elasticsearch basic auth; the password comes from SLUICE_ES_PASSWORD.
    #[arg(long)]
    es_user: Option<String>,
    #[arg(long, env = "SLUICE_ES_PASSWORD", hide_env_values = true, requires = "es_user")]
    es_password: Option<String>,
    /// An Elasticsearch API key (base64 id:key), instead of a user.
    #[arg(long, env = "SLUICE_ES_API_KEY", hide_env_values = true, conflicts_with = "es_user")]
    es_api_key: Option<String>,
    /// Also send every record to Kafka at these brokers (host:port,…), in transactions with
    /// the sink's WAL cursor: read_committed consumers see each record once.
    #[arg(long)]
    kafka: Option<String>,
    /// Topic template for --kafka: {cluster}, {namespace}, {pod}, {container}.
    #[arg(long, default_value = "sluice-logs")]
    kafka_topic: String,
    /// How records are written to --kafka: json (the Elasticsearch document) or protobuf.
    #[arg(long, default_value = "json", value_parser = str::parse::<sluice_collector::sinks::kafka::Encoding>)]
    kafka_encoding: sluice_collector::sinks::kafka::Encoding,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "zstd", value_parser = str::parse::<sluice_collector::sinks::kafka::KafkaCompression>)]
    kafka_compression: sluice_collector::sinks::kafka::KafkaCompression,
    /// How long the producer waits to fill a batch (librdkafka linger.ms).
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    kafka_linger: std::time::Duration,
    /// Records whose message would be larger go to <data-dir>/sinks/kafka/dead-letter.ndjson;
    /// keep it at or below the broker's message.max.bytes.
    #[arg(long, default_value = "1000000B")]
    kafka_max_message_size: bytesize::ByteSize,
    /// The producer's transactional.id: stable across restarts, one per collector.
    #[arg(long, default_value = "sluice-collector")]
    kafka_transactional_id: String,
    /// Read records from Kafka at these brokers as well (a consumer group; offsets are
    /// committed once every sink holds what was read).
    #[arg(long, requires = "kafka_source_topic")]
    kafka_source: Option<String>,
    /// A topic for --kafka-source to read; repeat for more.
    #[arg(long, requires = "kafka_source")]
    kafka_source_topic: Vec<String>,
    /// The consumer group of --kafka-source.
    #[arg(long, default_value = "sluice")]
    kafka_source_group: String,
    /// Static membership in --kafka-source-group (such as the pod name): a restarted
    /// collector takes its partitions back at once rather than after the session timeout.
    #[arg(long, requires = "kafka_source")]
    kafka_source_instance_id: Option<String>,
    /// A librdkafka setting (KEY=VALUE, such as security.protocol=sasl_ssl,
    /// sasl.mechanism=SCRAM-SHA-512, sasl.username=…, ssl.ca.location=ca.pem) for --kafka and
    /// --kafka-source; repeat for more.
    #[arg(long, value_parser = key_value)]
    kafka_option: Vec<(String, String)>,
    /// The SASL password (sasl.password) for --kafka and --kafka-source, from the
    /// environment so that it shows in no process list.
    #[arg(long, env = "SLUICE_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    kafka_sasl_password: Option<String>,
    /// Do not watch the cluster's pods for records' labels, node and owner (by default the
    /// collector does when it finds a cluster: in a pod, or through KUBECONFIG).
    #[arg(long)]
    no_pod_metadata: bool,
    /// Serve OTLP/gRPC logs here as well (such as 127.0.0.1:4317); OTLP/HTTP is always on
    /// --listen at /v1/logs, next to the Elasticsearch-compatible /_bulk.
    #[arg(long)]
    otlp_grpc_listen: Option<SocketAddr>,
    /// How often retention and the merging of closed days run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    housekeeping_interval: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// Files to tail (glob; `**` crosses directories). Repeat for more.
    #[arg(long, required = true)]
    watch: Vec<String>,
    /// The cluster name put on every record.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// The node name put on every record (default: the host name).
    #[arg(long, default_value = "")]
    node: String,
    /// For files already there at the first start: read them from the beginning or the end.
    #[arg(long, value_enum, default_value = "beginning")]
    read_from: ReadFromArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WhenFullArg {
    Block,
    DropOldest,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReadFromArg {
    Beginning,
    End,
}

pub(crate) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (grpc, http, collector_config) = bind(&args.collector).await?;
        let mut agent = sluice_agent::RawConfig::new(
            format!("http://{}", grpc.local_addr()?),
            args.collector.data_dir.join("agent"),
            args.watch,
        );
        agent.cluster = args.cluster;
        agent.node = args.node;
        agent.read_from = match args.read_from {
            ReadFromArg::Beginning => ReadFrom::Beginning,
            ReadFromArg::End => ReadFrom::End,
        };
        let agent = agent.validate().map_err(|e| anyhow::anyhow!("invalid flags: {e}"))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let collector = tokio::spawn(sluice_collector::run(
            collector_config,
            grpc,
            http,
            metrics_render()?,
            stopped(stop_rx.clone()),
        ));
        let agent = tokio::spawn(sluice_agent::run(agent, stopped(stop_rx)));
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        agent.await.context("agent task failed")??;
        collector.await.context("collector task failed")??;
        Ok(ExitCode::SUCCESS)
    })
}

/// `sluice collector`: the collector alone, which remote agents reach, so it can demand TLS
/// and tokens. (`sluice up` keeps its agent on loopback inside the process.)
#[derive(Debug, Args)]
pub(crate) struct CollectorCommandArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// PEM certificate (chain) for the agents' gRPC listener; agents then connect with https://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// File of `<agent name> <token>` lines; agents must send one of the tokens.
    #[arg(long)]
    agent_tokens: Option<PathBuf>,
}

pub(crate) fn collector(args: CollectorCommandArgs) -> anyhow::Result<ExitCode> {
    let agent_tokens =
        args.agent_tokens.as_deref().map(sluice_collector::auth::AgentTokens::load).transpose()?;
    if agent_tokens.is_none() && !args.collector.grpc_listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.collector.grpc_listen,
            "agents are not authenticated: any host that reaches this address can push; pass --agent-tokens"
        );
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(sluice_collector::auth::TlsFiles { cert, key }),
        _ => None,
    };
    let args = args.collector;
    runtime()?.block_on(async {
        let (grpc, http, mut config) = bind(&args).await?;
        config.tls = tls;
        config.agent_tokens = agent_tokens;
        sluice_collector::run(config, grpc, http, metrics_render()?, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn bind(args: &CollectorArgs) -> anyhow::Result<(TcpListener, TcpListener, CollectorConfig)> {
    let grpc = TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--grpc-listen)", args.grpc_listen))?;
    let http = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    // Tests and scripts read these lines to learn the ports when they asked for port 0.
    let mut out = std::io::stdout().lock();
    writeln!(out, "sluice: agents push to {} (gRPC)", grpc.local_addr()?)?;
    writeln!(out, "sluice: search API on http://{}", http.local_addr()?)?;
    out.flush()?;
    let mut config = CollectorConfig::new(args.data_dir.clone());
    config.index.commit_interval = args.commit_interval;
    config.blackhole = args.blackhole;
    config.index.retention.max_age = args.retention;
    config.index.retention.max_bytes = args.max_index_size.map(|b| b.as_u64());
    config.index.housekeeping_interval = args.housekeeping_interval;
    config.query_budget = args.query_budget.map(|b| b.as_u64());
    config.otlp_grpc_listen = args.otlp_grpc_listen;
    config.pod_metadata = !args.no_pod_metadata;
    config.wal_segment_bytes = args.wal_segment_size.as_u64();
    config.wal_limit = args.wal_max_size.map(|max| sluice_collector::wal::WalLimit {
        max_bytes: max.as_u64(),
        when_full: match args.wal_when_full {
            WhenFullArg::Block => sluice_collector::wal::WhenFull::Block,
            WhenFullArg::DropOldest => sluice_collector::wal::WhenFull::DropOldest,
        },
    });
    if let Some(url) = &args.elasticsearch {
        use sluice_collector::sinks::elasticsearch::{ElasticsearchAuth, ElasticsearchConfig};
        let mut es = ElasticsearchConfig::new(url, args.data_dir.join("sinks/elasticsearch"));
        es.index = args.es_index.clone();
        es.data_stream = args.es_data_stream;
        es.ca_file = args.es_ca_file.clone();
        es.auth = match (&args.es_user, &args.es_password, &args.es_api_key) {
            (Some(user), password, _) => ElasticsearchAuth::Basic {
                user: user.clone(),
                password: password.clone().unwrap_or_default(),
            },
            (None, _, Some(key)) => ElasticsearchAuth::ApiKey(key.clone()),
            _ => ElasticsearchAuth::None,
        };
        config.elasticsearch = Some(es);
    }
    let mut kafka_options = args.kafka_option.clone();
    if let Some(password) = &args.kafka_sasl_password {
        kafka_options.push(("sasl.password".to_owned(), password.clone()));
    }
    if let Some(brokers) = &args.kafka {
        use sluice_collector::sinks::kafka::KafkaConfig;
        let mut kafka = KafkaConfig::new(brokers, args.data_dir.join("sinks/kafka"));
        kafka.topic = args.kafka_topic.clone();
        kafka.encoding = args.kafka_encoding;
        kafka.compression = args.kafka_compression;
        kafka.linger = args.kafka_linger;
        kafka.max_message_bytes = args.kafka_max_message_size.as_u64() as usize;
        kafka.transactional_id = args.kafka_transactional_id.clone();
        kafka.options = kafka_options.clone();
        config.kafka = Some(kafka);
    }
    if let Some(brokers) = &args.kafka_source {
        config.kafka_source = Some(sluice_collector::kafka_source::KafkaSourceConfig {
            brokers: brokers.clone(),
            topics: args.kafka_source_topic.clone(),
            group: args.kafka_source_group.clone(),
            instance_id: args.kafka_source_instance_id.clone(),
            options: kafka_options,
        });
    }
    config.users = args.users.as_deref().map(sluice_query::access::Users::load).transpose()?;
    if config.users.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "the search API is open: anyone who reaches this address reads every namespace; pass --users"
        );
    }
    Ok((grpc, http, config))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn metrics_render() -> anyhow::Result<sluice_query::api::MetricsRender> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(Arc::new(move || handle.render()))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
