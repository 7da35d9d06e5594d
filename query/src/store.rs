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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sluice_proto::{LogRecord, RecordId};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{
    Index, IndexReader, IndexSettings, IndexSortByField, IndexWriter, Order, ReloadPolicy,
    TantivyDocument, Term,
};

use crate::QueryError;
use crate::schema::LogSchema;
use crate::tokenizer::{SluiceTokenizer, TOKENIZER_NAME};

const MANIFEST: &str = "manifest.json";
/// Version 2 added the `seq` field and the keyword columns, and dropped `ingest_ts`; version
/// 3 added `owner` and `labels`; version 4 indexes the message without positions and sorts
/// documents by `shape`. Field handles are positional, so an older index cannot be read with
/// this schema.
const MANIFEST_VERSION: u32 = 4;
pub(crate) const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// How many partitions may have an open writer at once; each holds an indexing arena.
const MAX_OPEN_WRITERS: usize = 4;
const WRITER_MEMORY_BYTES: usize = 64 << 20;
/// Log lines compress far better in large blocks than in tantivy's default 16 KiB; a hit
/// costs one block's decompression, which at this size stays well under a millisecond.
const DOCSTORE_BLOCK_BYTES: usize = 256 << 10;

/// What the manifest says of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    pub min_ts: i64,
    pub max_ts: i64,
    pub docs: u64,
    /// Size on disk at the last commit.
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    /// Every record before this WAL position is committed in the partitions.
    wal_position: u64,
    /// The number of the last commit; records carry the number of the commit that made them
    /// searchable.
    #[serde(default)]
    commit_seq: u64,
    /// Every record the collector acknowledged before this time (Unix ns) is searchable.
    #[serde(default)]
    complete_until_ns: Option<i64>,
    partitions: BTreeMap<String, PartitionStats>,
}

/// One day of records.
pub struct Partition {
    pub key: String,
    /// The day's first nanosecond, and the next day's.
    pub start_ns: i64,
    pub end_ns: i64,
    index: Index,
    reader: IndexReader,
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
    partitions: RwLock<BTreeMap<String, Arc<Partition>>>,
    manifest: RwLock<Manifest>,
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
        let manifest_path = dir.join(MANIFEST);
        let manifest = match fs::read(&manifest_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| QueryError::Manifest { path: manifest_path.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(QueryError::io("read", &manifest_path)(e)),
        };
        if manifest.version != 0 && manifest.version != MANIFEST_VERSION {
            return Err(QueryError::Version {
                path: manifest_path,
                found: manifest.version,
                expected: MANIFEST_VERSION,
            });
        }
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
            let index =
                Index::open_in_dir(entry.path()).map_err(QueryError::index(entry.path()))?;
            partitions.insert(key.to_owned(), Arc::new(store.partition(key, start_ns, index)?));
        }
        *store.partitions.write().expect("partition map poisoned") = partitions;
        Ok(Arc::new(store))
    }

    fn partition(&self, key: &str, start_ns: i64, index: Index) -> Result<Partition, QueryError> {
        index.tokenizers().register(TOKENIZER_NAME, SluiceTokenizer);
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

    fn partition_dir(&self, key: &str) -> PathBuf {
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
    fn remove_partition(&self, key: &str) -> Result<(), QueryError> {
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

    fn get_or_create_partition(&self, ts_ns: i64) -> Result<Arc<Partition>, QueryError> {
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

    fn contains_committed(&self, id: &RecordId) -> Result<bool, QueryError> {
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

    /// The highest committed offset of `source`, over all partitions.
    fn committed_high_water(&self, source: u64) -> Result<Option<u64>, QueryError> {
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

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), QueryError> {
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let bytes = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        let mut file = fs::File::create(&tmp).map_err(QueryError::io("create", &tmp))?;
        file.write_all(&bytes).map_err(QueryError::io("write", &tmp))?;
        file.sync_all().map_err(QueryError::io("sync", &tmp))?;
        fs::rename(&tmp, &path).map_err(QueryError::io("rename into place", &path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(QueryError::io("sync", &self.dir))?;
        *self.manifest.write().expect("manifest poisoned") = manifest.clone();
        self.commits.send_replace(manifest.commit_seq);
        Ok(())
    }
}

/// Bytes of the files directly in `dir` (a tantivy index keeps no subdirectories).
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn partition_key(start_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(start_ns).format("%Y-%m-%d").to_string()
}

pub(crate) fn partition_start(key: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(key, "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
}

/// Whether [`StoreWriter::add`] indexed a record or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Indexed,
    Duplicate,
}

struct OpenWriter {
    writer: IndexWriter<TantivyDocument>,
    partition: Arc<Partition>,
    last_used: u64,
    dirty: bool,
}

/// The store's one writer: adds records at most once and commits them with a WAL position.
pub struct StoreWriter {
    store: Arc<Store>,
    /// Open writers by the first nanosecond of their day.
    writers: HashMap<i64, OpenWriter>,
    tick: u64,
    /// Per source, the highest offset committed or added (`None`: the source has no record).
    high_water: HashMap<u64, Option<u64>>,
    /// Per source, the highest offset committed: only at or below it can a record be in the
    /// committed index, which is costly to ask. Agents push several batches at once, so a
    /// batch may land behind the next one; its records are then below `high_water` but above
    /// this, and need only the cheap check of `uncommitted`.
    committed_high: HashMap<u64, Option<u64>>,
    /// Ids added since the last commit, which searchers cannot see yet.
    uncommitted: HashSet<RecordId>,
    /// Time ranges of what was added since the last commit, per partition's first nanosecond.
    pending: HashMap<i64, (i64, i64)>,
    last_position: u64,
    /// The number the next commit will have, which records added now carry.
    seq: u64,
}

impl StoreWriter {
    pub fn new(store: Arc<Store>) -> Self {
        let last_position = store.committed_position();
        let seq = store.commit_seq() + 1;
        Self {
            store,
            writers: HashMap::new(),
            tick: 0,
            high_water: HashMap::new(),
            committed_high: HashMap::new(),
            uncommitted: HashSet::new(),
            pending: HashMap::new(),
            last_position,
            seq,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Adds `record` unless the store already holds its id. `position` is the WAL position
    /// just after the record's batch: what a commit of this record covers.
    pub fn add(&mut self, record: &LogRecord, position: u64) -> Result<Added, QueryError> {
        self.last_position = self.last_position.max(position);
        let id = record.id();
        let high_water = match self.high_water.get(&id.source) {
            Some(h) => *h,
            None => {
                let h = self.store.committed_high_water(id.source)?;
                self.high_water.insert(id.source, h);
                self.committed_high.insert(id.source, h);
                h
            }
        };
        if high_water.is_some_and(|h| id.offset <= h) {
            let committed = self.committed_high.get(&id.source).copied().flatten();
            if self.uncommitted.contains(&id)
                || (committed.is_some_and(|c| id.offset <= c)
                    && self.store.contains_committed(&id)?)
            {
                return Ok(Added::Duplicate);
            }
        }
        self.high_water.insert(id.source, Some(high_water.map_or(id.offset, |h| h.max(id.offset))));
        let ts = record.timestamp_ns;
        let document = self.store.schema.to_document(record, self.seq);
        let start_ns = ts.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY;
        let writer = self.writer_for(start_ns)?;
        writer.dirty = true;
        if let Err(e) = writer.writer.add_document(document) {
            return Err(QueryError::index(self.store.partition_dir(&partition_key(start_ns)))(e));
        }
        self.uncommitted.insert(id);
        let range = self.pending.entry(start_ns).or_insert((ts, ts));
        range.0 = range.0.min(ts);
        range.1 = range.1.max(ts);
        Ok(Added::Indexed)
    }

    /// The open writer of the day starting at `start_ns`; keyed by that number so the hot
    /// path formats no partition name.
    fn writer_for(&mut self, start_ns: i64) -> Result<&mut OpenWriter, QueryError> {
        self.tick += 1;
        if !self.writers.contains_key(&start_ns) {
            let partition = self.store.get_or_create_partition(start_ns)?;
            if self.writers.len() >= MAX_OPEN_WRITERS {
                self.evict_least_recently_used()?;
            }
            // Half the cores index; the other half receive, decode and write the WAL. On two
            // cores one indexing thread finished a bulk load sooner than two (bench/).
            let threads =
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4));
            let writer = partition
                .index
                .writer_with_num_threads(threads, WRITER_MEMORY_BYTES)
                .map_err(QueryError::index(self.store.partition_dir(&partition.key)))?;
            self.writers
                .insert(start_ns, OpenWriter { writer, partition, last_used: 0, dirty: false });
        }
        let open = self.writers.get_mut(&start_ns).expect("writer just ensured");
        open.last_used = self.tick;
        Ok(open)
    }

    /// Commits the writer used longest ago and closes it; it covers every record added so
    /// far, so its payload is the last position seen.
    fn evict_least_recently_used(&mut self) -> Result<(), QueryError> {
        let Some(start) = self.writers.iter().min_by_key(|(_, w)| w.last_used).map(|(k, _)| *k)
        else {
            return Ok(());
        };
        let mut open = self.writers.remove(&start).expect("key taken from the map");
        self.commit_one(&mut open)?;
        open.writer
            .wait_merging_threads()
            .map_err(QueryError::index(self.store.partition_dir(&open.partition.key)))?;
        Ok(())
    }

    fn commit_one(&self, open: &mut OpenWriter) -> Result<(), QueryError> {
        if !open.dirty {
            return Ok(());
        }
        let path = self.store.partition_dir(&open.partition.key);
        let mut prepared = open.writer.prepare_commit().map_err(QueryError::index(&path))?;
        prepared
            .set_payload(&serde_json::json!({ "wal_position": self.last_position }).to_string());
        prepared.commit().map_err(QueryError::index(&path))?;
        open.partition.reader.reload().map_err(QueryError::index(&path))?;
        open.dirty = false;
        Ok(())
    }

    /// Makes every added record durable and searchable, and records that the store covers
    /// the WAL up to `position`.
    pub fn commit(&mut self, position: u64) -> Result<(), QueryError> {
        self.commit_with(position, None)
    }

    /// [`Self::commit`], and when `caught_up_at` is given — a time at which the WAL ended at
    /// or before `position` — records that everything acknowledged before it is searchable.
    pub fn commit_with(
        &mut self,
        position: u64,
        caught_up_at: Option<i64>,
    ) -> Result<(), QueryError> {
        self.last_position = self.last_position.max(position);
        let mut writers = std::mem::take(&mut self.writers);
        let result = writers.values_mut().try_for_each(|open| self.commit_one(open));
        self.writers = writers;
        result?;
        let mut manifest = self.store.manifest.read().expect("manifest poisoned").clone();
        if self.pending.is_empty() && manifest.wal_position == self.last_position {
            if let Some(t) = caught_up_at.filter(|t| manifest.complete_until_ns < Some(*t)) {
                manifest.complete_until_ns = Some(t);
                self.store.write_manifest(&manifest)?;
            }
            return Ok(());
        }
        for (start_ns, (min_ts, max_ts)) in self.pending.drain() {
            let key = partition_key(start_ns);
            let partition = self.store.partitions.read().expect("poisoned").get(&key).cloned();
            let docs = partition.map_or(0, |p| p.searcher().num_docs());
            let bytes = dir_bytes(&self.store.partition_dir(&key));
            let stats = manifest.partitions.entry(key).or_insert(PartitionStats {
                min_ts,
                max_ts,
                docs: 0,
                bytes: 0,
            });
            stats.min_ts = stats.min_ts.min(min_ts);
            stats.max_ts = stats.max_ts.max(max_ts);
            stats.docs = docs;
            stats.bytes = bytes;
        }
        manifest.version = MANIFEST_VERSION;
        manifest.wal_position = self.last_position;
        manifest.commit_seq += 1;
        if caught_up_at.is_some() {
            manifest.complete_until_ns = caught_up_at.max(manifest.complete_until_ns);
        }
        self.store.write_manifest(&manifest)?;
        self.seq = manifest.commit_seq + 1;
        self.uncommitted.clear();
        self.committed_high.clone_from(&self.high_water);
        Ok(())
    }

    /// Drops a partition: its open writer (and anything it had not committed) and its files.
    pub(crate) fn drop_partition(&mut self, key: &str) -> Result<(), QueryError> {
        if let Some(start) = partition_start(key) {
            self.writers.remove(&start);
            self.pending.remove(&start);
        }
        self.store.remove_partition(key)
    }

    /// Merges a partition into one segment; false when it already is one (or is gone).
    pub(crate) fn merge_partition(&mut self, key: &str) -> Result<bool, QueryError> {
        let Some(partition) = self.store.partitions.read().expect("poisoned").get(key).cloned()
        else {
            return Ok(false);
        };
        let path = self.store.partition_dir(key);
        let ids = partition.index.searchable_segment_ids().map_err(QueryError::index(&path))?;
        if ids.len() <= 1 && !self.writers.contains_key(&partition.start_ns) {
            return Ok(false);
        }
        // The open writer commits what it holds and finishes its own merges first, so the
        // merge below owns every segment.
        if let Some(mut open) = self.writers.remove(&partition.start_ns) {
            self.commit_one(&mut open)?;
            open.writer.wait_merging_threads().map_err(QueryError::index(&path))?;
        }
        let ids = partition.index.searchable_segment_ids().map_err(QueryError::index(&path))?;
        if ids.len() <= 1 {
            return Ok(false);
        }
        let mut writer: IndexWriter<TantivyDocument> = partition
            .index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(QueryError::index(&path))?;
        writer.merge(&ids).wait().map_err(QueryError::index(&path))?;
        writer.wait_merging_threads().map_err(QueryError::index(&path))?;
        partition.reader.reload().map_err(QueryError::index(&path))?;
        let mut manifest = self.store.manifest.read().expect("manifest poisoned").clone();
        if let Some(stats) = manifest.partitions.get_mut(key) {
            stats.bytes = dir_bytes(&path);
        }
        self.store.write_manifest(&manifest)?;
        Ok(true)
    }

    /// Records added since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted.len()
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::id::source_key;

    use super::*;

    pub(crate) fn record(source: u64, offset: u64, ts: i64, message: &str) -> LogRecord {
        LogRecord {
            source,
            offset,
            timestamp_ns: ts,
            message: message.to_owned(),
            namespace: "default".to_owned(),
            ..LogRecord::default()
        }
    }

    const DAY: i64 = NANOS_PER_DAY;

    #[test]
    fn partitions_by_day_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 1);
        writer.add(&record(s, 0, 10, "a"), 100).unwrap();
        writer.add(&record(s, 10, DAY + 10, "b"), 200).unwrap();
        writer.commit(200).unwrap();
        assert_eq!(store.doc_count(), 2);
        assert_eq!(store.partitions_overlapping(0, DAY).len(), 1);
        assert_eq!(store.partitions_overlapping(0, i64::MAX).len(), 2);
        drop(writer);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.committed_position(), 200);
        assert_eq!(reopened.doc_count(), 2);
        let keys: Vec<_> = reopened
            .partitions_overlapping(i64::MIN, i64::MAX)
            .iter()
            .map(|p| p.key.clone())
            .collect();
        assert_eq!(keys, ["1970-01-02", "1970-01-01"]);
    }

    #[test]
    fn skips_ids_it_already_has_before_and_after_commit_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 1);
        assert_eq!(writer.add(&record(s, 0, 1, "a"), 1).unwrap(), Added::Indexed);
        assert_eq!(writer.add(&record(s, 5, 1, "b"), 1).unwrap(), Added::Indexed);
        // A resend before the commit.
        assert_eq!(writer.add(&record(s, 0, 1, "a"), 2).unwrap(), Added::Duplicate);
        writer.commit(2).unwrap();
        // A resend after it.
        assert_eq!(writer.add(&record(s, 5, 1, "b"), 3).unwrap(), Added::Duplicate);
        drop(writer);
        // A replay after a restart: the high-water mark is rebuilt from the index.
        let mut writer = StoreWriter::new(Store::open(dir.path()).unwrap());
        assert_eq!(writer.add(&record(s, 0, 1, "a"), 4).unwrap(), Added::Duplicate);
        assert_eq!(writer.add(&record(s, 5, 1, "b"), 4).unwrap(), Added::Duplicate);
        assert_eq!(writer.add(&record(s, 9, 1, "c"), 4).unwrap(), Added::Indexed);
        // An offset below the high-water mark that was never stored is new.
        assert_eq!(writer.add(&record(s, 3, 1, "d"), 4).unwrap(), Added::Indexed);
        writer.commit(4).unwrap();
        assert_eq!(writer.store().doc_count(), 4);
    }

    #[test]
    fn batches_out_of_order_are_each_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = source_key("c/n", 3);
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        for offset in 0..10 {
            writer.add(&record(s, offset, 1, "old"), 10).unwrap();
        }
        writer.commit(10).unwrap();
        // The batch after the next one lands first, then the next one, then a resend of both.
        for offsets in [30..40, 10..30, 10..40] {
            for offset in offsets.clone() {
                let added = writer.add(&record(s, offset, 1, "new"), 20).unwrap();
                let expected = if offsets.start == 10 && offsets.end == 40 {
                    Added::Duplicate
                } else {
                    Added::Indexed
                };
                assert_eq!(added, expected, "offset {offset} of {offsets:?}");
            }
        }
        assert_eq!(writer.add(&record(s, 5, 1, "old"), 20).unwrap(), Added::Duplicate);
        writer.commit(20).unwrap();
        assert_eq!(writer.add(&record(s, 35, 1, "new"), 30).unwrap(), Added::Duplicate);
        assert_eq!(store.doc_count(), 40);
    }

    #[test]
    fn uncommitted_records_are_lost_on_crash_and_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = source_key("c/n", 2);
        {
            let mut writer = StoreWriter::new(Store::open(dir.path()).unwrap());
            writer.add(&record(s, 0, 1, "a"), 10).unwrap();
            writer.commit(10).unwrap();
            writer.add(&record(s, 1, 1, "b"), 20).unwrap();
            // Dropped without a commit: the crash.
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.committed_position(), 10);
        let mut writer = StoreWriter::new(store.clone());
        assert_eq!(writer.add(&record(s, 1, 1, "b"), 20).unwrap(), Added::Indexed);
        writer.commit(20).unwrap();
        assert_eq!(store.doc_count(), 2);
    }

    #[test]
    fn evicting_writers_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 3);
        let days = MAX_OPEN_WRITERS as i64 + 3;
        for day in 0..days {
            writer.add(&record(s, day as u64, day * DAY, "x"), day as u64).unwrap();
        }
        writer.commit(days as u64).unwrap();
        assert_eq!(store.doc_count(), days as u64);
        assert_eq!(writer.add(&record(s, 0, 0, "x"), 99).unwrap(), Added::Duplicate);
    }

    #[test]
    fn read_only_store_refuses_writes_and_sees_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = Store::open_read_only(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store);
        writer.add(&record(1, 0, 5, "x"), 1).unwrap();
        writer.commit(1).unwrap();
        assert_eq!(reader.doc_count(), 0);
        reader.reload().unwrap();
        assert_eq!(reader.doc_count(), 1);
        let mut read_only_writer = StoreWriter::new(reader);
        assert!(matches!(
            read_only_writer.add(&record(1, 1, 5, "y"), 2),
            Err(QueryError::ReadOnly(_))
        ));
    }
}
