use std::path::PathBuf;

/// What went wrong in a dashboards or metrics file, or in the state the crate keeps.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    #[error("log metrics file {}: {message}", path.display())]
    LogMetrics { path: PathBuf, message: String },
    #[error("log metrics state {}: {message}", path.display())]
    State { path: PathBuf, message: String },
}
