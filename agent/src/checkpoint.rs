//! Per-file positions, kept in `<data_dir>/checkpoints.json`: where reading resumes (the
//! records before it are synced into the spool, or acknowledged by the collector) and what
//! the collector has acknowledged; and how far the spool has been acknowledged.
//!
//! Only the spool advances the resume offsets, after an fsync, and only the shipper the
//! acknowledged ones, after an ack, so a crash at any moment re-reads (and the collector
//! deduplicates) rather than loses. The file is replaced atomically.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::fingerprint::{Head, content_hash, first_line};

const FILE_NAME: &str = "checkpoints.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Where the file was last seen; for people reading the file, not for lookups.
    pub path: String,
    /// Reading resumes here: the records before it are safe in the spool.
    pub offset: u64,
    /// The first byte the collector has not acknowledged.
    #[serde(default)]
    pub acked: u64,
    /// The file's fingerprint, so a restart finds the latest generation of a file.
    #[serde(default)]
    pub fingerprint: Option<u64>,
    /// How many times the file was truncated in place before this content.
    #[serde(default)]
    pub generation: u32,
    /// The hash of the file's head alone (see `fingerprint::content_hash`), to find it again
    /// once compressed.
    #[serde(default)]
    pub content: Option<u64>,
    /// How many of the file's first bytes [`Entry::head`] covers.
    #[serde(default)]
    pub head_len: u32,
    /// The hash of the file's first bytes (see `fingerprint::Head`), to recognise a copy of it.
    #[serde(default)]
    pub head: Option<u64>,
    /// Fingerprints of copies of this file (logrotate's `copytruncate`) read on under its
    /// identity, so a restart finds them without comparing heads again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<u64>,
    /// When the entry last moved, as a count of moves in this file: the newest entries of a
    /// path are its latest rotations.
    #[serde(default)]
    pub touched: u64,
}

/// The checkpoint file's content at one moment.
#[must_use = "a snapshot is saved only when written"]
pub struct Snapshot {
    number: u64,
    bytes: Vec<u8>,
    path: PathBuf,
    written: Arc<Mutex<u64>>,
}

impl Snapshot {
    /// Replaces the file atomically, unless a later snapshot is there already.
    pub fn write(self) -> Result<(), AgentError> {
        let mut written = self.written.lock().expect("checkpoint writes poisoned");
        if *written >= self.number {
            return Ok(());
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp).map_err(AgentError::io("create", &tmp))?;
        file.write_all(&self.bytes).map_err(AgentError::io("write", &tmp))?;
        file.sync_all().map_err(AgentError::io("sync", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(AgentError::io("rename into place", &self.path))?;
        *written = self.number;
        Ok(())
    }
}

/// Where a file's checkpoint may move once a set of its records is durable (synced to the
/// spool, or acknowledged by the collector): past the last of them, under the file's path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    pub path: String,
}

impl Resume {
    /// Takes in a later record of the file, read from `path`.
    pub fn raise(&mut self, offset: u64, path: &str) {
        self.offset = self.offset.max(offset);
        if self.path != path {
            path.clone_into(&mut self.path);
        }
    }
}

/// Entries kept per path: kubelet keeps five rotations of a container's log by default.
const KEPT_PER_PATH: usize = 8;
/// Copies remembered per file: logrotate's rotations of one content, renamed along.
const KEPT_COPIES: usize = 8;

/// What a file being read is: noted before any of it is acknowledged, for the entries
/// `advance` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    pub fingerprint: u64,
    /// Truncations in place before this content.
    pub generation: u32,
    /// The hash of its first line (see `fingerprint::content_hash`).
    pub content: u64,
    pub head: Head,
}

/// Where reading a known file resumes, found by its fingerprint or one of its copies'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where the file was last read.
    pub path: String,
    /// The fingerprint the file was first read under.
    pub fingerprint: u64,
    pub generation: u32,
    pub offset: u64,
    /// Its head when recorded (checkpoints written before heads existed have none).
    pub head: Option<Head>,
}

/// One checkpointed file, as a candidate original of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub source: u64,
    pub identified: Identified,
    pub offset: u64,
    pub path: String,
    pub touched: u64,
}

impl Known {
    /// Whether a compressed file whose content starts with `head` holds this file: by the
    /// recorded head, or by the first line for checkpoints from before heads were recorded.
    pub fn held_in(&self, head: &[u8]) -> bool {
        let recorded = self.identified.head;
        recorded.starts(head)
            || (recorded.len == 0
                && first_line(head).map(content_hash) == Some(self.identified.content))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    /// Keyed by the file's source key in hex (see `sluice_proto::id`).
    files: BTreeMap<String, Entry>,
    /// The spool position up to which the collector has acknowledged.
    #[serde(default)]
    spool_acked: u64,
    /// Moves of entries so far (see `Entry::touched`).
    #[serde(default)]
    moves: u64,
}

#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    state: OnDisk,
    /// Snapshots taken so far, and the latest one written, shared with the snapshots.
    taken: u64,
    written: Arc<Mutex<u64>>,
    first_start: bool,
    /// What each source being read is, for the entries `advance` makes.
    identities: HashMap<u64, Identified>,
}

impl Checkpoints {
    pub fn load(data_dir: &Path) -> Result<Self, AgentError> {
        let path = data_dir.join(FILE_NAME);
        let (state, first_start) = match fs::read(&path) {
            Ok(bytes) => (
                serde_json::from_slice(&bytes)
                    .map_err(|source| AgentError::Checkpoint { path: path.clone(), source })?,
                false,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (OnDisk::default(), true),
            Err(e) => return Err(AgentError::io("read", &path)(e)),
        };
        Ok(Self {
            path,
            state,
            taken: 0,
            written: Arc::new(Mutex::new(0)),
            first_start,
            identities: HashMap::new(),
        })
    }

    /// True when no checkpoint file existed: the agent's very first start in this data dir.
    pub fn first_start(&self) -> bool {
        self.first_start
    }

    /// Where reading `source` resumes.
    pub fn offset(&self, source: u64) -> Option<u64> {
        self.state.files.get(&key(source)).map(|e| e.offset)
    }

    /// How far the collector has acknowledged `source`.
    pub fn acked(&self, source: u64) -> Option<u64> {
        self.state.files.get(&key(source)).map(|e| e.acked)
    }

    pub fn spool_acked(&self) -> u64 {
        self.state.spool_acked
    }

    /// Notes which file and generation `source` is, before any of it is acknowledged.
    pub fn register(&mut self, source: u64, identified: Identified) {
        self.identities.insert(source, identified);
    }

    /// Notes that the file read as `source` now has a longer head (it was shorter than
    /// `fingerprint::HEAD_BYTES` when registered).
    pub fn update_head(&mut self, source: u64, head: Head) {
        if let Some(identified) = self.identities.get_mut(&source) {
            identified.head = head;
        }
    }

    /// Notes that the file with fingerprint `copy` is a copy of `source`, read on under it.
    pub fn note_copy(&mut self, source: u64, copy: u64) {
        let Some(entry) = self.state.files.get_mut(&key(source)) else { return };
        if !entry.copies.contains(&copy) {
            if entry.copies.len() == KEPT_COPIES {
                entry.copies.remove(0);
            }
            entry.copies.push(copy);
        }
    }

    /// The newest generation recorded for a fingerprint, or for a file it is a copy of.
    pub fn find(&self, fingerprint: u64) -> Option<Found> {
        self.state
            .files
            .values()
            .filter(|e| e.fingerprint == Some(fingerprint) || e.copies.contains(&fingerprint))
            .filter_map(|e| {
                Some(Found {
                    path: e.path.clone(),
                    fingerprint: e.fingerprint?,
                    generation: e.generation,
                    offset: e.offset,
                    head: e.head.map(|hash| Head { len: e.head_len, hash }),
                })
            })
            .max_by_key(|f| (f.generation, f.offset, f.path.clone()))
    }

    /// The checkpointed files with an identity: the originals a copy may be of. Those written
    /// before heads were recorded have an empty head (`len` 0), which starts nothing.
    pub fn known(&self) -> Vec<Known> {
        self.state
            .files
            .iter()
            .filter_map(|(k, e)| {
                let identified = Identified {
                    fingerprint: e.fingerprint?,
                    generation: e.generation,
                    content: e.content?,
                    head: e
                        .head
                        .map_or(Head { len: 0, hash: 0 }, |hash| Head { len: e.head_len, hash }),
                };
                Some(Known {
                    source: u64::from_str_radix(k, 16).ok()?,
                    identified,
                    offset: e.offset,
                    path: e.path.clone(),
                    touched: e.touched,
                })
            })
            .collect()
    }

    /// Moves a file's resume offset forward (never back) to `offset`.
    pub fn advance(&mut self, source: u64, path: &str, offset: u64) {
        if path.is_empty() {
            // Records forwarded from elsewhere (`crate::forward`) come from no file.
            return;
        }
        let entry = self.entry(source, path);
        entry.offset = entry.offset.max(offset);
    }

    /// Records the collector's ack of a file up to `offset` (never moving back).
    pub fn acknowledge(&mut self, source: u64, path: &str, offset: u64) {
        if path.is_empty() {
            return;
        }
        let entry = self.entry(source, path);
        entry.acked = entry.acked.max(offset);
        entry.offset = entry.offset.max(offset);
    }

    /// Records the collector's ack of the spool up to `position`.
    pub fn acknowledge_spool(&mut self, position: u64) {
        self.state.spool_acked = self.state.spool_acked.max(position);
    }

    fn entry(&mut self, source: u64, path: &str) -> &mut Entry {
        let identity = self.identities.get(&source).copied();
        let entry = self.state.files.entry(key(source)).or_insert_with(|| Entry {
            path: path.to_owned(),
            offset: 0,
            acked: 0,
            fingerprint: None,
            generation: 0,
            content: None,
            head_len: 0,
            head: None,
            copies: Vec::new(),
            touched: 0,
        });
        self.state.moves += 1;
        entry.touched = self.state.moves;
        if let Some(identified) = identity {
            entry.fingerprint = Some(identified.fingerprint);
            entry.generation = identified.generation;
            entry.content = Some(identified.content);
            entry.head_len = identified.head.len;
            entry.head = Some(identified.head.hash);
        }
        if entry.path != path {
            path.clone_into(&mut entry.path);
        }
        entry
    }

    pub fn save(&mut self) -> Result<(), AgentError> {
        self.snapshot().write()
    }

    /// The state as it is now, to write once the lock on the checkpoints is let go: the
    /// reader and the shipper both save, and neither may stall the other for an fsync.
    pub fn snapshot(&mut self) -> Snapshot {
        let mut bytes = serde_json::to_vec_pretty(&self.state).expect("checkpoints serialise");
        bytes.push(b'\n');
        self.taken += 1;
        Snapshot {
            number: self.taken,
            bytes,
            path: self.path.clone(),
            written: self.written.clone(),
        }
    }

    /// How many snapshots were taken so far: every snapshot numbered above it holds what was
    /// recorded before this call.
    pub fn snapshots_taken(&self) -> u64 {
        self.taken
    }

    /// Whether a snapshot numbered above `taken` is on disk.
    pub fn written_since(&self, taken: u64) -> bool {
        *self.written.lock().expect("checkpoint writes poisoned") > taken
    }

    /// Forgets the files whose directory is gone (kubelet removes a deleted pod's log
    /// directory), and all but the latest rotations of each path: nothing more can be read
    /// from them, and the file is rewritten at every spool sync, so it must not grow with
    /// every pod and rotation there ever was. Returns how many went.
    pub fn forget_gone(&mut self) -> usize {
        let mut present: HashMap<String, bool> = HashMap::new();
        let before = self.state.files.len();
        self.state.files.retain(|_, entry| {
            let dir = Path::new(&entry.path).parent().map(Path::to_path_buf).unwrap_or_default();
            let key = dir.to_string_lossy().into_owned();
            *present.entry(key).or_insert_with(|| dir.as_os_str().is_empty() || dir.is_dir())
        });
        let mut per_path: HashMap<&str, Vec<u64>> = HashMap::new();
        for entry in self.state.files.values() {
            per_path.entry(&entry.path).or_default().push(entry.touched);
        }
        let oldest_kept: HashMap<String, u64> = per_path
            .into_iter()
            .filter(|(_, touched)| touched.len() > KEPT_PER_PATH)
            .map(|(path, mut touched)| {
                touched.sort_unstable_by(|a, b| b.cmp(a));
                (path.to_owned(), touched[KEPT_PER_PATH - 1])
            })
            .collect();
        self.state
            .files
            .retain(|_, e| oldest_kept.get(&e.path).is_none_or(|&kept| e.touched >= kept));
        before - self.state.files.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.state.files.iter()
    }
}

fn key(source: u64) -> String {
    format!("{source:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        assert!(c.first_start());
        c.advance(1, "/a.log", 100);
        c.advance(1, "/a.log", 50);
        c.advance(2, "/b.log", 7);
        c.save().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        assert!(!c.first_start());
        assert_eq!(c.offset(1), Some(100));
        assert_eq!(c.offset(2), Some(7));
        assert_eq!(c.offset(3), None);
    }

    #[test]
    fn acks_and_the_spool_position_are_kept_apart_from_resume_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        c.advance(1, "/a.log", 900);
        c.acknowledge(1, "/a.log", 300);
        c.acknowledge(2, "/b.log", 40);
        c.acknowledge_spool(77);
        c.acknowledge_spool(5);
        c.save().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        assert_eq!((c.offset(1), c.acked(1)), (Some(900), Some(300)));
        assert_eq!(
            (c.offset(2), c.acked(2)),
            (Some(40), Some(40)),
            "an ack is also a resume point"
        );
        assert_eq!(c.spool_acked(), 77);
    }

    #[test]
    fn an_older_snapshot_written_late_does_not_replace_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        c.advance(1, "/a.log", 100);
        let older = c.snapshot();
        c.advance(1, "/a.log", 200);
        let newer = c.snapshot();
        newer.write().unwrap();
        older.write().unwrap();
        assert_eq!(Checkpoints::load(dir.path()).unwrap().offset(1), Some(200));
    }

    #[test]
    fn the_latest_generation_of_a_fingerprint_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        let head = Head { len: 12, hash: 99 };
        let identified = |generation| Identified { fingerprint: 7, generation, content: 70, head };
        c.register(10, identified(0));
        c.advance(10, "/a.log", 500);
        c.register(11, identified(1));
        c.advance(11, "/a.log", 40);
        c.advance(12, "/b.log", 9);
        c.save().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        let found = Found {
            path: "/a.log".into(),
            fingerprint: 7,
            generation: 1,
            offset: 40,
            head: Some(head),
        };
        assert_eq!(c.find(7), Some(found));
        assert_eq!(c.find(8), None);
        assert_eq!(c.offset(12), Some(9), "entries without an identity still load");
        assert_eq!(c.known().len(), 2, "only entries with an identity can be originals");
    }

    #[test]
    fn a_copy_is_found_under_the_file_it_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        let head = Head { len: 4096, hash: 5 };
        c.register(10, Identified { fingerprint: 7, generation: 2, content: 70, head });
        c.advance(10, "/app.log", 800);
        c.note_copy(10, 33);
        c.note_copy(10, 33);
        c.advance(10, "/app.log.1", 900);
        c.save().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        let found = Found {
            path: "/app.log.1".into(),
            fingerprint: 7,
            generation: 2,
            offset: 900,
            head: Some(head),
        };
        assert_eq!(c.find(33), Some(found), "by the copy's own fingerprint");
        for copy in 100..110 {
            c.note_copy(10, copy);
        }
        assert_eq!(c.find(33), None, "the oldest copies are let go");
        assert!(c.find(109).is_some());
    }

    /// A checkpoint file as releases before copy recognition wrote it: no heads, no copies.
    #[test]
    fn checkpoints_written_before_heads_existed_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let old = include_str!("../tests/fixtures/checkpoints-before-heads.json");
        fs::write(dir.path().join(FILE_NAME), old).unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        let source = 0x3bd5_1a8c_bb4c_f1a2;
        assert_eq!((c.offset(source), c.acked(source)), (Some(5280), Some(4000)));
        let found = Found {
            path: "/var/log/app/app.log".into(),
            fingerprint: 1_311_768_467_463_790_320,
            generation: 1,
            offset: 5280,
            head: None,
        };
        assert_eq!(c.find(1_311_768_467_463_790_320), Some(found));
        let known = c.known();
        assert_eq!(known.len(), 1, "the entry with an identity");
        assert_eq!(known[0].identified.head.len, 0, "and no head to compare a copy with");
        assert_eq!(known[0].identified.content, 0x0123_4567_89ab_cdef);
        let mut legacy = known[0].clone();
        assert!(!legacy.held_in(b"started\nmore\n"));
        legacy.identified.content = content_hash(b"started\n");
        assert!(legacy.held_in(b"started\nmore\n"), "by the first line alone");
        assert_eq!(c.spool_acked(), 77_000);
    }

    #[test]
    fn files_whose_directory_is_gone_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pods/shop_api-1_u1/app");
        std::fs::create_dir_all(&pod).unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        c.advance(1, &pod.join("0.log").display().to_string(), 10);
        c.advance(2, &dir.path().join("pods/gone_pod_u2/app/0.log").display().to_string(), 20);
        c.advance(3, "relative.log", 30);
        assert_eq!(c.forget_gone(), 1);
        assert_eq!((c.offset(1), c.offset(2), c.offset(3)), (Some(10), None, Some(30)));
        // Twenty rotations of one path: the latest eight stay.
        let path = pod.join("1.log").display().to_string();
        for source in 100..120 {
            c.advance(source, &path, source);
        }
        c.advance(100, &path, 500);
        assert_eq!(c.forget_gone(), 12);
        assert!(c.offset(100).is_some(), "moved last, so among the latest");
        assert_eq!((112..120).filter(|&s| c.offset(s).is_some()).count(), 7);
        assert_eq!(c.offset(1), Some(10));
    }

    #[test]
    fn a_corrupt_file_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        let err = Checkpoints::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checkpoints.json"), "{err}");
    }
}
