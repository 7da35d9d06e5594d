//! Which records were counted, per source, so that a record the WAL holds twice — an agent
//! resending a batch whose ack was lost, a Kafka message read again — counts once.
//!
//! The index answers the same question from its own documents; log metrics run without the
//! index too, so they keep their own memory: per source, the runs of offsets counted. Records
//! that follow each other in a WAL batch with the same source and rising offsets are a
//! contiguous stretch of their file (an agent ships its spool's reads in file order), so a
//! run stands for every record inside it, and an offset inside a counted run was counted.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Runs kept per source. An agent has at most six pushes in flight, each about one run per
/// file, so a record arriving behind more than this many newer runs is a resend.
const MAX_RUNS: usize = 32;
/// A source quiet this long keeps only its highest counted offset.
const COLLAPSE_AFTER_MS: i64 = 10 * 60 * 1000;
/// A source quiet this long is forgotten: an agent resending after a day counts again.
const FORGET_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seen {
    sources: HashMap<u64, Runs>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Runs {
    /// Every offset at or below it was counted.
    floor: Option<u64>,
    /// Counted runs above the floor, `[first, last]`, sorted and disjoint.
    runs: Vec<[u64; 2]>,
    last_ms: i64,
}

impl Seen {
    /// Whether the record at `offset` of `source` was counted before.
    pub fn contains(&self, source: u64, offset: u64) -> bool {
        self.sources.get(&source).is_some_and(|r| {
            r.floor.is_some_and(|f| offset <= f)
                || r.runs
                    .binary_search_by(|[first, last]| {
                        if *last < offset {
                            std::cmp::Ordering::Less
                        } else if *first > offset {
                            std::cmp::Ordering::Greater
                        } else {
                            std::cmp::Ordering::Equal
                        }
                    })
                    .is_ok()
        })
    }

    /// Records that the records of `source` from `first` to `last`, a contiguous stretch of
    /// it, are counted.
    pub fn add_run(&mut self, source: u64, first: u64, last: u64, now_ms: i64) {
        let r = self.sources.entry(source).or_default();
        r.last_ms = now_ms;
        if r.floor.is_some_and(|f| last <= f) {
            return;
        }
        let (mut first, mut last) = (first, last);
        // Overlapping runs are one stretch of the file; merely adjacent ones are not known to
        // be (a record may lie between them, not yet arrived).
        r.runs.retain(|&[a, b]| {
            let overlaps = a <= last && first <= b;
            if overlaps {
                (first, last) = (first.min(a), last.max(b));
            }
            !overlaps
        });
        let at = r.runs.partition_point(|[a, _]| *a < first);
        r.runs.insert(at, [first, last]);
        while r.runs.len() > MAX_RUNS {
            let [_, b] = r.runs.remove(0);
            r.floor = Some(r.floor.map_or(b, |f| f.max(b)));
        }
    }

    /// Collapses quiet sources to their highest offset and forgets long-quiet ones.
    pub fn prune(&mut self, now_ms: i64) {
        self.sources.retain(|_, r| now_ms - r.last_ms < FORGET_AFTER_MS);
        for r in self.sources.values_mut() {
            if now_ms - r.last_ms >= COLLAPSE_AFTER_MS
                && let Some([_, b]) = r.runs.pop()
            {
                r.floor = Some(r.floor.map_or(b, |f| f.max(b)));
                r.runs.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_covers_its_inside_and_nothing_beside_it() {
        let mut s = Seen::default();
        s.add_run(1, 100, 500, 0);
        assert!(s.contains(1, 100) && s.contains(1, 300) && s.contains(1, 500));
        assert!(!s.contains(1, 99) && !s.contains(1, 501) && !s.contains(2, 300));
        // A later run beyond a gap leaves the gap open for the stretch that arrives late.
        s.add_run(1, 900, 1200, 0);
        assert!(!s.contains(1, 700));
        s.add_run(1, 600, 800, 0);
        assert!(s.contains(1, 700) && !s.contains(1, 550));
    }

    #[test]
    fn overlapping_resends_merge() {
        let mut s = Seen::default();
        s.add_run(1, 100, 500, 0);
        s.add_run(1, 300, 900, 0);
        assert_eq!(s.sources[&1].runs, [[100, 900]]);
        s.add_run(1, 50, 1000, 0);
        assert_eq!(s.sources[&1].runs, [[50, 1000]]);
    }

    #[test]
    fn old_runs_fold_into_the_floor() {
        let mut s = Seen::default();
        for i in 0..(MAX_RUNS as u64 + 5) {
            s.add_run(1, i * 10, i * 10 + 5, 0);
        }
        assert_eq!(s.sources[&1].runs.len(), MAX_RUNS);
        assert_eq!(s.sources[&1].floor, Some(45));
        assert!(s.contains(1, 7), "below the floor counts as seen");
        assert!(!s.contains(1, 57) && s.contains(1, 52));
    }

    #[test]
    fn quiet_sources_collapse_then_go() {
        let mut s = Seen::default();
        s.add_run(1, 0, 10, 0);
        s.add_run(1, 20, 30, 0);
        s.add_run(2, 0, 10, COLLAPSE_AFTER_MS);
        s.prune(COLLAPSE_AFTER_MS);
        assert_eq!(s.sources[&1].floor, Some(30));
        assert!(s.sources[&1].runs.is_empty() && s.contains(1, 15));
        assert_eq!(s.sources[&2].runs, [[0, 10]], "a recent source keeps its runs");
        s.prune(FORGET_AFTER_MS + 1);
        assert_eq!(s.sources.len(), 1);
    }
}
