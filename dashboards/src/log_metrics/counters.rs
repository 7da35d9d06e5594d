//! The counters of a log metrics file: one per metric, per label set, with the cap on label
//! sets, and their Prometheus text exposition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use sluice_proto::LogRecord;
use sluice_query::matcher::{Matcher, field_value};

use super::config::{MetricDef, label_name};

/// The counters, as restored from state and advanced record by record.
#[derive(Debug, Clone)]
pub struct Counters {
    metrics: Vec<Counter>,
}

#[derive(Debug, Clone)]
struct Counter {
    def: MetricDef,
    matcher: Matcher,
    series: HashMap<Vec<String>, u64>,
    refused: u64,
}

/// A metric's counts as saved: kept only while its definition is unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedMetric {
    pub name: String,
    pub query: String,
    pub labels: Vec<String>,
    pub series: Vec<(Vec<String>, u64)>,
    pub refused: u64,
}

impl Counters {
    /// Counters for `defs`, starting from `saved` where a metric's name, query and labels are
    /// those saved; a reshaped metric starts from zero, as a restarted exporter's would.
    pub fn new(defs: &[MetricDef], saved: &[SavedMetric]) -> Self {
        let metrics = defs
            .iter()
            .map(|def| {
                let matcher = Matcher::new(&def.query).expect("checked when the file loaded");
                let mut counter =
                    Counter { def: def.clone(), matcher, series: HashMap::new(), refused: 0 };
                match saved.iter().find(|s| s.name == def.name) {
                    Some(s) if s.query == def.query && s.labels == def.labels => {
                        counter.series = s.series.iter().cloned().collect();
                        counter.refused = s.refused;
                    }
                    Some(_) => tracing::info!(
                        metric = %def.name,
                        "the metric's query or labels changed: it counts afresh"
                    ),
                    None => {}
                }
                counter
            })
            .collect();
        Self { metrics }
    }

    /// Counts one record in every metric whose query it matches.
    pub fn observe(&mut self, record: &LogRecord) {
        for c in &mut self.metrics {
            if !c.matcher.matches(record) {
                continue;
            }
            let values: Vec<String> = c.def.labels.iter().map(|l| field_value(record, l)).collect();
            if let Some(n) = c.series.get_mut(&values) {
                *n += 1;
            } else if c.series.len() < c.def.max_series {
                c.series.insert(values, 1);
            } else {
                c.refused += 1;
            }
        }
    }

    pub fn saved(&self) -> Vec<SavedMetric> {
        self.metrics
            .iter()
            .map(|c| SavedMetric {
                name: c.def.name.clone(),
                query: c.def.query.clone(),
                labels: c.def.labels.clone(),
                series: sorted(&c.series).into_iter().map(|(k, v)| (k.clone(), v)).collect(),
                refused: c.refused,
            })
            .collect()
    }

    /// The Prometheus text exposition (format 0.0.4) of the counters, series in label order
    /// so two scrapes of the same counts are byte-identical.
    pub fn render(&self, duplicates: u64) -> String {
        let mut out = String::new();
        for c in &self.metrics {
            let names: Vec<String> = c.def.labels.iter().map(|l| label_name(l)).collect();
            if !c.def.help.is_empty() {
                let _ = writeln!(out, "# HELP {} {}", c.def.name, escape_help(&c.def.help));
            }
            let _ = writeln!(out, "# TYPE {} counter", c.def.name);
            for (values, n) in sorted(&c.series) {
                let _ = writeln!(out, "{}{} {n}", c.def.name, labels(&names, values));
            }
        }
        let per_metric = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Counter) -> usize| {
            let mut text = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for c in &self.metrics {
                let _ = writeln!(text, "{name}{{metric=\"{}\"}} {}", c.def.name, value(c));
            }
            text
        };
        out.push_str(&per_metric(
            "sluice_log_metrics_refused_total",
            "counter",
            "Records a log metric matched but did not count: their label set was past max_series.",
            &|c| c.refused as usize,
        ));
        out.push_str(&per_metric(
            "sluice_log_metrics_series",
            "gauge",
            "Label sets a log metric has.",
            &|c| c.series.len(),
        ));
        let _ = write!(
            out,
            "# HELP sluice_log_metrics_duplicates_total Records the WAL held again (resent) and log metrics counted once.\n\
             # TYPE sluice_log_metrics_duplicates_total counter\nsluice_log_metrics_duplicates_total {duplicates}\n"
        );
        out
    }
}

fn sorted(series: &HashMap<Vec<String>, u64>) -> BTreeMap<&Vec<String>, u64> {
    series.iter().map(|(k, v)| (k, *v)).collect()
}

fn labels(names: &[String], values: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> =
        names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape_value(v))).collect();
    format!("{{{}}}", pairs.join(","))
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_metrics::config::LogMetricsFile;

    fn record(ns: &str, message: &str) -> LogRecord {
        LogRecord { namespace: ns.into(), message: message.into(), ..Default::default() }
    }

    fn defs(extra: &str) -> Vec<MetricDef> {
        LogMetricsFile::parse(&format!(
            "metrics:\n  - name: pay_failures_total\n    help: \"支付失败 lines\\nby namespace\"\n    query: '支付失败'\n    labels: [namespace]\n{extra}"
        ))
        .unwrap()
        .metrics
    }

    #[test]
    fn counts_matching_records_per_label_set_and_renders_them() {
        let mut c = Counters::new(&defs(""), &[]);
        for (ns, m) in
            [("pay", "订单 支付失败 x"), ("pay", "支付失败"), ("a\"b", "支付失败"), ("pay", "ok")]
        {
            c.observe(&record(ns, m));
        }
        let text = c.render(3);
        assert!(
            text.contains("# HELP pay_failures_total 支付失败 lines\\nby namespace\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE pay_failures_total counter\n"));
        assert!(
            text.contains("pay_failures_total{namespace=\"a\\\"b\"} 1\npay_failures_total{namespace=\"pay\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("sluice_log_metrics_duplicates_total 3\n"));
        assert_eq!(text, Counters::new(&defs(""), &c.saved()).render(3), "state round-trips");
    }

    #[test]
    fn label_sets_past_the_cap_are_refused_and_counted() {
        let defs = defs("    max_series: 2\n");
        let mut c = Counters::new(&defs, &[]);
        for ns in ["a", "b", "c", "a", "d"] {
            c.observe(&record(ns, "支付失败"));
        }
        let text = c.render(0);
        assert!(text.contains("{namespace=\"a\"} 2\n") && text.contains("{namespace=\"b\"} 1\n"));
        assert!(!text.contains("namespace=\"c\""));
        assert!(
            text.contains("sluice_log_metrics_refused_total{metric=\"pay_failures_total\"} 2\n")
        );
        assert!(text.contains("sluice_log_metrics_series{metric=\"pay_failures_total\"} 2\n"));
    }

    #[test]
    fn a_reshaped_metric_counts_afresh() {
        let mut c = Counters::new(&defs(""), &[]);
        c.observe(&record("pay", "支付失败"));
        let saved = c.saved();
        let changed = LogMetricsFile::parse(
            "metrics:\n  - name: pay_failures_total\n    query: '支付失败 OR 退款失败'\n    labels: [namespace]\n",
        )
        .unwrap();
        assert!(!Counters::new(&changed.metrics, &saved).render(0).contains("{namespace=\"pay\"}"));
        assert!(Counters::new(&defs(""), &saved).render(0).contains("{namespace=\"pay\"} 1"));
    }
}
