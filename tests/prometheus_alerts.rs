//! Prometheus users: a real Prometheus and a real Alertmanager (built from the Go module proxy
//! by `scripts/test-servers prometheus|alertmanager`) scrape Sluice's own `/metrics`, evaluate
//! rules on it and hand their alerts to Sluice — pushed as to an Alertmanager
//! (`POST /api/v2/alerts`) or through Alertmanager's `webhook_configs`
//! (`/api/v1/alertmanager/webhook`); Sluice's own metric rules ask that Prometheus with PromQL.
//! Everything goes through the same grouping and budget to the DingTalk robot (the local
//! double, `sluice_bench::fake_dingtalk`: the real one is a cloud service).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use sluice_bench::fake_dingtalk::{FakeDingTalk, Robot};

const TOKEN: &str = "prom-robot";

/// The DingTalk robot and `sluice up --alerts` (its alerts file routes everything to the robot,
/// plus `more`) tailing `logs/app.log`, written with `lines` first.
struct Rig {
    dir: tempfile::TempDir,
    robot: FakeDingTalk,
    logs: std::path::PathBuf,
    _up: Proc,
    base: String,
}

impl Rig {
    fn start(lines: &str, more: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let robot = FakeDingTalk::start(
            vec![Robot { token: TOKEN.into(), ..Robot::default() }],
            Duration::from_secs(600),
        );
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("app.log"), lines).unwrap();
        let alerts = dir.path().join("alerts.yaml");
        std::fs::write(
            &alerts,
            format!(
                "receivers:\n  - name: oncall\n    dingtalk: {{webhook: '{}'}}\n\
                 route: {{receiver: oncall, group_by: [alertname], group_wait: 0s, group_interval: 2s}}\n{more}",
                robot.webhook(TOKEN)
            ),
        )
        .unwrap();
        let (up, base) = start_up_with(
            &dir.path().join("data"),
            &[format!("{}/*.log", logs.display())],
            &["--alerts".as_ref(), alerts.as_os_str()],
        );
        Self { dir, robot, logs, _up: up, base }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn log(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap()
}

fn texts(robot: &FakeDingTalk, having: &str) -> Vec<String> {
    robot.delivered(TOKEN).iter().map(|r| r.text()).filter(|t| t.contains(having)).collect()
}

#[test]
fn prometheus_alerts_about_sluice_metrics_reach_dingtalk_once() {
    let rig = Rig::start("ERROR 支付失败 one\nINFO fine\n", "");
    let (dir, robot, base) = (rig.path(), &rig.robot, &rig.base);
    wait_until(Duration::from_secs(30), "sluice up indexed the lines", || total(base, "fine") >= 1);
    let host = base.trim_start_matches("http://");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: sluice\n    interval: 1s\n    rules:\n      - alert: SluiceIngested\n        expr: sum(sluice_agent_lines_read_total) > 0\n        labels: {severity: critical, namespace: platform}\n        annotations: {summary: 'sluice ingested {{ $value }} lines'}\n",
    )
    .unwrap();
    let _prometheus = start_prometheus(
        dir,
        free_port(),
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{host}']}}]\n\
             alerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs: [{{targets: ['{host}']}}]\n",
            rules.display()
        ),
    );
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
    let rig = Rig::start("", "");
    let (robot, base) = (&rig.robot, &rig.base);
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

/// Sluice's own metric rule asks the real Prometheus (which scrapes Sluice) with PromQL:
/// pending for its `for:`, firing, unchanged while Prometheus is down, resolved once the
/// series drops out of the answer.
#[test]
fn a_metric_rule_asks_prometheus_and_fires_waits_out_an_outage_and_resolves() {
    let port = free_port();
    let rig = Rig::start(
        "INFO one\nINFO two\n",
        &format!(
            "prometheus: {{url: 'http://127.0.0.1:{port}', timeout: 2s}}\n\
             metric_rules:\n  - name: few-lines\n    expr: 'sum by (job) (sluice_agent_lines_read_total) < 10'\n    every: 1s\n    for: 2s\n    labels: {{severity: warning}}\n    summary: '{{{{ labels.job }}}} read only {{{{ value }}}} lines'\n"
        ),
    );
    let (dir, robot, base, logs) = (rig.path(), &rig.robot, &rig.base, &rig.logs);
    wait_until(Duration::from_secs(30), "sluice up read the lines", || total(base, "two") >= 1);
    let host = base.trim_start_matches("http://");
    let config = format!(
        "global: {{scrape_interval: 1s}}\n\
         scrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{host}']}}]\n"
    );
    let mut prom = start_prometheus(dir, port, &config);
    wait_until(Duration::from_secs(60), "the metric rule fires", || {
        !texts(robot, "[FIRING] few-lines").is_empty()
    });
    let fired = texts(robot, "[FIRING] few-lines");
    assert!(fired[0].contains("sluice read only 2 lines"), "{}", fired[0]);
    let listed = http_get(&format!("{base}/api/v1/alerts")).unwrap();
    assert!(listed.contains("few-lines") && listed.contains("firing"), "{listed}");

    // Prometheus down: the rule's queries fail, and a failure resolves nothing.
    prom.child.kill().unwrap();
    prom.child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(texts(robot, "[RESOLVED] few-lines").is_empty(), "an outage is not a resolution");
    let metrics = http_get(&format!("{base}/metrics")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_alerting_rule_failures_total{rule=\"few-lines\"}")),
        "failures are counted"
    );

    let _prom = start_prometheus(dir, port, &config);
    let more: String = (0..20).map(|i| format!("INFO more {i}\n")).collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("app.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, more.as_bytes()))
        .unwrap();
    wait_until(Duration::from_secs(60), "the metric rule resolves", || {
        !texts(robot, "[RESOLVED] few-lines").is_empty()
    });
    assert_eq!(texts(robot, "[FIRING] few-lines").len(), 1, "fired once");
}

/// The whole chain a Prometheus shop runs today: Prometheus evaluates a rule on Sluice's
/// metrics and sends it to a real Alertmanager, whose `webhook_configs` points at Sluice,
/// which takes the place of the DingTalk bridge: one message, then the resolution.
#[test]
fn a_real_alertmanager_forwards_to_sluice_through_its_webhook() {
    let rig = Rig::start("INFO one\n", "");
    let (dir, robot, base, logs) = (rig.path(), &rig.robot, &rig.base, &rig.logs);
    wait_until(Duration::from_secs(30), "sluice up read the line", || total(base, "one") >= 1);
    let am_port = free_port();
    let am_config = dir.join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route: {{receiver: sluice, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}\n\
             receivers:\n  - name: sluice\n    webhook_configs:\n      - url: '{base}/api/v1/alertmanager/webhook'\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let _alertmanager = Proc {
        child: Command::new(test_servers_tool("ALERTMANAGER_BIN", "alertmanager"))
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log(dir, "alertmanager.log"))
            .spawn()
            .expect("alertmanager starts"),
        name: "alertmanager",
    };
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: sluice\n    interval: 1s\n    rules:\n      - alert: FewLines\n        expr: sum(sluice_agent_lines_read_total) < 5\n        labels: {severity: warning}\n        annotations: {summary: 'only {{ $value }} lines'}\n",
    )
    .unwrap();
    let host = base.trim_start_matches("http://");
    let _prometheus = start_prometheus(
        dir,
        free_port(),
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{host}']}}]\n\
             alerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n",
            rules.display()
        ),
    );
    wait_until(Duration::from_secs(60), "Alertmanager's webhook reaches DingTalk", || {
        !texts(robot, "[FIRING] FewLines").is_empty()
    });
    assert!(texts(robot, "[FIRING] FewLines")[0].contains("only 1 lines"));
    let more: String = (0..10).map(|i| format!("INFO more {i}\n")).collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("app.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, more.as_bytes()))
        .unwrap();
    wait_until(Duration::from_secs(60), "the resolution comes through Alertmanager", || {
        !texts(robot, "[RESOLVED] FewLines").is_empty()
    });
    // Alertmanager resends its group each group_interval while it fires: not news.
    assert_eq!(texts(robot, "[FIRING] FewLines").len(), 1);
}
