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
