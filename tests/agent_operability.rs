//! What an operator asks of a running `sluice-agent`: `/metrics` with per-file offsets and
//! lag, `/healthz`, `explain PATH` and `validate CONFIG`. Real processes on loopback.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn metrics_health_explain_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, agent_http) = (free_port(), free_port(), free_port());
    let _collector = start_collector(&dir.path().join("collector"), grpc, http);
    let base = format!("http://127.0.0.1:{http}");

    let log = dir.path().join("logs/app.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let lines: Vec<String> = (0..200).map(|i| format!("INFO operable line {i}")).collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let size = std::fs::metadata(&log).unwrap().len();
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[log.display().to_string()],
        &format!("metrics_listen: 127.0.0.1:{agent_http}\n"),
    );

    let validate = Command::new(sluice_agent()).arg("validate").arg(&config).output().unwrap();
    assert!(validate.status.success());
    assert_eq!(String::from_utf8_lossy(&validate.stdout), format!("{}: ok\n", config.display()));
    let bad = agent_dir.join("bad.yaml");
    std::fs::write(&bad, std::fs::read_to_string(&config).unwrap() + "metrics_listn: x\n").unwrap();
    let invalid = Command::new(sluice_agent()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        !invalid.status.success()
            && stderr.contains("metrics_listn")
            && stderr.contains("bad.yaml"),
        "{stderr}"
    );

    let _agent = start_agent(&config, &agent_dir);
    let agent_base = format!("http://127.0.0.1:{agent_http}");
    wait_until(Duration::from_secs(30), "the file is indexed", || total(&base, "operable") >= 200);
    assert_eq!(http_get(&format!("{agent_base}/healthz")).as_deref(), Some("ok\n"));
    let path_label = format!("{{path=\"{}\"}}", log.display());
    wait_until(Duration::from_secs(10), "the agent reports the file acknowledged", || {
        metric(&agent_base, &format!("sluice_agent_file_acked_offset_bytes{path_label}"))
            == size as f64
    });
    assert_eq!(
        metric(&agent_base, &format!("sluice_agent_file_read_offset_bytes{path_label}")),
        size as f64
    );
    assert_eq!(metric(&agent_base, &format!("sluice_agent_file_lag_bytes{path_label}")), 0.0);
    assert_eq!(metric(&agent_base, "sluice_agent_lines_read_total"), 200.0);
    assert_eq!(metric(&agent_base, "sluice_agent_records_acked_total"), 200.0);
    assert_eq!(metric(&agent_base, "sluice_agent_open_files"), 1.0);

    let explain = Command::new(sluice_agent())
        .arg("explain")
        .arg("--config")
        .arg(&config)
        .arg(&log)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    for wanted in [
        "watched:     yes".to_owned(),
        "format:      plain".to_owned(),
        format!("checkpoint:  {size} acknowledged by the collector; 0 bytes behind"),
    ] {
        assert!(report.contains(&wanted), "{wanted:?} in\n{report}");
    }
}
