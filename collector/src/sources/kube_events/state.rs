//! What the events source has forwarded, kept in `<data-dir>/sources/kube-events/state.json`
//! so that a restart neither skips nor repeats: the last resourceVersion seen (a restart
//! watches on from it) and, per event uid, the highest occurrence forwarded.
//!
//! The uids are bounded by what the cluster holds: a deleted event (its TTL ran out) is
//! forgotten on its `DELETED`, a relist forgets every uid it no longer shows, and a uid not
//! seen for [`State::expire`]'s TTL is forgotten in case both were missed.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::occurrence::Occurrence;
use crate::CollectorError;

const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// The API the resourceVersion belongs to (`events.k8s.io/v1` or `v1`).
    pub api: String,
    /// The last resourceVersion seen, to watch on from.
    pub resource_version: Option<String>,
    /// Per event uid.
    pub forwarded: BTreeMap<String, Forwarded>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forwarded {
    /// The highest occurrence forwarded.
    pub count: u64,
    /// When the source last saw the event (Unix ns), to forget it once it is long gone.
    pub seen_ns: i64,
}

impl State {
    /// The state in `path`; a fresh one when there is none, or when it cannot be read (said
    /// in the log: the relist that follows forwards again what the sinks then drop by id).
    pub fn load(path: &Path) -> Self {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the events source's state; starting afresh");
                return Self::default();
            }
        };
        match serde_json::from_slice::<State>(&bytes) {
            Ok(state) if state.version == VERSION => state,
            Ok(state) => {
                tracing::warn!(path = %path.display(), version = state.version, "unknown events state version; starting afresh");
                Self::default()
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "damaged events state; starting afresh");
                Self::default()
            }
        }
    }

    /// Replaces the file at `path` with this state, atomically.
    pub fn save(&self, path: &Path) -> Result<(), CollectorError> {
        let state = State { version: VERSION, ..self.clone() };
        let bytes = serde_json::to_vec(&state).expect("state serialises");
        crate::durable::replace(path, &bytes).map_err(CollectorError::io("replace", path))
    }

    /// Whether `o` is an occurrence not forwarded yet; it counts as forwarded from now on.
    pub fn take(&mut self, o: &Occurrence, now_ns: i64) -> bool {
        let entry =
            self.forwarded.entry(o.uid.clone()).or_insert(Forwarded { count: 0, seen_ns: now_ns });
        entry.seen_ns = now_ns;
        if o.count <= entry.count {
            return false;
        }
        entry.count = o.count;
        true
    }

    pub fn forget(&mut self, uid: &str) {
        self.forwarded.remove(uid);
    }

    /// After a relist: only the events it showed still exist.
    pub fn keep_only(&mut self, uids: &HashSet<String>) {
        self.forwarded.retain(|uid, _| uids.contains(uid));
    }

    /// Forgets the events not seen for `ttl_ns`.
    pub fn expire(&mut self, now_ns: i64, ttl_ns: i64) {
        self.forwarded.retain(|_, f| now_ns.saturating_sub(f.seen_ns) <= ttl_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occurrence(uid: &str, count: u64) -> Occurrence {
        Occurrence {
            uid: uid.to_owned(),
            namespace: "ns".to_owned(),
            count,
            reason: String::new(),
            kind: String::new(),
            note: String::new(),
            regarding: Default::default(),
            reporter: String::new(),
            host: String::new(),
            time_ns: 0,
            first_ns: 0,
        }
    }

    #[test]
    fn each_occurrence_is_taken_once_and_the_state_survives_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube-events/state.json");
        let mut state = State::load(&path);
        assert_eq!(state, State::default());
        assert!(state.take(&occurrence("a", 1), 10));
        assert!(!state.take(&occurrence("a", 1), 11), "a relist shows it again");
        assert!(state.take(&occurrence("a", 3), 12), "a repeat");
        assert!(!state.take(&occurrence("a", 2), 13), "an older view of it");
        assert!(state.take(&occurrence("b", 1), 14));
        state.resource_version = Some("77".to_owned());
        state.save(&path).unwrap();
        let mut loaded = State::load(&path);
        assert_eq!(loaded.forwarded, state.forwarded);
        assert_eq!((loaded.version, loaded.resource_version.as_deref()), (VERSION, Some("77")));
        loaded.keep_only(&HashSet::from(["b".to_owned()]));
        assert_eq!(loaded.forwarded.keys().collect::<Vec<_>>(), ["b"]);
        loaded.expire(14 + 100, 50);
        assert!(loaded.forwarded.is_empty());
    }

    #[test]
    fn a_damaged_state_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{\"version\": 1, \"forwarded\": ").unwrap();
        assert_eq!(State::load(&path), State::default());
    }
}
