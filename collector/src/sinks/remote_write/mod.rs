//! Prometheus remote-write: the OTLP metrics in the WAL, as samples, to any receiver of
//! remote-write 1.0 (Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos,
//! VictoriaMetrics).
//!
//! - [`convert`]: OTLP metrics as Prometheus samples, named as Prometheus names them.
//! - `request`: the `WriteRequest` protobuf, snappy-compressed.
//! - [`sink`]: the sink, its cursor inside a frame, and what it does with refusals.
//! - [`config`]: where and how it writes.

mod config;
pub mod convert;
mod request;
mod sink;

pub use config::RemoteWriteConfig;
pub use sink::RemoteWriteSink;
