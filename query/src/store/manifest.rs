//! `manifest.json`: what the store holds — each day partition's time range, document count
//! and size, the WAL position every committed record precedes, the last commit number and the
//! freshness watermark — and the format version of the whole.
//!
//! It is replaced atomically (written aside, synced, renamed, directory synced), so a crash
//! leaves the old manifest or the new one, never a torn one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::QueryError;

pub(crate) const MANIFEST: &str = "manifest.json";

/// The format this release writes. Version 2 added the `seq` field and the keyword columns,
/// and dropped `ingest_ts`; version 3 added `owner` and `labels`; version 4 indexes the
/// message without positions and sorts documents by `shape`; version 5 adds the Kubernetes
/// event fields (`reason`, `event_type`, `object`, `object_kind`, `reporter`, and the
/// stored uid, count and first and last seen), after every older field; version 6 indexes CJK
/// runs in a field of their own (`cjk`, last: from each character, the rest of its run, see
/// `crate::cjk`) and leaves them out of the message field's terms.
pub const FORMAT_VERSION: u32 = 6;

/// Every format this release opens. Version 4 is the first one users hold, and each of them
/// has a fixture under `query/tests/fixtures/` that `tests/index_formats.rs` opens and
/// searches: a format change keeps the older versions here (read as they are, or migrated on
/// open) and adds its own fixture. Versions 1 to 3 predate any installation. Older
/// partitions open with the newer fields added (`super::upgrade`); their CJK characters stay
/// terms of the message field, which the query of a CJK text also looks in
/// (`crate::compile`), so a partition written partly by format 5 and partly by 6 — and a
/// segment merged from both — answers as one.
pub const READABLE_VERSIONS: &[u32] = &[4, 5, 6];

pub(crate) const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

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
pub(crate) struct Manifest {
    /// The store's format ([`FORMAT_VERSION`]); 0 for a store with nothing committed yet.
    pub(crate) version: u32,
    /// Every record before this WAL position is committed in the partitions.
    pub(crate) wal_position: u64,
    /// The number of the last commit; records carry the number of the commit that made them
    /// searchable.
    #[serde(default)]
    pub(crate) commit_seq: u64,
    /// Every record the collector acknowledged before this time (Unix ns) is searchable.
    #[serde(default)]
    pub(crate) complete_until_ns: Option<i64>,
    pub(crate) partitions: BTreeMap<String, PartitionStats>,
}

impl Manifest {
    /// The manifest of the store in `dir`: empty when there is none yet, an error when it is
    /// damaged or of a format this release cannot open.
    pub(crate) fn load(dir: &Path) -> Result<Self, QueryError> {
        let path = dir.join(MANIFEST);
        let manifest: Manifest = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| QueryError::Manifest { path: path.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(QueryError::io("read", &path)(e)),
        };
        if manifest.version != 0 && !READABLE_VERSIONS.contains(&manifest.version) {
            return Err(QueryError::Version {
                path,
                found: manifest.version,
                expected: FORMAT_VERSION,
            });
        }
        Ok(manifest)
    }

    /// Replaces the manifest in `dir` with this one.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), QueryError> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        let mut file = fs::File::create(&tmp).map_err(QueryError::io("create", &tmp))?;
        file.write_all(&bytes).map_err(QueryError::io("write", &tmp))?;
        file.sync_all().map_err(QueryError::io("sync", &tmp))?;
        fs::rename(&tmp, &path).map_err(QueryError::io("rename into place", &path))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(QueryError::io("sync", dir))
    }
}

/// The partition key (`YYYY-MM-DD`) of the day starting at `start_ns`.
pub(crate) fn partition_key(start_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(start_ns).format("%Y-%m-%d").to_string()
}

/// The first nanosecond of the day a partition key names.
pub(crate) fn partition_start(key: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(key, "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_an_unknown_format_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap().version, 0, "no manifest: empty");
        let mut manifest =
            Manifest { version: FORMAT_VERSION, wal_position: 7, ..Manifest::default() };
        manifest.partitions.insert(
            "2026-12-04".to_owned(),
            PartitionStats { min_ts: 1, max_ts: 2, docs: 3, bytes: 4 },
        );
        manifest.write(dir.path()).unwrap();
        let read = Manifest::load(dir.path()).unwrap();
        assert_eq!((read.wal_position, read.partitions), (7, manifest.partitions.clone()));
        manifest.version = 99;
        manifest.write(dir.path()).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 99") && err.contains(MANIFEST), "{err}");
        fs::write(dir.path().join(MANIFEST), b"{\"version\": 4, \"typo\": 1}").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("typo"), "{err}");
    }

    #[test]
    fn partition_keys_name_utc_days() {
        let start = partition_start("2026-12-04").unwrap();
        assert_eq!(start % NANOS_PER_DAY, 0);
        assert_eq!(partition_key(start + NANOS_PER_DAY - 1), "2026-12-04");
        assert_eq!(partition_key(start + NANOS_PER_DAY), "2026-12-05");
        assert_eq!(partition_start("not a day"), None);
    }
}
