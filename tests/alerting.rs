//! Alerting end to end: `sluice up --alerts` tailing pod logs, rules firing per namespace, and
//! notifications to a DingTalk robot and Aliyun SMS (local doubles that enforce signatures,
//! error codes and the 20-a-minute limit: `sluice_bench::fake_dingtalk`, `fake_sms`) and to a
//! real SMTP server (aiosmtpd, STARTTLS with AUTH; `scripts/smtp/server.py`).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::{Pki, make_pki};
use common::*;
use sluice_bench::fake_dingtalk::{FakeDingTalk, Robot};
use sluice_bench::fake_sms::FakeSms;

const TOKEN: &str = "robot-token-1";
const SECRET: &str = "SECrobotsecret0123456789";
const MOBILE: &str = "13800000000";

fn smtp_python() -> PathBuf {
    test_servers_tool("SMTP_PYTHON", "smtp-python")
}

/// A real SMTP server with STARTTLS required and AUTH; returns it, its port and its Maildir.
fn smtp_server(dir: &Path, pki: &Pki) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let maildir = dir.join("maildir");
    std::fs::write(dir.join("smtp-password"), "mail-password-42\n").unwrap();
    let mut child = Command::new(smtp_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp/server.py"))
        .args(["--port", &port.to_string(), "--tls", "starttls", "--user", "sluice"])
        .arg("--maildir")
        .arg(&maildir)
        .arg("--cert")
        .arg(&pki.loopback_cert)
        .arg("--key")
        .arg(&pki.loopback_key)
        .arg("--password-file")
        .arg(dir.join("smtp-password"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("smtp.log")).unwrap())
        .spawn()
        .expect("the SMTP server starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "see {}", dir.join("smtp.log").display());
    (Proc { child, name: "smtp" }, port, maildir)
}

struct Rig {
    dir: tempfile::TempDir,
    ding: FakeDingTalk,
    sms: FakeSms,
    _smtp: Proc,
    maildir: PathBuf,
    alerts: PathBuf,
    pods: PathBuf,
}

impl Rig {
    fn new(robot_secret: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = make_pki(dir.path());
        let (smtp, smtp_port, maildir) = smtp_server(dir.path(), &pki);
        let ding = FakeDingTalk::start(
            vec![Robot {
                token: TOKEN.into(),
                secret: Some(robot_secret.into()),
                keywords: vec![],
            }],
            Duration::from_secs(600),
        );
        let sms = FakeSms::start(&[("sms-key-id", "sms-key-secret")], None);
        std::fs::write(dir.path().join("sms-secret"), "sms-key-secret\n").unwrap();
        let alerts = dir.path().join("alerts.yaml");
        std::fs::write(
            &alerts,
            format!(
                r#"
receivers:
  - name: oncall
    send_resolved: false
    dingtalk:
      webhook: "{webhook}"
      secret: "{SECRET}"
      at_mobiles: ["{MOBILE}"]
    email:
      smtp: "127.0.0.1:{smtp_port}"
      tls: starttls
      ca_file: "{ca}"
      from: "sluice@example.com"
      to: ["oncall@example.com"]
      username: sluice
      password_file: smtp-password
    sms:
      endpoint: "{sms}"
      access_key_id: sms-key-id
      access_key_secret_file: sms-secret
      sign_name: "Sluice"
      template_code: "SMS_123"
      phone_numbers: ["{MOBILE}"]
route:
  receiver: oncall
  group_by: [rule, namespace]
  group_wait: 0s
  group_interval: 3s
  repeat_interval: 4h
rules:
  - name: pod-errors
    query: 'level:error AND 支付失败'
    every: 1s
    window: 1m
    group_by: [namespace]
    when: 'count >= 2'
    labels: {{severity: critical}}
    summary: '{{{{ namespace }}}}: {{{{ count }}}} 支付失败'
"#,
                webhook = ding.webhook(TOKEN),
                ca = pki.ca.display(),
                sms = sms.url,
            ),
        )
        .unwrap();
        let pods = dir.path().join("var/log/pods");
        Rig { ding, sms, _smtp: smtp, maildir, alerts, pods, dir }
    }

    fn start(&self) -> (Proc, String) {
        start_up_with(
            &self.dir.path().join("data"),
            &[format!("{}/*/*/*.log", self.pods.display())],
            &["--alerts".as_ref(), self.alerts.as_os_str()],
        )
    }

    /// Appends `n` error lines (CRI, stamped now) to a pod of namespace `ns`.
    fn errors(&self, ns: &str, n: usize) {
        let file = self.pods.join(format!("{ns}_pay-1_uid-{ns}")).join("app/0.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file).unwrap();
        for i in 0..n {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
            writeln!(f, "{now} stdout F ERROR 支付失败 order {i} in {ns}").unwrap();
        }
        f.sync_all().unwrap();
    }

    /// How many delivered DingTalk messages name each namespace as firing.
    fn dingtalk_namespaces(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for r in self.ding.delivered(TOKEN) {
            let text = r.text();
            // Each notification in a message heads its alerts with its group's labels.
            for part in text.split("namespace=\"").skip(1) {
                let ns = part.split('"').next().unwrap().to_owned();
                *seen.entry(ns).or_default() += 1;
            }
        }
        seen
    }

    fn mails(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(&new) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }

    /// Each mail's namespace, from its subject; a mail sent again with the same `Message-ID`
    /// (a kill between the server's acceptance and the outbox's update) is the same message to
    /// every mail client, so it counts once.
    fn mail_namespaces(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        let mut ids = std::collections::BTreeSet::new();
        for mail in self.mails() {
            let id = mail.lines().find(|l| l.to_ascii_lowercase().starts_with("message-id:"));
            if !ids.insert(id.expect("every mail has a Message-ID").to_owned()) {
                continue;
            }
            let subject = mail.lines().find(|l| l.starts_with("Subject:")).unwrap_or("").to_owned();
            let ns = subject.split("namespace=\"").nth(1).and_then(|s| s.split('"').next());
            *seen.entry(ns.unwrap_or("?").to_owned()).or_default() += 1;
        }
        seen
    }

    fn sms_namespaces(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for s in self.sms.sent() {
            *seen.entry(s.template_param["service"].clone()).or_default() += 1;
        }
        seen
    }

    fn auth_log(&self) -> String {
        std::fs::read_to_string(self.maildir.join("auth.log")).unwrap_or_default()
    }
}

fn namespaces(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("ns-{i:02}")).collect()
}

/// Every DingTalk message is signed, mentions its `@mobile` in the text too, and the robot
/// never sees more than 20 requests a minute.
fn check_dingtalk_discipline(rig: &Rig) {
    assert_eq!(rig.ding.count_errcode(TOKEN, 310000), 0, "a request with a bad signature");
    assert_eq!(rig.ding.count_errcode(TOKEN, 130101), 0, "the robot was sent too fast");
    assert!(rig.ding.busiest_minute(TOKEN) <= 20, "{} in a minute", rig.ding.busiest_minute(TOKEN));
    for r in rig.ding.delivered(TOKEN) {
        assert!(r.text().contains(&format!("@{MOBILE}")), "{}", r.text());
        assert_eq!(r.body["at"]["atMobiles"][0], MOBILE);
    }
    let auth = rig.auth_log();
    assert!(!auth.is_empty() && auth.lines().all(|l| l == "tls sluice ok"), "{auth}");
}

#[test]
fn errors_in_30_namespaces_reach_every_channel_within_the_robot_budget() {
    let rig = Rig::new(SECRET);
    let (_up, _base) = rig.start();
    for ns in namespaces(0..30) {
        rig.errors(&ns, 3);
    }
    let all: BTreeMap<String, usize> = namespaces(0..30).into_iter().map(|n| (n, 1)).collect();
    wait_until(Duration::from_secs(60), "every namespace reaches DingTalk, email and SMS", || {
        rig.dingtalk_namespaces() == all
            && rig.mail_namespaces() == all
            && rig.sms_namespaces() == all
    });
    // Nothing more arrives: each group was notified once, within repeat_interval.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(rig.dingtalk_namespaces(), all);
    assert_eq!(rig.mail_namespaces(), all);
    assert_eq!(rig.sms_namespaces(), all);
    check_dingtalk_discipline(&rig);
    assert!(rig.ding.delivered(TOKEN).len() < 30, "past the budget, notifications merge");
    let mails = rig.mails();
    assert!(mails.iter().all(|m| m.contains("text/html") && m.contains("text/plain")));
    let out_ids: std::collections::BTreeSet<_> =
        rig.sms.sent().iter().map(|s| s.out_id.clone()).collect();
    assert_eq!(out_ids.len(), 30);
    assert!(rig.sms.refused().is_empty(), "{:?}", rig.sms.refused());
}

#[test]
fn kill_9_mid_storm_loses_nothing_and_sends_nothing_twice() {
    let rig = Rig::new(SECRET);
    let (mut up, _) = rig.start();
    for ns in namespaces(0..10) {
        rig.errors(&ns, 3);
    }
    std::thread::sleep(Duration::from_millis(700));
    up.kill9();
    // While it is down, more errors.
    for ns in namespaces(10..20) {
        rig.errors(&ns, 3);
    }
    let (mut up, _) = rig.start();
    std::thread::sleep(Duration::from_millis(500));
    assert!(up.is_running(), "restarted on its state; see {}/data/logs", rig.dir.path().display());
    for ns in namespaces(20..30) {
        rig.errors(&ns, 3);
    }
    let all: BTreeMap<String, usize> = namespaces(0..30).into_iter().map(|n| (n, 1)).collect();
    let reached = |rig: &Rig| {
        rig.dingtalk_namespaces().len() == 30
            && rig.mail_namespaces().len() == 30
            && rig.sms_namespaces().len() == 30
    };
    let start = std::time::Instant::now();
    while !reached(&rig) && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reached(&rig),
        "not every namespace reached every channel: DingTalk {:?}, email {:?}, SMS {:?}; see {}",
        rig.dingtalk_namespaces().keys(),
        rig.mail_namespaces().keys(),
        rig.sms_namespaces().keys(),
        rig.dir.keep().display()
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(rig.dingtalk_namespaces(), all, "each namespace once on DingTalk");
    assert_eq!(rig.mail_namespaces(), all, "each namespace once by email");
    assert_eq!(rig.sms_namespaces(), all, "each namespace once by SMS");
    check_dingtalk_discipline(&rig);
}

#[test]
fn a_silence_mutes_until_it_expires() {
    let rig = Rig::new(SECRET);
    let (_up, base) = rig.start();
    let out = Command::new(sluice())
        .args(["alert", "silence", "--server", &base, "--matcher", "namespace=quiet"])
        .args(["--duration", "6s", "--created-by", "test", "--comment", "maintenance"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rig.errors("quiet", 3);
    rig.errors("loud", 3);
    wait_until(Duration::from_secs(30), "loud reaches DingTalk", || {
        rig.dingtalk_namespaces().contains_key("loud")
    });
    let alerts: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/api/v1/alerts")).unwrap()).unwrap();
    let quiet = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["namespace"] == "quiet")
        .expect("quiet is listed");
    assert_eq!(quiet["state"], "silenced");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!rig.dingtalk_namespaces().contains_key("quiet"), "silenced");
    assert!(!rig.mail_namespaces().contains_key("quiet"));
    wait_until(Duration::from_secs(30), "quiet is notified once the silence expired", || {
        rig.dingtalk_namespaces().contains_key("quiet")
            && rig.mail_namespaces().contains_key("quiet")
    });
    let listed = http_get(&format!("{base}/api/v1/silences")).unwrap();
    assert!(
        listed.contains("\"created_by\":\"test\"") && listed.contains("maintenance"),
        "{listed}"
    );
}

#[test]
fn a_wrong_robot_secret_is_surfaced_and_not_retried_in_a_loop() {
    let rig = Rig::new("SECsomethingelse");
    let (_up, base) = rig.start();
    rig.errors("pay", 3);
    wait_until(Duration::from_secs(30), "the status shows the configuration error", || {
        http_get(&format!("{base}/api/v1/alerts/status"))
            .is_some_and(|s| s.contains("config_error") && s.contains("310000"))
    });
    wait_until(Duration::from_secs(30), "email is delivered all the same", || {
        rig.mail_namespaces().contains_key("pay")
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(rig.ding.requests().len(), 1, "one attempt, then the channel waits for a fix");
    assert_eq!(
        metric(&base, "sluice_alerting_channel_config_error{channel=\"oncall/dingtalk\"}"),
        1.0
    );
    let log = std::fs::read_to_string(rig.dir.path().join("data/logs/up.log")).unwrap();
    assert!(log.contains("310000"), "the error is logged");
    assert!(
        !log.contains(SECRET)
            && !log.contains("mail-password-42")
            && !log.contains("sms-key-secret")
    );
}

#[test]
fn alert_validate_checks_a_file_and_names_mistakes() {
    let rig = Rig::new(SECRET);
    let out = Command::new(sluice()).args(["alert", "validate"]).arg(&rig.alerts).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 receivers, 1 rules"));
    let text = std::fs::read_to_string(&rig.alerts).unwrap().replace("group_wait", "group_wiat");
    std::fs::write(&rig.alerts, text).unwrap();
    let out = Command::new(sluice()).args(["alert", "validate"]).arg(&rig.alerts).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("alerts.yaml") && err.contains("group_wiat") && err.contains("line 27"),
        "{err}"
    );
    // `sluice up` refuses it the same way before starting anything.
    let out = Command::new(sluice())
        .args(["up", "--watch", "/nonexistent/*.log", "--alerts"])
        .arg(&rig.alerts)
        .arg("--data-dir")
        .arg(rig.dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("group_wiat"));
}

/// The alerts file README.md shows is one `sluice alert validate` accepts.
#[test]
fn the_readme_alerts_example_validates() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("## Alerting").nth(1).expect("README has an Alerting section");
    let yaml = section.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for secret in ["dingtalk.secret", "smtp.password", "sms.secret"] {
        std::fs::write(dir.path().join(secret), "not-a-real-secret\n").unwrap();
    }
    let file = dir.path().join("alerts.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(sluice()).args(["alert", "validate"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("(2 receivers, 3 rules, 1 metric rules, 1 inhibit rules)")
    );
}

/// The chat robots our users also run: a WeCom group robot (20 a minute) and a Feishu bot with
/// a signing secret (100 a minute, 5 a second), both local doubles of the cloud services
/// (`sluice_bench::fake_chatbot`). Errors in 30 namespaces reach both, each namespace once;
/// WeCom never past its limit (digests instead), every Feishu request signed and within its
/// rate.
#[test]
fn wecom_and_feishu_robots_get_every_namespace_within_their_limits() {
    use sluice_bench::fake_chatbot::FakeChatbot;
    let dir = tempfile::tempdir().unwrap();
    let bots =
        FakeChatbot::start(vec!["wk-1".into()], vec![("fs-1".into(), Some("fs-secret".into()))]);
    std::fs::write(dir.path().join("feishu.secret"), "fs-secret\n").unwrap();
    let alerts = dir.path().join("alerts.yaml");
    std::fs::write(
        &alerts,
        format!(
            "receivers:\n  - name: wecom\n    webhook: {{url: '{}', format: wecom}}\n  - name: feishu\n    webhook: {{url: '{}', format: feishu, secret_file: feishu.secret}}\n\
             route:\n  receiver: wecom\n  group_by: [rule, namespace]\n  group_wait: 0s\n  routes:\n    - {{receiver: wecom, continue: true}}\n    - {{receiver: feishu}}\n\
             rules:\n  - {{name: pay-failures, query: '支付失败', every: 10s, window: 10m, group_by: [namespace], when: 'count >= 2', summary: '{{{{ namespace }}}}: {{{{ count }}}} 支付失败'}}\n",
            bots.wecom_url("wk-1"),
            bots.feishu_url("fs-1")
        ),
    )
    .unwrap();
    let pods = dir.path().join("var/log/pods");
    let (_up, _base) = start_up_with(
        &dir.path().join("data"),
        &[format!("{}/*/*/*.log", pods.display())],
        &["--alerts".as_ref(), alerts.as_os_str()],
    );
    for ns in namespaces(0..30) {
        let file = pods.join(format!("{ns}_pay-1_uid-{ns}")).join("app/0.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
        let lines: String =
            (0..3).map(|i| format!("{now} stdout F ERROR 支付失败 order {i} in {ns}\n")).collect();
        std::fs::write(&file, lines).unwrap();
    }
    let seen = |robot: &str| -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for r in bots.delivered(robot) {
            for part in r.text().split("namespace=\"").skip(1) {
                *seen.entry(part.split('"').next().unwrap().to_owned()).or_default() += 1;
            }
        }
        seen
    };
    let all: BTreeMap<String, usize> = namespaces(0..30).into_iter().map(|n| (n, 1)).collect();
    wait_until(Duration::from_secs(60), "every namespace reaches WeCom and Feishu", || {
        seen("wecom/wk-1") == all && seen("feishu/fs-1") == all
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(seen("wecom/wk-1"), all, "nothing twice");
    assert_eq!(seen("feishu/fs-1"), all, "nothing twice");
    assert_eq!(bots.count_code("wecom/wk-1", 45009), 0, "WeCom was sent too fast");
    assert!(bots.busiest_minute("wecom/wk-1") <= 20);
    assert!(bots.delivered("wecom/wk-1").len() < 30, "past WeCom's budget, digests");
    assert_eq!(bots.count_code("feishu/fs-1", 19021), 0, "a Feishu request was not signed");
    assert_eq!(bots.count_code("feishu/fs-1", 11232), 0, "Feishu was sent too fast");
    assert!(bots.requests("feishu/fs-1").iter().all(|r| r.body["sign"].is_string()));
}

/// A rule starting over logs already stored counts what its window holds from the index (so a
/// 10-minute window is whole at once), and a record the WAL brings after counts once.
#[test]
fn a_rule_starting_over_stored_logs_counts_its_window_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let robot = FakeDingTalk::start(
        vec![Robot { token: TOKEN.into(), ..Robot::default() }],
        Duration::from_secs(600),
    );
    let pods = dir.path().join("var/log/pods");
    let file = pods.join("old_pay-1_uid-old/app/0.log");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let error = |i: usize| {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
        format!("{now} stdout F ERROR 支付失败 order {i} in old\n")
    };
    std::fs::write(&file, (0..3).map(error).collect::<String>()).unwrap();
    let watch = [format!("{}/*/*/*.log", pods.display())];
    let data = dir.path().join("data");
    {
        let (_up, base) = start_up(&data, &watch);
        wait_until(Duration::from_secs(30), "three errors stored", || {
            total(&base, "支付失败") == 3
        });
    }
    let alerts = dir.path().join("alerts.yaml");
    std::fs::write(
        &alerts,
        format!(
            "receivers:\n  - name: oncall\n    dingtalk: {{webhook: '{}'}}\n\
             route: {{receiver: oncall, group_by: [rule, namespace], group_wait: 0s}}\n\
             rules:\n  - {{name: three, query: '支付失败', every: 10s, window: 10m, group_by: [namespace], when: 'count >= 3', summary: '{{{{ namespace }}}}: {{{{ count }}}}'}}\n  - {{name: four, query: '支付失败', every: 10s, window: 10m, group_by: [namespace], when: 'count >= 4', summary: '{{{{ namespace }}}}: {{{{ count }}}}'}}\n",
            robot.webhook(TOKEN)
        ),
    )
    .unwrap();
    let (_up, base) = start_up_with(&data, &watch, &["--alerts".as_ref(), alerts.as_os_str()]);
    let fired = |rule: &str| {
        robot
            .delivered(TOKEN)
            .iter()
            .filter(|r| r.text().contains(&format!("[FIRING] {rule}")))
            .map(|r| r.text())
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(20), "the stored errors fire the rule", || {
        !fired("three").is_empty()
    });
    assert!(fired("three")[0].contains("old: 3"), "{}", fired("three")[0]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(fired("four").is_empty(), "three stored errors are not four");
    append(&file, &error(3));
    wait_until(Duration::from_secs(20), "a fourth error fires the second rule", || {
        !fired("four").is_empty()
    });
    assert!(fired("four")[0].contains("old: 4"), "counted once each: {}", fired("four")[0]);
    wait_until(Duration::from_secs(20), "the fourth is stored too", || {
        total(&base, "支付失败") == 4
    });
}
