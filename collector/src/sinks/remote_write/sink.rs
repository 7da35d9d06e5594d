//! The remote-write sink: every sample once, also across a crash of the collector.
//!
//! Prometheus keeps a sample whose series already ends at that time with that value as a
//! harmless duplicate, but refuses a whole request (`400`, out of order) holding a sample
//! older than its series' last. So a request carries at most one sample per series, requests
//! go one at a time in WAL order, and after each accepted one the sink saves where it is: the
//! WAL position before which everything is delivered, and how many samples of the frames after
//! it are. A crash can then only resend the last request, every sample of which is its
//! series' newest — a duplicate Prometheus ignores. A replay converts the same frames to the
//! same samples (the conversion is deterministic) and drops the ones already delivered.
//!
//! A `400` or `413` is split in halves until the sample Prometheus refuses stands alone; it is
//! counted and logged, and the others go through. Anything else (`429`, `5xx`, `401`, a
//! server away) is retried as it is: refusing data for a wrong token would lose it.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::config::RemoteWriteConfig;
use super::convert::{self, Sample};
use super::request;
use crate::sink::{Sink, SinkError};
use crate::sinks::http::HttpClient;
use crate::wal_frame::Frame;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The cursor, saved after every accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    version: u32,
    /// Everything before this WAL position is delivered.
    position: u64,
    /// Samples of the frames from `position` on that are delivered too.
    skip: usize,
}

const CURSOR_VERSION: u32 = 1;

/// A frame taken and not yet wholly delivered.
struct Taken {
    end: u64,
    samples: Vec<Sample>,
    /// How many of `samples` are delivered.
    sent: usize,
}

pub struct RemoteWriteSink {
    config: RemoteWriteConfig,
    client: HttpClient,
    cursor_file: PathBuf,
    frames: VecDeque<Taken>,
    /// Where the sink is, and where the cursor file says it is.
    at: Cursor,
    saved: Cursor,
    /// Samples a replay after `open` gives again that were delivered before.
    replay_skip: usize,
    /// The end of the last frame taken: a write the runner offers again is taken once.
    taken: u64,
    /// Samples taken and not delivered.
    buffered: usize,
    last_error: Option<String>,
}

impl RemoteWriteSink {
    pub fn new(config: RemoteWriteConfig) -> Result<Self, SinkError> {
        let authorization = config.bearer_token.as_ref().map(|t| format!("Bearer {t}"));
        let client =
            HttpClient::new(&config.url, config.ca_file.as_deref(), authorization, TIMEOUT)
                .map_err(SinkError)?;
        let start = Cursor { version: CURSOR_VERSION, position: 0, skip: 0 };
        Ok(Self {
            cursor_file: config.state_dir.join("cursor.json"),
            config,
            client,
            frames: VecDeque::new(),
            at: start,
            saved: start,
            replay_skip: 0,
            taken: 0,
            buffered: 0,
            last_error: None,
        })
    }

    fn read_cursor(&self) -> Result<Option<Cursor>, SinkError> {
        let bytes = match std::fs::read(&self.cursor_file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SinkError(format!("cannot read {}: {e}", self.cursor_file.display())));
            }
        };
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|e| {
            SinkError(format!("unreadable cursor {}: {e}", self.cursor_file.display()))
        })?;
        if cursor.version != CURSOR_VERSION {
            return Err(SinkError(format!(
                "{}: cursor version {} is not one this collector reads ({CURSOR_VERSION})",
                self.cursor_file.display(),
                cursor.version
            )));
        }
        Ok(Some(cursor))
    }

    fn save(&mut self) -> Result<(), SinkError> {
        if self.at == self.saved {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.at).expect("a cursor serializes");
        crate::durable::replace(&self.cursor_file, &bytes).map_err(|e| {
            SinkError(format!("cannot save the cursor {}: {e}", self.cursor_file.display()))
        })?;
        self.saved = self.at;
        Ok(())
    }

    /// Drops the frames wholly delivered from the front, moving the cursor past them.
    fn settle(&mut self) {
        while let Some(front) = self.frames.front() {
            if front.sent < front.samples.len() {
                break;
            }
            self.at.position = front.end;
            self.frames.pop_front();
        }
        self.at.skip = self.frames.front().map_or(self.replay_skip, |f| f.sent);
    }

    /// Sends the next request (at most `max_samples`, one per series) and saves the cursor.
    async fn send_one(&mut self) -> Result<(), SinkError> {
        let mut series = HashSet::new();
        let chunk: Vec<&Sample> = self
            .frames
            .iter()
            .flat_map(|f| &f.samples[f.sent..])
            .take_while(|s| series.insert(&s.labels))
            .take(self.config.max_samples)
            .collect();
        let n = chunk.len();
        let delivered = deliver(&self.client, &chunk).await;
        drop(chunk);
        if let Err(e) = delivered {
            self.last_error = Some(e.0.clone());
            return Err(e);
        }
        self.last_error = None;
        let mut left = n;
        for f in self.frames.iter_mut() {
            let take = left.min(f.samples.len() - f.sent);
            f.sent += take;
            left -= take;
            if left == 0 {
                break;
            }
        }
        self.buffered -= n;
        metrics::counter!("sluice_sink_remote_write_samples_total").increment(n as u64);
        self.settle();
        self.save()
    }
}

/// Posts `chunk`, splitting it around the samples the receiver refuses.
async fn deliver(client: &HttpClient, chunk: &[&Sample]) -> Result<(), SinkError> {
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("User-Agent", concat!("sluice/", env!("CARGO_PKG_VERSION"))),
    ];
    let mut parts = vec![(0, chunk.len())];
    while let Some((a, b)) = parts.pop() {
        let body = request::body(&chunk[a..b]);
        let answer = client.send(Method::POST, "", &headers, body).await.map_err(SinkError)?;
        let reason = || String::from_utf8_lossy(&answer.body).trim().to_owned();
        match answer.status {
            200..=299 => {}
            400 | 413 if b - a > 1 => {
                let mid = a + (b - a) / 2;
                parts.push((mid, b));
                parts.push((a, mid));
            }
            400 | 413 => {
                metrics::counter!("sluice_sink_remote_write_rejected_samples_total").increment(1);
                let series = series_name(chunk[a]);
                tracing::warn!(url = %client.url, status = answer.status, series, reason = %reason(), "the remote-write receiver refused a sample; skipping it");
            }
            status => {
                return Err(SinkError(format!(
                    "remote write to {} answered {status}: {}",
                    client.url,
                    reason()
                )));
            }
        }
    }
    Ok(())
}

/// A sample's series as PromQL writes it, for logs.
fn series_name(s: &Sample) -> String {
    let name = s.labels.iter().find(|(k, _)| k == "__name__").map_or("", |(_, v)| v.as_str());
    let labels: Vec<_> = s
        .labels
        .iter()
        .filter(|(k, _)| k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The samples of a metrics frame; none for a log frame, or for one that does not decode
/// (checked on arrival, so only damage the WAL's CRC missed: logged, counted, skipped).
fn frame_samples(frame: &Frame) -> Vec<Sample> {
    let mut samples = Vec::new();
    let Some(metrics) = frame.metrics() else { return samples };
    match ExportMetricsServiceRequest::decode(&metrics.request[..]) {
        Ok(request) => {
            let unsupported = convert::samples(&request, &mut samples);
            if unsupported.total() > 0 {
                let counter = |reason, n: usize| {
                    metrics::counter!("sluice_sink_remote_write_unsupported_points_total", "reason" => reason)
                        .increment(n as u64);
                };
                counter("delta", unsupported.delta);
                counter("exponential_histogram", unsupported.exponential);
                counter("no_time", unsupported.untimed);
                tracing::warn!(
                    delta = unsupported.delta,
                    exponential_histogram = unsupported.exponential,
                    no_time = unsupported.untimed,
                    "OTLP points Prometheus cannot store were left out of remote write"
                );
            }
        }
        Err(e) => {
            metrics::counter!("sluice_collector_wal_undecodable_frames_total").increment(1);
            tracing::error!(position = frame.position(), error = %e, "skipping an undecodable metrics frame");
        }
    }
    samples
}

#[async_trait]
impl Sink for RemoteWriteSink {
    fn name(&self) -> &str {
        "remote_write"
    }

    async fn open(&mut self) -> Result<u64, SinkError> {
        let cursor = self.read_cursor()?;
        self.at = cursor.unwrap_or(self.at);
        self.saved = self.at;
        self.replay_skip = self.at.skip;
        self.taken = self.at.position;
        self.frames.clear();
        self.buffered = 0;
        Ok(self.at.position)
    }

    async fn write(&mut self, frame: std::sync::Arc<Frame>, end: u64) -> Result<(), SinkError> {
        if end > self.taken {
            self.taken = end;
            let samples = frame_samples(&frame);
            let sent = self.replay_skip.min(samples.len());
            self.replay_skip -= sent;
            self.buffered += samples.len() - sent;
            self.frames.push_back(Taken { end, samples, sent });
            self.settle();
        }
        while self.buffered >= self.config.max_samples {
            self.send_one().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        while self.buffered > 0 {
            self.send_one().await?;
        }
        self.save()?;
        Ok(self.at.position)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        match &self.last_error {
            Some(e) => Err(SinkError(e.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a local receiver that records each request with the cursor file as it stood
    //! when the request came: restarting from any of those cursors must resend exactly the
    //! requests from there on. Prometheus itself is in `tests/otlp_metrics.rs`.

    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };

    use super::super::request::WriteRequest;
    use super::*;
    use crate::wal_frame::Metrics;

    /// A request as received: its samples as `name@ms=value`, and the cursor file then.
    type Seen = (Vec<String>, Option<Vec<u8>>);

    #[derive(Clone)]
    struct Receiver {
        cursor_file: PathBuf,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    /// Refuses (400) a request holding a negative value, as Prometheus refuses a whole
    /// request for one bad sample.
    async fn receive(State(r): State<Receiver>, body: Bytes) -> StatusCode {
        let bytes = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request = WriteRequest::decode(bytes.as_slice()).unwrap();
        let samples: Vec<(String, f64)> = request
            .timeseries
            .iter()
            .map(|t| {
                let name = &t.labels.iter().find(|l| l.name == "__name__").unwrap().value;
                let s = &t.samples[0];
                (format!("{name}@{}={}", s.timestamp, s.value), s.value)
            })
            .collect();
        if samples.iter().any(|(_, v)| *v < 0.0) {
            return StatusCode::BAD_REQUEST;
        }
        let cursor = std::fs::read(&r.cursor_file).ok();
        r.seen.lock().unwrap().push((samples.into_iter().map(|(s, _)| s).collect(), cursor));
        StatusCode::OK
    }

    async fn start_receiver(state_dir: &std::path::Path) -> (String, Receiver) {
        let receiver = Receiver {
            cursor_file: state_dir.join("cursor.json"),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, receiver)
    }

    /// A frame of gauges: `(name, ms, value)` each.
    fn frame(points: &[(&str, u64, f64)], position: u64) -> Arc<Frame> {
        let metrics = points
            .iter()
            .map(|(name, ms, value)| Metric {
                name: (*name).into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: ms * 1_000_000,
                        value: Some(Value::AsDouble(*value)),
                        ..NumberDataPoint::default()
                    }],
                })),
                ..Metric::default()
            })
            .collect();
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics, ..ScopeMetrics::default() }],
                ..ResourceMetrics::default()
            }],
        };
        let metrics = Metrics { request: request.encode_to_vec().into(), points: points.len() };
        Arc::new(Frame::of_metrics(metrics, position))
    }

    /// Three frames (ends 100, 200, 300): five points of `a` and one of `b`, a log frame,
    /// then `a` and `c` again.
    fn frames() -> Vec<(Arc<Frame>, u64)> {
        let first: Vec<_> = (1..=5).map(|i| ("a", i, i as f64)).chain([("b", 1, 9.0)]).collect();
        let logs = Arc::new(Frame::of_records(Vec::new()));
        vec![
            (frame(&first, 0), 100),
            (logs, 200),
            (frame(&[("a", 6, 6.0), ("c", 6, 1.0)], 200), 300),
        ]
    }

    /// Opens a sink on `state_dir`, gives it the frames from where it says it is, flushes.
    async fn run(url: &str, state_dir: &std::path::Path) -> u64 {
        let mut config = RemoteWriteConfig::new(url, state_dir.to_owned());
        config.max_samples = 3;
        let mut sink = RemoteWriteSink::new(config).unwrap();
        let start = sink.open().await.unwrap();
        for (frame, end) in frames() {
            if end > start {
                sink.write(frame, end).await.unwrap();
            }
        }
        sink.flush().await.unwrap()
    }

    #[tokio::test]
    async fn a_restart_from_any_saved_cursor_resends_exactly_what_followed_it() {
        let dir = tempfile::tempdir().unwrap();
        let (url, receiver) = start_receiver(dir.path()).await;
        assert_eq!(run(&url, dir.path()).await, 300);
        let first: Vec<Seen> = receiver.seen.lock().unwrap().drain(..).collect();
        let requests: Vec<Vec<String>> = first.iter().map(|(s, _)| s.clone()).collect();
        // One sample per series a request, at most three, in WAL order.
        assert_eq!(
            requests,
            [
                vec!["a@1=1"],
                vec!["a@2=2"],
                vec!["a@3=3"],
                vec!["a@4=4"],
                vec!["a@5=5", "b@1=9"],
                vec!["a@6=6", "c@6=1"],
            ]
        );
        // A crash after request `i` was taken and before its cursor was saved leaves the
        // cursor that stood when it came: the restart sends request `i` again (its samples
        // each their series' newest, which Prometheus ignores) and then the rest.
        for (i, (_, cursor)) in first.iter().enumerate() {
            match cursor {
                Some(bytes) => std::fs::write(dir.path().join("cursor.json"), bytes).unwrap(),
                None => std::fs::remove_file(dir.path().join("cursor.json")).unwrap(),
            }
            assert_eq!(run(&url, dir.path()).await, 300);
            let again: Vec<Vec<String>> =
                receiver.seen.lock().unwrap().drain(..).map(|(s, _)| s).collect();
            assert_eq!(again.concat(), requests[i..].concat(), "restart before request {i}");
        }
        // Nothing to resend once everything is saved.
        assert_eq!(run(&url, dir.path()).await, 300);
        assert!(receiver.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_sample_is_left_out_and_the_others_go_through() {
        let dir = tempfile::tempdir().unwrap();
        let (url, receiver) = start_receiver(dir.path()).await;
        let mut sink =
            RemoteWriteSink::new(RemoteWriteConfig::new(&url, dir.path().into())).unwrap();
        sink.open().await.unwrap();
        let points = [("a", 1, 1.0), ("b", 1, -1.0), ("c", 1, 3.0), ("d", 1, 4.0), ("e", 1, 5.0)];
        sink.write(frame(&points, 0), 50).await.unwrap();
        assert_eq!(sink.flush().await.unwrap(), 50);
        let mut got: Vec<String> =
            receiver.seen.lock().unwrap().iter().flat_map(|(s, _)| s.clone()).collect();
        got.sort();
        assert_eq!(got, ["a@1=1", "c@1=3", "d@1=4", "e@1=5"]);
    }

    #[tokio::test]
    async fn a_receiver_away_is_retried_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}/api/v1/write", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let mut sink =
            RemoteWriteSink::new(RemoteWriteConfig::new(&url, dir.path().into())).unwrap();
        assert_eq!(sink.open().await.unwrap(), 0);
        sink.write(frame(&[("a", 1, 1.0)], 0), 50).await.unwrap();
        assert!(sink.flush().await.is_err());
        assert!(sink.healthcheck().await.is_err());
        let reopened = RemoteWriteSink::new(RemoteWriteConfig::new(&url, dir.path().into()))
            .unwrap()
            .open()
            .await;
        assert_eq!(reopened.unwrap(), 0, "nothing counted as delivered");
    }
}
