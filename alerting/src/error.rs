//! The crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts file {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("alerting state {}: {message}", path.display())]
    State { path: PathBuf, message: String },
}
