//! The sinks, one folder each.

pub mod index;
