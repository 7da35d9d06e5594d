//! Sluice dashboards, monitors and metrics.
//!
//! # Layout
//! - [`dashboard`]: dashboards as code — the format, lint, Grafana and KubeSphere renderings.
//! - [`log_metrics`]: log-to-metric counters over the records passing through the WAL,
//!   shown on `/metrics`.
//! - [`api`]: the dashboards for the page, and its metric panels' Prometheus queries.
//! - [`error`]: the crate's error type.

pub mod api;
pub mod dashboard;
pub mod error;
pub mod log_metrics;

pub use error::DashError;
