//! Prometheus users: a real Prometheus (built from the Go module proxy by
//! `scripts/test-servers prometheus`) scrapes Sluice's own `/metrics`, evaluates a rule on it
//! and pushes its alerts to Sluice as to an Alertmanager (`POST /api/v2/alerts`); Sluice routes
//! them through the same grouping and budget to the DingTalk robot (the local double,
//! `sluice_bench::fake_dingtalk`: the real one is a cloud service). An Alertmanager webhook
//! payload is taken at `/api/v1/alertmanager/webhook` the same way.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use sluice_bench::fake_dingtalk::{FakeDingTalk, Robot};

const TOKEN: &str = "prom-robot";

fn alerts_file(dir: &std::path::Path, robot: &FakeDingTalk) -> std::path::PathBuf {
    let path = dir.join("alerts.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:\n  - name: oncall\n    dingtalk: {{webhook: '{}'}}\n\
             route: {{receiver: oncall, group_by: [alertname], group_wait: 0s, group_interval: 2s}}\n",
            robot.webhook(TOKEN)
        ),
    )
    .unwrap();
    path
}

#[test]
fn prometheus_alerts_about_sluice_metrics_reach_dingtalk_once() {
    let dir = tempfile::tempdir().unwrap();
    let robot = FakeDingTalk::start(
        vec![Robot { token: TOKEN.into(), ..Robot::default() }],
        Duration::from_secs(600),
    );
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "ERROR 支付失败 one\nINFO fine\n").unwrap();
    let alerts = alerts_file(dir.path(), &robot);
    let (_up, base) = start_up_with(
        &dir.path().join("data"),
        &[format!("{}/*.log", logs.display())],
        &["--alerts".as_ref(), alerts.as_os_str()],
    );
    wait_until(Duration::from_secs(30), "sluice up indexed the lines", || {
        total(&base, "fine") >= 1
    });
    let host = base.trim_start_matches("http://");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: sluice\n    interval: 1s\n    rules:\n      - alert: SluiceIngested\n        expr: sum(sluice_agent_lines_read_total) > 0\n        labels: {severity: critical, namespace: platform}\n        annotations: {summary: 'sluice ingested {{ $value }} lines'}\n",
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{host}']}}]\n\
             alerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs: [{{targets: ['{host}']}}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Proc {
        child: Command::new(test_servers_tool("PROMETHEUS_BIN", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts"),
        name: "prometheus",
    };
    wait_until(Duration::from_secs(60), "Prometheus's alert reaches DingTalk", || {
        robot.delivered(TOKEN).iter().any(|r| r.text().contains("SluiceIngested"))
    });
    let delivered = robot.delivered(TOKEN);
    let text = delivered.iter().find(|r| r.text().contains("SluiceIngested")).unwrap().text();
    assert!(text.contains("sluice ingested") && text.contains("(critical)"), "{text}");
    let listed = http_get(&format!("{base}/api/v1/alerts/status")).unwrap();
    assert!(listed.contains("oncall/dingtalk"), "{listed}");
    // Prometheus resends while it fires: one notification within repeat_interval.
    std::thread::sleep(Duration::from_secs(5));
    let count =
        robot.delivered(TOKEN).iter().filter(|r| r.text().contains("SluiceIngested")).count();
    assert_eq!(count, 1, "resends are not news");
}

#[test]
fn an_alertmanager_webhook_is_routed_like_any_alert() {
    let dir = tempfile::tempdir().unwrap();
    let robot = FakeDingTalk::start(
        vec![Robot { token: TOKEN.into(), ..Robot::default() }],
        Duration::from_secs(600),
    );
    let alerts = alerts_file(dir.path(), &robot);
    let (_up, base) = start_up_with(
        &dir.path().join("data"),
        &[format!("{}/none/*.log", dir.path().display())],
        &["--alerts".as_ref(), alerts.as_os_str()],
    );
    let payload = |status: &str, ends: &str| {
        format!(
            r#"{{"version":"4","status":"{status}","receiver":"sluice","groupLabels":{{"alertname":"DiskFull"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","groupKey":"{{}}:{{alertname=\"DiskFull\"}}","truncatedAlerts":0,
               "alerts":[{{"status":"{status}","labels":{{"alertname":"DiskFull","instance":"node-1"}},"annotations":{{"summary":"disk 95%"}},"startsAt":"2026-12-05T08:00:00Z","endsAt":"{ends}","generatorURL":"","fingerprint":"1"}}]}}"#
        )
    };
    let post = |body: String| {
        reqwest::blocking::Client::new()
            .post(format!("{base}/api/v1/alertmanager/webhook"))
            .body(body)
            .send()
            .unwrap()
    };
    assert!(post(payload("firing", "0001-01-01T00:00:00Z")).status().is_success());
    wait_until(Duration::from_secs(20), "the webhook's alert reaches DingTalk", || {
        robot.delivered(TOKEN).iter().any(|r| r.text().contains("[FIRING] DiskFull: disk 95%"))
    });
    let resolved_at = chrono::Utc::now().to_rfc3339();
    assert!(post(payload("resolved", &resolved_at)).status().is_success());
    wait_until(Duration::from_secs(20), "the resolution reaches DingTalk", || {
        robot.delivered(TOKEN).iter().any(|r| r.text().contains("[RESOLVED] DiskFull"))
    });
    let bad = post("{\"alerts\":[{\"labels\":{}}]}".to_owned());
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("alertname"));
}
