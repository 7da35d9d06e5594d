//! The Sluice collector: receives records, makes them durable, and fans them out to sinks.
//!
//! An agent's batch is appended to the [`wal`] and synced before the [`ingest`] service
//! acknowledges it. Each sink then reads the WAL through its own [`runner`] and cursor, so
//! one slow sink never blocks or loses another; segments are deleted once every sink has
//! flushed past them.
//!
//! # Layout
//! - [`server`]: wiring and start-up (`sluice up`, `sluice collector`).
//! - [`ingest`]: the gRPC receiver for agents; [`auth`]: TLS and per-agent bearer tokens.
//! - [`bulk`] (Elasticsearch `_bulk`) and [`otlp`] (OTLP/HTTP and OTLP/gRPC logs): receivers
//!   for other clients, made durable through [`external`]; [`kafka_source`]: a consumer
//!   group feeding the WAL, committing offsets once every sink holds what it read.
//! - [`wal`]: segment files with CRC-checked frames; [`wal_frame`]: what a frame holds, and
//!   the [`wal_frame::Frame`] sinks take: records decoded on first use, with their pod's
//!   labels, node and owner from [`enrich`] (a cluster-wide pod watch).
//! - [`runner`]: one task per sink, from its cursor, with retries and flushes.
//! - [`sink`]: the [`sink::Sink`] trait; [`sinks`]: the sinks (`index`, the local store;
//!   `elasticsearch`; `kafka`; `blackhole`, for benchmarks).
//! - [`error`]: the crate's error type.

pub mod auth;
pub mod bulk;
pub mod enrich;
pub mod error;
pub mod external;
pub mod ingest;
pub mod kafka_source;
pub mod otlp;
pub mod runner;
pub mod server;
pub mod sink;
pub mod sinks;
pub mod wal;
pub mod wal_frame;

pub use error::CollectorError;
pub use server::{CollectorConfig, run};
