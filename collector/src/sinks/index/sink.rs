use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice_query::retention::RetentionPolicy;
use sluice_query::{Store, StoreWriter};
use tokio::sync::watch;

use crate::sink::{Sink, SinkError};
use crate::wal_frame::Frame;

pub struct IndexSink {
    writer: Arc<Mutex<StoreWriter>>,
    resume: u64,
    end: u64,
    wal_end: watch::Receiver<u64>,
    retention: RetentionPolicy,
    housekeeping_interval: Duration,
    /// `None` until the first flush, which housekeeps at once (retention applies at start).
    last_housekeeping: Option<Instant>,
}

impl IndexSink {
    pub fn new(
        store: Arc<Store>,
        wal_end: watch::Receiver<u64>,
        retention: RetentionPolicy,
        housekeeping_interval: Duration,
    ) -> Self {
        let resume = store.committed_position();
        Self {
            writer: Arc::new(Mutex::new(StoreWriter::new(store))),
            resume,
            end: resume,
            wal_end,
            retention,
            housekeeping_interval,
            last_housekeeping: None,
        }
    }

    /// Runs tantivy work off the async threads: it is CPU and disk bound.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut StoreWriter) -> Result<T, sluice_query::QueryError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            work(&mut writer.lock().expect("index writer poisoned"))
        })
        .await
        .map_err(|e| SinkError(format!("index task failed: {e}")))?
        .map_err(|e| SinkError(e.to_string()))
    }
}

#[async_trait]
impl Sink for IndexSink {
    fn name(&self) -> &str {
        "index"
    }

    async fn open(&mut self) -> Result<u64, SinkError> {
        Ok(self.resume)
    }

    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError> {
        let (indexed, duplicates) =
            self.blocking(move |writer| writer.add_all(frame.records(), end)).await?;
        self.end = end;
        metrics::counter!("sluice_index_records_total").increment(indexed);
        metrics::counter!("sluice_index_duplicates_skipped_total").increment(duplicates);
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        let end = self.end;
        // The clock is read before the WAL's end: whatever the collector acknowledged before
        // `now` was in the WAL by then, so if this commit reaches the WAL's end it holds it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let caught_up = (end >= *self.wal_end.borrow()).then_some(now);
        let housekeep =
            self.last_housekeeping.is_none_or(|t| t.elapsed() >= self.housekeeping_interval);
        let retention = self.retention.clone();
        let docs = self
            .blocking(move |writer| {
                writer.commit_with(end, caught_up)?;
                if housekeep {
                    // A failed drop or merge is retried next round; the commit stands.
                    if let Err(e) = writer.housekeeping(now, &retention) {
                        tracing::warn!(error = %e, "index housekeeping failed");
                    }
                }
                Ok(writer.store().doc_count())
            })
            .await?;
        if housekeep {
            self.last_housekeeping = Some(Instant::now());
        }
        metrics::gauge!("sluice_index_docs").set(docs as f64);
        self.resume = end;
        Ok(end)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let dir = self.blocking(|writer| Ok(writer.store().dir().to_owned())).await?;
        if dir.is_dir() {
            Ok(())
        } else {
            Err(SinkError(format!("index directory {} is gone", dir.display())))
        }
    }
}
