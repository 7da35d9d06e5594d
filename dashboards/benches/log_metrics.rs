//! What log-to-metric rules cost per record passing through: the sink's `write` (runs,
//! resend check, every metric's query, the label set's count) over Chinese Java log records
//! of 30 pods' files, with 1 and with 10 metrics, so the cost per million records can be read
//! off (README, Benchmarks).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_collector::sink::Sink;
use sluice_collector::wal::Wal;
use sluice_collector::wal_frame::Frame;
use sluice_dashboards::log_metrics::{LogMetrics, LogMetricsFile};
use sluice_proto::{LogBatch, LogRecord};

const RECORDS: usize = 10_000;
/// Records per frame, one pod's file each: runs of an agent's block.
const PER_FRAME: usize = 500;

fn frames(base_offset: u64) -> Vec<Arc<Frame>> {
    let records: Vec<LogRecord> = sluice_proto::samples::java_log_records(RECORDS)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            // One pod's file per frame: runs as an agent's blocks make them.
            let pod = (i / PER_FRAME) % 30;
            LogRecord {
                source: 1 + pod as u64,
                offset: base_offset + i as u64 * 100,
                namespace: format!("ns-{}", pod % 10),
                pod: format!("pay-{pod}"),
                ..r
            }
        })
        .collect();
    records
        .chunks(PER_FRAME)
        .map(|c| {
            Arc::new(Frame::new(LogBatch { records: c.to_vec(), ..Default::default() }, 0, None))
        })
        .collect()
}

fn file(metrics: usize) -> LogMetricsFile {
    let kinds = [
        "query: '支付失败 AND level:error', labels: [namespace]",
        "query: 'level:warn', labels: [pod]",
        "query: 'NullPointerException', labels: []",
        "query: 'db timeout -namespace:ns-1', labels: [namespace, level]",
        "query: '订单创建成功', labels: [namespace]",
    ];
    let mut text = "metrics:\n".to_owned();
    for i in 0..metrics {
        text.push_str(&format!("  - {{name: m{i}_total, {}}}\n", kinds[i % kinds.len()]));
    }
    LogMetricsFile::parse(&text).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut group = c.benchmark_group("log_metrics_write");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for metrics in [1, 10] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("wal"), 1 << 20).unwrap();
        let (_shown, mut sink) = LogMetrics::start(&file(metrics), dir.path(), &wal).unwrap();
        let mut round = 0u64;
        group.bench_function(format!("{metrics}_metrics"), |b| {
            b.iter_batched(
                || {
                    // Fresh offsets each round, or every record would be a resend.
                    round += 1;
                    frames(round * RECORDS as u64 * 100)
                },
                |frames| {
                    rt.block_on(async {
                        for f in frames {
                            sink.write(black_box(f), 0).await.unwrap();
                        }
                    })
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
