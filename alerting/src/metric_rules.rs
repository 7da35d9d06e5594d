//! Metric rules: PromQL asked of a Prometheus-compatible HTTP API (`/api/v1/query`) every
//! `every`. Each series the answer holds is an alert, pending until it has held for `for:`;
//! one that drops out resolves — Prometheus's own alerting-rule semantics, so a rule moved
//! from a Prometheus rules file means what it meant there. A failed query changes nothing: an
//! unreachable Prometheus must neither resolve what fires nor fire anything.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Labels, fingerprint};
use crate::config::MetricRule;
use crate::http::HttpClient;

/// One series a rule has seen in its latest answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub labels: Labels,
    pub value: f64,
    pub active_since_ms: i64,
    pub firing_since_ms: Option<i64>,
}

/// Per rule, per fingerprint of the alert's labels; saved after each evaluation so that
/// `for:` keeps counting across a restart.
pub type MetricState = BTreeMap<String, BTreeMap<u64, Active>>;

impl MetricRule {
    /// Applies one answer (`samples`: series labels and values) at `now_ms`; returns the alerts
    /// to route: those firing (newly or still) and those that stopped.
    pub fn step(
        &self,
        active: &mut BTreeMap<u64, Active>,
        samples: Vec<(Labels, f64)>,
        now_ms: i64,
    ) -> Vec<Alert> {
        let mut seen = BTreeMap::new();
        for (series, value) in samples {
            let mut labels: Labels = series.into_iter().filter(|(k, _)| k != "__name__").collect();
            labels.extend(self.labels.clone());
            labels.insert("alertname".to_owned(), self.name.clone());
            let fp = fingerprint(&labels);
            let entry = active.remove(&fp).unwrap_or(Active {
                labels: labels.clone(),
                value,
                active_since_ms: now_ms,
                firing_since_ms: None,
            });
            seen.insert(fp, Active { labels, value, ..entry });
        }
        let mut out = Vec::new();
        for (_, gone) in std::mem::take(active) {
            if let Some(since) = gone.firing_since_ms {
                out.push(self.alert(&gone, since, Some(now_ms)));
            }
        }
        for a in seen.values_mut() {
            if a.firing_since_ms.is_none()
                && now_ms - a.active_since_ms >= self.for_.as_millis() as i64
            {
                a.firing_since_ms = Some(now_ms);
            }
            if let Some(since) = a.firing_since_ms {
                out.push(self.alert(a, since, None));
            }
        }
        *active = seen;
        out
    }

    pub fn alert(&self, a: &Active, starts_at: i64, ends_at: Option<i64>) -> Alert {
        let mut values = BTreeMap::new();
        for (k, v) in &a.labels {
            values.insert(format!("labels.{k}"), v.clone());
        }
        values.extend(self.labels.clone());
        values.insert("rule".to_owned(), self.name.clone());
        values.insert("value".to_owned(), format_value(a.value));
        let mut annotations = Labels::new();
        annotations.insert("summary".to_owned(), self.summary.render(&values));
        annotations.insert("value".to_owned(), format_value(a.value));
        annotations.insert("expr".to_owned(), self.expr.clone());
        Alert { labels: a.labels.clone(), annotations, starts_at, ends_at }
    }
}

/// A value as people read it: integers without a fraction, others to four significant places.
fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
        format!("{v:.digits$}")
    }
}

/// Asks `base`'s `/api/v1/query` for `expr` at `time_ms`: the series and their values.
pub async fn query(
    client: &HttpClient,
    base: &str,
    expr: &str,
    time_ms: i64,
    timeout: Duration,
) -> Result<Vec<(Labels, f64)>, String> {
    let url = format!(
        "{}/api/v1/query?query={}&time={}.{:03}&timeout={}ms",
        base.trim_end_matches('/'),
        percent_encoding::utf8_percent_encode(expr, percent_encoding::NON_ALPHANUMERIC),
        time_ms.div_euclid(1000),
        time_ms.rem_euclid(1000),
        timeout.as_millis()
    );
    let (status, body) = client.get(&url, timeout).await.map_err(|e| e.message)?;
    parse_answer(status, &body)
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    metric: Labels,
    value: (f64, String),
}

/// Prometheus's answer: `{"status":"success","data":{"resultType":"vector","result":[…]}}`, or
/// `{"status":"error","errorType":…,"error":…}` with a 4xx/5xx.
fn parse_answer(status: u16, body: &[u8]) -> Result<Vec<(Labels, f64)>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("HTTP {status}, not a Prometheus answer ({e}): {head}")
    })?;
    if answer.status != "success" {
        return Err(format!(
            "HTTP {status}, {}: {}",
            answer.error_type.unwrap_or_default(),
            answer.error.unwrap_or_default()
        ));
    }
    let value = |v: &str| v.parse::<f64>().map_err(|e| format!("a sample value {v:?}: {e}"));
    let data = answer.data.ok_or("a success without data")?;
    let shape = |e: serde_json::Error| format!("a {} result: {e}", data.result_type);
    match data.result_type.as_str() {
        "vector" => {
            let series: Vec<Series> = serde_json::from_value(data.result.clone()).map_err(shape)?;
            series.into_iter().map(|s| Ok((s.metric, value(&s.value.1)?))).collect()
        }
        "scalar" => {
            let (_, v): (f64, String) =
                serde_json::from_value(data.result.clone()).map_err(shape)?;
            let v = value(&v)?;
            // A scalar is one series without labels; zero is "nothing", as `vector(0) > 0` is.
            Ok(if v != 0.0 { vec![(Labels::new(), v)] } else { Vec::new() })
        }
        other => Err(format!("the answer is a {other}, not an instant vector")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlertsFile;

    fn rule(for_: &str) -> MetricRule {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.yaml");
        std::fs::write(
            &path,
            format!(
                r#"
receivers: [{{name: r, webhook: {{url: "http://127.0.0.1:1/"}}}}]
route: {{receiver: r}}
prometheus: {{url: "http://127.0.0.1:9090"}}
metric_rules:
  - name: stalled
    expr: 'rate(sluice_agent_lines_read_total[1m]) == 0'
    every: 15s
    for: {for_}
    labels: {{severity: warning}}
    summary: '{{{{ labels.instance }}}} reads {{{{ value }}}} lines/s ({{{{ severity }}}})'
"#
            ),
        )
        .unwrap();
        AlertsFile::load(&path).unwrap().metric_rules().remove(0)
    }

    fn series(instance: &str) -> Labels {
        Labels::from([
            ("__name__".to_owned(), "x".to_owned()),
            ("instance".to_owned(), instance.to_owned()),
        ])
    }

    #[test]
    fn series_are_pending_for_their_for_then_fire_and_resolve_when_gone() {
        let rule = rule("30s");
        let mut active = BTreeMap::new();
        assert!(rule.step(&mut active, vec![(series("a"), 0.0)], 0).is_empty());
        assert_eq!(active.len(), 1, "pending");
        assert!(rule.step(&mut active, vec![(series("a"), 0.0)], 15_000).is_empty());
        let fired = rule.step(&mut active, vec![(series("a"), 0.0), (series("b"), 0.0)], 30_000);
        assert_eq!(fired.len(), 1);
        let a = &fired[0];
        assert_eq!(a.labels["alertname"], "stalled");
        assert_eq!(a.labels["instance"], "a");
        assert_eq!(a.labels["severity"], "warning");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.summary(), "a reads 0 lines/s (warning)");
        assert_eq!(a.starts_at, 30_000);
        let resolved = rule.step(&mut active, vec![(series("b"), 0.0)], 45_000);
        assert_eq!(resolved.len(), 1, "a resolves; b is still pending");
        assert_eq!(resolved[0].ends_at, Some(45_000));
        assert_eq!(resolved[0].labels["instance"], "a");
        let none = rule.step(&mut active, Vec::new(), 60_000);
        assert!(none.is_empty(), "a pending series that goes sends nothing");
        assert!(active.is_empty());
    }

    #[test]
    fn answers_are_read_as_prometheus_writes_them() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"sluice"},"value":[1733400000.123,"1"]},
            {"metric":{},"value":[1733400000.123,"NaN"]}]}}"#;
        let samples = parse_answer(200, body).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].0["job"], "sluice");
        assert_eq!(samples[0].1, 1.0);
        assert!(samples[1].1.is_nan());
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}}"#;
        assert_eq!(parse_answer(200, scalar).unwrap()[0].1, 2.5);
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        let e = parse_answer(400, err).unwrap_err();
        assert!(e.contains("bad_data") && e.contains("char 5"), "{e}");
        let e = parse_answer(502, b"<html>bad gateway</html>").unwrap_err();
        assert!(e.contains("HTTP 502") && e.contains("bad gateway"), "{e}");
    }

    #[test]
    fn values_read_well() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.123456), "0.1235");
        assert_eq!(format_value(1234.5678), "1235");
        assert_eq!(format_value(12.346), "12.35");
    }
}
