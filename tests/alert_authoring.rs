//! For rule authors, offline: `sluice alert test` (promtool-style unit tests of log and event
//! rules with each channel's message rendered and checked) and `sluice alert backtest`
//! (records stored by a real `sluice up` replayed through the rules). Nothing is contacted: no
//! doubles are needed, the channels only render.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("alerting/tests/rules")
}

fn alert_test(file: &Path) -> (bool, String) {
    let out = Command::new(sluice()).args(["alert", "test"]).arg(file).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A copy of the example rules and tests with `edit` applied to the test file.
fn edited(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    std::fs::copy(rules_dir().join("alerts.yaml"), dir.join("alerts.yaml")).unwrap();
    let text = std::fs::read_to_string(rules_dir().join("alerts.test.yaml")).unwrap();
    let path = dir.join("alerts.test.yaml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn the_example_rule_tests_pass() {
    let (ok, text) = alert_test(&rules_dir().join("alerts.test.yaml"));
    assert!(ok, "{text}");
    assert_eq!(text.matches("SUCCESS").count(), 3, "{text}");
}

#[test]
fn a_wrong_expectation_fails_and_says_what_fired() {
    let dir = tempfile::tempdir().unwrap();
    let file = edited(dir.path(), |t| t.replace("pay: 3 支付失败\"}", "pay: 4 支付失败\"}"));
    let (ok, text) = alert_test(&file);
    assert!(!ok, "{text}");
    assert!(text.contains("FAILED   three 支付失败"), "{text}");
    assert!(text.contains("alertname: pay-failures, time: 15s"), "{text}");
    assert!(text.contains("pay: 3 支付失败"), "what fired is shown: {text}");
    assert_eq!(text.matches("SUCCESS").count(), 2, "{text}");

    let file = edited(dir.path(), |t| {
        t.replace("\"@13800000000\"], count: 1", "\"@13800000000\"], count: 2")
    });
    let (ok, text) = alert_test(&file);
    assert!(!ok);
    assert!(text.contains("exp_messages: oncall/dingtalk by 15s: 2 containing"), "{text}");
    assert!(text.contains("[FIRING:1] pay-failures"), "the messages are shown: {text}");

    let file = edited(dir.path(), |t| t.replace("alertname: backoff", "alertname: back-off"));
    let (ok, text) = alert_test(&file);
    assert!(!ok);
    assert!(text.contains("names back-off, no rule of"), "{text}");

    let file = edited(dir.path(), |t| t.replace("exp_alerts: []", "exp_alert: []"));
    let (ok, text) = alert_test(&file);
    assert!(!ok);
    assert!(text.contains("unknown field `exp_alert`") && text.contains("line"), "{text}");
}

/// A WeCom robot takes 4096 bytes of markdown: a group of many alerts is cut to fit, says by
/// how much, and the test run warns of it.
#[test]
fn a_message_at_a_services_limit_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alerts.yaml"),
        "receivers:\n  - name: chat\n    webhook: {url: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc', format: wecom}\n\
         route: {receiver: chat, group_by: [rule], group_wait: 0s}\n\
         rules:\n  - {name: errors, query: 'level:error', every: 10s, window: 1m, group_by: [namespace], when: 'count >= 1', summary: '{{ namespace }} has errors, see the dashboard for the whole story'}\n",
    )
    .unwrap();
    let lines: String = (0..80)
        .map(|i| {
            format!("      - {{at: 1s, namespace: team-{i:03}, level: error, message: boom}}\n")
        })
        .collect();
    std::fs::write(
        dir.path().join("alerts.test.yaml"),
        format!(
            "rule_files: [alerts.yaml]\ntests:\n  - name: many teams at once\n    input_lines:\n{lines}\
             \n    exp_messages:\n      - {{channel: chat/webhook, contains: [team-000, '… cut: '], count: 1}}\n"
        ),
    )
    .unwrap();
    let (ok, text) = alert_test(&dir.path().join("alerts.test.yaml"));
    assert!(ok, "{text}");
    assert!(
        text.contains("warning  many teams at once: chat/webhook at 2s: 80 alerts in one notification, cut at the service's size limit"),
        "{text}"
    );
}

/// Records a real `sluice up` stored, replayed through a rule grouped per file: every file's
/// errors fire once, and the DingTalk budget merges what a minute cannot carry — each
/// notification goes out exactly once, in a message or a digest.
#[test]
fn a_backtest_replays_stored_records_and_counts_what_the_budget_merges() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for i in 0..25 {
        std::fs::write(
            logs.join(format!("svc-{i:02}.log")),
            "ERROR 支付失败 a\nERROR 支付失败 b\nERROR 支付失败 c\nINFO fine\n",
        )
        .unwrap();
    }
    std::fs::write(logs.join("quiet.log"), "ERROR 支付失败 only once\n").unwrap();
    let (_up, base) = start_up(&dir.path().join("data"), &[format!("{}/*.log", logs.display())]);
    wait_until(Duration::from_secs(30), "sluice up stored every line", || {
        total(&base, "支付失败") >= 76
    });
    let alerts = dir.path().join("alerts.yaml");
    std::fs::write(
        &alerts,
        "receivers:\n  - name: oncall\n    dingtalk: {webhook: 'https://oapi.dingtalk.com/robot/send?access_token=abc'}\n    email: {smtp: '127.0.0.1:25', tls: none, from: a@example.com, to: [b@example.com]}\n\
         route: {receiver: oncall, group_by: [rule, file], group_wait: 0s}\n\
         rules:\n  - {name: pay-failures, query: '支付失败 AND level:error', every: 10s, window: 10m, group_by: [file], when: 'count >= 3'}\n  - {name: never, query: 'no such words here', every: 10s, window: 1m, when: 'count >= 1'}\n",
    )
    .unwrap();
    let out = Command::new(sluice())
        .args(["alert", "backtest", "--since", "1h", "--server", &base, "--alerts"])
        .arg(&alerts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let row = |name: &str| -> Vec<u64> {
        let line =
            text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {text}"));
        line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect()
    };
    assert!(text.contains("76 matching records replayed"), "{text}");
    assert_eq!(row("pay-failures"), [25], "one firing per noisy file: {text}");
    assert_eq!(row("never"), [0], "{text}");
    assert!(text.contains("notifications (one per channel): 50"), "{text}");
    let email = row("oncall/email");
    assert_eq!(email, [25, 0, 0, 25], "email has no budget: {text}");
    let [messages, digests, merged, busiest] = row("oncall/dingtalk")[..] else { panic!("{text}") };
    assert!(busiest <= 19, "the robot's budget holds: {text}");
    assert!(digests >= 1 && merged > digests, "past the budget, digests: {text}");
    assert_eq!(messages - digests + merged, 25, "each notification once: {text}");
}
