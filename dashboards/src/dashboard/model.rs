//! The dashboard file format, version `sluice.dev/v1`: what a platform team keeps in Git.

use serde::{Deserialize, Serialize};

/// The only format version this release reads.
pub const API_VERSION: &str = "sluice.dev/v1";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    /// Lowercase letters, digits and `-`: the stable id every render derives its uid from.
    pub name: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How far back the default time range reaches, such as `1h` or `7d`.
    #[serde(default = "default_time")]
    pub time: String,
    /// How often the numbers refresh, such as `30s`; none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
    pub rows: Vec<Row>,
    /// Not written back: the import of a Grafana dashboard has none.
    #[serde(default, skip_serializing)]
    pub monitors: Vec<Monitor>,
}

fn default_time() -> String {
    "1h".into()
}

/// A variable, used as `$name` in the panels' queries: a keyword field's values, or a list.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A keyword field whose values (a facet of the logs) are the choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Fixed choices instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Several choices at once; all are chosen at first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub title: String,
    pub panels: Vec<Panel>,
}

/// The kinds of panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelType {
    /// Records over time, split by level.
    Volume,
    /// Error records over time.
    Errors,
    /// The most frequent values of a keyword field (a facet), as a table.
    Top,
    /// The newest records, live.
    Logs,
    /// The newest Kubernetes events.
    Events,
    /// A PromQL expression, or a log metric, over time.
    Metric,
    /// Text.
    Markdown,
}

/// One panel. Which keys a type takes is checked by lint, which names the key a type
/// does not take.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    #[serde(rename = "type")]
    pub kind: PanelType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// Columns of 24 the panel spans; the row's panels share them equally by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// The search language (volume, errors, top, logs, events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The keyword field of a top panel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// How many values a top panel shows (default 10) or records a logs panel (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// PromQL of a metric panel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promql: Option<String>,
    /// A log metric's name (the `--log-metrics` file) for a metric panel: its rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_metric: Option<String>,
    /// How a metric panel names its series, Prometheus's `{{label}}` form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legend: Option<String>,
    /// Markdown text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A monitor: an alert rule of the alerts file by name, or written here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub rule: Option<String>,
    pub inline: Option<sluice_alerting::config::RuleConfig>,
}
