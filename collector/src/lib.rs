//! The Sluice collector: receives records, makes them durable, and fans them out to sinks.
//!
//! A source appends what it receives to the [`wal`] and syncs it before it answers (an
//! agent's ack, a `_bulk` reply) or commits its own checkpoint. Each sink then reads the WAL
//! through its own [`runner`] and cursor, so one slow sink never blocks or loses another;
//! segments are deleted once every sink has flushed past them. The library offers these
//! parts; the `sluice` binary chooses which run and wires them to listeners.
//!
//! # Layout
//! - [`sources`]: where records come from — agents (gRPC), `_bulk`, OTLP logs and metrics,
//!   Kafka — and the one way they append to the WAL with stable ids; [`auth`]: TLS and bearer tokens.
//! - [`wal`]: segment files with CRC-checked frames; [`wal_frame`]: what a frame holds, and
//!   the [`wal_frame::Frame`] sinks take: records decoded on first use, with their pod's
//!   labels, node and owner from [`enrich`] (a cluster-wide pod watch).
//! - [`runner`]: one task per sink, from its cursor, with retries and flushes.
//! - [`sink`]: the [`sink::Sink`] trait; [`sinks`]: the sinks (`index`, the local store;
//!   `elasticsearch`; `kafka`; `remote_write`, OTLP metrics to Prometheus; `blackhole`, for
//!   benchmarks).
//! - [`durable`]: small state files replaced atomically.
//! - [`error`]: the crate's error type.

pub mod auth;
pub mod durable;
pub mod enrich;
pub mod error;
pub mod runner;
pub mod sink;
pub mod sinks;
pub mod sources;
pub mod wal;
pub mod wal_frame;

pub use error::CollectorError;
