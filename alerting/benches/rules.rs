//! What a rule costs per record passing through: the evaluator's `observe` over Chinese Java
//! log records, with 1 and with 10 rules (a phrase, a field filter, a grouped threshold), so
//! the cost per rule per million records can be read off (README, Benchmarks).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_alerting::AlertsFile;
use sluice_alerting::evaluate::{EvalState, Evaluator};

const RECORDS: usize = 10_000;

fn evaluator(rules: usize) -> Evaluator {
    let kinds = [
        "query: '支付失败 AND level:error', group_by: [namespace], when: 'count >= 1000000'",
        "query: 'level:warn', group_by: [pod], when: 'count >= 1000000'",
        "query: 'NullPointerException', when: 'count >= 1000000'",
        "query: 'db timeout -namespace:ns-1', group_by: [namespace], when: 'count > 3 * previous and count >= 1000000'",
        "query: '订单创建成功', when: 'count == 0'",
    ];
    let mut text = "receivers: [{name: r, webhook: {url: 'http://127.0.0.1:9/'}}]\nroute: {receiver: r}\nrules:\n".to_owned();
    for i in 0..rules {
        text.push_str(&format!(
            "  - {{name: r{i}, every: 10s, window: 10m, {}}}\n",
            kinds[i % kinds.len()]
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.yaml");
    std::fs::write(&path, text).unwrap();
    let file = AlertsFile::load(&path).unwrap();
    let mut e = Evaluator::new(file.rules(), EvalState::default());
    e.evaluate(1_700_000_000_000);
    e
}

fn bench(c: &mut Criterion) {
    let records = sluice_proto::samples::java_log_records(RECORDS);
    let mut group = c.benchmark_group("observe");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for rules in [1, 10] {
        let mut e = evaluator(rules);
        group.bench_function(format!("{rules}_rules"), |b| {
            b.iter(|| {
                for r in &records {
                    black_box(e.observe(r, 1_700_000_000_000));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
