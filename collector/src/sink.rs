//! The one trait every sink implements, so the runner drives them all alike.

use std::sync::Arc;

use async_trait::async_trait;

use crate::wal_frame::Frame;

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

    /// Takes one WAL frame; `end` is the position just past it. Its records may be ones the
    /// sink already has (replays); it must not store them twice. The frame is shared: the
    /// runner offers the same one again after a failure, decoded at most once.
    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError>;

    /// Makes everything written durable; returns the WAL position now covered.
    async fn flush(&mut self) -> Result<u64, SinkError>;

    /// Whether the sink can take records now.
    async fn healthcheck(&self) -> Result<(), SinkError>;
}
