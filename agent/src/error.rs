//! Errors of the agent.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read agent config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config does not parse, or a key is unknown: the message names the key and line.
    #[error("invalid agent config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid watch pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("invalid collector endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt checkpoint file {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl AgentError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| AgentError::Io { action, path, source }
    }
}
