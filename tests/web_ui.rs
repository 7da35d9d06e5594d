//! The search page in a real browser: Debian's Chromium driven by playwright-core
//! (`query/web/tests/ui.mjs`) against a real `sluice up` with users, over real indexed CRI
//! logs. Types a Chinese query, checks counts, highlights and the histogram, opens a shared
//! URL, clicks a facet, opens a hit's context, toggles the live tail and sees a new line
//! arrive, exports, zooms by dragging on the histogram, and checks that a dev token sees no
//! prod data. And Kubernetes events among the logs (`query/web/tests/events.mjs`, with the
//! Kubernetes API double of `bench/src/fake_kube/` feeding `sluice up --kube-events`): the
//! logs/events selector, the events' columns, an event's repeat history. Screenshots go to
//! `artifacts/web/`. `scripts/test` installs Chromium and the npm packages; without them these
//! tests fail, they never skip.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::kube;
use common::*;

const ADMIN: &str = ADMIN_TOKEN;
const DEV: &str = DEV_TOKEN;
const PROD_LINES: usize = 2_000;
const DEV_LINES: usize = 1_000;
const PLAIN_LINES: usize = 30;

/// The page's directory and the Chromium to drive, both required.
fn browser() -> (PathBuf, String) {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("query/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in query/web (scripts/test does) to get playwright-core"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        PathBuf::from(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (scripts/test does)"
    );
    (web, chromium)
}

/// Runs a browser script of `query/web/tests` against `base` with `vars`; returns its output.
fn run_script(script: &str, base: &str, vars: &[(&str, String)]) -> String {
    let (web, chromium) = browser();
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/web");
    let out = Command::new("node")
        .arg(web.join("tests").join(script))
        .current_dir(&web)
        .env("SLUICE_URL", base)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("CHROMIUM", &chromium)
        .env("SLUICE_ARTIFACTS", &artifacts)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "browser test {script} failed:\n{stdout}\n{stderr}");
    println!("screenshots in {}", artifacts.display());
    stdout
}

#[test]
fn the_search_page_works_in_chromium() {
    browser();

    let dir = tempfile::tempdir().unwrap();
    let (_prod, dev, watch) = two_namespaces(dir.path(), PROD_LINES, DEV_LINES);
    // Lines with no namespace, pod or level, inside the CRI lines' two hours.
    let plain = dir.path().join("plain/notes.log");
    std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
    let notes: String =
        (0..PLAIN_LINES).map(|i| format!("2026-11-30T10:30:{i:02}Z plain note {i}: {}\n", "the upstream connection timeout was reached while reading the response header from the backend; ".repeat(3))).collect();
    std::fs::write(&plain, notes).unwrap();
    let users = write_users(dir.path());
    let all = PROD_LINES + DEV_LINES + PLAIN_LINES;
    let watches = [watch, format!("{}/plain/*.log", dir.path().display())];
    let (_up, base) =
        start_up_with(&dir.path().join("data"), &watches, &["--users".as_ref(), users.as_os_str()]);
    wait_until(Duration::from_secs(60), "every line is searchable", || {
        let response = reqwest::blocking::Client::new()
            .get(format!("{base}/api/v1/search"))
            .query(&[("q", ""), ("limit", "0")])
            .bearer_auth(ADMIN)
            .send()
            .unwrap();
        response.json::<serde_json::Value>().unwrap()["total"] == all as u64
    });

    let vars = [
        ("ADMIN_TOKEN", ADMIN.to_owned()),
        ("DEV_TOKEN", DEV.to_owned()),
        ("PROD_LINES", PROD_LINES.to_string()),
        ("DEV_LINES", DEV_LINES.to_string()),
        ("DEV_FILE", dev.display().to_string()),
        ("PLAIN_LINES", PLAIN_LINES.to_string()),
    ];
    let stdout = run_script("ui.mjs", &base, &vars);
    assert!(stdout.contains("dev sees its"), "the script ran to its end:\n{stdout}");
}

#[test]
fn kubernetes_events_show_among_logs_with_their_history_in_chromium() {
    browser();
    const LOG_LINES: usize = 40;
    const REPEATS: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let kube = kube::FakeKube::start();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let lines: String = (0..LOG_LINES)
        .map(|i| format!("2026-12-04 10:00:{:02} INFO request {i} served\n", i % 60))
        .collect();
    std::fs::write(logs.join("app.log"), lines).unwrap();
    let mut events = 0;
    for i in 0..10 {
        let mut e = kube::EventSpec::warning(
            "shop",
            &format!("other{i}"),
            "Unhealthy",
            &format!("web-{}", 1 + i % 3),
        );
        if i % 2 == 0 {
            e.kind = "Normal".to_owned();
            e.reason = "Pulled".to_owned();
        }
        kube.record_event(&e);
        events += 1;
    }
    let kubeconfig = kube.kubeconfig(dir.path());
    let (_up, base) = start_up_with_env(
        &dir.path().join("data"),
        &[format!("{}/*.log", logs.display())],
        &["--kube-events".as_ref()],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let mut backoff = kube::EventSpec::warning("shop", "backoff", "BackOff", "web-0");
    for count in 1..=REPEATS {
        backoff.count = count;
        kube.record_event(&backoff);
        events += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_until(Duration::from_secs(60), "logs and events are searchable", || {
        total(&base, "") == (LOG_LINES + events) as u64
    });
    let vars = [
        ("LOG_LINES", LOG_LINES.to_string()),
        ("EVENTS", events.to_string()),
        ("REPEATS", REPEATS.to_string()),
    ];
    let stdout = run_script("events.mjs", &base, &vars);
    assert!(stdout.contains("events page checks done"), "the script ran to its end:\n{stdout}");
}

#[test]
fn the_page_holds_ten_thousand_hits_and_a_day_long_histogram() {
    browser();
    const LINES: usize = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("var/log/pods/prod_pay-1_u1/app/0.log");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // Spread over the 24 hours before now, so the page's "last 24 h" holds every one.
    let now = chrono::Utc::now();
    let lines: String = (0..LINES)
        .map(|i| {
            let back = chrono::TimeDelta::milliseconds(((LINES - i) * 86_000_000 / LINES) as i64);
            let ts = (now - back).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let level = ["INFO", "WARN", "ERROR"][i % 3];
            format!("{ts} stdout F {level} request {i} served by pay-1 in {} ms\n", i % 97)
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let watch = format!("{}/var/log/pods/*/*/*.log", dir.path().display());
    let (_up, base) = start_up(&dir.path().join("data"), &[watch]);
    wait_until(Duration::from_secs(60), "every line is searchable", || {
        total(&base, "") == LINES as u64
    });
    let stdout = run_script("large.mjs", &base, &[("LINES", LINES.to_string())]);
    assert!(stdout.contains("large answers checks done"), "the script ran to its end:\n{stdout}");
}

/// The alerts panel over a real `sluice up --alerts` (notifications to the DingTalk double,
/// `sluice_bench::fake_dingtalk`, since the real robot is a cloud service): firing and pending
/// alerts listed, a silence made from an alert's row in the browser, seen by the API as made,
/// and expired from the page again.
#[test]
fn the_alerts_panel_lists_alerts_and_silences_them_in_chromium() {
    use sluice_bench::fake_dingtalk::{FakeDingTalk, Robot};
    browser();
    let dir = tempfile::tempdir().unwrap();
    let robot = FakeDingTalk::start(
        vec![Robot { token: "page-robot".into(), ..Robot::default() }],
        Duration::from_secs(600),
    );
    let alerts = dir.path().join("alerts.yaml");
    std::fs::write(
        &alerts,
        format!(
            "receivers:\n  - name: oncall\n    dingtalk: {{webhook: '{}'}}\n\
             route: {{receiver: oncall, group_by: [rule, namespace], group_wait: 0s}}\n\
             rules:\n  - {{name: pay-failures, query: '支付失败', every: 10s, window: 10m, group_by: [namespace], when: 'count >= 2', labels: {{severity: critical}}, summary: '{{{{ namespace }}}}: {{{{ count }}}} 支付失败'}}\n  - {{name: slow-payments, query: 'slow payment', every: 10s, window: 10m, when: 'count >= 1', for: 1h}}\n",
            robot.webhook("page-robot")
        ),
    )
    .unwrap();
    let pods = dir.path().join("var/log/pods");
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    for ns in ["pay", "shop"] {
        let file = pods.join(format!("{ns}_api-1_u-{ns}/app/0.log"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let lines: String = (0..3)
            .map(|i| format!("{} stdout F ERROR 支付失败 order {i} in {ns}\n", now()))
            .collect();
        std::fs::write(&file, format!("{lines}{} stdout F WARN slow payment in {ns}\n", now()))
            .unwrap();
    }
    let (_up, base) = start_up_with(
        &dir.path().join("data"),
        &[format!("{}/*/*/*.log", pods.display())],
        &["--alerts".as_ref(), alerts.as_os_str()],
    );
    wait_until(Duration::from_secs(30), "both namespaces fire", || {
        http_get(&format!("{base}/api/v1/alerts"))
            .is_some_and(|a| a.matches("\"firing\"").count() == 2 && a.contains("pending"))
    });
    let stdout = run_script(
        "alerts.mjs",
        &base,
        &[("FIRING", "pay,shop".to_owned()), ("PENDING", "slow-payments".to_owned())],
    );
    assert!(stdout.contains("alerts page checks done"), "the script ran to its end:\n{stdout}");
    let id = stdout.lines().find_map(|l| l.strip_prefix("SILENCE_ID=")).expect("the silence id");
    let silences = http_get(&format!("{base}/api/v1/silences")).unwrap();
    let silences: serde_json::Value = serde_json::from_str(&silences).unwrap();
    let made = silences["silences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .expect("the page's silence is on the server");
    assert_eq!(made["created_by"], "alice");
    assert_eq!(made["comment"], "数据库迁移 db migration");
    assert_eq!(made["active"], false, "expired from the page");
    let matchers = made["matchers"].to_string();
    assert!(
        matchers.contains("namespace=\\\"pay\\\"") || matchers.contains("namespace=\\\"shop\\\""),
        "{matchers}"
    );
}

/// Dashboards in Chromium: the built-in pipeline health dashboard with live numbers from the
/// index and from a real Prometheus (v0.316.0, `scripts/test-servers prometheus`) scraping
/// `sluice up`, and the log volume dashboard with a namespace chosen in the URL.
#[test]
fn the_builtin_dashboards_show_live_numbers_in_chromium() {
    browser();
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("var/log/pods");
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (pay, shop) = (30usize, 20usize);
    for (ns, n) in [("pay", pay), ("shop", shop)] {
        let file = pods.join(format!("{ns}_api-1_u-{ns}/app/0.log"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let lines: String = (0..n)
            .map(|i| {
                let body =
                    if i % 3 == 0 { "ERROR 支付失败" } else { "INFO 订单创建成功" };
                format!("{} stdout F {body} order {i} in {ns}\n", now())
            })
            .collect();
        std::fs::write(&file, lines).unwrap();
    }
    let port = free_port();
    let (_up, base) = start_up_with(
        &dir.path().join("data"),
        &[format!("{}/*/*/*.log", pods.display())],
        &["--prometheus-url".as_ref(), format!("http://127.0.0.1:{port}").as_ref()],
    );
    let host = base.trim_start_matches("http://");
    let _prometheus = start_prometheus(
        dir.path(),
        port,
        &format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{host}']}}]\n"
        ),
    );
    wait_until(Duration::from_secs(30), "every line is indexed", || {
        total(&base, "") == (pay + shop) as u64
    });
    wait_until(Duration::from_secs(60), "Prometheus has scraped the WAL's size", || {
        http_get(&format!("http://127.0.0.1:{port}/api/v1/query?query=sluice_collector_wal_bytes"))
            .is_some_and(|a| a.contains("\"value\""))
    });
    let errors = |n: usize| n.div_ceil(3);
    let stdout = run_script(
        "dashboards.mjs",
        &base,
        &[
            ("LINES", (pay + shop).to_string()),
            ("ERRORS", (errors(pay) + errors(shop)).to_string()),
            ("PAY", pay.to_string()),
            ("PAY_ERRORS", errors(pay).to_string()),
            ("SHOP", shop.to_string()),
        ],
    );
    assert!(stdout.contains("dashboards page checks done"), "the script ran to its end:\n{stdout}");
}
