//! Records made elsewhere, sent to the collector the way the agent sends lines: through the
//! disk spool and the shipper, so a collector outage loses nothing and a crash resends from
//! the spool. `sluice events` in a remote cluster forwards Kubernetes events this way; the
//! producer commits its own checkpoint once [`Forwarder::append`] returns, as the tailer moves
//! a file's checkpoint once its records are synced to the spool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sluice_proto::LogRecord;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chunk::Chunk;
use crate::spool::SpoolWriter;
use crate::{AgentConfig, AgentError, Shipping};

/// The spool and the shipper, without a tailer.
pub struct Forwarder {
    writer: Arc<Mutex<Option<SpoolWriter>>>,
    common: LogRecord,
    stop: Arc<AtomicBool>,
    stop_shipping: watch::Sender<bool>,
    shipping: JoinHandle<()>,
}

impl Forwarder {
    /// Opens the spool in `config.data_dir` and starts shipping what it holds.
    pub fn start(config: AgentConfig) -> Result<Self, AgentError> {
        let Shipping { config, stop, spool_writer, spool_reader, shipper, .. } =
            Shipping::open(config)?;
        let (stop_shipping, stopped) = watch::channel(false);
        let shipping = tokio::spawn(shipper.run(spool_reader, stopped));
        let common = LogRecord {
            cluster: config.cluster.clone(),
            node: config.node.clone(),
            ..LogRecord::default()
        };
        let writer = Arc::new(Mutex::new(Some(spool_writer)));
        Ok(Self { writer, common, stop, stop_shipping, shipping })
    }

    /// Writes `records` to the spool and syncs it. While the spool is full this waits
    /// (backpressure: the producer's source keeps what it could not hand over); `false` when
    /// the forwarder is stopping first.
    pub async fn append(&self, records: Vec<LogRecord>) -> bool {
        if records.is_empty() {
            return true;
        }
        let (writer, common) = (self.writer.clone(), self.common.clone());
        let read_ns = now_ns();
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().expect("spool writer poisoned");
            let Some(writer) = writer.as_mut() else { return false };
            let chunk = Chunk::of_records(&common, read_ns, &records);
            if writer.append(chunk, &mut || false).is_err() {
                return false;
            }
            writer.flush();
            true
        })
        .await
        .unwrap_or(false)
    }

    /// Stops shipping, then lets the spool write and sync what it was handed.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stop_shipping.send(true);
        let _ = self.shipping.await;
        let writer = self.writer.clone();
        // Dropping the writer waits for the spool thread to sync what it holds.
        let _ = tokio::task::spawn_blocking(move || {
            let taken = writer.lock().map(|mut w| w.take());
            drop(taken);
        })
        .await;
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::config::RawConfig;
    use crate::spool;

    /// Forwarded records land in the spool whole, each with its own source and fields, and
    /// move no file's checkpoint.
    #[tokio::test]
    async fn forwarded_records_are_spooled_whole_and_move_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let collectors = vec!["http://127.0.0.1:9".to_owned()];
        let config =
            RawConfig::forwarding(collectors, dir.path().to_owned(), "c1".into(), None, None)
                .validate_forwarding()
                .unwrap();
        let spool_config = config.spool.clone();
        let forwarder = Forwarder::start(config).unwrap();
        let records: Vec<LogRecord> = (1..=3)
            .map(|count| LogRecord {
                source: 40 + count,
                offset: count,
                namespace: "shop".to_owned(),
                message: format!("event {count}"),
                ..LogRecord::default()
            })
            .collect();
        assert!(forwarder.append(records.clone()).await);
        forwarder.stop().await;

        let checkpoints = Arc::new(Mutex::new(Checkpoints::load(dir.path()).unwrap()));
        assert_eq!(checkpoints.lock().unwrap().entries().count(), 0);
        let stop = Arc::new(AtomicBool::new(false));
        let (_writer, mut reader) =
            spool::open(dir.path(), spool_config, 0, checkpoints, stop).unwrap();
        let (_stop, mut stopped) = watch::channel(false);
        let linger = std::time::Duration::ZERO;
        let batch = reader.next_batch(1 << 20, linger, &mut stopped).await.unwrap();
        let blocks: Vec<_> = batch.entries.iter().map(|e| e.zstd_block.clone()).collect();
        let spooled = sluice_proto::block::expand(Vec::new(), &blocks, None).unwrap();
        assert_eq!(spooled.len(), records.len());
        for (spooled, sent) in spooled.iter().zip(&records) {
            assert_eq!(
                (spooled.source, spooled.offset, &spooled.namespace, &spooled.message),
                (sent.source, sent.offset, &sent.namespace, &sent.message)
            );
            assert_eq!(spooled.cluster, "c1");
            assert!(spooled.ingest_time_ns > 0);
        }
    }
}
