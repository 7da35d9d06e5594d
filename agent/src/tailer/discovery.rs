//! Which files the tailer follows: the watch patterns expanded on every scan (at once on a
//! directory event, and every `scan_interval` as a fallback), new files opened, replaced and
//! deleted ones read to their end and let go, and idle ones parked at the open-file cap.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::compressed::is_compressed;
use super::file::TrackedFile;
use super::{Halt, Tailer};
use crate::config::ReadFrom;

/// A file closed at the open-file cap while idle, as it was then: it stays closed until it
/// grows or is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParkedFile {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
}

impl Tailer {
    /// Watches the fixed directories of the patterns (what precedes their first wildcard), so
    /// a created, renamed or deleted file is noticed at once rather than at the next rescan.
    pub(super) fn watch_directories(
        &self,
        changed: Arc<AtomicBool>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::{EventKind, RecursiveMode, Watcher, event::ModifyKind};
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(ModifyKind::Name(_))
                )
            {
                changed.store(true, Ordering::Relaxed);
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch directories; relying on the periodic rescan");
                return None;
            }
        };
        for pattern in &self.config.watch {
            let fixed: PathBuf = Path::new(pattern.as_str())
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                .collect();
            let dir = if fixed.as_os_str() == pattern.as_str() {
                fixed.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                fixed
            };
            if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; relying on the periodic rescan");
            }
        }
        Some(watcher)
    }

    /// Expands the patterns: starts new files, lets rotated and deleted ones go.
    pub(super) fn scan(&mut self) {
        let mut seen = Vec::new();
        for pattern in &self.config.watch {
            let paths = match glob::glob(pattern.as_str()) {
                Ok(paths) => paths,
                Err(e) => {
                    tracing::warn!(pattern = pattern.as_str(), error = %e, "cannot expand watch pattern");
                    continue;
                }
            };
            for path in paths.flatten() {
                if !self.config.select.allows(&self.config.pod_meta(&path)) {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => seen.push((path, m.dev(), m.ino(), m.len())),
                    _ => {}
                }
            }
        }
        let from_end = self.first_scan && self.config.read_from == ReadFrom::End;
        self.first_scan = false;
        let mut gone = Vec::new();
        let mut live = HashMap::new();
        let mut waiting = 0;
        let (compressed, seen): (Vec<_>, Vec<_>) =
            seen.into_iter().partition(|(path, ..)| is_compressed(path));
        for (path, dev, ino, size) in seen {
            let known = self.files.get(&path).is_some_and(|f| f.dev == dev && f.ino == ino);
            if !known {
                if let Some(old) = self.files.remove(&path) {
                    tracing::info!(path = %old.path.display(), "file replaced; following the new one");
                    gone.push(old);
                }
                // A file closed at the open-file cap stays closed until it grows.
                if self.parked.get(&path) == Some(&ParkedFile { dev, ino, size }) {
                    live.insert(path, ());
                    continue;
                }
                self.parked.remove(&path);
                if self.files.len() >= self.config.max_open_files && !self.park_one_idle() {
                    waiting += 1;
                    live.insert(path, ());
                    continue;
                }
                match File::open(&path) {
                    Ok(file) => {
                        tracing::info!(path = %path.display(), "tailing");
                        let meta = self.config.pod_meta(&path);
                        let tracked =
                            TrackedFile::new(path.clone(), meta, file, dev, ino, from_end);
                        self.files.insert(path.clone(), tracked);
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot open"),
                }
            }
            live.insert(path, ());
        }
        if waiting > 0 {
            tracing::warn!(
                waiting,
                max_open_files = self.config.max_open_files,
                "files wait for a slot: every open file is busy"
            );
        }
        metrics::gauge!("sluice_agent_files_waiting").set(f64::from(waiting));
        self.parked.retain(|path, _| live.contains_key(path));
        metrics::gauge!("sluice_agent_files_parked").set(self.parked.len() as f64);
        let (kept, deleted): (HashMap<_, _>, HashMap<_, _>) = std::mem::take(&mut self.files)
            .into_iter()
            .partition(|(path, _)| live.contains_key(path));
        self.files = kept;
        gone.extend(deleted.into_values());
        // A rotated or deleted file may have been written to since the last round: read it to
        // its end through the handle still open, then let it go.
        self.draining.extend(gone);
        while let Some(mut old) = self.draining.pop() {
            if let Err(Halt::Stopping) = self.read_to_end(&mut old) {
                return;
            }
        }
        // After the files let go were read to their end, and with what was read synced (so
        // the checkpoints know every content read), a compressed copy of one is read only
        // past where its own reading ended.
        self.examined.retain(|path, _| compressed.iter().any(|(p, ..)| p == path));
        let changed: Vec<PathBuf> = compressed
            .into_iter()
            .filter(|(path, dev, ino, size)| {
                self.examined.get(path) != Some(&ParkedFile { dev: *dev, ino: *ino, size: *size })
            })
            .map(|(path, ..)| path)
            .collect();
        if !changed.is_empty() {
            self.spool.flush();
        }
        for path in changed {
            if let Err(Halt::Stopping) = self.read_compressed(&path) {
                return;
            }
        }
    }

    /// At the open-file cap: closes the file idle longest, if one is read to its end with
    /// nothing pending and idle for a scan interval; it is reopened once it grows.
    pub(super) fn park_one_idle(&mut self) -> bool {
        let now = Instant::now();
        let idle = self
            .files
            .iter()
            .filter(|(_, f)| now.duration_since(f.last_read) >= self.config.scan_interval)
            .filter_map(|(path, f)| {
                let reading = f.reading.as_ref()?;
                let size = f.file.metadata().ok()?.len();
                (reading.idle() && reading.splitter.position() == size).then_some((
                    f.last_read,
                    path.clone(),
                    size,
                ))
            })
            .min();
        let Some((_, path, size)) = idle else { return false };
        let f = self.files.remove(&path).expect("listed from the map");
        tracing::debug!(path = %path.display(), "closing an idle file to make room");
        self.parked.insert(path, ParkedFile { dev: f.dev, ino: f.ino, size });
        true
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testing::{Harness, append, messages};

    #[test]
    fn files_matching_the_pattern_are_followed_and_others_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "*.log", |_| {});
        append(&h.logs.join("a.log"), "a1\na2\n");
        append(&h.logs.join("notes.txt"), "not a log\n");
        h.scan_and_read();
        assert_eq!(h.open_files(), ["a.log"]);
        append(&h.logs.join("b.log"), "b1\n");
        append(&h.logs.join("a.log"), "a3\n");
        h.scan_and_read();
        assert_eq!(h.open_files(), ["a.log", "b.log"]);
        let mut got = h.shipped();
        got.sort_by(|x, y| x.message.cmp(&y.message));
        assert_eq!(messages(&got), ["a1", "a2", "a3", "b1"]);
    }

    #[test]
    fn a_deleted_file_is_read_to_its_end_then_let_go() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "*.log", |_| {});
        let path = h.logs.join("a.log");
        append(&path, "first\n");
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["first"]);
        // Written between two rounds, then deleted: the open handle still reads it.
        append(&path, "last words\n");
        fs::remove_file(&path).unwrap();
        h.scan_and_read();
        assert!(h.open_files().is_empty(), "{:?}", h.open_files());
        assert_eq!(messages(&h.shipped()), ["last words"]);
    }

    #[test]
    fn a_replaced_file_is_read_to_its_end_and_its_successor_from_the_start() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "*.log", |_| {});
        let path = h.logs.join("app.log");
        append(&path, "old 1\n");
        h.scan_and_read();
        append(&path, "old 2\n");
        fs::rename(&path, h.logs.join("app.log.1")).unwrap();
        append(&path, "new 1\n");
        h.scan_and_read();
        assert_eq!(h.open_files(), ["app.log"]);
        let got = h.shipped();
        assert_eq!(messages(&got), ["old 1", "old 2", "new 1"]);
        assert_ne!(got[0].source, got[2].source, "the new file is a new source");
        assert_eq!(got[0].source, got[1].source);
    }

    #[test]
    fn idle_files_are_parked_at_the_open_file_cap_and_reopened_when_they_grow() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "*.log", |raw| {
            raw.max_open_files = 1;
            raw.scan_interval_ms = 1;
        });
        append(&h.logs.join("a.log"), "a1\n");
        append(&h.logs.join("b.log"), "b1\n");
        h.scan_and_read();
        assert_eq!(h.open_files().len(), 1, "one slot");
        let first = h.open_files()[0].clone();
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.scan_and_read();
        assert_eq!(h.open_files().len(), 1);
        assert_ne!(h.open_files()[0], first, "the idle file made room");
        assert_eq!(h.tailer.parked.len(), 1, "and waits, closed");
        let mut got = messages(&h.shipped()).join(" ");
        assert!(got == "a1 b1" || got == "b1 a1", "{got}");
        // The parked file grows: it is opened again and read from where it was.
        std::thread::sleep(std::time::Duration::from_millis(20));
        append(&h.logs.join(&first), "more\n");
        h.scan_and_read();
        assert_eq!(h.open_files(), [first]);
        got = messages(&h.shipped()).join(" ");
        assert_eq!(got, "more");
    }
}
