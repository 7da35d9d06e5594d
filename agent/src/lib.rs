//! `sluice-agent`: tails log files and CRI container logs and ships them to the collector
//! without losing a line.
//!
//! A reader thread ([`tailer`]) turns new lines into records and hands them to the disk
//! [`spool`]'s thread, which compresses and writes them; a file's [`checkpoint`] moves once
//! its records are synced there. The
//! [`shipper`] batches records from the spool, pushes them over gRPC with zstd, and moves the
//! spool's position only when the collector acknowledges that the batch is durable. A crash
//! anywhere therefore resends from the spool and re-reads from the last synced line, and the
//! collector drops what it already has by the records' stable ids.
//!
//! # Layout
//! - [`config`]: `agent.yaml`, checked.
//! - [`tailer`]: discovery by glob and reading, with [`line_reader`] (lines with offsets and a
//!   length cap), [`cri`] (CRI parsing and `P`/`F` merging), [`docker`] (Docker's json-file lines), [`decode`] (bytes to text, with
//!   flags), level detection (`sluice_proto::level::detect`), [`kube_path`] (pod identity from the path) and
//!   [`fingerprint`] (file identity).
//! - [`chunk`]: the records of one read, encoded as they are made, as the spool stores them.
//! - [`multiline`]: joining stack traces and other multi-line events into one record.
//! - [`redact`]: masking personal data and secrets before records leave the pod.
//! - [`spool`]: the bounded, crash-safe disk buffer between reading and shipping.
//! - [`shipper`]: batching, pushing, retrying, recording acks.
//! - [`forward`]: the spool and shipper for records made elsewhere (`sluice events`).
//! - [`checkpoint`]: resume and acknowledged offsets, and the spool position, on disk.
//! - [`explain`]: what the agent knows of one file, for `sluice-agent explain`.
//! - [`http`]: `/metrics` and `/healthz` when `metrics_listen` is set; [`telemetry`]: the
//!   metrics recorder behind it, and OTLP pushes of the same metrics.
//! - [`error`]: the crate's error type.

pub mod checkpoint;
pub mod chunk;
pub mod config;
pub mod cri;
pub mod decode;
pub mod docker;
pub mod error;
pub mod explain;
pub mod fingerprint;
pub mod forward;
pub mod http;
pub mod kube_path;
pub mod line_reader;
pub mod multiline;
pub mod redact;
pub mod shipper;
pub mod spool;
pub mod tailer;
pub mod telemetry;
pub mod timestamp;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

pub use config::{AgentConfig, RawConfig};
pub use error::AgentError;
use tokio::sync::watch;

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let Shipping { config, checkpoints, stop, spool_writer, spool_reader, shipper } =
        Shipping::open(config)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let tailer = tailer::Tailer::new(config.clone(), checkpoints, spool_writer, stop.clone());
    let reader = std::thread::Builder::new()
        .name("sluice-tailer".to_owned())
        .spawn(move || tailer.run())
        .map_err(AgentError::io("start reader thread", &config.data_dir))?;
    let shipping = tokio::spawn(shipper.run(spool_reader, stop_rx));
    tracing::info!(collectors = ?config.collectors, node = %config.node, "agent started");

    shutdown.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let _ = shipping.await;
    // The reader sees the flag within a poll interval, or while it waits for spool room.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The checkpoints, the spool and the shipper over a data dir: what the agent and a
/// [`forward::Forwarder`] both run.
pub(crate) struct Shipping {
    pub(crate) config: Arc<AgentConfig>,
    pub(crate) checkpoints: Arc<Mutex<checkpoint::Checkpoints>>,
    /// Set when stopping: a spool writer waiting for room gives up.
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) spool_writer: spool::SpoolWriter,
    pub(crate) spool_reader: spool::SpoolReader,
    pub(crate) shipper: shipper::Shipper,
}

impl Shipping {
    pub(crate) fn open(config: AgentConfig) -> Result<Self, AgentError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(AgentError::io("create data dir", &config.data_dir))?;
        let config = Arc::new(config);
        let checkpoints = Arc::new(Mutex::new(checkpoint::Checkpoints::load(&config.data_dir)?));
        let acked = checkpoints.lock().expect("checkpoints poisoned").spool_acked();
        let stop = Arc::new(AtomicBool::new(false));
        let (spool_writer, spool_reader) = spool::open(
            &config.data_dir,
            config.spool.clone(),
            acked,
            checkpoints.clone(),
            stop.clone(),
        )?;
        let shipper = shipper::Shipper::new(config.clone(), checkpoints.clone())?;
        Ok(Self { config, checkpoints, stop, spool_writer, spool_reader, shipper })
    }
}
