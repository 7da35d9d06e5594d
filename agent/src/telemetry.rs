//! The process's own telemetry: every `metrics::counter!`, `gauge!` and `histogram!` of the
//! agent and the collector, rendered as Prometheus text for `/metrics` and, given an
//! endpoint, pushed as OTLP/HTTP through the OpenTelemetry SDK.
//!
//! The code records through the `metrics` facade; [`OtelRecorder`] is the bridge from it to
//! OpenTelemetry instruments, beside the Prometheus recorder under one fan-out. It is written
//! here because the published bridges are built on older `opentelemetry` releases than the
//! workspace's, and a second copy of the SDK would be larger than the bridge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

/// Where and how often to push.
#[derive(Debug, Clone)]
pub struct OtlpExport {
    /// An OTLP/HTTP metrics URL, such as `http://otel-collector:4318/v1/metrics`.
    pub endpoint: String,
    pub interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// The installed recorder: `/metrics` renders from it; dropping it pushes a last time.
pub struct Telemetry {
    prometheus: PrometheusHandle,
    provider: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Installs the process-wide recorder for `service` (`sluice-agent`, `sluice-collector`),
    /// pushing to `otlp` as well when given.
    pub fn install(service: &str, otlp: Option<&OtlpExport>) -> Result<Self, TelemetryError> {
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let Some(otlp) = otlp else {
            metrics::set_global_recorder(prometheus)
                .map_err(|e| TelemetryError::Install(e.to_string()))?;
            return Ok(Self { prometheus: handle, provider: None });
        };
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&otlp.endpoint)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: otlp.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let reader = PeriodicReader::builder(exporter).with_interval(otlp.interval).build();
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.instance.id", instance_id()))
            .build();
        let provider =
            SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        let bridge = OtelRecorder::new(provider.meter("sluice"));
        let fanout = metrics_util::layers::FanoutBuilder::default()
            .add_recorder(prometheus)
            .add_recorder(bridge)
            .build();
        metrics::set_global_recorder(fanout).map_err(|e| TelemetryError::Install(e.to_string()))?;
        tracing::info!(endpoint = %otlp.endpoint, interval = ?otlp.interval, "pushing own metrics over OTLP");
        Ok(Self { prometheus: handle, provider: Some(provider) })
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        self.prometheus.render()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "the last OTLP push of own metrics failed");
        }
    }
}

/// The pod or host name: what tells two agents' series apart.
fn instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `metrics` handles as OpenTelemetry instruments: one instrument per name, one handle per
/// name and labels (a gauge's value and a counter's total live in the handle, and the
/// macros register again at every call).
struct OtelRecorder {
    meter: Meter,
    descriptions: Mutex<HashMap<String, String>>,
    counters: Mutex<HashMap<String, opentelemetry::metrics::Counter<u64>>>,
    gauges: Mutex<HashMap<String, opentelemetry::metrics::Gauge<f64>>>,
    histograms: Mutex<HashMap<String, opentelemetry::metrics::Histogram<f64>>>,
    counter_handles: Mutex<HashMap<Key, Arc<OtelCounter>>>,
    gauge_handles: Mutex<HashMap<Key, Arc<OtelGauge>>>,
    histogram_handles: Mutex<HashMap<Key, Arc<OtelHistogram>>>,
}

impl OtelRecorder {
    fn new(meter: Meter) -> Self {
        Self {
            meter,
            descriptions: Mutex::default(),
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
            counter_handles: Mutex::default(),
            gauge_handles: Mutex::default(),
            histogram_handles: Mutex::default(),
        }
    }

    fn describe(&self, key: KeyName, description: SharedString) {
        let mut descriptions = self.descriptions.lock().expect("descriptions poisoned");
        descriptions.insert(key.as_str().to_owned(), description.into_owned());
    }

    fn description(&self, name: &str) -> String {
        let descriptions = self.descriptions.lock().expect("descriptions poisoned");
        descriptions.get(name).cloned().unwrap_or_default()
    }

    /// The instrument called `name` in `map`, made by `make` the first time.
    fn instrument<T: Clone>(
        &self,
        map: &Mutex<HashMap<String, T>>,
        name: &str,
        make: impl FnOnce(&Meter, String, String) -> T,
    ) -> T {
        let mut map = map.lock().expect("instruments poisoned");
        if let Some(instrument) = map.get(name) {
            return instrument.clone();
        }
        let instrument = make(&self.meter, name.to_owned(), self.description(name));
        map.insert(name.to_owned(), instrument.clone());
        instrument
    }
}

/// The handle for `key` in `handles`, made by `make` the first time.
fn handle<T>(handles: &Mutex<HashMap<Key, Arc<T>>>, key: &Key, make: impl FnOnce() -> T) -> Arc<T> {
    let mut handles = handles.lock().expect("handles poisoned");
    handles.entry(key.clone()).or_insert_with(|| Arc::new(make())).clone()
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels().map(|l| KeyValue::new(l.key().to_owned(), l.value().to_owned())).collect()
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(handle(&self.counter_handles, key, || OtelCounter {
            counter: self.instrument(&self.counters, key.name(), |m, name, help| {
                m.u64_counter(name).with_description(help).build()
            }),
            attributes: attributes(key),
            total: AtomicU64::new(0),
        }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(handle(&self.gauge_handles, key, || OtelGauge {
            gauge: self.instrument(&self.gauges, key.name(), |m, name, help| {
                m.f64_gauge(name).with_description(help).build()
            }),
            attributes: attributes(key),
            bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(handle(&self.histogram_handles, key, || OtelHistogram {
            histogram: self.instrument(&self.histograms, key.name(), |m, name, help| {
                m.f64_histogram(name).with_description(help).build()
            }),
            attributes: attributes(key),
        }))
    }
}

/// A counter handle. `metrics` may set a counter to an absolute value; OpenTelemetry counters
/// only add, so the handle keeps the total and adds the difference.
struct OtelCounter {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    total: AtomicU64,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let before = self.total.fetch_max(value, Ordering::Relaxed);
        if value > before {
            self.counter.add(value - before, &self.attributes);
        }
    }
}

/// A gauge handle: `metrics` gauges also move by steps, OpenTelemetry gauges only record a
/// value, so the handle keeps the value.
struct OtelGauge {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    bits: AtomicU64,
}

impl OtelGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut current = self.bits.load(Ordering::Relaxed);
        loop {
            let next = f(f64::from_bits(current));
            match self.bits.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.gauge.record(next, &self.attributes),
                Err(actual) => current = actual,
            }
        }
    }
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct OtelHistogram {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}
