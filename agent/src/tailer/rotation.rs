//! Files rotated while the agent was away: their unread tails, found by fingerprint among
//! their siblings, or in compressed copies named after them.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::file::TrackedFile;
use super::{Halt, Tailer};
use crate::fingerprint::fingerprint;

/// A file's newest checkpoint: where it was, what it was, how far it was read.
struct Checkpointed {
    path: PathBuf,
    fingerprint: u64,
    generation: u32,
    offset: u64,
}

impl Tailer {
    /// Files rotated while the agent was away (kubelet's `0.log` → `0.log.<time>`, logrotate's
    /// `app.log` → `app.log.1`) are no longer under their watched name, but their unread tail
    /// is still in them. Each checkpointed file whose name now holds other content is looked
    /// for among its siblings by fingerprint (device, inode and first line survive a rename)
    /// and read to its end under its old identity, so its records keep their ids.
    pub(super) fn recover_rotated(&mut self) -> Result<(), Halt> {
        let entries: Vec<Checkpointed> = {
            let checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
            let mut latest: HashMap<u64, Checkpointed> = HashMap::new();
            for (_, entry) in checkpoints.entries() {
                let Some(fingerprint) = entry.fingerprint else { continue };
                let newer =
                    latest.get(&fingerprint).is_none_or(|c| entry.generation > c.generation);
                if newer {
                    let checkpointed = Checkpointed {
                        path: PathBuf::from(&entry.path),
                        fingerprint,
                        generation: entry.generation,
                        offset: entry.offset,
                    };
                    latest.insert(fingerprint, checkpointed);
                }
            }
            latest.into_values().collect()
        };
        'entries: for Checkpointed { path, fingerprint: fp, offset, .. } in entries {
            let still_there =
                File::open(&path).ok().and_then(|f| fingerprint(&f).ok().flatten()) == Some(fp);
            let Some(dir) = path.parent().filter(|_| !still_there) else { continue };
            let Ok(siblings) = std::fs::read_dir(dir) else { continue };
            for sibling in siblings.flatten().map(|e| e.path()) {
                let Ok(file) = File::open(&sibling) else { continue };
                let meta = match file.metadata() {
                    Ok(m) if m.is_file() && m.len() > offset => m,
                    _ => continue,
                };
                if fingerprint(&file).ok().flatten() != Some(fp) {
                    continue;
                }
                tracing::info!(path = %sibling.display(), was = %path.display(), offset, "reading the unread tail of a file rotated while the agent was away");
                metrics::counter!("sluice_agent_rotated_tails_read_total").increment(1);
                let pod = self.config.pod_meta(&path);
                let mut tracked =
                    TrackedFile::new(sibling, pod, file, meta.dev(), meta.ino(), false);
                if let Err(Halt::Stopping) = self.read_to_end(&mut tracked) {
                    return Err(Halt::Stopping);
                }
                continue 'entries;
            }
            self.read_compressed_siblings(&path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::super::testing::{Harness, append, messages};

    /// Reads `app.log`'s first lines and stops, as an agent that goes away.
    fn read_then_stop(root: &std::path::Path) -> (u64, u64) {
        let mut h = Harness::new(root, "*.log", |_| {});
        append(&h.logs.join("app.log"), "line 1\nline 2\n");
        h.scan_and_read();
        let got = h.shipped();
        assert_eq!(messages(&got), ["line 1", "line 2"]);
        (got[1].source, got[1].offset)
    }

    #[test]
    fn a_file_rotated_while_the_agent_was_away_is_read_on_from_its_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        let (source, last_offset) = read_then_stop(root.path());
        let logs = root.path().join("logs");
        append(&logs.join("app.log"), "line 3\nline 4\n");
        fs::rename(logs.join("app.log"), logs.join("app.log.1")).unwrap();
        append(&logs.join("app.log"), "fresh 1\n");

        let mut h = Harness::new(root.path(), "*.log", |_| {});
        h.tailer.recover_rotated().unwrap_or_else(|_| panic!("stopped"));
        h.tailer.spool.flush();
        let tail = h.shipped();
        assert_eq!(messages(&tail), ["line 3", "line 4"], "the unread tail, once");
        assert!(tail.iter().all(|r| r.source == source), "under the old identity");
        assert!(tail[0].offset > last_offset);
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["fresh 1"]);
    }

    #[test]
    fn a_rotated_file_already_compressed_is_read_on_from_its_gz_copy() {
        let root = tempfile::tempdir().unwrap();
        let (source, _) = read_then_stop(root.path());
        let logs = root.path().join("logs");
        append(&logs.join("app.log"), "line 3\n");
        // Kubelet renames, then compresses the rotated file into a new inode.
        let whole = fs::read(logs.join("app.log")).unwrap();
        let gz = fs::File::create(logs.join("app.log.20261204-101010.gz")).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        encoder.write_all(&whole).unwrap();
        encoder.finish().unwrap();
        fs::remove_file(logs.join("app.log")).unwrap();
        append(&logs.join("app.log"), "fresh 1\n");

        let mut h = Harness::new(root.path(), "*.log", |_| {});
        h.tailer.recover_rotated().unwrap_or_else(|_| panic!("stopped"));
        h.tailer.spool.flush();
        let tail = h.shipped();
        assert_eq!(messages(&tail), ["line 3"]);
        assert_eq!(tail[0].source, source, "under the old identity");
        assert!(!h.data.join("rotated.gz.tmp").exists(), "the scratch copy is gone");
    }

    #[test]
    fn a_file_still_in_place_is_left_to_the_scan() {
        let root = tempfile::tempdir().unwrap();
        read_then_stop(root.path());
        append(&root.path().join("logs/app.log"), "line 3\n");
        let mut h = Harness::new(root.path(), "*.log", |_| {});
        h.tailer.recover_rotated().unwrap_or_else(|_| panic!("stopped"));
        h.tailer.spool.flush();
        assert!(h.shipped().is_empty(), "nothing was rotated");
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["line 3"]);
    }
}
