//! Stack traces become one record each, from plain and CRI files (after `P`/`F` merging,
//! per stream), including the last event of a file, which only the timeout completes; and
//! an agent `kill -9` while events are half written loses and duplicates nothing. Real
//! `sluice-agent` and `sluice collector` processes on loopback.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The events of a file as the Java preset should join them, computed independently: a line
/// that starts with a date starts an event; any other continues the event of its stream.
fn expected_events(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let starts = |l: &str| {
        l.len() > 11
            && l.as_bytes()[..10]
                .iter()
                .enumerate()
                .all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() })
    };
    let cri = path.to_string_lossy().contains(".cri.");
    let mut parts: HashMap<String, String> = HashMap::new();
    let mut open: HashMap<String, String> = HashMap::new();
    let mut events = Vec::new();
    for raw in text.lines() {
        let (stream, line) = if cri {
            let fields: Vec<&str> = raw.splitn(4, ' ').collect();
            let part = parts.entry(fields[1].to_owned()).or_default();
            part.push_str(fields.get(3).copied().unwrap_or_default());
            if fields[2] == "P" {
                continue;
            }
            (fields[1].to_owned(), std::mem::take(part))
        } else {
            (String::new(), raw.to_owned())
        };
        match open.get_mut(&stream) {
            Some(event) if !starts(&line) => {
                event.push('\n');
                event.push_str(&line);
            }
            _ => {
                if let Some(done) = open.insert(stream, line) {
                    events.push(done);
                }
            }
        }
    }
    events.extend(open.into_values());
    events
}

#[test]
fn java_stack_traces_are_one_record_and_survive_an_agent_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let sources: Vec<_> = ["java_zh.log", "java_zh.cri.log"]
        .iter()
        .map(|name| {
            (logs.join(name), std::fs::read(shared_testdata().join("zh").join(name)).unwrap())
        })
        .collect();
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[format!("{}/*.log", logs.display())],
        "multiline:\n  preset: java\n  timeout_ms: 500\n",
    );
    let mut agent = start_agent(&config, &agent_dir);

    // Written in ten slices, cut at arbitrary bytes (inside lines and inside traces); the
    // agent is killed after the fifth.
    let mut files: Vec<_> =
        sources.iter().map(|(path, _)| std::fs::File::create(path).unwrap()).collect();
    for slice in 0..10 {
        for ((_, bytes), file) in sources.iter().zip(&mut files) {
            let (from, to) = (bytes.len() * slice / 10, bytes.len() * (slice + 1) / 10);
            file.write_all(&bytes[from..to]).unwrap();
            file.flush().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        if slice == 4 {
            agent.kill9();
            agent = start_agent(&config, &agent_dir);
        }
    }

    for (path, _) in &sources {
        let expected = expected_events(path);
        assert!(expected.len() < 3500, "the test data has stack traces to join");
        let query = format!("file:\"{}\"", path.display());
        wait_until(Duration::from_secs(30), "every event is indexed", || {
            total(&base, &query) as usize >= expected.len()
        });
        std::thread::sleep(Duration::from_millis(800));
        assert_file_exactly_once(&base, path, &expected);
    }
    let trace = search(&base, "\"at com.zto.pay.PayService\" AND level:error", 1).hits;
    assert!(trace[0].message.starts_with("2026-11-23 ") && trace[0].message.contains("\n\tat "));
    assert!(agent.is_running());
}
