//! Indexing throughput of the message tokenizer and of the store writer, over the lines of
//! `shared/testdata` (Loghub samples and Chinese Java logs).

use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_proto::LogRecord;
use sluice_query::tokenizer::SluiceTokenizer;
use sluice_query::{Store, StoreWriter};
use tantivy::tokenizer::{TokenStream, Tokenizer};

fn testdata_lines() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
    let mut lines = Vec::new();
    for sub in ["loghub", "zh"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(sub))
            .expect("shared/testdata beside the repository")
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .filter(|p| !p.to_string_lossy().contains(".cri."))
            .collect();
        paths.sort();
        for path in paths {
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).expect("readable")).into_owned();
            lines.extend(text.lines().map(|l| l.trim_end_matches('\r').to_owned()));
        }
    }
    lines
}

fn records(lines: &[String]) -> Vec<LogRecord> {
    const T0: i64 = 1_795_000_000_000_000_000;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| LogRecord {
            source: 7 + (i as u64 % 8),
            offset: i as u64 * 200,
            timestamp_ns: T0 + i as i64 * 1_000_000,
            namespace: "bench".into(),
            pod: format!("app-{}", i % 8),
            container: "app".into(),
            level: "info".into(),
            file_path: format!("/var/log/pods/bench_app-{}_uid/app/0.log", i % 8),
            message: line.clone(),
            ..LogRecord::default()
        })
        .collect()
}

fn tokenizer(c: &mut Criterion) {
    let lines = testdata_lines();
    let bytes: usize = lines.iter().map(String::len).sum();
    let mut group = c.benchmark_group("tokenizer");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("testdata", |b| {
        b.iter(|| {
            let mut tokens = 0usize;
            for line in &lines {
                let mut tokenizer = SluiceTokenizer;
                let mut stream = tokenizer.token_stream(line);
                while stream.advance() {
                    tokens += stream.token().text.len();
                }
            }
            tokens
        })
    });
    group.finish();
}

fn store_writer(c: &mut Criterion) {
    let records = records(&testdata_lines());
    let bytes: usize = records.iter().map(|r| r.message.len()).sum();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("add_and_commit", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let store = Store::open(dir.path()).expect("store opens");
                let mut writer = StoreWriter::new(store);
                for (i, record) in records.iter().enumerate() {
                    writer.add(record, i as u64).expect("record added");
                }
                writer.commit(records.len() as u64).expect("commit");
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, tokenizer, store_writer);
criterion_main!(benches);
