//! The sinks: a folder each, or one file for one as small as `blackhole`.

pub mod blackhole;
mod dead_letter;
mod document;
pub mod elasticsearch;
pub mod index;
pub mod kafka;
mod template;
