//! Nothing lost, nothing twice: the collector is `kill -9`-ed again and again while the
//! agent ships, and the agent once too, losing its checkpoints; at the end every line is in
//! the index exactly once. Real processes; the kills are real SIGKILLs.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

const FILES: usize = 4;
const LINES_PER_FILE: usize = 6000;

/// Writes numbered lines to plain files and to one CRI file whose every third record is
/// split into `P` parts, at a steady pace, so shipping is under way when the kills land.
fn write_lines(dir: &Path, done: &AtomicBool) -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let mut writers: Vec<(std::fs::File, bool)> = Vec::new();
    for i in 0..FILES {
        let cri = i == 0;
        let path = dir.join(if cri { format!("f{i}.cri.log") } else { format!("f{i}.log") });
        writers.push((std::fs::File::create(&path).unwrap(), cri));
        out.push((path, Vec::new()));
    }
    for n in 0..LINES_PER_FILE {
        for (i, (file, cri)) in writers.iter_mut().enumerate() {
            let message =
                format!("file {i} line {n:06} 订单 order-{n} payload {}", "x".repeat(n % 97));
            if *cri {
                let ts = "2026-11-24T08:00:00.000000000Z";
                if n % 3 == 0 {
                    let (a, b) = message.split_at(10);
                    write!(file, "{ts} stdout P {a}\n{ts} stdout F {b}\n").unwrap();
                } else {
                    writeln!(file, "{ts} stdout F {message}").unwrap();
                }
            } else {
                writeln!(file, "{message}").unwrap();
            }
            out[i].1.push(message);
        }
        if n % 50 == 49 {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    done.store(true, Ordering::SeqCst);
    out
}

#[test]
fn kill_9_of_the_collector_while_shipping_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("collector");
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");

    let mut collector = start_collector(&data, grpc, http);
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config(&agent_dir, grpc, &[format!("{}/*.log", logs.display())]);
    let mut agent = start_agent(&config, &agent_dir);

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (logs, done) = (logs.clone(), done.clone());
        std::thread::spawn(move || write_lines(&logs, &done))
    };

    let mut kills = 0u64;
    let mut kills_mid_stream = 0;
    let mut duplicates_skipped = 0.0;
    let mut agent_killed = false;
    while !done.load(Ordering::SeqCst) || kills < 3 {
        std::thread::sleep(Duration::from_millis(250 + 60 * (kills % 5)));
        if kills == 1 && !agent_killed {
            // The worst agent crash: before its checkpoints reached the disk. It re-reads
            // everything, and the collector must skip every record it already has.
            let checkpoints = agent_dir.join("state/checkpoints.json");
            wait_until(Duration::from_secs(30), "the agent has checkpoints to lose", || {
                checkpoints.exists()
            });
            agent.kill9();
            std::fs::remove_file(&checkpoints).unwrap();
            agent = start_agent(&config, &agent_dir);
            agent_killed = true;
        }
        let indexed = total(&base, "");
        if indexed > 0 && !done.load(Ordering::SeqCst) {
            kills_mid_stream += 1;
        }
        duplicates_skipped += metric(&base, "sluice_index_duplicates_skipped_total");
        collector.kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(300));
        collector = start_collector(&data, grpc, http);
    }
    let files = writer.join().unwrap();
    let expected: usize = files.iter().map(|(_, e)| e.len()).sum();
    wait_until(Duration::from_secs(120), "every line is indexed after the kills", || {
        total(&base, "") as usize >= expected
    });
    // Let any late duplicate show up before counting.
    std::thread::sleep(Duration::from_millis(1500));
    for (path, want) in &files {
        assert_file_exactly_once(&base, path, want);
    }
    assert_eq!(total(&base, "") as usize, expected);
    duplicates_skipped += metric(&base, "sluice_index_duplicates_skipped_total");
    println!(
        "collector kills: {kills} ({kills_mid_stream} mid-stream), agent kills: 1, lines: {expected}, lost: 0, duplicates: 0, resends skipped by id: {duplicates_skipped}"
    );
    assert!(kills_mid_stream >= 2, "the kills must land while lines are still being written");
    assert!(duplicates_skipped > 0.0, "the agent's re-read must reach the collector as resends");
    assert!(agent.is_running() && collector.is_running());
}
