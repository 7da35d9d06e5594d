//! Wire types shared by `sluice-agent` and the collector.
//!
//! The agent pushes [`LogBatch`]es over gRPC (service [`ingest_client::IngestClient`] /
//! [`ingest_server::Ingest`]) and moves its checkpoints only when the collector answers with
//! an [`Ack`], which it sends after the batch is durable in its write-ahead log.
//!
//! # Layout
//! - `proto/sluice/v1/ingest.proto`: the protocol itself; Rust types are generated from it.
//! - [`id`]: the stable record id that makes delivery exactly-once where it can be.
//! - [`flags`]: the bits a record carries when the agent had to alter it.
//! - [`level`]: the canonical level names, and finding one in a line's first words (the
//!   agent for every line, the collector for OTLP and `_bulk` records that carry none).
//! - `samples` (feature `test-support`): Chinese Java-log records for benchmarks.
//! - [`time`]: the window of record times the pipeline keeps.
//! - [`block`]: record blocks, the compressed form in which agents send records.
//! - [`frame`]: checksummed frames, as the collector's WAL and the agent's spool store them.
//! - [`segment`]: the segment files both logs keep their frames in: naming, listing, reading,
//!   and one rule for recovering from damage.

pub mod block;
pub mod flags;
pub mod frame;
pub mod id;
pub mod level;
#[cfg(feature = "test-support")]
pub mod samples;
pub mod segment;
pub mod time;

#[allow(unreachable_pub, clippy::all)]
mod generated {
    tonic::include_proto!("sluice.v1");
}

pub use generated::{
    Ack, KubeEvent, LogBatch, LogRecord, RecordBlock, Stream, ingest_client, ingest_server,
};
pub use id::RecordId;

impl LogRecord {
    /// The record's stable id, from its source key and byte offset.
    pub fn id(&self) -> RecordId {
        RecordId::new(self.source, self.offset)
    }
}

impl KubeEvent {
    /// The object the event is about as `Kind/name` (`Pod/nginx-7d9f`), or whichever of the
    /// two the event gave.
    pub fn object(&self) -> String {
        match (self.object_kind.is_empty(), self.object_name.is_empty()) {
            (_, true) => self.object_kind.clone(),
            (true, false) => self.object_name.clone(),
            (false, false) => format!("{}/{}", self.object_kind, self.object_name),
        }
    }
}

impl Stream {
    /// The short lowercase name used in the index and the API.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Unspecified => "",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::File => "file",
            Stream::Event => "event",
        }
    }
}
