//! copytruncate: a file truncated in place, seen by the running agent and while it was down,
//! with the same first line each time (so only the truncation tells the contents apart).
//! Every line of every content is indexed exactly once. Real processes on loopback.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

/// The acknowledged offset of the newest generation of the agent's one file.
fn acked_newest(agent_dir: &std::path::Path) -> u64 {
    let text =
        std::fs::read_to_string(agent_dir.join("state/checkpoints.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let entries = json["files"].as_object().cloned().unwrap_or_default();
    entries
        .values()
        .max_by_key(|e| e["generation"].as_u64().unwrap_or(0))
        .and_then(|e| e["acked"].as_u64())
        .unwrap_or(0)
}

#[test]
fn truncated_files_are_read_again_with_new_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let log = dir.path().join("logs/app.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    // The application's own handle, in append mode as loggers open it.
    let mut app = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let mut write = |lines: Vec<String>| {
        for line in lines {
            writeln!(app, "{line}").unwrap();
        }
        app.flush().unwrap();
        std::fs::metadata(&log).unwrap().len()
    };
    let content = |name: &str, n: usize| {
        let mut lines = vec!["INFO same first line".to_owned()];
        lines.extend((0..n).map(|i| format!("INFO {name} content line {i}")));
        lines
    };
    let copytruncate = || {
        std::fs::copy(&log, log.with_extension("log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    };

    let agent_dir = dir.path().join("agent");
    let config = write_agent_config(&agent_dir, grpc, &[log.display().to_string()]);
    let mut agent = start_agent(&config, &agent_dir);
    let size = write(content("old", 99));
    wait_until(Duration::from_secs(30), "the old content is acknowledged", || {
        acked_offset(&agent_dir) == size
    });

    copytruncate();
    let size = write(content("new", 50));
    wait_until(Duration::from_secs(30), "the new content is acknowledged", || {
        total(&base, "\"new content\"") == 50 && acked_newest(&agent_dir) == size
    });

    agent.kill9();
    write((0..20).map(|i| format!("INFO after restart line {i}")).collect());
    let mut agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(30), "lines written while the agent was down", || {
        total(&base, "\"after restart\"") >= 20
    });

    agent.kill9();
    copytruncate();
    write(content("third", 5));
    let _agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(30), "content truncated while the agent was down", || {
        total(&base, "third") >= 5
    });

    std::thread::sleep(Duration::from_millis(1500));
    for (query, want) in [
        ("old", 99),
        ("\"new content\"", 50),
        ("\"after restart\"", 20),
        ("third", 5),
        ("\"same first line\"", 3),
    ] {
        assert_eq!(total(&base, query), want, "{query}");
    }
    let hits = search(&base, "", 1000).hits;
    assert_eq!(hits.len(), 177);
    let mut ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 177, "every record has its own id");
}
