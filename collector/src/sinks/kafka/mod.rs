//! Kafka: every record a message (key `namespace/pod`, topic from a template), written in
//! Kafka transactions together with the sink's WAL cursor, so a reader with
//! `isolation.level=read_committed` sees each record exactly once whatever crashes — the
//! collector's or the broker's.
//!
//! A transaction holds the records of one flush (or of `transaction_bytes`, if that comes
//! first) plus one message on the cursor topic (compacted, keyed by `transactional.id`)
//! saying how far in the WAL the transaction reaches. On open, the sink fences any earlier
//! producer with its id and reads its cursor back; what an aborted or unfinished
//! transaction held is sent again from the WAL. librdkafka's producer is idempotent in a
//! transaction (acks=all); its delivery reports decide the commit, and `QueueFull` makes
//! the sink wait (backpressure).

mod config;
pub(crate) mod encoding;
pub(crate) mod service;
mod sink;

pub use config::{KafkaCompression, KafkaConfig};
pub use encoding::Encoding;
pub use sink::KafkaSink;
