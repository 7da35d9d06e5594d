//! The agent's per-byte work on a real CRI file (`shared/testdata/zh/java_zh.cri.log`):
//! splitting lines, parsing CRI prefixes and merging `P`/`F` parts; and its per-record work
//! on the Loghub samples and the Chinese Java log: finding the level.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_agent::cri::{self, Assembler, SecondCache};
use sluice_agent::line_reader::LineSplitter;
use sluice_agent::timestamp::{Stamps, TimeParser, Zone};
use sluice_proto::level;

const CAP: usize = 256 << 10;

fn cri_file() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/zh/java_zh.cri.log");
    std::fs::read(&path).expect("shared/testdata beside the repository")
}

/// Every line of the Loghub samples and the Chinese Java log, as the reader hands them on.
/// 2025-12-04: the year given to stamps without one.
const NOW_NS: i64 = 1_764_800_000_000_000_000;

fn messages() -> Vec<String> {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
    let mut lines = Vec::new();
    for sub in ["loghub", "zh"] {
        let mut paths: Vec<_> = std::fs::read_dir(testdata.join(sub))
            .expect("shared/testdata beside the repository")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "log") && !p.ends_with("java_zh.cri.log")
            })
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read(&path).expect("a sample log");
            lines.extend(String::from_utf8_lossy(&text).lines().map(str::to_owned));
        }
    }
    lines
}

fn read_path(c: &mut Criterion) {
    let file = cri_file();
    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("split_lines", |b| {
        b.iter(|| {
            let mut splitter = LineSplitter::new(CAP, 0);
            let mut lines = 0usize;
            for chunk in file.chunks(64 << 10) {
                splitter.push(chunk, |_| lines += 1);
            }
            lines
        })
    });
    group.bench_function("split_parse_merge_cri", |b| {
        b.iter(|| {
            let mut splitter = LineSplitter::new(CAP, 0);
            let mut assembler = Assembler::new(CAP);
            let mut seconds = SecondCache::default();
            let mut records = 0usize;
            let now = std::time::Instant::now();
            for chunk in file.chunks(64 << 10) {
                splitter.push(chunk, |line| {
                    let parsed = cri::parse_cached(line.bytes, &mut seconds).expect("a CRI line");
                    if assembler.push(&parsed, line.start, line.end, line.truncated, now).is_some()
                    {
                        records += 1;
                    }
                });
            }
            records
        })
    });
    group.finish();

    let messages = messages();
    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("detect_level", |b| {
        b.iter(|| messages.iter().filter(|m| level::detect(m).is_some()).count())
    });
    // Each file's parser remembers the shape that fitted, as the tailer's does per file.
    let zone = Zone::parse("Asia/Shanghai").expect("a zone");
    group.bench_function("parse_timestamp", |b| {
        let mut parser = TimeParser::new(Stamps::Auto, zone.clone());
        b.iter(|| messages.iter().filter(|m| parser.parse(m.as_bytes(), NOW_NS).is_some()).count())
    });
    group.finish();
}

criterion_group!(benches, read_path);
criterion_main!(benches);
