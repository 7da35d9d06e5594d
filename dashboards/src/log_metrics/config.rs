//! The log metrics file: counters defined by a query of the search language and the keyword
//! fields that become their labels.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use sluice_query::matcher::Matcher;

use crate::DashError;

/// `--log-metrics FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMetricsFile {
    pub metrics: Vec<MetricDef>,
}

/// One counter: how many records matched `query`, per distinct value of `labels`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct MetricDef {
    pub name: String,
    #[serde(default)]
    pub help: String,
    pub query: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Label sets past this many are refused (their records counted in
    /// `sluice_log_metrics_refused_total`), so a label such as `pod` cannot grow the
    /// scrape without bound.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

fn default_max_series() -> usize {
    1000
}

impl LogMetricsFile {
    pub fn load(path: &Path) -> Result<Self, DashError> {
        let err = |message: String| DashError::LogMetrics { path: path.to_owned(), message };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses and checks a file's text; the message names the metric and key at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: LogMetricsFile = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        let mut names = HashSet::new();
        for (i, m) in file.metrics.iter().enumerate() {
            let at = format!("metrics[{i}] ({})", m.name);
            if !is_metric_name(&m.name) {
                return Err(format!(
                    "{at}.name: not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
                ));
            }
            if m.name.starts_with("sluice_") {
                return Err(format!("{at}.name: sluice_ names are Sluice's own metrics"));
            }
            if !names.insert(m.name.as_str()) {
                return Err(format!("{at}.name: a second metric with this name"));
            }
            Matcher::new(&m.query).map_err(|e| format!("{at}.query: {e}"))?;
            let mut seen = HashSet::new();
            for l in &m.labels {
                if !Matcher::is_keyword_field(l) {
                    return Err(format!(
                        "{at}.labels: {l:?} is not a keyword field (namespace, pod, container, \
                         level, cluster, node, labels.<key>, …)"
                    ));
                }
                if !seen.insert(label_name(l)) {
                    return Err(format!("{at}.labels: {l:?} twice"));
                }
            }
            if m.max_series == 0 {
                return Err(format!("{at}.max_series: at least 1"));
            }
        }
        Ok(file)
    }
}

/// The Prometheus label a field becomes: `labels.app.kubernetes.io/name` is
/// `labels_app_kubernetes_io_name`, as Prometheus's Kubernetes discovery spells pod labels.
pub fn label_name(field: &str) -> String {
    field.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_loads() {
        let f = LogMetricsFile::parse(
            "metrics:\n  - name: pay_failures_total\n    help: 支付失败 lines\n    query: '支付失败'\n    labels: [namespace, labels.app]\n",
        )
        .unwrap();
        assert_eq!(f.metrics[0].labels, ["namespace", "labels.app"]);
        assert_eq!(f.metrics[0].max_series, 1000);
        assert_eq!(label_name("labels.app.kubernetes.io/name"), "labels_app_kubernetes_io_name");
    }

    #[test]
    fn mistakes_name_the_metric_and_key() {
        let cases = [
            (
                "metrics:\n  - name: a_total\n    query: x\n    lables: [pod]\n",
                "unknown field `lables`",
            ),
            ("metrics:\n  - name: 1bad\n    query: x\n", "metrics[0] (1bad).name"),
            ("metrics:\n  - name: sluice_x\n    query: x\n", "Sluice's own"),
            (
                "metrics:\n  - name: a\n    query: x\n  - name: a\n    query: y\n",
                "metrics[1] (a).name: a second",
            ),
            ("metrics:\n  - name: a\n    query: 'level:'\n", "metrics[0] (a).query"),
            (
                "metrics:\n  - name: a\n    query: x\n    labels: [message]\n",
                "\"message\" is not a keyword field",
            ),
            ("metrics:\n  - name: a\n    query: x\n    labels: [pod, pod]\n", "\"pod\" twice"),
            ("metrics:\n  - name: a\n    query: x\n    max_series: 0\n", "max_series: at least 1"),
        ];
        for (text, want) in cases {
            let e = LogMetricsFile::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
