//! Reading a directory of dashboard files.

use std::path::{Path, PathBuf};

use super::model::Dashboard;

/// A dashboard and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub dashboard: Dashboard,
}

/// A file that did not parse: the file, and serde's message with the line, column and key.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Every `*.yaml` / `*.yml` file under `dir` but the monitors' tests (or `dir` itself, a
/// file), in name order.
pub fn load(dir: &Path) -> (Vec<Loaded>, Vec<Problem>) {
    let mut paths = Vec::new();
    if dir.is_file() {
        paths.push(dir.to_owned());
    } else {
        collect(dir, &mut paths, false);
    }
    paths.sort();
    let (mut loaded, mut problems) = (Vec::new(), Vec::new());
    if paths.is_empty() {
        problems.push(Problem {
            path: dir.to_owned(),
            message: "no dashboard files (*.yaml) found".into(),
        });
    }
    for path in paths {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| yaml_serde::from_str::<Dashboard>(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(dashboard) => loaded.push(Loaded { path, dashboard }),
            Err(message) => problems.push(Problem { path, message }),
        }
    }
    (loaded, problems)
}

/// The YAML files under `dir`: the monitors' tests (`*.test.yaml`) when `tests`, else the
/// dashboards.
pub(super) fn collect(dir: &Path, out: &mut Vec<PathBuf>, tests: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            collect(&path, out, tests);
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            && (name.ends_with(".test.yaml") || name.ends_with(".test.yml")) == tests
        {
            out.push(path);
        }
    }
}
