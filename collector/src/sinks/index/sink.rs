use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sluice_proto::LogRecord;
use sluice_query::store::Added;
use sluice_query::{Store, StoreWriter};
use tokio::sync::watch;

use crate::sink::{Sink, SinkError};

pub struct IndexSink {
    writer: Arc<Mutex<StoreWriter>>,
    resume: u64,
    end: u64,
    wal_end: watch::Receiver<u64>,
}

impl IndexSink {
    pub fn new(store: Arc<Store>, wal_end: watch::Receiver<u64>) -> Self {
        let resume = store.committed_position();
        Self { writer: Arc::new(Mutex::new(StoreWriter::new(store))), resume, end: resume, wal_end }
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

    fn resume_position(&self) -> u64 {
        self.resume
    }

    async fn write(&mut self, records: Vec<LogRecord>, end: u64) -> Result<(), SinkError> {
        let (indexed, duplicates) = self
            .blocking(move |writer| {
                let (mut indexed, mut duplicates) = (0u64, 0u64);
                for record in &records {
                    match writer.add(record, end)? {
                        Added::Indexed => indexed += 1,
                        Added::Duplicate => duplicates += 1,
                    }
                }
                Ok((indexed, duplicates))
            })
            .await?;
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
        let docs = self
            .blocking(move |writer| {
                writer.commit_with(end, caught_up)?;
                Ok(writer.store().doc_count())
            })
            .await?;
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
