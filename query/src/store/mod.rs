//! The log store: one tantivy index per UTC day under `<dir>/`, and `manifest.json` beside
//! them with each partition's time range and document count and the WAL position the store
//! covers.
//!
//! A single [`StoreWriter`] adds records and commits. Exactly-once rests on the stable record
//! id: for each source the writer remembers the highest offset it holds, so a record beyond it
//! is new without a lookup, and a record at or below it (a resend, or a replay of the WAL
//! after a crash) is looked up by id and skipped when present. Each partition's commit
//! payload records the WAL position it covers; the manifest is written after all partitions
//! committed, so its position is where the sink resumes.
//!
//! # Layout
//! - this file: [`Store`], the partitions of one directory shared by the writer and searches.
//! - [`manifest`]: `manifest.json`, its format versions, and partition keys.
//! - [`writer`]: [`StoreWriter`], the one writer, with exactly-once adds.
//! - [`upgrade`]: partitions of an older format opened with the current schema.

mod manifest;
mod upgrade;
mod writer;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sluice_proto::RecordId;
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexSortByField, Order, ReloadPolicy, Term};

pub use manifest::{FORMAT_VERSION, PartitionStats, READABLE_VERSIONS};
pub(crate) use manifest::{NANOS_PER_DAY, partition_start};
pub use writer::{Added, StoreWriter};

use crate::QueryError;
use crate::cjk::{CJK_TOKENIZER_NAME, CjkTokenizer};
use crate::schema::LogSchema;
use crate::tokenizer::{TOKENIZER_NAME, WordTokenizer};
use manifest::{MANIFEST, Manifest, partition_key};

/// Log lines compress far better in large blocks than in tantivy's default 16 KiB; a hit
/// costs one block's decompression, which at this size stays well under a millisecond.
const DOCSTORE_BLOCK_BYTES: usize = 256 << 10;

/// One day of records.
pub struct Partition {
    pub key: String,
    /// The day's first nanosecond, and the next day's.
    pub start_ns: i64,
    pub end_ns: i64,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
}

impl Partition {
    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }
}

/// The partitions of one data directory, shared by the writer and searches.
pub struct Store {
    dir: PathBuf,
    schema: LogSchema,
    read_only: bool,
    pub(crate) partitions: RwLock<BTreeMap<String, Arc<Partition>>>,
    pub(crate) manifest: RwLock<Manifest>,
    /// The last commit's number, for live tails to wait on.
    commits: tokio::sync::watch::Sender<u64>,
    /// Unselective queries over more bytes than this are refused; `u64::MAX`: no budget.
    query_budget: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating when needed) the store in `dir` for reading and writing.
    pub fn open(dir: &Path) -> Result<Arc<Self>, QueryError> {
        fs::create_dir_all(dir).map_err(QueryError::io("create index directory", dir))?;
        Self::open_with(dir, false)
    }

    /// Opens an existing store for searching only, for example from `sluice search` while
    /// `sluice up` writes to it.
    pub fn open_read_only(dir: &Path) -> Result<Arc<Self>, QueryError> {
        if !dir.join(MANIFEST).exists() && !dir.exists() {
            return Err(QueryError::Io {
                action: "open index directory",
                path: dir.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, read_only: bool) -> Result<Arc<Self>, QueryError> {
        let manifest = Manifest::load(dir)?;
        let store = Store {
            dir: dir.to_owned(),
            schema: LogSchema::new(),
            read_only,
            partitions: RwLock::default(),
            commits: tokio::sync::watch::Sender::new(manifest.commit_seq),
            query_budget: std::sync::atomic::AtomicU64::new(u64::MAX),
            manifest: RwLock::new(manifest),
        };
        let entries = fs::read_dir(dir).map_err(QueryError::io("list", dir))?;
        let mut partitions = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(QueryError::io("list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A partition dropped by retention just before a crash.
            if name.starts_with("trash-") && !read_only {
                fs::remove_dir_all(entry.path()).map_err(QueryError::io("delete", entry.path()))?;
                continue;
            }
            let Some(key) = name.strip_prefix("p-") else { continue };
            if !entry.path().join("meta.json").exists() {
                continue;
            }
            let Some(start_ns) = partition_start(key) else { continue };
            let index = upgrade::Upgrading::open(&entry.path(), &store.schema.schema)
                .and_then(Index::open)
                .map_err(QueryError::index(entry.path()))?;
            partitions.insert(key.to_owned(), Arc::new(store.partition(key, start_ns, index)?));
        }
        *store.partitions.write().expect("partition map poisoned") = partitions;
        Ok(Arc::new(store))
    }

    fn partition(&self, key: &str, start_ns: i64, index: Index) -> Result<Partition, QueryError> {
        index.tokenizers().register(TOKENIZER_NAME, WordTokenizer);
        index.tokenizers().register(CJK_TOKENIZER_NAME, CjkTokenizer);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(QueryError::index(self.partition_dir(key)))?;
        Ok(Partition {
            key: key.to_owned(),
            start_ns,
            end_ns: start_ns.saturating_add(NANOS_PER_DAY),
            index,
            reader,
        })
    }

    pub(crate) fn partition_dir(&self, key: &str) -> PathBuf {
        self.dir.join(format!("p-{key}"))
    }

    pub fn schema(&self) -> &LogSchema {
        &self.schema
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The WAL position every committed record precedes: where an index sink resumes.
    pub fn committed_position(&self) -> u64 {
        self.manifest.read().expect("manifest poisoned").wal_position
    }

    /// Sets the budget of unselective queries (see [`crate::retention`]).
    pub fn set_query_budget(&self, bytes: Option<u64>) {
        self.query_budget.store(bytes.unwrap_or(u64::MAX), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn query_budget(&self) -> Option<u64> {
        let b = self.query_budget.load(std::sync::atomic::Ordering::Relaxed);
        (b != u64::MAX).then_some(b)
    }

    /// The number of the last commit.
    pub fn commit_seq(&self) -> u64 {
        self.manifest.read().expect("manifest poisoned").commit_seq
    }

    /// Wakes on every commit (and reload that found one) with the new commit number.
    pub fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Every record acknowledged before this time (Unix ns) is searchable; `None` until the
    /// index first caught up with the WAL.
    pub fn complete_until(&self) -> Option<i64> {
        self.manifest.read().expect("manifest poisoned").complete_until_ns
    }

    /// What the manifest says of each partition, by day (`YYYY-MM-DD`).
    pub fn partition_stats(&self) -> BTreeMap<String, PartitionStats> {
        self.manifest.read().expect("manifest poisoned").partitions.clone()
    }

    /// Documents committed, over all partitions.
    pub fn doc_count(&self) -> u64 {
        self.manifest.read().expect("manifest poisoned").partitions.values().map(|p| p.docs).sum()
    }

    /// Picks up what another process committed since this store was opened or last reloaded.
    pub fn reload(&self) -> Result<(), QueryError> {
        let fresh = Self::open_with(&self.dir, true)?;
        let fresh_partitions = std::mem::take(&mut *fresh.partitions.write().expect("poisoned"));
        *self.partitions.write().expect("partition map poisoned") = fresh_partitions;
        let manifest = fresh.manifest.read().expect("poisoned").clone();
        let seq = manifest.commit_seq;
        *self.manifest.write().expect("manifest poisoned") = manifest;
        self.commits.send_if_modified(|s| std::mem::replace(s, seq) != seq);
        Ok(())
    }

    /// The partitions that may hold records in `[start_ns, end_ns)`, newest first. The
    /// manifest's time ranges skip partitions without opening them.
    pub fn partitions_overlapping(&self, start_ns: i64, end_ns: i64) -> Vec<Arc<Partition>> {
        let manifest = self.manifest.read().expect("manifest poisoned");
        self.partitions
            .read()
            .expect("partition map poisoned")
            .values()
            .rev()
            .filter(|p| p.start_ns < end_ns && start_ns < p.end_ns)
            .filter(|p| match manifest.partitions.get(&p.key) {
                Some(stats) => stats.min_ts < end_ns && start_ns <= stats.max_ts,
                // Created but not yet in the manifest: it may hold anything of its day.
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Every partition's day (`YYYY-MM-DD`), oldest first.
    pub fn partition_keys(&self) -> Vec<String> {
        self.partitions.read().expect("partition map poisoned").keys().cloned().collect()
    }

    /// How many segments a partition's searchers see.
    #[cfg(test)]
    pub(crate) fn segment_count(&self, key: &str) -> Option<usize> {
        let partitions = self.partitions.read().expect("partition map poisoned");
        Some(partitions.get(key)?.searcher().segment_readers().len())
    }

    /// Takes a partition out: its directory renamed aside, the manifest written without it,
    /// then the directory deleted (see [`crate::retention`]).
    pub(crate) fn remove_partition(&self, key: &str) -> Result<(), QueryError> {
        let path = self.partition_dir(key);
        let trash = self.dir.join(format!("trash-{key}"));
        if path.exists() {
            fs::rename(&path, &trash).map_err(QueryError::io("move aside", &path))?;
        }
        self.partitions.write().expect("partition map poisoned").remove(key);
        let mut manifest = self.manifest.read().expect("manifest poisoned").clone();
        manifest.partitions.remove(key);
        self.write_manifest(&manifest)?;
        fs::remove_dir_all(&trash).map_err(QueryError::io("delete", &trash))
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().expect("partition map poisoned").values().cloned().collect()
    }

    pub(crate) fn get_or_create_partition(&self, ts_ns: i64) -> Result<Arc<Partition>, QueryError> {
        if self.read_only {
            return Err(QueryError::ReadOnly(self.dir.clone()));
        }
        let start_ns = ts_ns.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY;
        let key = partition_key(start_ns);
        if let Some(p) = self.partitions.read().expect("partition map poisoned").get(&key) {
            return Ok(p.clone());
        }
        let mut partitions = self.partitions.write().expect("partition map poisoned");
        if let Some(p) = partitions.get(&key) {
            return Ok(p.clone());
        }
        let path = self.partition_dir(&key);
        fs::create_dir_all(&path).map_err(QueryError::io("create partition", &path))?;
        let settings = IndexSettings {
            // Level 1 compresses log text nearly as well as the default 3 (logs repeat a lot)
            // at about half the CPU, and indexing CPU is what bounds the collector.
            docstore_compression: Compressor::Zstd(ZstdCompressor { compression_level: Some(1) }),
            docstore_blocksize: DOCSTORE_BLOCK_BYTES,
            sort_by_field: Some(IndexSortByField {
                field: crate::schema::SHAPE_FIELD.to_owned(),
                order: Order::Asc,
            }),
            ..IndexSettings::default()
        };
        let index = Index::builder()
            .schema(self.schema.schema.clone())
            .settings(settings)
            .create_in_dir(&path)
            .map_err(QueryError::index(&path))?;
        let partition = Arc::new(self.partition(&key, start_ns, index)?);
        partitions.insert(key, partition.clone());
        Ok(partition)
    }

    pub(crate) fn contains_committed(&self, id: &RecordId) -> Result<bool, QueryError> {
        let query = self.schema.id_query(id);
        for p in self.all_partitions() {
            let found = p
                .searcher()
                .search(&query, &Count)
                .map_err(QueryError::index(self.partition_dir(&p.key)))?;
            if found > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The committed offsets of `source` in `first..=last`, over all partitions.
    pub(crate) fn committed_offsets(
        &self,
        source: u64,
        first: u64,
        last: u64,
    ) -> Result<HashSet<u64>, QueryError> {
        let query = self.schema.source_range_query(source, first, last);
        let mut offsets = HashSet::new();
        for p in self.all_partitions() {
            let searcher = p.searcher();
            let path = || self.partition_dir(&p.key);
            let mut docs: Vec<_> = searcher
                .search(&query, &DocSetCollector)
                .map_err(QueryError::index(path()))?
                .into_iter()
                .collect();
            docs.sort_unstable();
            // Each segment's column opened once, for all of its documents.
            for segment in docs.chunk_by(|a, b| a.segment_ord == b.segment_ord) {
                let column = searcher
                    .segment_reader(segment[0].segment_ord)
                    .fast_fields()
                    .u64("offset")
                    .map_err(QueryError::index(path()))?;
                offsets.extend(segment.iter().filter_map(|doc| column.first(doc.doc_id)));
            }
        }
        Ok(offsets)
    }

    /// The highest committed offset of `source`, over all partitions.
    pub(crate) fn committed_high_water(&self, source: u64) -> Result<Option<u64>, QueryError> {
        let query = TermQuery::new(
            Term::from_field_text(self.schema.source, &crate::schema::source_term(source)),
            IndexRecordOption::Basic,
        );
        let top = TopDocs::with_limit(1).order_by_fast_field::<u64>("offset", Order::Desc);
        let mut best = None;
        for p in self.all_partitions() {
            let hits = p
                .searcher()
                .search(&query, &top)
                .map_err(QueryError::index(self.partition_dir(&p.key)))?;
            best = best.max(hits.first().and_then(|(offset, _)| *offset));
        }
        Ok(best)
    }

    /// Replaces the manifest on disk and the one searches read.
    pub(crate) fn write_manifest(&self, manifest: &Manifest) -> Result<(), QueryError> {
        manifest.write(&self.dir)?;
        *self.manifest.write().expect("manifest poisoned") = manifest.clone();
        self.commits.send_replace(manifest.commit_seq);
        Ok(())
    }
}
