//! Feeds each sink from its own WAL cursor, so a slow or failing sink never holds up another
//! and never loses its place.
//!
//! A runner reads frames from where its sink said it is durable, hands them to the sink (see
//! [`Frame`]), and asks it to flush at the sink's interval. Only a flushed position counts: it is
//! what the runner publishes for WAL clean-up, and what the sink resumes from after a crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::enrich::PodCache;
use crate::sink::{Sink, SinkError};
use crate::wal::Wal;
use crate::wal_frame::Frame;
use crate::{CollectorError, wal_frame};

/// Frames handled between two looks at the flush clock.
const FRAMES_PER_ROUND: usize = 64;
const RETRY_START: Duration = Duration::from_millis(200);
/// How long a sink waits at start for the first list of pods.
const POD_LIST_WAIT: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// An idle sink is still flushed this often, so that time-driven work (index retention)
/// happens without new records.
const IDLE_FLUSH_MIN: Duration = Duration::from_secs(10);

/// Every sink's durable WAL position; the WAL keeps what the slowest one still needs.
#[derive(Debug, Default)]
pub struct Cursors {
    positions: Mutex<HashMap<String, u64>>,
}

impl Cursors {
    /// Records `sink`'s durable position; returns the lowest of all sinks'.
    pub(crate) fn set(&self, sink: &str, position: u64) -> u64 {
        let mut positions = self.positions.lock().expect("cursors poisoned");
        positions.insert(sink.to_owned(), position);
        positions.values().copied().min().unwrap_or(position)
    }

    /// The position every sink has flushed past; `None` before any sink is known.
    pub fn min(&self) -> Option<u64> {
        self.positions.lock().expect("cursors poisoned").values().copied().min()
    }

    pub fn get(&self, sink: &str) -> Option<u64> {
        self.positions.lock().expect("cursors poisoned").get(sink).copied()
    }
}

/// What every sink's runner reads from and reports to.
#[derive(Clone)]
pub struct Feed {
    pub wal: Arc<Wal>,
    pub cursors: Arc<Cursors>,
    /// Pod metadata added to records before the sink sees them.
    pub pods: Option<Arc<PodCache>>,
}

/// A sink and how often its runner flushes it.
pub struct SinkTask {
    pub sink: Box<dyn Sink>,
    pub flush_interval: Duration,
}

/// Starts a runner for each sink. Until a sink says where it is, the WAL keeps everything it
/// holds now for it, and no source commits a checkpoint past that: every sink is registered
/// at the WAL's first position before any runner starts.
pub fn spawn_sinks(
    sinks: Vec<SinkTask>,
    feed: &Feed,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, CollectorError> {
    let first = feed.wal.first()?;
    for task in &sinks {
        feed.cursors.set(task.sink.name(), first);
    }
    Ok(sinks
        .into_iter()
        .map(|task| {
            tokio::spawn(run_sink(task.sink, task.flush_interval, feed.clone(), stop.clone()))
        })
        .collect())
}

/// Drives `sink` until `stop` turns true; flushes what it has before returning. The caller
/// has registered the sink in `cursors` (see [`Cursors::set`]) before anything reads them;
/// [`spawn_sinks`] does both.
pub async fn run_sink(
    mut sink: Box<dyn Sink>,
    flush_interval: Duration,
    feed: Feed,
    mut stop: watch::Receiver<bool>,
) {
    let Feed { wal, cursors, pods } = feed;
    let name = sink.name().to_owned();
    // Reported beside the loop: a sink stuck opening or retrying one frame shows a growing lag,
    // not the last value the loop set (a wedged index sink once showed 0 while nothing moved).
    tokio::spawn(report_lag(name.clone(), wal.clone(), cursors.clone(), stop.clone()));
    let Some(resume) = open_with_retry(sink.as_mut(), &mut stop).await else { return };
    if let Some(pods) = &pods
        && !pods.wait_listed(POD_LIST_WAIT).await
    {
        tracing::warn!(sink = %name, "pods not listed yet; records go on without pod metadata until they are");
    }
    let start = starting_position(resume, &wal, &name);
    cursors.set(&name, start);
    let mut reader = wal.reader(start);
    let mut ends = wal.subscribe();
    let mut dirty = false;
    let mut last_flush = Instant::now();
    let idle_flush = (flush_interval * 10).max(IDLE_FLUSH_MIN);
    tracing::info!(sink = %name, position = start, "sink started");
    loop {
        let stopping = *stop.borrow();
        let end = *ends.borrow_and_update();
        let mut frames = 0;
        while !stopping && reader.position() < end && frames < FRAMES_PER_ROUND {
            frames += 1;
            let at = reader.position();
            let payload = match reader.next(end) {
                Ok(Some(payload)) => payload,
                Ok(None) => break,
                Err(CollectorError::OutOfRange { position, .. }) => {
                    // The WAL dropped segments this sink had not read (its cap, drop_oldest).
                    let first = wal.first().unwrap_or(position);
                    if first > position {
                        tracing::error!(sink = %name, position, first, "the WAL dropped records this sink had not read");
                        metrics::counter!("sluice_collector_wal_lost_bytes_total", "sink" => name.clone())
                            .increment(first - position);
                        reader = wal.reader(first);
                    } else {
                        tokio::time::sleep(RETRY_START).await;
                    }
                    break;
                }
                Err(e @ CollectorError::Corrupt { .. }) => {
                    let skipped = reader.skip_segment().unwrap_or(0);
                    tracing::error!(sink = %name, error = %e, skipped, "skipping the rest of a corrupt WAL segment");
                    metrics::counter!("sluice_collector_wal_corrupt_bytes_total")
                        .increment(skipped);
                    continue;
                }
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "cannot read the WAL; retrying");
                    tokio::time::sleep(RETRY_START).await;
                    break;
                }
            };
            let frame = match wal_frame::decode_frame_at(&payload, at, pods.clone()) {
                Ok(frame) => Arc::new(frame),
                Err(reason) => {
                    tracing::error!(sink = %name, position = at, reason, "skipping an undecodable WAL frame");
                    metrics::counter!("sluice_collector_wal_undecodable_frames_total").increment(1);
                    continue;
                }
            };
            if !write_with_retry(sink.as_mut(), frame, reader.position(), &mut stop).await {
                break;
            }
            dirty = true;
        }
        let due = last_flush.elapsed() >= flush_interval;
        let idle_due = !stopping && last_flush.elapsed() >= idle_flush;
        if (dirty && (due || stopping)) || idle_due {
            if let Some(position) = flush_with_retry(sink.as_mut(), &mut stop, stopping).await {
                let oldest_needed = cursors.set(&name, position);
                match wal.release(oldest_needed) {
                    Ok(freed) if freed > 0 => tracing::debug!(freed, "released WAL segments"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot release WAL segments"),
                }
                dirty = false;
            }
            last_flush = Instant::now();
        }
        let durable = cursors.get(&name).unwrap_or(start);
        metrics::gauge!("sluice_sink_position", "sink" => name.clone()).set(durable as f64);
        metrics::gauge!("sluice_sink_lag_bytes", "sink" => name.clone())
            .set(end.saturating_sub(durable) as f64);
        if let Ok(bytes) = wal.disk_bytes() {
            metrics::gauge!("sluice_collector_wal_bytes").set(bytes as f64);
        }
        if stopping {
            tracing::info!(sink = %name, position = durable, "sink stopped");
            return;
        }
        if reader.position() >= *ends.borrow() {
            let wait = if dirty {
                flush_interval.saturating_sub(last_flush.elapsed())
            } else {
                idle_flush.saturating_sub(last_flush.elapsed())
            };
            tokio::select! {
                _ = ends.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// How often a sink's lag is reported while its loop may be stuck.
const LAG_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Sets `sluice_sink_lag_bytes{sink}` — the WAL's end minus the sink's durable position —
/// every [`LAG_REPORT_INTERVAL`] until `stop`.
async fn report_lag(
    name: String,
    wal: Arc<Wal>,
    cursors: Arc<Cursors>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Some(durable) = cursors.get(&name) {
            metrics::gauge!("sluice_sink_lag_bytes", "sink" => name.clone())
                .set(wal.end().saturating_sub(durable) as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(LAG_REPORT_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn starting_position(resume: u64, wal: &Wal, name: &str) -> u64 {
    let first = wal.first().unwrap_or(0);
    let end = wal.end();
    if resume > end {
        // The sink is ahead of the log: the WAL directory was lost or replaced. Nothing to
        // replay; new records start at the log's end.
        tracing::error!(sink = name, resume, end, "sink is ahead of the WAL; starting at its end");
        return end;
    }
    if resume < first {
        tracing::error!(
            sink = name,
            resume,
            first,
            "WAL no longer holds what this sink needs; records were lost"
        );
        metrics::counter!("sluice_collector_wal_lost_bytes_total", "sink" => name.to_owned())
            .increment(first - resume);
        return first;
    }
    resume
}

/// `sluice_sink_healthy{sink}`: 1 after the sink's last write or flush went through, 0 while
/// it fails and is being retried.
fn healthy(sink: &str, ok: bool) {
    metrics::gauge!("sluice_sink_healthy", "sink" => sink.to_owned()).set(if ok {
        1.0
    } else {
        0.0
    });
}

/// The runner's side of a failed sink call: counted, marked unhealthy, logged, then a capped
/// exponential pause.
struct Backoff {
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { delay: RETRY_START }
    }

    /// Records the failure and waits; false if the collector stops first (or `last` says not
    /// to wait at all).
    async fn failed(
        &mut self,
        sink: &str,
        what: &str,
        error: &SinkError,
        stop: &mut watch::Receiver<bool>,
        last: bool,
    ) -> bool {
        metrics::counter!("sluice_sink_errors_total", "sink" => sink.to_owned()).increment(1);
        healthy(sink, false);
        tracing::warn!(sink, %error, retry_in_ms = self.delay.as_millis() as u64, "{what}");
        if last {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
        self.delay = (self.delay * 2).min(RETRY_MAX);
        true
    }
}

/// Retries until the sink opens; `None` if the collector stops first.
async fn open_with_retry(sink: &mut dyn Sink, stop: &mut watch::Receiver<bool>) -> Option<u64> {
    let mut backoff = Backoff::new();
    loop {
        match sink.open().await {
            Ok(position) => {
                healthy(sink.name(), true);
                return Some(position);
            }
            Err(e)
                if backoff.failed(sink.name(), "cannot open the sink", &e, stop, false).await => {}
            Err(_) => return None,
        }
    }
}

/// Retries until the sink takes the records; false if the collector is stopping.
async fn write_with_retry(
    sink: &mut dyn Sink,
    frame: Arc<Frame>,
    end: u64,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Backoff::new();
    loop {
        match sink.write(frame.clone(), end).await {
            Ok(()) => {
                healthy(sink.name(), true);
                return true;
            }
            Err(e) if backoff.failed(sink.name(), "sink write failed", &e, stop, false).await => {}
            Err(_) => return false,
        }
    }
}

/// Retries a flush; on the way out (`last`) it tries once.
async fn flush_with_retry(
    sink: &mut dyn Sink,
    stop: &mut watch::Receiver<bool>,
    last: bool,
) -> Option<u64> {
    let mut backoff = Backoff::new();
    loop {
        match sink.flush().await {
            Ok(position) => {
                healthy(sink.name(), true);
                return Some(position);
            }
            Err(e) if backoff.failed(sink.name(), "sink flush failed", &e, stop, last).await => {}
            Err(_) => return None,
        }
    }
}
