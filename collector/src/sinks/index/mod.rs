//! The local tantivy index: the embedded default sink, searched by `sluice search` and the
//! HTTP API.

mod config;
mod sink;

pub use config::IndexSinkConfig;
pub use sink::IndexSink;
