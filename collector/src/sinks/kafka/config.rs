use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::encoding::Encoding;

/// Where and how the sink writes.
#[derive(Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic name template: `{cluster}`, `{namespace}`, `{pod}`, `{container}`; characters
    /// Kafka does not allow in topic names become `_`.
    pub topic: String,
    pub encoding: Encoding,
    /// Topic for the OTLP metrics received, one `ExportMetricsServiceRequest` a message
    /// (the OpenTelemetry Collector's Kafka exporter's `otlp_proto`).
    pub metrics_topic: String,
    pub compression: KafkaCompression,
    /// librdkafka's `linger.ms`: how long a batch waits to fill.
    pub linger: Duration,
    /// librdkafka's `batch.size` per partition.
    pub batch_bytes: usize,
    /// Larger encoded records are refused before sending and go to the dead-letter file;
    /// keep it at or below the broker's `message.max.bytes`.
    pub max_message_bytes: usize,
    /// Identifies this collector's producer across restarts; two collectors must not share it.
    pub transactional_id: String,
    /// Compacted topic holding each producer's WAL cursor.
    pub cursor_topic: String,
    /// A transaction is committed once its records reach this many bytes, even before the
    /// flush interval.
    pub transaction_bytes: usize,
    pub flush_interval: Duration,
    /// More librdkafka settings (`security.protocol`, `sasl.*`, …), applied last.
    pub options: Vec<(String, String)>,
    /// Holds the dead-letter file.
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    pub(super) fn codec(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for KafkaCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            other => {
                return Err(format!(
                    "unknown compression {other:?}: use none, gzip, snappy, lz4 or zstd"
                ));
            }
        })
    }
}

// Options may hold SASL passwords; they never reach logs.
impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("encoding", &self.encoding)
            .field("metrics_topic", &self.metrics_topic)
            .field("compression", &self.compression)
            .field("transactional_id", &self.transactional_id)
            .field("options", &self.options.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, state_dir: PathBuf) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "sluice-logs".to_owned(),
            encoding: Encoding::Json,
            metrics_topic: "otlp_metrics".to_owned(),
            compression: KafkaCompression::Zstd,
            linger: Duration::from_millis(5),
            batch_bytes: 1 << 20,
            max_message_bytes: 1_000_000,
            transactional_id: "sluice-collector".to_owned(),
            cursor_topic: "sluice-sink-cursors".to_owned(),
            transaction_bytes: 64 << 20,
            flush_interval: Duration::from_secs(1),
            options: Vec::new(),
            state_dir,
        }
    }
}
