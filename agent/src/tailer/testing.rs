//! A tailer over a temporary directory, with its spool read back, for the unit tests of
//! discovery and rotation recovery.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::LogRecord;
use sluice_proto::block::decode_block;
use tokio::sync::watch;

use super::Tailer;
use crate::checkpoint::Checkpoints;
use crate::config::RawConfig;
use crate::spool::{self, SpoolReader};

pub(super) struct Harness {
    pub(super) logs: PathBuf,
    pub(super) data: PathBuf,
    pub(super) tailer: Tailer,
    reader: SpoolReader,
    checkpoints: Arc<Mutex<Checkpoints>>,
}

impl Harness {
    /// A tailer of `<root>/logs/<pattern>`, keeping its data in `<root>/data`; `adjust` may
    /// change its configuration first.
    pub(super) fn new(root: &Path, pattern: &str, adjust: impl FnOnce(&mut RawConfig)) -> Self {
        let (logs, data) = (root.join("logs"), root.join("data"));
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let watch = vec![logs.join(pattern).to_string_lossy().into_owned()];
        let mut raw = RawConfig::new("http://127.0.0.1:9".to_owned(), data.clone(), watch);
        adjust(&mut raw);
        let config = Arc::new(raw.validate().unwrap());
        let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&data).unwrap()));
        let acked = checkpoints.lock().unwrap().spool_acked();
        let stop = Arc::new(AtomicBool::new(false));
        let (writer, reader) =
            spool::open(&data, config.spool.clone(), acked, checkpoints.clone(), stop.clone())
                .unwrap();
        let tailer = Tailer::new(config, checkpoints.clone(), writer, stop);
        Self { logs, data, tailer, reader, checkpoints }
    }

    /// Scans, then reads every file until nothing is new, and syncs the spool.
    pub(super) fn scan_and_read(&mut self) {
        self.tailer.scan();
        while self.tailer.read_all().unwrap_or(false) {}
        self.tailer.spool.flush();
    }

    /// The paths the tailer has open.
    pub(super) fn open_files(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .tailer
            .files
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        paths.sort();
        paths
    }

    /// Every record the spool took since the last call, acknowledged as the collector would.
    pub(super) fn shipped(&mut self) -> Vec<LogRecord> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (_stop_tx, mut stop) = watch::channel(false);
        let mut records = Vec::new();
        runtime.block_on(async {
            loop {
                let next = self.reader.next_batch(1 << 20, Duration::from_millis(1), &mut stop);
                let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(50), next).await
                else {
                    break;
                };
                if batch.entries.is_empty() {
                    break;
                }
                for entry in &batch.entries {
                    records.extend(decode_block(&entry.zstd_block).unwrap().into_records());
                }
                let mut checkpoints = self.checkpoints.lock().unwrap();
                for entry in &batch.entries {
                    checkpoints.acknowledge(entry.source, &entry.path, entry.resume_offset);
                }
                checkpoints.acknowledge_spool(batch.end);
                checkpoints.save().unwrap();
                drop(checkpoints);
                self.reader.acknowledge(batch.end);
            }
        });
        records
    }
}

/// The messages of `records`.
pub(super) fn messages(records: &[LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.message.as_str()).collect()
}

/// Appends `text` to the file at `path`, creating it.
pub(super) fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
}
