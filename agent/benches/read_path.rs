//! The agent's per-byte work on a real CRI file (`shared/testdata/zh/java_zh.cri.log`):
//! splitting lines, parsing CRI prefixes and merging `P`/`F` parts.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_agent::cri::{self, Assembler, SecondCache};
use sluice_agent::line_reader::LineSplitter;

const CAP: usize = 256 << 10;

fn cri_file() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/zh/java_zh.cri.log");
    std::fs::read(&path).expect("shared/testdata beside the repository")
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
}

criterion_group!(benches, read_path);
criterion_main!(benches);
