//! The one trait every sink implements, so the runner drives them all alike.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_proto::LogRecord;

/// Why a sink could not take records; the runner retries the same records after a pause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

#[async_trait]
pub trait Sink: Send {
    /// A short name for logs and metrics labels.
    fn name(&self) -> &str;

    /// Connects if the sink needs to, and returns the WAL position before which it durably
    /// holds everything: where its runner starts reading after a restart. The runner retries
    /// until it succeeds, so a server that is down at start-up delays only this sink.
    async fn open(&mut self) -> Result<u64, SinkError>;

    /// Takes the records of one WAL frame; `end` is the position just past that frame.
    /// Records may be ones the sink already has (replays); it must not store them twice.
    /// They are shared, not owned: the runner offers the same ones again after a failure,
    /// and a deep copy per write cost the Kafka sink an eighth of its CPU.
    async fn write(&mut self, records: Arc<Vec<LogRecord>>, end: u64) -> Result<(), SinkError>;

    /// Makes everything written durable; returns the WAL position now covered.
    async fn flush(&mut self) -> Result<u64, SinkError>;

    /// Whether the sink can take records now.
    async fn healthcheck(&self) -> Result<(), SinkError>;
}
