//! The Sluice log store and its search service.
//!
//! Records are kept in tantivy indexes, one per UTC day ("partitions"), with a small manifest
//! of each partition's time range and document count so that a search opens only the
//! partitions its time range touches. The message field indexes every alphanumeric run
//! lowercased and a field of its own every CJK run as the terms of its substrings, and the query
//! language turns a run of several tokens into a phrase, so any Chinese substring `grep -F`
//! finds is found here too.
//!
//! # Layout
//! - [`access`]: users, tokens and the [`access::Scope`] every query is ANDed with.
//! - [`schema`]: the fields of a stored record.
//! - [`tokenizer`]: the CJK-aware tokenizer: the rule of every query, and the words' index.
//! - [`cjk`]: CJK runs as the terms that find any substring of them exactly.
//! - [`shape`]: the hash of a message's template that every partition sorts its documents by.
//! - [`phrase`]: phrases of words, without positions, checked against the stored message.
//! - [`syntax`]: the query language, parsed into an [`syntax::Expr`].
//! - [`compile`]: an [`syntax::Expr`] into a tantivy query.
//! - [`store`]: partitions, the manifest and its format versions, and the single writer with
//!   exactly-once adds.
//! - [`search`]: `Prepared` (query + range + scope, the entry of every read path) and search, newest or oldest first, paged by a (time, id) cursor.
//! - [`matcher`]: a query over one record in memory, by the index's rules (alert rules and
//!   log-to-metric counters).
//! - [`collect`]: tantivy collectors over the columns: top hits, time buckets, value counts.
//! - [`highlight`]: where a hit matched.
//! - [`histogram`], [`facets`], [`context`], [`tail`]: the other read paths.
//! - [`retention`]: partitions dropped by age and size, closed ones merged.
//! - [`budget`]: which queries are unselective, and the scan budget that refuses them.
//! - [`time`]: times as the API, the CLI and documents write and read them.
//! - [`api`]: the HTTP API (`/api/v1/{search,histogram,facets,context,tail,export}`,
//!   `/healthz`, `/metrics`).
//! - [`error`]: the crate's error type.
//!
//! Dependencies run one way: [`time`], [`budget`], [`syntax`], [`tokenizer`] and the other
//! leaves at the bottom, [`api`] on top, imported by nothing in the crate.

pub mod access;
pub mod api;
pub mod budget;
pub mod cjk;
pub mod collect;
pub mod compile;
pub mod context;
pub mod error;
pub mod facets;
pub mod highlight;
pub mod histogram;
pub mod matcher;
pub mod phrase;
pub mod retention;
pub mod schema;
pub mod search;
pub mod shape;
pub mod store;
pub mod syntax;
pub mod tail;
#[cfg(test)]
mod testing;
pub mod time;
pub mod tokenizer;

pub use error::QueryError;
pub use search::{Hit, HitEvent, SearchRequest, SearchResponse};
pub use store::{Store, StoreWriter};
