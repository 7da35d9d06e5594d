//! The agent's bounds on file handles: at most `max_open_files` open, idle ones closed and
//! reopened when they grow, so every file is read; and deleted files, which hold their disk
//! while open, let go of beyond `max_deleted_bytes` while a full spool keeps them unread.
//! Real processes on loopback.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn append(path: &Path, word: &str, from: usize, lines: usize, pad: usize) -> u64 {
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap(),
    );
    for i in from..from + lines {
        writeln!(out, "INFO {word} n{i} {}", noise_hex(i as u64 + 1, pad / 16)).unwrap();
    }
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn files_beyond_the_open_file_cap_wait_their_turn_and_all_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let (agent_dir, agent_http) = (dir.path().join("agent"), free_port());
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[format!("{}/*.log", logs.display())],
        &format!(
            "metrics_listen: 127.0.0.1:{agent_http}\nmax_open_files: 2\nscan_interval_ms: 200\n"
        ),
    );
    let files: Vec<_> = (0..6).map(|i| logs.join(format!("app-{i}.log"))).collect();
    for f in &files {
        append(f, "capped", 0, 50, 0);
    }
    let _agent = start_agent(&config, &agent_dir);
    let agent_base = format!("http://127.0.0.1:{agent_http}");
    let mut most_open = 0.0f64;
    wait_until(Duration::from_secs(60), "every file is read", || {
        most_open = most_open.max(metric(&agent_base, "sluice_agent_open_files"));
        total(&base, "capped") >= 300
    });
    // Closed files that grow are opened again, from where they were.
    for f in &files {
        append(f, "capped", 50, 10, 0);
    }
    wait_until(Duration::from_secs(60), "the new lines of every file arrive", || {
        most_open = most_open.max(metric(&agent_base, "sluice_agent_open_files"));
        total(&base, "capped") >= 360
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(total(&base, "capped"), 360, "every line once");
    assert!(most_open <= 2.0, "at most two files open: {most_open}");
    assert_eq!(total(&base, "capped AND n55"), 6);
}

/// File descriptors of `pid` whose file is deleted.
fn deleted_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.to_string_lossy().ends_with("(deleted)"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn deleted_files_are_let_go_beyond_max_deleted_bytes_while_the_spool_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, agent_http) = (free_port(), free_port(), free_port());
    let agent_dir = dir.path().join("agent");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[format!("{}/*.log", logs.display())],
        &format!(
            "metrics_listen: 127.0.0.1:{agent_http}\nspool: {{max_bytes: 1048576}}\nmax_deleted_bytes: 2097152\n"
        ),
    );
    let big = logs.join("big.log");
    let big_lines = 40_000;
    append(&big, "doomed", 0, big_lines, 192);
    let small = logs.join("small.log");
    append(&small, "kept", 0, 100, 0);
    let agent = start_agent(&config, &agent_dir);
    let agent_base = format!("http://127.0.0.1:{agent_http}");
    wait_until(Duration::from_secs(30), "the spool is full", || {
        metric(&agent_base, "sluice_agent_spool_full") == 1.0
    });
    // Deleted while the agent cannot read it: it holds 8 MiB of disk, over the cap.
    std::fs::remove_file(&big).unwrap();
    let deleted_at = Instant::now();
    wait_until(Duration::from_secs(30), "the agent lets go of the deleted file", || {
        deleted_fds(agent.pid()) == 0
    });
    println!("deleted file closed {:?} after its deletion", deleted_at.elapsed());
    assert_eq!(metric(&agent_base, "sluice_agent_deleted_files_closed_total"), 1.0);
    assert!(metric(&agent_base, "sluice_agent_deleted_bytes_dropped_total") > 0.0);

    let _collector = start_collector(&dir.path().join("collector"), grpc, http);
    let base = format!("http://127.0.0.1:{http}");
    append(&small, "kept", 100, 50, 0);
    wait_until(Duration::from_secs(60), "the kept file arrives whole", || {
        total(&base, "kept") >= 150
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(total(&base, "kept"), 150, "other files lose nothing");
    let doomed = total(&base, "doomed");
    assert!(doomed > 0 && doomed < big_lines as u64, "what was spooled arrives: {doomed}");
}
