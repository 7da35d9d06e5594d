//! Dashboards as code: the format, its checks, and its renderings for Grafana and KubeSphere.
//!
//! - [`model`]: the file format (`apiVersion: sluice.dev/v1`, unknown keys refused).
//! - [`builtin`]: the built-in dashboards, compiled in.
//! - [`load`]: a directory of files; [`lint`]: the checks beyond the format.
//! - [`monitors`]: `sluice dash test`, the monitors under the alerting unit tests.
//! - [`lucene`]: the search language as Lucene, for Grafana's Elasticsearch panels.
//! - [`import`]: a Grafana dashboard into the format.
//! - [`grafana`]: Grafana dashboard JSON; [`kubesphere`]: KubeSphere `Dashboard` objects.

pub mod builtin;
pub mod grafana;
pub mod import;
pub mod kubesphere;
pub mod lint;
pub mod load;
pub mod lucene;
pub mod model;
pub mod monitors;

pub use load::{Loaded, Problem, load};
pub use model::Dashboard;
