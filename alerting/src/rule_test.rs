//! `sluice alert test FILE`: unit tests for log and event rules, in promtool's shape —
//! input lines and events at times since the test's start, the alerts expected to fire at
//! given times, and the messages each channel would send, rendered offline and checked against
//! the services' limits (body size, mentions, SMS parameter lengths). Metric rules are
//! PromQL: promtool tests them against Prometheus's own engine.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sluice_proto::{KubeEvent, LogRecord, Stream};

use crate::AlertError;
use crate::alert::Labels;
use crate::config::{AlertsFile, duration, maybe_duration};
use crate::simulate::Simulation;

/// Tests start at 2026-01-01T00:00:00Z, so that `at: 0s` is a real date in rendered messages.
const START_MS: i64 = 1_767_225_600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The alerts file under test, relative to the test file (promtool's key; one file).
    /// `sluice dash test` gives the rules itself, so there it may be left out.
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    #[serde(default)]
    pub input_lines: Vec<InputLine>,
    #[serde(default)]
    pub input_events: Vec<InputEvent>,
    #[serde(default)]
    pub alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    pub exp_messages: Vec<ExpMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputLine {
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    pub message: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub pod: String,
    #[serde(default)]
    pub container: String,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The line this many times, `step` apart.
    #[serde(default = "one")]
    pub repeat: u32,
    #[serde(default = "second", deserialize_with = "duration")]
    pub step: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEvent {
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    pub reason: String,
    #[serde(default = "warning", rename = "type")]
    pub type_: String,
    /// `Kind/name` of the object it is about: `Pod/web-1`.
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub message: String,
    /// The occurrence count the event carries (`series.count`).
    #[serde(default = "one_u64")]
    pub count: u64,
    #[serde(default)]
    pub cluster: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTest {
    #[serde(deserialize_with = "duration")]
    pub eval_time: Duration,
    pub alertname: String,
    /// Exactly these alerts of the rule fire then (pending ones do not count).
    #[serde(default)]
    pub exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpAlert {
    /// The alert's labels besides `alertname`, all of them.
    #[serde(default)]
    pub exp_labels: Labels,
    /// Annotations that must read so (others are not compared).
    #[serde(default)]
    pub exp_annotations: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpMessage {
    /// `receiver/kind`: `oncall/dingtalk`.
    pub channel: String,
    /// Sent by then; when not given, by the end of the test: its last input, check or `by`,
    /// then the longest `group_wait` and whatever budgets held back.
    #[serde(default, deserialize_with = "maybe_duration")]
    pub by: Option<Duration>,
    /// Strings the message's text holds, all of them.
    #[serde(default)]
    pub contains: Vec<String>,
    /// How many such messages, exactly; at least one when not given.
    pub count: Option<usize>,
}

fn one() -> u32 {
    1
}

fn one_u64() -> u64 {
    1
}

fn second() -> Duration {
    Duration::from_secs(1)
}

fn warning() -> String {
    "Warning".to_owned()
}

/// What a run found: a report to print and whether every test passed.
pub struct Outcome {
    pub report: String,
    pub passed: bool,
}

/// Reads `path` and runs its tests.
pub fn run(path: &Path) -> Result<Outcome, AlertError> {
    let config = |message: String| AlertError::Config { path: path.to_owned(), message };
    let text =
        std::fs::read_to_string(path).map_err(|e| config(format!("cannot read the file: {e}")))?;
    let file: TestFile = yaml_serde::from_str(&text).map_err(|e| config(e.to_string()))?;
    let [alerts_path] = file.rule_files.as_slice() else {
        return Err(config("rule_files: name exactly one alerts file".to_owned()));
    };
    let alerts_path = path.parent().unwrap_or(Path::new(".")).join(alerts_path);
    let alerts = AlertsFile::load(&alerts_path)?;
    run_tests(path, &file.tests, &alerts, &alerts_path)
}

/// Runs the tests of the file at `path` against `alerts` (read from `alerts_path`, against
/// which its secret files resolve): for `sluice dash test`, whose rules are the dashboards'
/// monitors.
pub fn run_tests(
    path: &Path,
    tests: &[TestCase],
    alerts: &AlertsFile,
    alerts_path: &Path,
) -> Result<Outcome, AlertError> {
    let config = |message: String| AlertError::Config { path: path.to_owned(), message };
    let mut report = format!("Unit testing {}\n", path.display());
    let mut passed = true;
    for (i, case) in tests.iter().enumerate() {
        for t in &case.alert_rule_test {
            if !alerts.rules.iter().any(|r| r.name == t.alertname) {
                return Err(config(format!(
                    "tests[{i}] ({}): alert_rule_test names {}, no rule of {}",
                    case.name,
                    t.alertname,
                    alerts_path.display()
                )));
            }
        }
        let failures = run_case(case, alerts, alerts_path, &mut report)?;
        if failures.is_empty() {
            let _ = writeln!(report, "  SUCCESS  {}", case.name);
        } else {
            passed = false;
            let _ = writeln!(report, "  FAILED   {}", case.name);
            for f in failures {
                let _ = writeln!(report, "    {}", f.replace('\n', "\n    "));
            }
        }
    }
    Ok(Outcome { report, passed })
}

fn run_case(
    case: &TestCase,
    alerts: &AlertsFile,
    alerts_path: &Path,
    report: &mut String,
) -> Result<Vec<String>, AlertError> {
    let mut inputs: Vec<(i64, LogRecord)> = Vec::new();
    for line in &case.input_lines {
        for n in 0..line.repeat {
            let at = START_MS + (line.at + line.step * n).as_millis() as i64;
            inputs.push((at, line_record(line, at)));
        }
    }
    for event in &case.input_events {
        let at = START_MS + event.at.as_millis() as i64;
        inputs.push((at, event_record(event, at)));
    }
    inputs.sort_by_key(|(at, _)| *at);
    let mut checks: Vec<(i64, &AlertTest)> = case
        .alert_rule_test
        .iter()
        .map(|t| (START_MS + t.eval_time.as_millis() as i64, t))
        .collect();
    checks.sort_by_key(|(at, _)| *at);
    let end = [
        inputs.last().map(|(at, _)| *at),
        checks.last().map(|(at, _)| *at),
        case.exp_messages
            .iter()
            .filter_map(|m| m.by)
            .max()
            .map(|d| START_MS + d.as_millis() as i64),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(START_MS);
    let mut sim = Simulation::new(alerts, alerts_path, START_MS)?;
    let mut failures = Vec::new();
    let mut inputs = inputs.into_iter().peekable();
    for (at, test) in checks {
        while let Some((_, record)) = inputs.next_if(|(t, _)| *t <= at) {
            let t = record_time(&record);
            sim.observe(&record, t);
        }
        sim.advance(at);
        check_alerts(&sim, test, &mut failures);
    }
    for (_, record) in inputs {
        let t = record_time(&record);
        sim.observe(&record, t);
    }
    sim.advance(end);
    sim.drain();
    let end = sim.now_ms();
    for m in &sim.messages {
        let at = format!("{} at {}", m.channel, since(m.at_ms));
        for p in &m.rendered.problems {
            failures.push(format!("{at}: {p}"));
        }
        for w in &m.rendered.warnings {
            let _ = writeln!(report, "  warning  {}: {at}: {w}", case.name);
        }
    }
    for exp in &case.exp_messages {
        if !sim.messages.iter().any(|m| m.channel == exp.channel)
            && !alerts.receivers.iter().any(|r| exp.channel.starts_with(&format!("{}/", r.name)))
        {
            failures.push(format!("exp_messages: no channel {}", exp.channel));
            continue;
        }
        let by = exp.by.map_or(end, |d| START_MS + d.as_millis() as i64);
        let matching: Vec<_> = sim
            .messages
            .iter()
            .filter(|m| m.channel == exp.channel && m.at_ms <= by)
            .filter(|m| exp.contains.iter().all(|c| m.rendered.text.contains(c)))
            .collect();
        let ok = match exp.count {
            Some(n) => matching.len() == n,
            None => !matching.is_empty(),
        };
        if !ok {
            let sent: Vec<String> = sim
                .messages
                .iter()
                .filter(|m| m.channel == exp.channel)
                .map(|m| {
                    format!("at {}:\n  {}", since(m.at_ms), m.rendered.text.replace('\n', "\n  "))
                })
                .collect();
            failures.push(format!(
                "exp_messages: {} by {}: {} containing {:?}, got {}; its messages:\n{}",
                exp.channel,
                since(by),
                exp.count.map_or("at least one".to_owned(), |n| n.to_string()),
                exp.contains,
                matching.len(),
                if sent.is_empty() { "(none)".to_owned() } else { sent.join("\n") }
            ));
        }
    }
    Ok(failures)
}

fn check_alerts(sim: &Simulation, test: &AlertTest, failures: &mut Vec<String>) {
    let mut got: Vec<_> = sim
        .alerts()
        .into_iter()
        .filter(|(state, a)| state == "firing" && a.name() == test.alertname)
        .map(|(_, a)| a)
        .collect();
    got.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut missing = Vec::new();
    for exp in &test.exp_alerts {
        let mut labels = exp.exp_labels.clone();
        labels.insert("alertname".to_owned(), test.alertname.clone());
        let found = got.iter().position(|a| {
            a.labels == labels
                && exp.exp_annotations.iter().all(|(k, v)| a.annotations.get(k) == Some(v))
        });
        match found {
            Some(i) => {
                got.remove(i);
            }
            None => missing.push(format!("{labels:?} {:?}", exp.exp_annotations)),
        }
    }
    if missing.is_empty() && got.is_empty() {
        return;
    }
    let everything: Vec<String> = sim
        .alerts()
        .into_iter()
        .filter(|(_, a)| a.name() == test.alertname)
        .map(|(state, a)| format!("{state} {:?} {:?}", a.labels, a.annotations))
        .collect();
    failures.push(format!(
        "alertname: {}, time: {}:\n  expected but not firing: {}\n  firing but not expected: {}\n  the rule's alerts then: {}",
        test.alertname,
        humantime::format_duration(test.eval_time),
        if missing.is_empty() { "-".to_owned() } else { missing.join("; ") },
        if got.is_empty() {
            "-".to_owned()
        } else {
            got.iter().map(|a| format!("{:?}", a.labels)).collect::<Vec<_>>().join("; ")
        },
        if everything.is_empty() { "none".to_owned() } else { everything.join("; ") },
    ));
}

fn since(at_ms: i64) -> String {
    humantime::format_duration(Duration::from_millis((at_ms - START_MS).max(0) as u64)).to_string()
}

fn record_time(record: &LogRecord) -> i64 {
    record.timestamp_ns / 1_000_000
}

fn line_record(line: &InputLine, at_ms: i64) -> LogRecord {
    LogRecord {
        timestamp_ns: at_ms * 1_000_000,
        ingest_time_ns: at_ms * 1_000_000,
        cluster: line.cluster.clone(),
        namespace: line.namespace.clone(),
        pod: line.pod.clone(),
        container: line.container.clone(),
        node: line.node.clone(),
        level: sluice_proto::level::canonical(&line.level).unwrap_or_default().to_owned(),
        message: line.message.clone(),
        labels: line.labels.clone().into_iter().collect(),
        ..LogRecord::default()
    }
}

fn event_record(event: &InputEvent, at_ms: i64) -> LogRecord {
    let (kind, name) = event.object.split_once('/').unwrap_or(("", &event.object));
    let on_pod = kind == "Pod";
    LogRecord {
        timestamp_ns: at_ms * 1_000_000,
        ingest_time_ns: at_ms * 1_000_000,
        cluster: event.cluster.clone(),
        namespace: event.namespace.clone(),
        pod: if on_pod { name.to_owned() } else { String::new() },
        stream: Stream::Event as i32,
        level: sluice_proto::level::of_event_type(&event.type_).to_owned(),
        message: event.message.clone(),
        event: Some(KubeEvent {
            reason: event.reason.clone(),
            r#type: event.type_.clone(),
            object_kind: kind.to_owned(),
            object_name: name.to_owned(),
            count: event.count,
            ..KubeEvent::default()
        }),
        ..LogRecord::default()
    }
}
