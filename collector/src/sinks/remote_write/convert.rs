//! OTLP metrics as Prometheus samples, named as Prometheus's own OTLP receiver names them
//! (`UnderscoreEscapingWithSuffixes`): `http.server.duration` in seconds becomes
//! `http_server_duration_seconds`, a monotonic sum gains `_total`, a histogram becomes its
//! `_bucket{le}`, `_sum` and `_count` series, a summary its `{quantile}`, `_sum` and `_count`.
//! `service.name` (under `service.namespace`) becomes `job`, `service.instance.id`
//! `instance`, and the Kubernetes resource attributes are promoted to labels
//! (`k8s_namespace_name`, …).
//!
//! Prometheus stores cumulative series only: delta sums and histograms, and exponential
//! histograms (native histograms need remote-write 2.0), are counted as unsupported rather
//! than turned into numbers that would mislead. The output is deterministic — the same request
//! gives the same samples in the same order — which is what lets the sink resume inside a
//! frame after a restart.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, DataPointFlags, Metric};

/// Prometheus's staleness marker: a point the client flagged as having no recorded value.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Resource attributes that become labels besides `job` and `instance`.
const PROMOTED: [&str; 7] = [
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "k8s.node.name",
    "k8s.deployment.name",
    "host.name",
];

/// One sample of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series: its labels sorted by name, `__name__` among them.
    pub labels: Vec<(String, String)>,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// What a request held that Prometheus cannot store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported {
    /// Points of delta sums and histograms.
    pub delta: usize,
    /// Points of exponential histograms.
    pub exponential: usize,
    /// Points without a time.
    pub untimed: usize,
}

impl Unsupported {
    pub fn total(&self) -> usize {
        self.delta + self.exponential + self.untimed
    }
}

/// Appends the samples of `request` to `out`.
pub fn samples(request: &ExportMetricsServiceRequest, out: &mut Vec<Sample>) -> Unsupported {
    let mut unsupported = Unsupported::default();
    for resource in &request.resource_metrics {
        let attributes = resource.resource.as_ref().map(|r| &r.attributes[..]).unwrap_or(&[]);
        let resource_labels = resource_labels(attributes);
        for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let mut series = Series { resource: &resource_labels, out, untimed: 0 };
            match &metric.data {
                Some(Data::Gauge(g)) => {
                    let name = metric_name(metric, Kind::Gauge);
                    for p in &g.data_points {
                        series.number(&name, &p.attributes, p.time_unix_nano, p.flags, &p.value);
                    }
                }
                Some(Data::Sum(s)) if s.aggregation_temporality == DELTA => {
                    unsupported.delta += s.data_points.len();
                }
                Some(Data::Sum(s)) => {
                    let kind = if s.is_monotonic { Kind::Counter } else { Kind::Gauge };
                    let name = metric_name(metric, kind);
                    for p in &s.data_points {
                        series.number(&name, &p.attributes, p.time_unix_nano, p.flags, &p.value);
                    }
                }
                Some(Data::Histogram(h)) if h.aggregation_temporality == DELTA => {
                    unsupported.delta += h.data_points.len();
                }
                Some(Data::Histogram(h)) => {
                    let name = metric_name(metric, Kind::Histogram);
                    for p in &h.data_points {
                        let Some(base) = series.point(&p.attributes, p.time_unix_nano) else {
                            continue;
                        };
                        let stale = no_value(p.flags);
                        let mut cumulative = 0u64;
                        for (i, count) in p.bucket_counts.iter().enumerate() {
                            let Some(bound) = p.explicit_bounds.get(i) else { break };
                            cumulative += count;
                            let le = [("le", number(*bound))];
                            series.push(
                                &base,
                                &format!("{name}_bucket"),
                                &le,
                                cumulative as f64,
                                stale,
                            );
                        }
                        let inf = [("le", "+Inf".to_owned())];
                        series.push(&base, &format!("{name}_bucket"), &inf, p.count as f64, stale);
                        if let Some(sum) = p.sum {
                            series.push(&base, &format!("{name}_sum"), &[], sum, stale);
                        }
                        series.push(&base, &format!("{name}_count"), &[], p.count as f64, stale);
                    }
                }
                Some(Data::ExponentialHistogram(h)) => {
                    unsupported.exponential += h.data_points.len();
                }
                Some(Data::Summary(s)) => {
                    let name = metric_name(metric, Kind::Summary);
                    for p in &s.data_points {
                        let Some(base) = series.point(&p.attributes, p.time_unix_nano) else {
                            continue;
                        };
                        let stale = no_value(p.flags);
                        for q in &p.quantile_values {
                            let quantile = [("quantile", number(q.quantile))];
                            series.push(&base, &name, &quantile, q.value, stale);
                        }
                        series.push(&base, &format!("{name}_sum"), &[], p.sum, stale);
                        series.push(&base, &format!("{name}_count"), &[], p.count as f64, stale);
                    }
                }
                None => {}
            }
            unsupported.untimed += series.untimed;
        }
    }
    unsupported
}

const DELTA: i32 = AggregationTemporality::Delta as i32;

fn no_value(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

/// A number as Prometheus writes `le` and `quantile` values (Go's `FormatFloat(f, 'f', -1)`),
/// which Rust's `Display` of `f64` matches; infinities as `+Inf`/`-Inf`.
fn number(f: f64) -> String {
    match f {
        f64::INFINITY => "+Inf".to_owned(),
        f64::NEG_INFINITY => "-Inf".to_owned(),
        f => f.to_string(),
    }
}

/// Where one metric's samples go, with the labels of its resource.
struct Series<'a> {
    resource: &'a BTreeMap<String, String>,
    out: &'a mut Vec<Sample>,
    untimed: usize,
}

/// A point's labels (its resource's and its own) and time.
struct Point {
    labels: BTreeMap<String, String>,
    timestamp_ms: i64,
}

impl Series<'_> {
    fn point(&mut self, attributes: &[KeyValue], time_unix_nano: u64) -> Option<Point> {
        if time_unix_nano == 0 {
            self.untimed += 1;
            return None;
        }
        let mut labels = self.resource.clone();
        for kv in attributes {
            add_label(&mut labels, label_name(&kv.key), text(kv));
        }
        Some(Point { labels, timestamp_ms: (time_unix_nano / 1_000_000) as i64 })
    }

    fn number(
        &mut self,
        name: &str,
        attributes: &[KeyValue],
        time_unix_nano: u64,
        flags: u32,
        value: &Option<Value>,
    ) {
        let Some(base) = self.point(attributes, time_unix_nano) else { return };
        let value = match value {
            Some(Value::AsDouble(d)) => *d,
            Some(Value::AsInt(i)) => *i as f64,
            None => 0.0,
        };
        self.push(&base, name, &[], value, no_value(flags));
    }

    fn push(
        &mut self,
        base: &Point,
        name: &str,
        extra: &[(&str, String)],
        value: f64,
        stale: bool,
    ) {
        let mut labels = base.labels.clone();
        for (k, v) in extra {
            labels.insert((*k).to_owned(), v.clone());
        }
        labels.insert("__name__".to_owned(), name.to_owned());
        let value = if stale { f64::from_bits(STALE_NAN) } else { value };
        self.out.push(Sample {
            labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            timestamp_ms: base.timestamp_ms,
            value,
        });
    }
}

fn resource_labels(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    let get = |key: &str| attributes.iter().find(|kv| kv.key == key).map(text);
    let mut labels = BTreeMap::new();
    if let Some(service) = get("service.name") {
        let job = match get("service.namespace") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
            _ => service,
        };
        labels.insert("job".to_owned(), job);
    }
    if let Some(instance) = get("service.instance.id") {
        labels.insert("instance".to_owned(), instance);
    }
    for key in PROMOTED {
        if let Some(value) = get(key) {
            add_label(&mut labels, label_name(key), value);
        }
    }
    labels
}

/// Two attributes whose names sanitize alike share the label, their values joined by `;`
/// (as Prometheus does), in the order they came.
fn add_label(labels: &mut BTreeMap<String, String>, name: String, value: String) {
    match labels.get_mut(&name) {
        Some(existing) if !existing.is_empty() && *existing != value => {
            existing.push(';');
            existing.push_str(&value);
        }
        _ => {
            labels.insert(name, value);
        }
    }
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// A label name Prometheus accepts: other characters become `_`, a leading digit gets `key_`,
/// a single leading `_` gets `key` (names starting `__` are Prometheus's own).
fn label_name(key: &str) -> String {
    let name: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    match name.chars().next() {
        Some(c) if c.is_ascii_digit() => format!("key_{name}"),
        Some('_') if !name.starts_with("__") => format!("key{name}"),
        None => "key_".to_owned(),
        _ => name,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// The metric's name in Prometheus: its words joined by `_`, its unit appended, `_total`
/// for counters, `_ratio` for gauges of unit `1`.
fn metric_name(metric: &Metric, kind: Kind) -> String {
    let words = |s: &str| {
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut parts = words(&metric.name);
    let unit = unit_words(&metric.unit, kind);
    for w in unit.iter().flat_map(|u| words(u)) {
        if !parts.contains(&w) {
            parts.push(w);
        }
    }
    if kind == Kind::Counter && parts.last().map(String::as_str) != Some("total") {
        parts.push("total".to_owned());
    }
    let name = parts.join("_");
    match name.chars().next() {
        Some(c) if c.is_ascii_digit() => format!("_{name}"),
        None => "_".to_owned(),
        _ => name,
    }
}

/// The words of a UCUM unit (`ms` → `milliseconds`, `By/s` → `bytes_per_second`);
/// annotations in braces (`{request}`) say nothing Prometheus names.
fn unit_words(unit: &str, kind: Kind) -> Option<String> {
    let unit = strip_annotations(unit);
    if unit.is_empty() {
        return None;
    }
    if unit == "1" {
        return (kind == Kind::Gauge).then(|| "ratio".to_owned());
    }
    Some(match unit.split_once('/') {
        Some((main, per)) if !per.is_empty() => {
            let main = strip_annotations(main);
            let per = per_unit(per);
            if main.is_empty() {
                format!("per_{per}")
            } else {
                format!("{}_per_{per}", main_unit(&main))
            }
        }
        _ => main_unit(&unit).to_owned(),
    })
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

fn main_unit(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        other => other,
    }
}

fn per_unit(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(Any::StringValue(value.into())) }),
            ..KeyValue::default()
        }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.namespace", "shop"),
                        kv("service.instance.id", "pod-1"),
                        kv("k8s.namespace.name", "shop"),
                        kv("process.pid", "12"),
                    ],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics { metrics, ..ScopeMetrics::default() }],
                ..ResourceMetrics::default()
            }],
        }
    }

    fn labels(s: &Sample) -> String {
        s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_counter_is_named_with_unit_and_total_and_labelled_from_its_resource() {
        let sum = Sum {
            data_points: vec![NumberDataPoint {
                attributes: vec![kv("http.method", "GET"), kv("1st", "x")],
                time_unix_nano: 1_700_000_000 * SECOND + 5_000_000,
                value: Some(Value::AsInt(42)),
                ..NumberDataPoint::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        };
        let metric = Metric {
            name: "http.server.request.size".into(),
            unit: "By".into(),
            data: Some(Data::Sum(sum)),
            ..Metric::default()
        };
        let mut out = Vec::new();
        assert_eq!(samples(&request(vec![metric]), &mut out), Unsupported::default());
        assert_eq!(out.len(), 1);
        assert_eq!(
            labels(&out[0]),
            "__name__=http_server_request_size_bytes_total,http_method=GET,instance=pod-1,\
             job=shop/checkout,k8s_namespace_name=shop,key_1st=x"
        );
        assert_eq!((out[0].timestamp_ms, out[0].value), (1_700_000_000_005, 42.0));
    }

    #[test]
    fn a_histogram_becomes_cumulative_buckets_sum_and_count() {
        let h = Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 2 * SECOND,
                count: 6,
                sum: Some(3.5),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.25, 1.0],
                ..HistogramDataPoint::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        };
        let metric = Metric {
            name: "rpc.duration".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(h)),
            ..Metric::default()
        };
        let mut out = Vec::new();
        samples(&request(vec![metric]), &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|s| {
                let name = &s.labels.iter().find(|(k, _)| k == "__name__").unwrap().1;
                let le = s.labels.iter().find(|(k, _)| k == "le").map_or("", |(_, v)| v);
                format!("{name}{{{le}}}={}", s.value)
            })
            .collect();
        assert_eq!(
            got,
            [
                "rpc_duration_seconds_bucket{0.25}=1",
                "rpc_duration_seconds_bucket{1}=3",
                "rpc_duration_seconds_bucket{+Inf}=6",
                "rpc_duration_seconds_sum{}=3.5",
                "rpc_duration_seconds_count{}=6",
            ]
        );
    }

    #[test]
    fn deltas_exponential_histograms_and_untimed_points_are_unsupported() {
        let delta = Sum {
            data_points: vec![NumberDataPoint::default(); 2],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        };
        let untimed = Gauge { data_points: vec![NumberDataPoint::default()] };
        let stale = Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: SECOND,
                flags: DataPointFlags::NoRecordedValueMask as u32,
                ..NumberDataPoint::default()
            }],
        };
        let metrics = vec![
            Metric { name: "a".into(), data: Some(Data::Sum(delta)), ..Metric::default() },
            Metric { name: "b".into(), data: Some(Data::Gauge(untimed)), ..Metric::default() },
            Metric { name: "c".into(), data: Some(Data::Gauge(stale)), ..Metric::default() },
        ];
        let mut out = Vec::new();
        let unsupported = samples(&request(metrics), &mut out);
        assert_eq!((unsupported.delta, unsupported.untimed, unsupported.total()), (2, 1, 3));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value.to_bits(), STALE_NAN, "no recorded value is a staleness marker");
    }

    #[test]
    fn names_follow_prometheus() {
        let name = |n: &str, unit: &str, kind| {
            metric_name(&Metric { name: n.into(), unit: unit.into(), ..Metric::default() }, kind)
        };
        assert_eq!(
            name("system.cpu.utilization", "1", Kind::Gauge),
            "system_cpu_utilization_ratio"
        );
        assert_eq!(name("requests", "{request}", Kind::Counter), "requests_total");
        assert_eq!(name("requests_total", "1", Kind::Counter), "requests_total");
        assert_eq!(name("net.io", "By/s", Kind::Gauge), "net_io_bytes_per_second");
        assert_eq!(name("latency_seconds", "s", Kind::Gauge), "latency_seconds");
        assert_eq!(name("2xx", "", Kind::Gauge), "_2xx");
        assert_eq!(label_name("_private"), "key_private");
        assert_eq!(label_name("__meta"), "__meta");
    }
}
