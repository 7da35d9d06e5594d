//! Log-to-metric counters (`--log-metrics FILE`): Prometheus counters of the records a query
//! matches, counted as records pass through the WAL, each record once.
//!
//! - [`config`]: the file, checked at load.
//! - [`counters`]: the counts per label set, the cap, the text exposition.
//! - [`seen`]: which records were counted, so a resent one is not counted again.
//! - [`sink`]: the sink with its own cursor, and the state saved with it.

pub mod config;
pub mod counters;
pub mod seen;
pub mod sink;

pub use config::LogMetricsFile;
pub use sink::{LogMetricSink, LogMetrics};
