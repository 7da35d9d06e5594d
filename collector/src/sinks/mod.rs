//! The sinks: a folder each, or one file for one as small as `blackhole`.

pub mod blackhole;
mod dead_letter;
mod document;
pub mod elasticsearch;
mod http;
pub mod index;
pub mod kafka;
pub mod remote_write;
mod template;
