//! OTLP metrics in (OTLP/HTTP `/v1/metrics` and OTLP/gRPC), durable in the WAL, out to
//! Prometheus remote-write and to Kafka, with real servers only: Prometheus built by
//! `scripts/test-servers` from the Go module proxy, run with its remote-write receiver on,
//! and the Kafka broker `scripts/test-servers` started. The requests are built with the
//! `opentelemetry-proto` types and sent as an OpenTelemetry SDK's exporter sends them.
//!
//! The collector is killed with `kill -9` in the middle (and Prometheus once as well); at the
//! end Prometheus holds exactly the samples sent — each once, with its time and value — and
//! Kafka each data point once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::kafka::{brokers, read_committed, sink_args, unique};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

const SERVICES: [&str; 3] = ["checkout", "cart", "pay"];

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Any::StringValue(value.into())) }),
        ..KeyValue::default()
    }
}

/// The counter's value for service `i` at `step`.
fn orders(step: u64, i: usize) -> i64 {
    (step * step) as i64 + i as i64
}

/// Step `step` of every service: a cumulative counter, a gauge and a histogram, one point
/// each, at `base_ms` + `step` seconds.
fn request(step: u64, base_ms: u64) -> ExportMetricsServiceRequest {
    let time_unix_nano = (base_ms + step * 1000) * 1_000_000;
    let cumulative = AggregationTemporality::Cumulative as i32;
    let resource_metrics = SERVICES
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let number = |value| NumberDataPoint {
                time_unix_nano,
                value: Some(value),
                attributes: vec![kv("queue", "main")],
                ..NumberDataPoint::default()
            };
            let metrics = vec![
                Metric {
                    name: "orders".into(),
                    unit: "{order}".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![number(Value::AsInt(orders(step, i)))],
                        aggregation_temporality: cumulative,
                        is_monotonic: true,
                    })),
                    ..Metric::default()
                },
                Metric {
                    name: "queue.depth".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![number(Value::AsDouble(step as f64 * 0.5 + i as f64))],
                    })),
                    ..Metric::default()
                },
                Metric {
                    name: "rpc.duration".into(),
                    unit: "s".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            time_unix_nano,
                            count: 2 * step + 1,
                            sum: Some(step as f64 * 0.25),
                            bucket_counts: vec![step, step, 1],
                            explicit_bounds: vec![0.25, 1.0],
                            ..HistogramDataPoint::default()
                        }],
                        aggregation_temporality: cumulative,
                    })),
                    ..Metric::default()
                },
            ];
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", service), kv("k8s.namespace.name", "shop")],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics { metrics, ..ScopeMetrics::default() }],
                ..ResourceMetrics::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn send_http(base: &str, request: &ExportMetricsServiceRequest) -> bool {
    reqwest::blocking::Client::new()
        .post(format!("{base}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

fn send_grpc(port: u16, request: &ExportMetricsServiceRequest) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let Ok(mut client) =
            MetricsServiceClient::connect(format!("http://127.0.0.1:{port}")).await
        else {
            return false;
        };
        client.export(request.clone()).await.is_ok_and(|r| r.into_inner().partial_success.is_none())
    })
}

/// Sends `request` over HTTP (even steps) or gRPC (odd ones) until the collector accepts it:
/// an accepted request is durable in its WAL.
fn send(base: &str, otlp_port: u16, step: u64, request: &ExportMetricsServiceRequest) {
    wait_until(Duration::from_secs(60), "the collector accepts a metrics request", || {
        let sent = match step % 2 {
            0 => send_http(base, request),
            _ => send_grpc(otlp_port, request),
        };
        if !sent {
            std::thread::sleep(Duration::from_millis(200));
        }
        sent
    });
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Every sample Prometheus holds of `selector` over the last hour at `at_s`, by the value of
/// `by`: `(milliseconds, value)`.
fn samples(prom: &str, selector: &str, by: &str, at_s: f64) -> BTreeMap<String, Vec<(i64, f64)>> {
    let url = format!("{prom}/api/v1/query");
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .get(url)
        .query(&[("query", format!("{selector}[1h]")), ("time", at_s.to_string())])
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for series in answer["data"]["result"].as_array().into_iter().flatten() {
        let key = series["metric"][by].as_str().unwrap_or_default().to_owned();
        let values = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let ms = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ms, v[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(key, values);
    }
    out
}

const STEPS: u64 = 40;

#[test]
fn remote_write_holds_every_sample_once_across_kill_9s() {
    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prometheus");
    let prom_port = free_port();
    let prom_config = "global:\n  scrape_interval: 1h\n";
    let receiver = ["--web.enable-remote-write-receiver"];
    let mut prometheus = start_prometheus_with(&prom_dir, prom_port, prom_config, &receiver);
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_until(Duration::from_secs(60), "Prometheus is ready", || {
        http_get(&format!("{prom}/-/ready")).is_some()
    });

    let data = dir.path().join("data");
    let (grpc, http, otlp) = (free_port(), free_port(), free_port());
    let write_url = format!("{prom}/api/v1/write");
    let otlp_listen = format!("127.0.0.1:{otlp}");
    let flags = ["--remote-write", &write_url, "--otlp-grpc-listen", &otlp_listen];
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_ref()).collect();
    let start = || start_collector_with(&data, grpc, http, &flags);
    let base = format!("http://127.0.0.1:{http}");
    let mut collector = start();

    let base_ms = now_ms() - 10 * 60 * 1000;
    for step in 0..STEPS {
        send(&base, otlp, step, &request(step, base_ms));
        match step {
            // Accepted, so in the WAL, and likely not delivered yet.
            12 => {
                collector.kill9();
                collector = start();
            }
            // Prometheus away until the sink has failed to deliver: the WAL keeps what
            // arrives meanwhile.
            20 => {
                prometheus.kill9();
                wait_until(Duration::from_secs(30), "the sink notices Prometheus is away", || {
                    let metrics = http_get(&format!("{base}/metrics")).unwrap_or_default();
                    metrics.lines().any(|l| l == r#"sluice_sink_healthy{sink="remote_write"} 0"#)
                });
            }
            27 => {
                prometheus = start_prometheus_with(&prom_dir, prom_port, prom_config, &receiver);
            }
            31 => {
                collector.kill9();
                collector = start();
            }
            _ => {}
        }
    }

    let at_s = (base_ms + STEPS * 1000) as f64 / 1000.0 + 1.0;
    let expected_orders: BTreeMap<String, Vec<(i64, f64)>> = SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let samples = (0..STEPS)
                .map(|step| ((base_ms + step * 1000) as i64, orders(step, i) as f64))
                .collect();
            (s.to_string(), samples)
        })
        .collect();
    let mut got = BTreeMap::new();
    wait_until(Duration::from_secs(120), "Prometheus holds every sample", || {
        got = samples(&prom, "orders_total", "job", at_s);
        got == expected_orders
    });
    assert_eq!(got, expected_orders);

    // The gauge, and the histogram as cumulative buckets, sum and count.
    let gauge = samples(&prom, r#"queue_depth{job="cart",queue="main"}"#, "job", at_s);
    let values: Vec<f64> = gauge["cart"].iter().map(|(_, v)| *v).collect();
    assert_eq!(values, (0..STEPS).map(|s| s as f64 * 0.5 + 1.0).collect::<Vec<_>>());
    for (le, times, plus) in [("0.25", 1, 0), ("1", 2, 0), ("+Inf", 2, 1)] {
        let selector = format!(r#"rpc_duration_seconds_bucket{{job="pay",le="{le}"}}"#);
        let buckets = samples(&prom, &selector, "job", at_s);
        let values: Vec<f64> = buckets["pay"].iter().map(|(_, v)| *v).collect();
        assert_eq!(
            values,
            (0..STEPS).map(|s| (times * s + plus) as f64).collect::<Vec<_>>(),
            "le={le}"
        );
    }
    let count = samples(&prom, r#"rpc_duration_seconds_count{job="pay"}"#, "job", at_s);
    assert_eq!(count["pay"].len(), STEPS as usize);

    // No replay was refused: each resent sample was its series' newest, a duplicate
    // Prometheus takes silently.
    assert_eq!(metric(&base, "sluice_sink_remote_write_rejected_samples_total"), 0.0);
    assert!(collector.is_running());
}

#[test]
fn kafka_gets_each_metrics_request_once_across_kill_9s() {
    let brokers = brokers();
    let (logs_topic, metrics_topic) = (unique("logs"), unique("metrics"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (grpc, http, otlp) = (free_port(), free_port(), free_port());
    let mut flags = sink_args(&brokers, &logs_topic, "json");
    let otlp_listen = format!("127.0.0.1:{otlp}");
    for f in ["--kafka-metrics-topic", &metrics_topic, "--otlp-grpc-listen", &otlp_listen] {
        flags.push(f.into());
    }
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_os_str()).collect();
    let start = || start_collector_with(&data, grpc, http, &flags);
    let base = format!("http://127.0.0.1:{http}");
    let mut collector = start();
    let base_ms = now_ms();
    let steps = 24;
    for step in 0..steps {
        send(&base, otlp, step, &request(step, base_ms));
        if step == 8 || step == 16 {
            collector.kill9();
            collector = start();
        }
    }
    let mut points: HashMap<(String, u64), usize> = HashMap::new();
    wait_until(Duration::from_secs(90), "Kafka holds every metrics request", || {
        points.clear();
        for m in read_committed(&brokers, std::slice::from_ref(&metrics_topic)) {
            assert_eq!(
                m.content_type.as_deref(),
                Some(
                    "application/x-protobuf; message=opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"
                )
            );
            let request = ExportMetricsServiceRequest::decode(m.payload.as_slice()).unwrap();
            for r in request.resource_metrics {
                let service = r.resource.unwrap().attributes[0].clone();
                let Some(Any::StringValue(service)) = service.value.unwrap().value else {
                    panic!("service.name first")
                };
                for metric in r.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                    let Some(Data::Sum(sum)) = metric.data else { continue };
                    for p in sum.data_points {
                        let step = (p.time_unix_nano / 1_000_000 - base_ms) / 1000;
                        *points.entry((service.clone(), step)).or_default() += 1;
                    }
                }
            }
        }
        points.len() == SERVICES.len() * steps as usize
    });
    assert_eq!(points.len(), SERVICES.len() * steps as usize);
    let repeated: Vec<_> = points.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "points delivered more than once: {repeated:?}");
    assert!(collector.is_running());
}

/// Whether Prometheus answers `query` with a value of at least `least` for series `job`.
fn prometheus_value(prom: &str, query: &str, job: &str) -> Option<f64> {
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .and_then(|r| r.json())
        .ok()?;
    answer["data"]["result"].as_array()?.iter().find_map(|s| {
        (s["metric"]["job"] == job).then(|| s["value"][1].as_str()?.parse().ok()).flatten()
    })
}

/// The agent and the collector push their own metrics through the OpenTelemetry SDK (OTLP/
/// HTTP); here to the collector's own `/v1/metrics`, which sends them on to Prometheus by
/// remote write, where they arrive with the counts of `/metrics`.
#[test]
fn agent_and_collector_push_their_own_metrics_over_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prometheus");
    let prom_port = free_port();
    let receiver = ["--web.enable-remote-write-receiver"];
    let _prometheus = start_prometheus_with(&prom_dir, prom_port, "global: {}\n", &receiver);
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_until(Duration::from_secs(60), "Prometheus is ready", || {
        http_get(&format!("{prom}/-/ready")).is_some()
    });

    let data = dir.path().join("data");
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let write_url = format!("{prom}/api/v1/write");
    let own = format!("{base}/v1/metrics");
    let flags = [
        "--remote-write",
        &write_url,
        "--telemetry-otlp-endpoint",
        &own,
        "--telemetry-interval",
        "500ms",
    ];
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_ref()).collect();
    let _collector = start_collector_with(&data, grpc, http, &flags);

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let agent_dir = dir.path().join("agent");
    let watch = [format!("{}/*.log", logs.display())];
    let telemetry = format!("telemetry:\n  otlp_endpoint: {own}\n  interval_ms: 500\n");
    let config = write_agent_config_with(&agent_dir, grpc, &watch, &telemetry);
    let _agent = start_agent(&config, &agent_dir);
    let lines: String = (0..250).map(|i| format!("INFO 订单 {i} 已创建\n")).collect();
    std::fs::write(logs.join("app.log"), &lines).unwrap();

    wait_until(Duration::from_secs(60), "the collector's own counts reach Prometheus", || {
        let query = "sluice_collector_records_received_total";
        prometheus_value(&prom, query, "sluice-collector").is_some_and(|v| v >= 250.0)
    });
    wait_until(Duration::from_secs(60), "the agent's own counts reach Prometheus", || {
        prometheus_value(&prom, "sluice_agent_lines_read_total", "sluice-agent")
            .is_some_and(|v| v == 250.0)
    });
    // The same number /metrics shows.
    assert!(metric(&base, "sluice_collector_records_received_total") >= 250.0);
}
