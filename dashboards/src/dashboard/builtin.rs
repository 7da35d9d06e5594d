//! The built-in dashboards (`dashboards/builtin/`), compiled into the binary so `sluice up`
//! shows them with no file to hand.

use std::path::PathBuf;

use super::load::Loaded;
use super::model::Dashboard;

const FILES: [(&str, &str); 4] = [
    ("pipeline-health.yaml", include_str!("../../builtin/pipeline-health.yaml")),
    ("log-volume.yaml", include_str!("../../builtin/log-volume.yaml")),
    ("kubernetes-warnings.yaml", include_str!("../../builtin/kubernetes-warnings.yaml")),
    ("alerts-overview.yaml", include_str!("../../builtin/alerts-overview.yaml")),
];

/// The built-ins, as if loaded from `builtin/`.
pub fn builtin() -> Vec<Loaded> {
    FILES
        .iter()
        .map(|(name, text)| Loaded {
            path: PathBuf::from("builtin").join(name),
            dashboard: yaml_serde::from_str::<Dashboard>(text)
                .expect("the built-ins parse: tests/dashboards.rs lints them"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_file_is_compiled_in_and_lints_clean() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("builtin");
        let on_disk = std::fs::read_dir(&dir).unwrap().count();
        let built = super::builtin();
        assert_eq!(built.len(), on_disk, "a file in builtin/ is missing from FILES");
        let problems = super::super::lint::lint(&built, &Default::default());
        assert!(problems.is_empty(), "{problems:?}");
    }
}
