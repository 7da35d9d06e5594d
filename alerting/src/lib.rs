//! Sluice alerting: rules over the records passing through the collector, Alertmanager's
//! grouping and routing, and notifications that are neither lost nor sent in a storm.
//!
//! # Layout
//! - [`config`]: the alerts file (receivers, route, rules, inhibitions), checked at load.
//! - [`condition`]: a rule's `when:`; [`template`]: its `summary:`.
//! - [`evaluate`]: counts per rule, group and time bucket; windows closed at a watermark.
//! - [`metric_rules`]: PromQL rules asked of a Prometheus-compatible API.
//! - [`alert`]: the alert and its fingerprint.
//! - [`route`]: the route tree and label matchers; [`silence`]: silences.
//! - [`dispatch`]: groups, their timers, what was notified, the outbox.
//! - [`notifier`]: the trait every channel implements; [`notifiers`]: DingTalk, Aliyun SMS,
//!   email, webhooks; [`http`]: their HTTP client.
//! - [`channels`]: each receiver's notifiers and the dispatcher, built from the file.
//! - [`history`]: what rules starting without counts read from the store.
//! - [`engine`]: the rule sink over the WAL, the clock, the deliveries and the durable state.
//! - [`simulate`]: the engine on a simulated clock, messages rendered instead of sent;
//!   [`rule_test`]: `sluice alert test`, promtool-style unit tests of rules on it;
//!   [`backtest`]: `sluice alert backtest`, stored records replayed through it.
//! - [`api`]: `/api/v1/alerts`, `/api/v1/alerts/status`, `/api/v1/silences`.
//! - [`error`]: the crate's error type.

pub mod alert;
pub mod api;
pub mod backtest;
pub mod channels;
pub mod condition;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod history;
pub mod http;
pub mod metric_rules;
pub mod notifier;
pub mod notifiers;
pub mod route;
pub mod rule_test;
pub mod silence;
pub mod simulate;
pub mod template;

pub use config::AlertsFile;
pub use engine::{Alerting, RuleSink};
pub use error::AlertError;
pub use history::History;
