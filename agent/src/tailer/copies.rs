//! Copies of files already read. logrotate's `copytruncate` copies `app.log` to `app.log.1`
//! (a new inode, so a new fingerprint) and empties `app.log`; users watch `app.log*` so that
//! the tail not read before the truncation is not lost, and the rest of the copy must not be
//! read twice. A new file whose first bytes are the recorded [`Head`] of a file whose content
//! is gone from where it was (truncated, rewritten, deleted) holds that content: it is read
//! on from where that file's reading stopped, under its identity, so its records keep their
//! ids. A file whose original is still in place only starts like it, and is read as itself.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use super::Tailer;
use super::file::{Continues, Reading, TrackedFile, Truncated};
use crate::checkpoint::Known;
use crate::fingerprint::{HEAD_BYTES, fingerprint, read_head};

/// How a new file goes on with the file it copies.
pub(super) enum Copied {
    /// The original is being read by this process: its reading, pending lines and all,
    /// moves to the copy, and the original is read again from the start as new content.
    HandedOver(Box<Reading>),
    /// Known from the checkpoints: the copy is read from the original's checkpoint.
    Fresh(Continues),
}

impl Tailer {
    /// Whether `f` (`size` bytes, fingerprint `fp`, known by no checkpoint) is a copy of a
    /// file read before, and how it goes on with it.
    pub(super) fn copy_of(&mut self, f: &TrackedFile, fp: u64, size: u64) -> Option<Copied> {
        let mut buf = [0; HEAD_BYTES];
        let len = read_head(&f.file, &mut buf).ok()?;
        let head = &buf[..len];
        let original = self.originals().into_iter().find(|k| {
            k.identified.fingerprint != fp
                && u64::from(k.identified.head.len) <= size
                && k.identified.head.starts(head)
        })?;
        let was = original.path.clone();
        let copied = match self
            .files
            .values_mut()
            .find(|t| t.reading.as_ref().is_some_and(|r| r.source == original.source))
        {
            Some(t) => Copied::HandedOver(Box::new(hand_over(t)?)),
            None if still_in_place(&original) => return None,
            None => Copied::Fresh(Continues {
                identified: original.identified,
                offset: original.offset,
            }),
        };
        tracing::info!(path = %f.path.display(), copy_of = %was, head_bytes = original.identified.head.len, "recognised a copy of a file already read (copytruncate); reading on where that file was left");
        metrics::counter!("sluice_agent_copies_recognised_total").increment(1);
        Some(copied)
    }

    /// The files a copy may be of, most telling first: those read now, then the
    /// checkpointed ones; longer heads before shorter, recent before old.
    pub(super) fn originals(&self) -> Vec<Known> {
        let mut originals: Vec<Known> = self
            .files
            .values()
            .filter_map(|t| {
                let r = t.reading.as_ref()?;
                Some(Known {
                    source: r.source,
                    identified: r.identified,
                    offset: r.splitter.position(),
                    path: t.path_text.clone(),
                    touched: u64::MAX,
                })
            })
            .collect();
        let checkpointed = self.checkpoints.lock().expect("checkpoints poisoned").known();
        for known in checkpointed {
            if !originals.iter().any(|o| o.source == known.source) {
                originals.push(known);
            }
        }
        originals.sort_by(|a, b| {
            (b.identified.head.len, b.touched).cmp(&(a.identified.head.len, a.touched))
        });
        originals
    }
}

/// Takes the reading of `t`, the original of a copy, if its content is gone from it; `None`
/// when `t` still holds what it was read for (the new file only starts like it).
fn hand_over(t: &mut TrackedFile) -> Option<Reading> {
    let reading = t.reading.as_ref()?;
    let size = t.file.metadata().map_or(0, |m| m.len());
    let in_place = size >= reading.splitter.position()
        && reading.identified.head.still_heads(&t.file).unwrap_or(true);
    if in_place {
        return None;
    }
    let reading = t.reading.take()?;
    tracing::warn!(path = %t.path.display(), read = reading.splitter.position(), "file truncated in place; its copy is read on and the file again from the start");
    metrics::counter!("sluice_agent_truncations_total").increment(1);
    let (fingerprint, generation) = (reading.identified.fingerprint, reading.identified.generation);
    t.after_truncation = Some(Truncated { fingerprint, generation });
    t.from_end = false;
    if let Err(e) = t.file.seek(SeekFrom::Start(0)) {
        tracing::warn!(path = %t.path.display(), error = %e, "cannot seek");
    }
    Some(reading)
}

/// Whether the checkpointed file is still where it was, with the content it was read for.
pub(super) fn still_in_place(original: &Known) -> bool {
    let Ok(file) = File::open(&original.path) else { return false };
    let size = file.metadata().map_or(0, |m| m.len());
    fingerprint(&file).ok().flatten() == Some(original.identified.fingerprint)
        && size >= original.offset
        && original.identified.head.still_heads(&file).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testing::{Harness, append, messages};

    fn copytruncate(path: &std::path::Path, to: &str) {
        fs::copy(path, path.with_file_name(to)).unwrap();
        fs::OpenOptions::new().write(true).open(path).unwrap().set_len(0).unwrap();
    }

    #[test]
    fn a_copy_made_while_the_file_is_read_goes_on_with_its_reading() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        let log = h.logs.join("app.log");
        append(&log, "old 1\nold 2\n");
        h.scan_and_read();
        let first = h.shipped();
        assert_eq!(messages(&first), ["old 1", "old 2"]);
        // Written, then copied and truncated before the agent read it; the writer goes on.
        append(&log, "old 3\nold 4\n");
        copytruncate(&log, "app.log.1");
        append(&log, "new 1\nnew 2 is longer than all that came before it\n");
        h.scan_and_read();
        let got = h.shipped();
        let mut texts = messages(&got);
        texts.sort();
        assert_eq!(
            texts,
            ["new 1", "new 2 is longer than all that came before it", "old 3", "old 4"]
        );
        let copied: Vec<_> = got.iter().filter(|r| r.message.starts_with("old")).collect();
        assert!(copied.iter().all(|r| r.source == first[0].source), "under the original's ids");
        assert!(copied.iter().all(|r| r.file_path.ends_with("app.log.1")));
        assert!(
            got.iter()
                .filter(|r| r.message.starts_with("new"))
                .all(|r| r.source != first[0].source)
        );
        assert_eq!(h.open_files(), ["app.log", "app.log.1"]);
    }

    #[test]
    fn a_copy_made_while_the_agent_was_away_is_read_from_the_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        let source = {
            let mut h = Harness::new(root.path(), "app.log*", |_| {});
            append(&logs.join("app.log"), "old 1\nold 2\n");
            h.scan_and_read();
            h.shipped()[0].source
        };
        append(&logs.join("app.log"), "old 3\n");
        copytruncate(&logs.join("app.log"), "app.log.1");
        append(&logs.join("app.log"), "new 1\n");
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        h.scan_and_read();
        let got = h.shipped();
        let mut texts = messages(&got);
        texts.sort();
        assert_eq!(texts, ["new 1", "old 3"], "the copy's unread tail once, and the new content");
        assert_eq!(got.iter().find(|r| r.message == "old 3").unwrap().source, source);
        // Restarted again, with the copy renamed as logrotate does: known by its own
        // fingerprint now, nothing is read twice.
        drop(h);
        fs::rename(logs.join("app.log.1"), logs.join("app.log.2")).unwrap();
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        h.scan_and_read();
        assert!(h.shipped().is_empty());
    }

    #[test]
    fn files_that_only_start_alike_are_each_read_whole() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "*.log", |_| {});
        append(&h.logs.join("a.log"), "same header\nsame body\n");
        h.scan_and_read();
        assert_eq!(h.shipped().len(), 2);
        // The same lines and more, in another file, while the first is still there: a file
        // of its own, not a copy.
        append(&h.logs.join("b.log"), "same header\nsame body\nand more\n");
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["same header", "same body", "and more"]);
        drop(h);
        // Across a restart too.
        append(&root.path().join("logs/c.log"), "same header\nsame body\n");
        let mut h = Harness::new(root.path(), "*.log", |_| {});
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["same header", "same body"]);
    }

    #[test]
    fn a_file_rewritten_past_its_old_length_is_new_content() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "app.log", |_| {});
        let log = h.logs.join("app.log");
        append(&log, "first content\n");
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["first content"]);
        // Truncated and refilled beyond the old length before the reader looked again.
        fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
        append(&log, "second content, longer than the first\n");
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["second content, longer than the first"]);
    }
}
