//! The log metrics sink: counts records as they pass through the WAL, with its own cursor,
//! and saves the counts with that cursor so a crash replays exactly what the counts lack.
//! `/metrics` shows the counts as last saved, so a restart never shows a counter going back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sluice_collector::sink::{Sink, SinkError};
use sluice_collector::wal::Wal;
use sluice_collector::wal_frame::Frame;

use super::config::LogMetricsFile;
use super::counters::{Counters, SavedMetric};
use super::seen::Seen;
use crate::DashError;

/// The format of `log_metrics.json`; a change comes with a fixture of the old one.
const STATE_VERSION: u32 = 1;
const STATE_FILE: &str = "log_metrics.json";

/// What `/metrics` shows of the log metrics: the counts as last saved.
#[derive(Clone)]
pub struct LogMetrics {
    published: Arc<Mutex<Arc<String>>>,
}

impl LogMetrics {
    /// Loads the counts saved in `dir` (on the first start none: counting begins at the
    /// WAL's end, saved at once so a crash before the first flush replays from there).
    pub fn start(
        file: &LogMetricsFile,
        dir: &Path,
        wal: &Wal,
    ) -> Result<(Self, LogMetricSink), DashError> {
        let path = dir.join(STATE_FILE);
        let saved = match load(&path)? {
            Some(saved) => saved,
            None => {
                let fresh = SavedState { cursor: wal.end(), ..SavedState::default() };
                save(&path, &fresh)?;
                fresh
            }
        };
        let live = Live {
            counters: Counters::new(&file.metrics, &saved.metrics),
            seen: saved.seen,
            duplicates: saved.duplicates,
            cursor: saved.cursor,
        };
        let published = Arc::new(Mutex::new(Arc::new(live.counters.render(live.duplicates))));
        let sink = LogMetricSink { live, path, published: published.clone() };
        Ok((Self { published }, sink))
    }

    /// The Prometheus text of the counters, to append to `/metrics`.
    pub fn render(&self) -> Arc<String> {
        self.published.lock().expect("poisoned").clone()
    }
}

/// The sink the runner drives.
pub struct LogMetricSink {
    live: Live,
    path: PathBuf,
    published: Arc<Mutex<Arc<String>>>,
}

struct Live {
    counters: Counters,
    seen: Seen,
    duplicates: u64,
    cursor: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    cursor: u64,
    metrics: Vec<SavedMetric>,
    seen: Seen,
    duplicates: u64,
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u32,
    state: T,
}

impl Live {
    /// Counts the records not counted before. Records in a row with one source and rising
    /// offsets are one run (see [`Seen`]); sourceless records cannot be resent and count.
    fn observe(&mut self, records: &[sluice_proto::LogRecord], now_ms: i64) {
        let mut rest = records;
        while let Some(first) = rest.first() {
            let len = 1 + rest
                .windows(2)
                .take_while(|w| w[1].source == first.source && w[1].offset > w[0].offset)
                .count();
            let (run, after) = rest.split_at(len);
            rest = after;
            for r in run {
                if first.source != 0 && self.seen.contains(r.source, r.offset) {
                    self.duplicates += 1;
                } else {
                    self.counters.observe(r);
                }
            }
            if first.source != 0 {
                let last = run.last().expect("a run has a record").offset;
                self.seen.add_run(first.source, first.offset, last, now_ms);
            }
        }
    }
}

#[async_trait]
impl Sink for LogMetricSink {
    fn name(&self) -> &str {
        "log-metrics"
    }

    async fn open(&mut self) -> Result<u64, SinkError> {
        Ok(self.live.cursor)
    }

    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError> {
        self.live.observe(frame.records(), chrono_now_ms());
        self.live.cursor = end;
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        self.live.seen.prune(chrono_now_ms());
        let state = SavedState {
            cursor: self.live.cursor,
            metrics: self.live.counters.saved(),
            seen: self.live.seen.clone(),
            duplicates: self.live.duplicates,
        };
        let text = self.live.counters.render(self.live.duplicates);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || save(&path, &state))
            .await
            .map_err(|e| SinkError(e.to_string()))?
            .map_err(|e| SinkError(e.to_string()))?;
        *self.published.lock().expect("poisoned") = Arc::new(text);
        Ok(self.live.cursor)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn save(path: &Path, state: &SavedState) -> Result<(), DashError> {
    let err = |message: String| DashError::State { path: path.to_owned(), message };
    let bytes = serde_json::to_vec(&Versioned { version: STATE_VERSION, state })
        .map_err(|e| err(e.to_string()))?;
    sluice_collector::durable::replace(path, &bytes).map_err(|e| err(e.to_string()))
}

fn load(path: &Path) -> Result<Option<SavedState>, DashError> {
    let err = |message: String| DashError::State { path: path.to_owned(), message };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(format!("cannot read: {e}"))),
    };
    let head: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    match head.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(STATE_VERSION) => {}
        v => {
            return Err(err(format!(
                "state format {v:?} is not {STATE_VERSION}, the one this release reads"
            )));
        }
    }
    let state: Versioned<SavedState> =
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    Ok(Some(state.state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::LogRecord;

    fn file() -> LogMetricsFile {
        LogMetricsFile::parse(
            "metrics:\n  - name: pay_failures_total\n    query: '支付失败'\n    labels: [namespace]\n",
        )
        .unwrap()
    }

    fn rec(source: u64, offset: u64, message: &str) -> LogRecord {
        LogRecord {
            source,
            offset,
            namespace: "pay".into(),
            message: message.into(),
            ..Default::default()
        }
    }

    fn frame(records: Vec<LogRecord>) -> Arc<Frame> {
        Arc::new(Frame::new(sluice_proto::LogBatch { records, ..Default::default() }, 0, None))
    }

    fn value(m: &LogMetrics) -> String {
        m.render()
            .lines()
            .find(|l| l.starts_with("pay_failures_total{"))
            .unwrap_or("none")
            .to_owned()
    }

    #[tokio::test]
    async fn a_resent_batch_counts_once_and_a_replay_after_a_crash_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("wal"), 1 << 20).unwrap();
        let (metrics, mut sink) = LogMetrics::start(&file(), dir.path(), &wal).unwrap();
        assert_eq!(sink.open().await.unwrap(), 0);
        let batch =
            || frame(vec![rec(7, 0, "支付失败 a"), rec(7, 10, "ok"), rec(7, 20, "支付失败 b")]);
        sink.write(batch(), 100).await.unwrap();
        // The agent resends it (its ack was lost), then the next batch behind it.
        sink.write(batch(), 200).await.unwrap();
        sink.write(frame(vec![rec(7, 30, "支付失败 c")]), 300).await.unwrap();
        assert_eq!(value(&metrics), "none", "nothing shown before it is saved");
        assert_eq!(sink.flush().await.unwrap(), 300);
        assert_eq!(value(&metrics), "pay_failures_total{namespace=\"pay\"} 3");
        assert!(metrics.render().contains("sluice_log_metrics_duplicates_total 3\n"));
        // Counted but not saved when it crashes: the replay from the saved cursor counts it.
        sink.write(frame(vec![rec(7, 40, "支付失败 d")]), 400).await.unwrap();
        drop(sink);
        let (metrics, mut sink) = LogMetrics::start(&file(), dir.path(), &wal).unwrap();
        assert_eq!(value(&metrics), "pay_failures_total{namespace=\"pay\"} 3");
        assert_eq!(sink.open().await.unwrap(), 300);
        sink.write(frame(vec![rec(7, 40, "支付失败 d")]), 400).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(value(&metrics), "pay_failures_total{namespace=\"pay\"} 4");
    }

    #[test]
    fn sourceless_records_always_count_and_runs_break_on_falling_offsets() {
        let mut live = Live {
            counters: Counters::new(&file().metrics, &[]),
            seen: Seen::default(),
            duplicates: 0,
            cursor: 0,
        };
        live.observe(&[rec(0, 0, "支付失败"), rec(0, 0, "支付失败")], 0);
        // Offsets 50 then 5: two runs, so the gap 6..49 stays open for a late stretch.
        live.observe(&[rec(9, 50, "支付失败"), rec(9, 5, "支付失败")], 0);
        live.observe(&[rec(9, 20, "支付失败")], 0);
        assert_eq!(live.duplicates, 0);
        assert!(live.counters.render(0).contains("{namespace=\"pay\"} 5\n"));
    }

    #[test]
    fn a_state_of_another_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, br#"{"version": 99, "state": {}}"#).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("log_metrics.json") && e.contains("Some(99) is not 1"), "{e}");
    }
}
