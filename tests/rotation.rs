//! Rename rotation, kubelet style (`0.log` → `0.log.<time>`, a new `0.log`), while the agent
//! runs and while it is down with an unread tail: every line exactly once. Real processes on
//! loopback.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;

fn append(path: &Path, lines: &[String]) -> u64 {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn lines(name: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("INFO {name} line {i}")).collect()
}

#[test]
fn renamed_files_are_read_to_their_end_even_after_an_agent_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let container = dir.path().join("pods/shop_api-1_u1/app");
    std::fs::create_dir_all(&container).unwrap();
    let live = container.join("0.log");
    let agent_dir = dir.path().join("agent");
    let config =
        write_agent_config(&agent_dir, grpc, &[format!("{}/pods/*/*/*.log", dir.path().display())]);
    let mut agent = start_agent(&config, &agent_dir);

    // Rotation while the agent runs; the application still holds the old file for a moment.
    let size = append(&live, &lines("first", 0..100));
    wait_until(Duration::from_secs(30), "the first file is acknowledged", || {
        acked_offset(&agent_dir) == size
    });
    let mut old_handle = std::fs::OpenOptions::new().append(true).open(&live).unwrap();
    std::fs::rename(&live, container.join("0.log.20261124-101010")).unwrap();
    for line in lines("first", 100..120) {
        writeln!(old_handle, "{line}").unwrap();
    }
    drop(old_handle);
    append(&live, &lines("second", 0..50));
    wait_until(Duration::from_secs(30), "both files arrive", || {
        total(&base, "first") >= 120 && total(&base, "second") >= 50
    });

    // Rotation while the agent is down, with 40 lines it never read.
    wait_until(Duration::from_secs(30), "the second file is acknowledged", || {
        total(&base, "second") == 50
    });
    std::thread::sleep(Duration::from_millis(500));
    agent.kill9();
    append(&live, &lines("second", 50..90));
    std::fs::rename(&live, container.join("0.log.20261124-111111")).unwrap();
    append(&live, &lines("third", 0..30));
    let _agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(30), "the unread tail and the new file arrive", || {
        total(&base, "second") >= 90 && total(&base, "third") >= 30
    });

    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(total(&base, "first"), 120);
    assert_eq!(total(&base, "second"), 90);
    assert_eq!(total(&base, "third"), 30);
    let hits = search(&base, "", 1000).hits;
    let mut messages: Vec<&str> = hits.iter().map(|h| h.message.as_str()).collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), 240, "no line twice");
    assert!(hits.iter().all(|h| h.namespace == "shop" && h.pod == "api-1"));
}

/// Kubelet compresses older rotations: a file rotated while the agent was down and then
/// gzipped (the uncompressed copy deleted) still gives up its unread tail, read from the
/// `.gz` under its old identity — every line once.
#[test]
fn the_unread_tail_of_a_compressed_rotation_is_read_from_the_gz() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let container = dir.path().join("pods/shop_api-2_u2/app");
    std::fs::create_dir_all(&container).unwrap();
    let live = container.join("0.log");
    let agent_dir = dir.path().join("agent");
    let config =
        write_agent_config(&agent_dir, grpc, &[format!("{}/pods/*/*/*.log", dir.path().display())]);
    let mut agent = start_agent(&config, &agent_dir);
    let size = append(&live, &lines("zipped", 0..100));
    wait_until(Duration::from_secs(30), "the file is acknowledged", || {
        acked_offset(&agent_dir) == size
    });
    agent.kill9();
    append(&live, &lines("zipped", 100..160));
    let rotated = container.join("0.log.20261201-101010");
    std::fs::rename(&live, &rotated).unwrap();
    let gz = container.join("0.log.20261201-101010.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(&std::fs::read(&rotated).unwrap()).unwrap();
    encoder.finish().unwrap();
    std::fs::remove_file(&rotated).unwrap();
    append(&live, &lines("fresh", 0..25));

    let _agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(30), "the compressed tail and the new file arrive", || {
        total(&base, "zipped") >= 160 && total(&base, "fresh") >= 25
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(total(&base, "zipped"), 160, "the unread tail once, the read part not again");
    assert_eq!(total(&base, "fresh"), 25);
    let tail = search(&base, "zipped AND line AND 130", 10).hits;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].pod, "api-2");
    assert!(tail[0].file.ends_with(".gz"), "{}", tail[0].file);
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap();
    assert!(log.contains("from its compressed copy"), "{log}");
}

/// A deleted pod's log directory goes with it; its checkpoints go too, so the agent's
/// checkpoint file does not grow with every pod that ever ran on the node.
#[test]
fn checkpoints_of_a_deleted_pod_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let gone_pod = dir.path().join("pods/shop_gone-1_u1/app");
    let live_pod = dir.path().join("pods/shop_live-1_u2/app");
    for d in [&gone_pod, &live_pod] {
        std::fs::create_dir_all(d).unwrap();
    }
    append(&gone_pod.join("0.log"), &lines("departed", 0..10));
    let agent_dir = dir.path().join("agent");
    let config =
        write_agent_config(&agent_dir, grpc, &[format!("{}/pods/*/*/*.log", dir.path().display())]);
    let mut agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(30), "the pod's lines arrive", || {
        total(&base, "departed") == 10
    });
    let checkpoints = agent_dir.join("state/checkpoints.json");
    assert!(std::fs::read_to_string(&checkpoints).unwrap().contains("shop_gone-1_u1"));
    agent.kill9();
    std::fs::remove_dir_all(dir.path().join("pods/shop_gone-1_u1")).unwrap();
    let _agent = start_agent(&config, &agent_dir);
    append(&live_pod.join("0.log"), &lines("staying", 0..5));
    wait_until(Duration::from_secs(30), "the live pod's lines arrive", || {
        total(&base, "staying") == 5
    });
    wait_until(Duration::from_secs(10), "the deleted pod is forgotten", || {
        let text = std::fs::read_to_string(&checkpoints).unwrap();
        !text.contains("shop_gone-1_u1") && text.contains("shop_live-1_u2")
    });
    assert_eq!(total(&base, "departed"), 10);
}
