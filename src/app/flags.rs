//! The flags that choose what the collector runs (shared by `sluice up` and
//! `sluice collector`), and what they make.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use sluice_collector::sinks::index::IndexSinkConfig;
use sluice_collector::wal::{WalLimit, WhenFull};

#[derive(Debug, Args)]
pub(crate) struct CollectorArgs {
    /// Holds the WAL and the index.
    #[arg(long, default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    /// The search API and web page.
    #[arg(long, default_value = "127.0.0.1:7280")]
    pub(crate) listen: SocketAddr,
    /// Where agents push records (gRPC).
    #[arg(long, default_value = "127.0.0.1:7281")]
    pub(crate) grpc_listen: SocketAddr,
    /// How often the index commits: the longest a record waits to become searchable.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) commit_interval: std::time::Duration,
    /// Acknowledge and keep batches in the WAL, then discard them instead of indexing: for
    /// measuring agents and ingest.
    #[arg(long)]
    pub(crate) blackhole: bool,
    /// YAML file of search users: name, token, and admin or the clusters and namespaces each
    /// may read. Without it the search API is open to whoever reaches --listen.
    #[arg(long)]
    pub(crate) users: Option<PathBuf>,
    /// Alert rules, receivers and routes (YAML; `sluice alert validate FILE` checks one).
    /// Rules judge records as they pass through, whatever sinks run.
    #[arg(long)]
    pub(crate) alerts: Option<PathBuf>,
    /// Log-to-metric counters (YAML: `metrics:` of name, help, query, labels), counted as
    /// records pass through, each once, and shown on /metrics.
    #[arg(long)]
    pub(crate) log_metrics: Option<PathBuf>,
    /// Dashboards for the page (a directory of `sluice dash` files), beside the built-ins.
    #[arg(long)]
    pub(crate) dashboards: Option<PathBuf>,
    /// The Prometheus-compatible HTTP API the page's metric panels ask, such as
    /// http://prometheus:9090.
    #[arg(long)]
    pub(crate) prometheus_url: Option<String>,
    /// Drop day partitions of the index once the whole day is older than this (such as 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) retention: Option<std::time::Duration>,
    /// Drop the oldest day partitions while the index is larger than this (such as 50GiB);
    /// the newest is always kept.
    #[arg(long)]
    pub(crate) max_index_size: Option<bytesize::ByteSize>,
    /// Refuse searches, histograms and facets that have no word or field value to look up
    /// and would read more than this (such as 32GiB) of index, unless they pass force=true.
    #[arg(long)]
    pub(crate) query_budget: Option<bytesize::ByteSize>,
    /// How many searches, histograms, facets, contexts and export or tail pages the index
    /// works on at once (default: one per core, two at least); each takes memory in
    /// proportion to what it matches.
    #[arg(long)]
    pub(crate) max_concurrent_queries: Option<usize>,
    /// How many more wait for a turn; past them a request is refused with 429 and
    /// Retry-After.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_queued_queries: usize,
    /// How many exports stream at once (each also takes a query turn per page it reads);
    /// as many more wait, then 429.
    #[arg(long, default_value_t = 4)]
    pub(crate) max_concurrent_exports: usize,
    /// How many `_bulk` and OTLP requests are read, decoded and appended at once (default:
    /// one per core, two at least); the others wait up to 10 s with their bodies unread, then
    /// get 429 and retry.
    #[arg(long)]
    pub(crate) max_concurrent_ingest: Option<usize>,
    /// Cap the WAL (such as 8GiB): while a sink is behind it holds that much, then does what
    /// --wal-when-full says.
    #[arg(long)]
    pub(crate) wal_max_size: Option<bytesize::ByteSize>,
    /// At --wal-max-size: `block` refuses new batches (agents keep them in their spools and
    /// retry; nothing is lost) or `drop-oldest` deletes the oldest segments (the sinks behind
    /// lose them, counted in sluice_collector_wal_lost_bytes_total; the others go on).
    #[arg(long, value_enum, default_value = "block", requires = "wal_max_size")]
    pub(crate) wal_when_full: WhenFullArg,
    /// The size of one WAL segment file; space is freed a whole segment at a time.
    #[arg(long, default_value = "64MiB")]
    pub(crate) wal_segment_size: bytesize::ByteSize,
    /// Also send every record to Elasticsearch or OpenSearch at this URL (`_bulk`, each
    /// record once by its id; refused records go to <data-dir>/sinks/elasticsearch/dead-letter.ndjson).
    #[arg(long)]
    pub(crate) elasticsearch: Option<String>,
    /// Index name template for --elasticsearch: {cluster}, {namespace}, {pod}, {container},
    /// {yyyy.MM.dd}.
    #[arg(long, default_value = "logs-{namespace}-{yyyy.MM.dd}")]
    pub(crate) es_index: String,
    /// Write to data streams named by --es-index (such as 'logs-{namespace}', no date: a
    /// data stream rolls over by itself).
    #[arg(long, requires = "elasticsearch")]
    pub(crate) es_data_stream: bool,
    /// PEM certificates to trust for an https:// --elasticsearch, besides the system's.
    #[arg(long, requires = "elasticsearch")]
    pub(crate) es_ca_file: Option<PathBuf>,
    /// User for --elasticsearch basic auth; the password comes from SLUICE_ES_PASSWORD.
    #[arg(long)]
    pub(crate) es_user: Option<String>,
    #[arg(long, env = "SLUICE_ES_PASSWORD", hide_env_values = true, requires = "es_user")]
    pub(crate) es_password: Option<String>,
    /// An Elasticsearch API key (base64 id:key), instead of a user.
    #[arg(long, env = "SLUICE_ES_API_KEY", hide_env_values = true, conflicts_with = "es_user")]
    pub(crate) es_api_key: Option<String>,
    /// Also send every record to Kafka at these brokers (host:port,…), in transactions with
    /// the sink's WAL cursor: read_committed consumers see each record once.
    #[arg(long)]
    pub(crate) kafka: Option<String>,
    /// Topic template for --kafka: {cluster}, {namespace}, {pod}, {container}.
    #[arg(long, default_value = "sluice-logs")]
    pub(crate) kafka_topic: String,
    /// How records are written to --kafka: json (the Elasticsearch document) or protobuf.
    #[arg(long, default_value = "json", value_parser = str::parse::<sluice_collector::sinks::kafka::Encoding>)]
    pub(crate) kafka_encoding: sluice_collector::sinks::kafka::Encoding,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "zstd", value_parser = str::parse::<sluice_collector::sinks::kafka::KafkaCompression>)]
    pub(crate) kafka_compression: sluice_collector::sinks::kafka::KafkaCompression,
    /// How long the producer waits to fill a batch (librdkafka linger.ms).
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    pub(crate) kafka_linger: std::time::Duration,
    /// Records whose message would be larger go to <data-dir>/sinks/kafka/dead-letter.ndjson;
    /// keep it at or below the broker's message.max.bytes.
    #[arg(long, default_value = "1000000B")]
    pub(crate) kafka_max_message_size: bytesize::ByteSize,
    /// The producer's transactional.id: stable across restarts, one per collector.
    #[arg(long, default_value = "sluice-collector")]
    pub(crate) kafka_transactional_id: String,
    /// Topic for the OTLP metrics received (/v1/metrics and gRPC) when --kafka is set: one
    /// OTLP protobuf ExportMetricsServiceRequest a message.
    #[arg(long, default_value = "otlp_metrics")]
    pub(crate) kafka_metrics_topic: String,
    /// Send the OTLP metrics received to this Prometheus remote-write URL (such as
    /// http://prometheus:9090/api/v1/write), each sample once.
    #[arg(long)]
    pub(crate) remote_write: Option<String>,
    /// Bearer token for --remote-write.
    #[arg(
        long,
        env = "SLUICE_REMOTE_WRITE_TOKEN",
        hide_env_values = true,
        requires = "remote_write"
    )]
    pub(crate) remote_write_token: Option<String>,
    /// PEM certificates to trust for an https:// --remote-write, besides the system's.
    #[arg(long, requires = "remote_write")]
    pub(crate) remote_write_ca_file: Option<PathBuf>,
    /// Read records from Kafka at these brokers as well (a consumer group; offsets are
    /// committed once every sink holds what was read).
    #[arg(long, requires = "kafka_source_topic")]
    pub(crate) kafka_source: Option<String>,
    /// A topic for --kafka-source to read; repeat for more.
    #[arg(long, requires = "kafka_source")]
    pub(crate) kafka_source_topic: Vec<String>,
    /// The consumer group of --kafka-source.
    #[arg(long, default_value = "sluice")]
    pub(crate) kafka_source_group: String,
    /// Static membership in --kafka-source-group (such as the pod name): a restarted
    /// collector takes its partitions back at once rather than after the session timeout.
    #[arg(long, requires = "kafka_source")]
    pub(crate) kafka_source_instance_id: Option<String>,
    /// A librdkafka setting (KEY=VALUE, such as security.protocol=sasl_ssl,
    /// sasl.mechanism=SCRAM-SHA-512, sasl.username=…, ssl.ca.location=ca.pem) for --kafka and
    /// --kafka-source; repeat for more.
    #[arg(long, value_parser = key_value)]
    pub(crate) kafka_option: Vec<(String, String)>,
    /// The SASL password (sasl.password) for --kafka and --kafka-source, from the
    /// environment so that it shows in no process list.
    #[arg(long, env = "SLUICE_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub(crate) kafka_sasl_password: Option<String>,
    /// The cluster name put on the records made here: Kubernetes events and, in `sluice up`,
    /// the agent's lines.
    #[arg(long, default_value = "default")]
    pub(crate) cluster: String,
    /// Forward the cluster's Kubernetes events as records (`stream:event`), one per
    /// occurrence; the cluster is found as kubectl finds it (KUBECONFIG, ~/.kube/config, or
    /// the pod's service account), which needs get, list and watch on events.
    #[arg(long)]
    pub(crate) kube_events: bool,
    /// Only the events of this namespace; repeat for more (default: all).
    #[arg(long, requires = "kube_events")]
    pub(crate) kube_events_namespace: Vec<String>,
    /// Only the events of this type, Normal or Warning; repeat for both (the default).
    #[arg(long, requires = "kube_events", value_parser = ["Normal", "Warning"])]
    pub(crate) kube_events_type: Vec<String>,
    /// Forward events only while holding this coordination.k8s.io Lease, `NAMESPACE/NAME`
    /// or `NAME` (in the pod's namespace): run two replicas and one forwards, the other
    /// takes over when it stops. Needs get, create and update on leases.
    #[arg(long, requires = "kube_events")]
    pub(crate) kube_events_lease: Option<String>,
    /// How long the Lease stays its holder's without renewal: how soon a standby takes over.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) kube_events_lease_duration: std::time::Duration,
    /// Do not watch the cluster's pods for records' labels, node and owner (by default the
    /// collector does when it finds a cluster: in a pod, or through KUBECONFIG).
    #[arg(long)]
    pub(crate) no_pod_metadata: bool,
    /// Serve OTLP/gRPC logs and metrics here as well (such as 127.0.0.1:4317); OTLP/HTTP is
    /// always on --listen at /v1/logs and /v1/metrics, next to the Elasticsearch-compatible
    /// /_bulk.
    #[arg(long)]
    pub(crate) otlp_grpc_listen: Option<SocketAddr>,
    /// Push the collector's own metrics (those of /metrics) over OTLP/HTTP to this URL as
    /// well, such as http://otel-collector:4318/v1/metrics.
    #[arg(long)]
    pub(crate) telemetry_otlp_endpoint: Option<String>,
    /// How often --telemetry-otlp-endpoint is pushed to.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "telemetry_otlp_endpoint")]
    pub(crate) telemetry_interval: std::time::Duration,
    /// How often retention and the merging of closed days run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) housekeeping_interval: std::time::Duration,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum WhenFullArg {
    Block,
    DropOldest,
}

impl CollectorArgs {
    pub(crate) fn wal_limit(&self) -> Option<WalLimit> {
        self.wal_max_size.map(|max| WalLimit {
            max_bytes: max.as_u64(),
            when_full: match self.wal_when_full {
                WhenFullArg::Block => WhenFull::Block,
                WhenFullArg::DropOldest => WhenFull::DropOldest,
            },
        })
    }

    pub(crate) fn index(&self) -> IndexSinkConfig {
        let mut index =
            IndexSinkConfig { commit_interval: self.commit_interval, ..IndexSinkConfig::default() };
        index.retention.max_age = self.retention;
        index.retention.max_bytes = self.max_index_size.map(|b| b.as_u64());
        index.housekeeping_interval = self.housekeeping_interval;
        index
    }

    /// librdkafka settings for --kafka and --kafka-source, the SASL password last.
    pub(crate) fn kafka_options(&self) -> Vec<(String, String)> {
        let mut options = self.kafka_option.clone();
        if let Some(password) = &self.kafka_sasl_password {
            options.push(("sasl.password".to_owned(), password.clone()));
        }
        options
    }
}

pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}
