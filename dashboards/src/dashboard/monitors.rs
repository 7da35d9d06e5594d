//! `sluice dash test`: the dashboards' monitors under the alerting unit tests (`*.test.yaml`
//! beside the dashboards, promtool's shape as `sluice alert test` reads it, `rule_files`
//! left out): the rules of the alerts file, with the monitors written inline added to them.

use std::path::{Path, PathBuf};

use sluice_alerting::AlertsFile;
use sluice_alerting::rule_test::{self, Outcome, TestFile};

use super::load::Loaded;

/// The alerts file the monitors are tested in: `alerts` (or a minimal one with a webhook
/// receiver) with every inline monitor added as a rule.
pub fn with_monitors(dashboards: &[Loaded], alerts: Option<&AlertsFile>) -> AlertsFile {
    let mut file = alerts.cloned().unwrap_or_else(|| {
        yaml_serde::from_str(
            "receivers: [{name: monitors, webhook: {url: 'http://127.0.0.1:9/'}}]\nroute: {receiver: monitors}\n",
        )
        .expect("a minimal alerts file")
    });
    for l in dashboards {
        file.rules.extend(l.dashboard.monitors.iter().filter_map(|m| m.inline.clone()));
    }
    file
}

/// The test files under `dir`.
pub fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    super::load::collect(dir, &mut out, true);
    out.sort();
    out
}

/// Runs one test file against `alerts` (whose secret files resolve against `alerts_path`).
pub fn run(path: &Path, alerts: &AlertsFile, alerts_path: &Path) -> Result<Outcome, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let file: TestFile =
        yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    rule_test::run_tests(path, &file.tests, alerts, alerts_path).map_err(|e| e.to_string())
}
