//! The sinks: a folder each, or one file for one as small as `blackhole`.

pub mod blackhole;
pub mod elasticsearch;
pub mod index;
