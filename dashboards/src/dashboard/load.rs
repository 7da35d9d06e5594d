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

/// Every `*.yaml` / `*.yml` file under `dir` (or `dir` itself, a file), in name order.
pub fn load(dir: &Path) -> (Vec<Loaded>, Vec<Problem>) {
    let mut paths = Vec::new();
    if dir.is_file() {
        paths.push(dir.to_owned());
    } else {
        collect(dir, &mut paths);
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

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}
