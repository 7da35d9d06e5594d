//! Errors of the collector.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A frame's checksum or length is wrong where the log was known to be whole.
    #[error("corrupt WAL frame at position {position} in {path}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("WAL position {position} is not in the log (it holds {first}..{end})")]
    OutOfRange { position: u64, first: u64, end: u64 },
    /// The WAL is at its cap and blocks: sinks are behind.
    #[error("the WAL holds {bytes} bytes, its cap is {max_bytes}: sinks are behind; retry later")]
    Full { bytes: u64, max_bytes: u64 },
    #[error("sink {sink}: {message}")]
    Sink { sink: String, message: String },
    #[error("invalid {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("server error: {0}")]
    Server(String),
    /// No Kubernetes cluster could be reached or configured.
    #[error("{0}")]
    NoCluster(String),
}

impl CollectorError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CollectorError::Io { action, path, source }
    }
}
