//! A sink that counts records and discards them: `sluice collector --blackhole`, for
//! measuring agents and ingest without the cost of indexing (Vector's `blackhole` sink).
//! Batches are still durable in the WAL before the agent's ack; only indexing is skipped.

use std::sync::Arc;

use async_trait::async_trait;

use crate::sink::{Sink, SinkError};
use crate::wal_frame::Frame;

pub struct BlackholeSink {
    /// Where the WAL ended when the sink started: nothing before it is replayed.
    start: u64,
    covered: u64,
}

impl BlackholeSink {
    pub fn new(wal_end: u64) -> Self {
        Self { start: wal_end, covered: wal_end }
    }
}

#[async_trait]
impl Sink for BlackholeSink {
    fn name(&self) -> &str {
        "blackhole"
    }

    async fn open(&mut self) -> Result<u64, SinkError> {
        Ok(self.start)
    }

    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError> {
        metrics::counter!("sluice_collector_blackhole_records_total")
            .increment(frame.record_count() as u64);
        self.covered = end;
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        Ok(self.covered)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::LogRecord;

    use super::*;

    #[tokio::test]
    async fn covers_what_it_was_given_and_starts_at_the_wal_end() {
        let mut sink = BlackholeSink::new(40);
        assert_eq!(sink.open().await.unwrap(), 40);
        assert_eq!(sink.flush().await.unwrap(), 40);
        sink.write(Arc::new(Frame::of_records(vec![LogRecord::default(); 3])), 90).await.unwrap();
        assert_eq!(sink.flush().await.unwrap(), 90);
    }
}
