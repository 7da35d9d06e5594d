//! logrotate's `copytruncate`, as it really runs: a writer rotates two plain files every
//! 1,500 lines without waiting for the agent (older copies shifted `app.log.1` →
//! `app.log.2` → …, every other rotation compressing `app.log.2` into `app.log.2.gz` as
//! `delaycompress` does), the agent watches `*.log*` so copies and compressed copies are
//! matched too, and is `kill -9`-ed at pseudo-random moments. Every line is in the index
//! exactly once: copies are read on from where their original was left, under its ids.
//! Once with the agent killed beside a running collector, once with `sluice up` (agent and
//! collector in one process) killed whole. Real processes on loopback.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

const FILES: usize = 2;
const LINES_PER_FILE: usize = 10_000;
const ROTATE_EVERY: usize = 1_500;
/// Lines per search bucket, below the API's limit of 10,000 hits even were every line there
/// twice.
const BUCKET_LINES: usize = 4_000;

/// `app.log.<k>` or, compressed, `app.log.<k>.gz`.
fn rotated(log: &Path, k: usize, gz: bool) -> PathBuf {
    let name = log.file_name().unwrap().to_string_lossy();
    log.with_file_name(format!("{name}.{k}{}", if gz { ".gz" } else { "" }))
}

/// One logrotate run with `copytruncate` and `delaycompress`: shift the older copies up,
/// copy the file to `.1` and empty it; `compress` also compresses `.2`.
fn logrotate(log: &Path, rotations: usize, compress: bool) {
    for k in (1..=rotations).rev() {
        for gz in [true, false] {
            if rotated(log, k, gz).exists() {
                fs::rename(rotated(log, k, gz), rotated(log, k + 1, gz)).unwrap();
            }
        }
    }
    fs::copy(log, rotated(log, 1, false)).unwrap();
    fs::OpenOptions::new().write(true).open(log).unwrap().set_len(0).unwrap();
    let plain = rotated(log, 2, false);
    if compress && plain.exists() {
        let mut encoder = flate2::write::GzEncoder::new(
            fs::File::create(rotated(log, 2, true)).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&fs::read(&plain).unwrap()).unwrap();
        encoder.finish().unwrap();
        fs::remove_file(plain).unwrap();
    }
}

/// Writes `LINES_PER_FILE` numbered lines to each file through a handle kept open in append
/// mode, as loggers do, rotating every `ROTATE_EVERY`; returns the rotations done.
fn write(logs: PathBuf, done: Arc<AtomicBool>) -> usize {
    let paths: Vec<PathBuf> = (0..FILES).map(|i| logs.join(format!("app-{i}.log"))).collect();
    let mut handles: Vec<fs::File> = paths
        .iter()
        .map(|p| fs::OpenOptions::new().create(true).append(true).open(p).unwrap())
        .collect();
    let mut rotations = 0;
    for n in 0..LINES_PER_FILE {
        for (i, handle) in handles.iter_mut().enumerate() {
            let bucket = n / BUCKET_LINES;
            writeln!(handle, "2026-12-04 10:00:00,000 INFO rotor f{i} n{n} b{bucket} payload")
                .unwrap();
            if n > 0 && n % ROTATE_EVERY == 0 {
                logrotate(&paths[i], rotations / FILES + 1, (rotations / FILES) % 2 == 1);
                rotations += 1;
            }
        }
        if n % 25 == 0 {
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    done.store(true, Ordering::SeqCst);
    rotations
}

/// Writes and rotates while whatever `start` starts is `kill -9`-ed and started again, then
/// counts every line through the search API of the last one started.
fn rotate_under_kills(logs: &Path, mut start: impl FnMut() -> (Proc, String), what: &str) {
    let (mut running, mut base) = start();
    let done = Arc::new(AtomicBool::new(false));
    let writing = {
        let (logs, done) = (logs.to_owned(), done.clone());
        std::thread::spawn(move || write(logs, done))
    };
    let mut kills = 0;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    while !done.load(Ordering::SeqCst) {
        // xorshift: the same pseudo-random schedule every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(300 + state % 700));
        running.kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(state % 250));
        (running, base) = start();
    }
    let rotations = writing.join().unwrap();
    let expected = FILES * LINES_PER_FILE;
    wait_until(Duration::from_secs(90), "every line is indexed", || {
        total(&base, "rotor") as usize >= expected
    });
    std::thread::sleep(Duration::from_secs(2));

    let (mut lost, mut duplicates) = (0usize, 0usize);
    for i in 0..FILES {
        let mut count: HashMap<String, usize> = HashMap::new();
        for bucket in 0..=LINES_PER_FILE / BUCKET_LINES {
            for hit in search(&base, &format!("f{i} AND b{bucket}"), 10_000).hits {
                let number = hit.message.split_whitespace().nth(5).unwrap_or_default().to_owned();
                *count.entry(number).or_default() += 1;
            }
        }
        lost += (0..LINES_PER_FILE).filter(|k| !count.contains_key(&format!("n{k}"))).count();
        duplicates += count.values().map(|c| c - 1).sum::<usize>();
    }
    let compressed = fs::read_dir(logs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "gz"))
        .count();
    println!(
        "copytruncate, {what}: {expected} lines in {FILES} files, {rotations} copytruncates, {compressed} compressed copies, {kills} kills; lost: {lost}, duplicates: {duplicates}"
    );
    assert!(rotations >= 10 && compressed >= 4 && kills >= 10, "too little happened to test");
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(total(&base, "rotor") as usize, expected);
    assert!(running.is_running());
}

#[test]
fn copies_are_never_read_twice_by_an_agent_killed_beside_its_collector() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let _collector = start_collector(&dir.path().join("collector"), grpc, http);
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[format!("{}/*.log*", logs.display())],
        "scan_interval_ms: 200\n",
    );
    let start = || (start_agent(&config, &agent_dir), base.clone());
    rotate_under_kills(&logs, start, "agent killed");
}

#[test]
fn copies_are_never_read_twice_by_sluice_up_killed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let (data, watch) = (dir.path().join("data"), [format!("{}/*.log*", logs.display())]);
    rotate_under_kills(&logs, || start_up(&data, &watch), "sluice up killed");
}
