//! Errors of the store and the search service.

use std::path::PathBuf;

/// What went wrong in the store or a search.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text does not parse; the message says where.
    #[error("invalid query: {0}")]
    Syntax(String),
    /// A request parameter is out of range or malformed.
    #[error("invalid parameter {name}: {reason}")]
    Parameter { name: &'static str, reason: String },
    #[error("index error in {path}: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt manifest {path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "index {path} has format version {found}, this sluice reads version {expected}; move it aside and let the collector re-index from its WAL"
    )]
    Version { path: PathBuf, found: u32, expected: u32 },
    /// Too many requests are running and waiting; the client should retry shortly.
    #[error("too busy: {0}")]
    Busy(String),
    /// The query would scan more than the configured budget; `force` overrides.
    #[error("query too broad: {0}")]
    Budget(String),
    /// The caller may not read what it asked for.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The caller sent no credentials or unknown ones.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Nothing matches, for example a context of an id that does not exist (or is not the
    /// caller's to see: the two answers are the same on purpose).
    #[error("not found: {0}")]
    NotFound(String),
    /// The store was opened read-only and a write was asked of it.
    #[error("store {0} is open read-only")]
    ReadOnly(PathBuf),
}

impl QueryError {
    pub(crate) fn index(path: impl Into<PathBuf>) -> impl FnOnce(tantivy::TantivyError) -> Self {
        let path = path.into();
        move |source| QueryError::Index { path, source }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| QueryError::Io { action, path, source }
    }
}
