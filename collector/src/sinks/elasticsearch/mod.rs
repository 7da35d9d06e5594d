//! Elasticsearch and OpenSearch: `_bulk` with gzip, every item's answer parsed, the record id
//! as `_id` with `op_type=create` so a resend after a crash is a `409` that counts as
//! delivered (exactly once), `429`/`5xx` items retried, other rejections to a dead-letter file.
//!
//! The `elasticsearch` crate is not used: its releases are alphas, it brings reqwest 0.12 and
//! a TLS stack of its own, and for `_bulk` it hands back the raw body anyway; what this sink
//! needs (gzip, per-item parsing, retries of some items) is the part it leaves to callers.
//! HTTP is hyper with rustls on ring (see `service.rs` for why not reqwest).

mod config;
mod service;
mod sink;

pub use config::{ElasticsearchAuth, ElasticsearchConfig};
pub use sink::ElasticsearchSink;
