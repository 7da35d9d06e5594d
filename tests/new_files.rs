//! New files are noticed through directory watches (inotify), not only by the periodic
//! rescan: with the rescan set to ten minutes, a pod directory created after the agent
//! started, and a file rotated in it, are read within seconds. Real processes on loopback.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn files_created_after_start_are_noticed_without_waiting_for_a_rescan() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let pods = dir.path().join("pods");
    std::fs::create_dir_all(&pods).unwrap();
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[format!("{}/*/*/*.log", pods.display())],
        "scan_interval_ms: 600000\n",
    );
    let _agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(10), "the agent starts", || {
        std::fs::read_to_string(agent_dir.join("agent.log"))
            .unwrap_or_default()
            .contains("agent started")
    });
    std::thread::sleep(Duration::from_millis(300));

    let container = pods.join("web_front-1_u9/nginx");
    std::fs::create_dir_all(&container).unwrap();
    std::fs::write(container.join("0.log"), "INFO created after the start\n").unwrap();
    wait_until(Duration::from_secs(15), "the new pod's file is read", || {
        total(&base, "created") == 1
    });

    std::fs::rename(container.join("0.log"), container.join("0.log.20261124-120000")).unwrap();
    std::fs::write(container.join("0.log"), "INFO rotated in after the start\n").unwrap();
    wait_until(Duration::from_secs(15), "the rotated-in file is read", || {
        total(&base, "rotated") == 1
    });
    assert_eq!(total(&base, "pod:front-1"), 2);
}
