//! Torture: a writer appends numbered lines to 20 kubelet-style files and rotates them by
//! rename and by copytruncate, while the agent and the collector are `kill -9`-ed at
//! pseudo-random moments (at least 50 kills; `SLUICE_TORTURE_KILLS` asks for more). At the
//! end every line is in the index exactly once. Real processes on loopback.
//!
//! Two rules keep the writer within what any file shipper can promise: a file is rotated
//! again only after the agent has acknowledged some of its current content (a file renamed
//! twice while the agent is down would leave one name it never knew), and a copytruncate
//! waits until the agent has acknowledged the whole file (bytes copied away before the agent
//! read them exist only in the copy, which is not watched).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

const FILES: usize = 20;
/// Lines of a file counted by one search, below the API's limit of 10,000 hits even with
/// every line there twice: each line carries its bucket, `b<n / BUCKET_LINES>`.
const BUCKET_LINES: usize = 4000;

/// Checkpoint entries per path: (generation, offset), from the agent's checkpoint file.
fn checkpoints(agent_dir: &Path) -> HashMap<String, Vec<(u64, u64)>> {
    let text =
        std::fs::read_to_string(agent_dir.join("state/checkpoints.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut out: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    for entry in json["files"].as_object().cloned().unwrap_or_default().values() {
        let path = entry["path"].as_str().unwrap_or_default().to_owned();
        let generation = entry["generation"].as_u64().unwrap_or(0);
        out.entry(path).or_default().push((generation, entry["acked"].as_u64().unwrap_or(0)));
    }
    out
}

/// Whether `query` finds anything; false while the collector is down.
fn searchable(base: &str, query: &str) -> bool {
    reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/search"))
        .query(&[("q", query), ("limit", "0")])
        .timeout(Duration::from_secs(2))
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v["total"].as_u64())
        .is_some_and(|n| n > 0)
}

struct Writer {
    path: PathBuf,
    /// Contents the file has had (renames and truncations), for the acknowledgement rule.
    contents: usize,
    lines_in_content: usize,
    truncate_when_read: bool,
    truncations: u64,
    written: usize,
}

/// Lines written per file, and how many rename and copytruncate rotations happened.
struct Written {
    lines: Vec<usize>,
    renames: usize,
    truncations: u64,
}

fn writer(
    root: PathBuf,
    agent_dir: PathBuf,
    base: String,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> Written {
    let mut files: Vec<Writer> = (0..FILES)
        .map(|i| {
            let dir = root.join(format!("pods/ns_pod-{i}_uid{i}/app"));
            std::fs::create_dir_all(&dir).unwrap();
            Writer {
                path: dir.join("0.log"),
                contents: 1,
                lines_in_content: 0,
                truncate_when_read: false,
                truncations: 0,
                written: 0,
            }
        })
        .collect();
    let (mut round, mut renames) = (0u64, 0);
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        for (i, w) in files.iter_mut().enumerate() {
            if w.truncate_when_read {
                // The agent has read the whole file once its last line is searchable.
                if !searchable(&base, &format!("\"f{i} n{}\"", w.written - 1)) {
                    continue;
                }
                std::fs::copy(&w.path, w.path.with_extension("log.copy")).unwrap();
                std::fs::OpenOptions::new().write(true).open(&w.path).unwrap().set_len(0).unwrap();
                w.truncate_when_read = false;
                w.contents += 1;
                w.lines_in_content = 0;
                w.truncations += 1;
            }
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(&w.path).unwrap();
            for _ in 0..2 {
                let (n, bucket) = (w.written, w.written / BUCKET_LINES);
                writeln!(file, "INFO torture f{i} n{n} b{bucket} round {round}").unwrap();
                w.written += 1;
                w.lines_in_content += 1;
            }
        }
        if round.is_multiple_of(7) {
            let w = &mut files[(round / 7) as usize % FILES];
            let seen =
                checkpoints(&agent_dir).get(&w.path.display().to_string()).map_or(0, Vec::len);
            if round.is_multiple_of(2) && seen >= w.contents && !w.truncate_when_read {
                std::fs::rename(&w.path, w.path.with_extension(format!("log.{round}"))).unwrap();
                w.contents += 1;
                w.lines_in_content = 0;
                renames += 1;
            } else if !round.is_multiple_of(2) && w.lines_in_content >= 200 && w.truncations < 3 {
                // Only long contents: were the agent killed right after the truncation, the
                // new content must still be shorter than the old checkpoint when it restarts.
                w.truncate_when_read = true;
            }
        }
        rounds.store(round, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(40));
    }
    Written {
        lines: files.iter().map(|w| w.written).collect(),
        renames,
        truncations: files.iter().map(|w| w.truncations).sum(),
    }
}

#[test]
fn every_line_once_through_rotations_and_kills() {
    let wanted_kills: u64 =
        std::env::var("SLUICE_TORTURE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let data = dir.path().join("collector");
    let base = format!("http://127.0.0.1:{http}");
    let mut collector = start_collector(&data, grpc, http);
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[format!("{}/pods/*/*/*.log", dir.path().display())],
        "scan_interval_ms: 200\n",
    );
    let mut agent = start_agent(&config, &agent_dir);

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writing = {
        let (root, agent_dir, base, stop, rounds) =
            (dir.path().to_owned(), agent_dir.clone(), base.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || writer(root, agent_dir, base, stop, rounds))
    };

    let (mut kills, mut agent_kills) = (0u64, 0u64);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while kills < wanted_kills {
        // xorshift: the same pseudo-random schedule every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(150 + state % 400));
        if state.is_multiple_of(3) {
            agent.kill9();
            agent_kills += 1;
            std::thread::sleep(Duration::from_millis(state % 200));
            agent = start_agent(&config, &agent_dir);
        } else {
            collector.kill9();
            std::thread::sleep(Duration::from_millis(state % 200));
            collector = start_collector(&data, grpc, http);
        }
        kills += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let Written { lines: written, renames, truncations } = writing.join().unwrap();
    let expected: usize = written.iter().sum();
    wait_until(Duration::from_secs(120), "every line is indexed", || {
        total(&base, "torture") as usize >= expected
    });
    std::thread::sleep(Duration::from_secs(2));

    let (mut lost, mut duplicates) = (0usize, 0usize);
    for (i, &n) in written.iter().enumerate() {
        let mut count: HashMap<String, usize> = HashMap::new();
        for bucket in 0..=n / BUCKET_LINES {
            for hit in search(&base, &format!("f{i} AND b{bucket}"), 10_000).hits {
                let number = hit.message.split_whitespace().nth(3).unwrap_or_default().to_owned();
                *count.entry(number).or_default() += 1;
            }
        }
        lost += (0..n).filter(|k| !count.contains_key(&format!("n{k}"))).count();
        duplicates += count.values().map(|c| c - 1).sum::<usize>();
    }
    println!(
        "torture: {} rounds, {expected} lines in {FILES} files, {renames} renames, {truncations} copytruncates, kills: {kills} ({agent_kills} agent, {} collector), lost: {lost}, duplicates: {duplicates}",
        rounds.load(Ordering::SeqCst),
        kills - agent_kills
    );
    assert!(renames >= 10 && truncations >= 5, "the writer rotated too little to test rotation");
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(total(&base, "torture") as usize, expected);
    assert!(agent.is_running() && collector.is_running());
}
