//! A sink that stays away (Elasticsearch at a closed port) with a capped WAL under the
//! default `block` policy: the WAL stops at its cap, the collector refuses new batches (the
//! agent keeps them in its spool), and once the sick sink is taken out of the configuration
//! every line is indexed exactly once: nothing lost, whatever the outage.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_full_wal_blocks_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Random hex, so the agent's zstd cannot shrink it below the cap.
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let lines = LINES;
    let text: String =
        (0..lines).map(|i| format!("INFO line {i} {}\n", noise_hex(i as u64, 12))).collect();
    std::fs::write(logs.join("app.log"), text).unwrap();
    let watch = format!("{}/*.log", logs.display());
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let config = write_agent_config(&dir.path().join("agent"), grpc, &[watch]);
    let _agent = start_agent(&config, &dir.path().join("agent"));
    let data = dir.path().join("collector");
    let dead_sink = format!("http://127.0.0.1:{}", free_port());
    let capped: [&std::ffi::OsStr; 6] = [
        "--wal-max-size".as_ref(),
        "256KiB".as_ref(),
        "--wal-segment-size".as_ref(),
        "64KiB".as_ref(),
        "--elasticsearch".as_ref(),
        dead_sink.as_ref(),
    ];
    let mut collector = start_collector_with(&data, grpc, http, &capped);
    wait_until(Duration::from_secs(60), "the WAL fills and refuses", || {
        metric(&base, "sluice_collector_wal_full_refusals_total") > 0.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(&base, "sluice_sink_healthy{sink=\"elasticsearch\"}"), 0.0);
    assert_eq!(metric(&base, "sluice_sink_healthy{sink=\"index\"}"), 1.0);
    assert!(metric(&base, "sluice_sink_lag_bytes{sink=\"elasticsearch\"}") > 0.0);
    let wal_bytes: u64 = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // At most the cap, plus the one frame an empty log always takes.
    assert!(wal_bytes <= 2 << 20, "the WAL stays near its cap: {wal_bytes} bytes");
    let stalled = total(&base, "");
    assert!(stalled < lines as u64, "the sick sink holds everything back: {stalled}");

    // The operator takes the sick sink out; the agent's retries go through.
    collector.kill9();
    let _collector = start_collector(&data, grpc, http);
    wait_until(Duration::from_secs(60), "every line arrives", || total(&base, "") >= lines as u64);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(total(&base, ""), lines as u64, "every line exactly once");
}

const LINES: usize = 20_000;
