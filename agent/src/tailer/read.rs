//! A file read from its checkpoint: fingerprinted once it has a first line, read a budget at
//! a time, and read again from the start when truncated in place (copytruncate).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Instant;

use sluice_proto::LogRecord;
use sluice_proto::id::source_key;

use super::copies::Copied;
use super::file::{Continues, Reading, TrackedFile, Truncated};
use super::parse::{Format, Parse};
use super::{Halt, READ_BUDGET_BYTES, READ_CHUNK_BYTES, Tailer, now_ns};
use crate::checkpoint::Identified;
use crate::chunk::Chunk;
use crate::cri::{Assembler, SecondCache};
use crate::fingerprint::{HEAD_BYTES, Head, Identity, identify, with_generation};
use crate::line_reader::LineSplitter;
use crate::multiline::Joiner;

impl Tailer {
    /// Reads a file that is being let go to its end, including a pending multi-line event.
    pub(super) fn read_to_end(&mut self, tracked: &mut TrackedFile) -> Result<(), Halt> {
        while self.read_file(tracked)? {}
        let last = self.flush_pending(tracked, true);
        if !last.is_empty() {
            self.send(last, tracked)?;
        }
        Ok(())
    }

    /// One round over every file; `Ok(true)` when any of them had new bytes.
    pub(super) fn read_all(&mut self) -> Result<bool, Halt> {
        let mut any = false;
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            // Gone already when the spool's wait let go of it as a deleted file.
            let Some(mut file) = self.files.remove(&path) else { continue };
            let read = match self.read_file(&mut file) {
                Ok(read) => read,
                Err(Halt::GaveUp) => continue,
                Err(Halt::Stopping) => return Err(Halt::Stopping),
            };
            any |= read;
            let timed_out = self.flush_pending(&mut file, false);
            if !timed_out.is_empty() {
                match self.send(timed_out, &file) {
                    Ok(()) => {}
                    Err(Halt::GaveUp) => continue,
                    Err(Halt::Stopping) => return Err(Halt::Stopping),
                }
            }
            self.files.insert(path, file);
        }
        Ok(any)
    }

    pub(super) fn read_file(&mut self, f: &mut TrackedFile) -> Result<bool, Halt> {
        if f.reading.is_none() && !self.start_reading(f) {
            return Ok(false);
        }
        let size = f.file.metadata().map_or(u64::MAX, |m| m.len());
        if self.rewritten(f, size) {
            self.truncated(f)?;
            if !self.start_reading(f) {
                return Ok(false);
            }
        }
        let mut budget = READ_BUDGET_BYTES;
        let mut any = false;
        while budget > 0 {
            let n = match f.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                    break;
                }
            };
            any = true;
            f.last_read = Instant::now();
            budget = budget.saturating_sub(n);
            metrics::counter!("sluice_agent_bytes_read_total").increment(n as u64);
            let reading = f.reading.as_mut().expect("reading started above");
            let (now, read_at) = (now_ns(), Instant::now());
            let mut out = Chunk::new(&reading.parse.common, now, n + n / 4);
            let mut lines = 0;
            let parse = &mut reading.parse;
            reading.splitter.push(&self.buf[..n], |line| {
                lines += 1;
                self.record(parse, line, now, read_at, &mut out);
            });
            metrics::counter!("sluice_agent_lines_read_total").increment(lines);
            if !out.is_empty() {
                self.send(out, f)?;
            }
        }
        Ok(any)
    }

    /// Whether the file, now `size` bytes, was truncated in place since it was last read:
    /// shorter than what was read, or, when it has new bytes, no longer starting with the
    /// head it had (a writer fast enough refills it past the old length before it is seen
    /// shorter). Until the head is whole it grows with the file, for copies to be known by.
    fn rewritten(&mut self, f: &mut TrackedFile, size: u64) -> bool {
        let Some(reading) = f.reading.as_mut().filter(|r| !r.copy) else { return false };
        let position = reading.splitter.position();
        if size < position {
            return true;
        }
        if size == position {
            return false;
        }
        let head = reading.identified.head;
        if !head.still_heads(&f.file).unwrap_or(true) {
            return true;
        }
        if (head.len as usize) < HEAD_BYTES
            && size > u64::from(head.len)
            && let Ok(longer) = Head::read(&f.file)
        {
            reading.identified.head = longer;
            self.checkpoints
                .lock()
                .expect("checkpoints poisoned")
                .update_head(reading.source, longer);
        }
        false
    }

    /// The file shrank under the reader (copytruncate): what was read of the old content is
    /// finished, and the new content is read from 0 once it has a first line. With the same
    /// first line it is the next generation of the file, so its records get new ids rather
    /// than ids the old content already used.
    pub(super) fn truncated(&mut self, f: &mut TrackedFile) -> Result<(), Halt> {
        let last = self.flush_pending(f, true);
        if !last.is_empty() {
            self.send(last, f)?;
        }
        let reading = f.reading.take().expect("called while reading");
        tracing::warn!(path = %f.path.display(), read = reading.splitter.position(), "file truncated in place; reading it again from the start");
        metrics::counter!("sluice_agent_truncations_total").increment(1);
        let Identified { fingerprint, generation, .. } = reading.identified;
        f.after_truncation = Some(Truncated { fingerprint, generation });
        f.from_end = false;
        if let Err(e) = f.file.seek(SeekFrom::Start(0)) {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot seek");
        }
        Ok(())
    }

    /// Fingerprints the file and seeks to where it is read from; false while it is too
    /// short to have a fingerprint.
    pub(super) fn start_reading(&mut self, f: &mut TrackedFile) -> bool {
        if let Some(Continues { identified, offset }) = f.continues.take() {
            return self.begin(f, identified, offset, Copy::Compressed);
        }
        let (Identity { fingerprint: fp, content }, head) =
            match identify(&f.file).and_then(|i| Ok((i, Head::read(&f.file)?))) {
                Ok((Some(identity), head)) => (identity, head),
                Ok((None, _)) => return false,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "cannot fingerprint");
                    return false;
                }
            };
        let size = f.file.metadata().map(|m| m.len()).unwrap_or(0);
        let own = |generation| Identified { fingerprint: fp, generation, content, head };
        if let Some(old) = f.after_truncation.take().filter(|old| old.fingerprint == fp) {
            // Seen shrinking while read: the same first line is the file's next content.
            return self.begin(f, own(old.generation + 1), 0, Copy::No);
        }
        let (found, legacy) = {
            let checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
            match checkpoints.find(fp) {
                Some(found) => (Some(found), None),
                // Checkpoints written before generations existed are found by the plain key.
                None => (None, checkpoints.offset(source_key(&self.identity, fp))),
            }
        };
        match (found, legacy) {
            (Some(found), _) if found.fingerprint != fp => {
                // A copy read before (its fingerprint is noted with the file it copies).
                let identified = Identified {
                    fingerprint: found.fingerprint,
                    generation: found.generation,
                    content,
                    head: found.head.unwrap_or(head),
                };
                self.begin(f, identified, found.offset.min(size), Copy::Of(fp))
            }
            (Some(found), _) => {
                let moved_on = found.head.is_some_and(|h| !h.still_heads(&f.file).unwrap_or(true));
                if found.offset > size || moved_on {
                    tracing::warn!(path = %f.path.display(), offset = found.offset, size, "file rewritten since its checkpoint (truncated while the agent was away); reading it from the start");
                    metrics::counter!("sluice_agent_truncations_total").increment(1);
                    self.begin(f, own(found.generation + 1), 0, Copy::No)
                } else {
                    self.begin(f, own(found.generation), found.offset, Copy::No)
                }
            }
            (None, Some(offset)) if offset <= size => self.begin(f, own(0), offset, Copy::No),
            (None, Some(offset)) => {
                tracing::warn!(path = %f.path.display(), offset, size, "file shorter than its checkpoint (truncated while the agent was away); reading it from the start");
                metrics::counter!("sluice_agent_truncations_total").increment(1);
                self.begin(f, own(1), 0, Copy::No)
            }
            (None, None) => match self.copy_of(f, fp, size) {
                Some(Copied::Fresh(Continues { identified, offset })) => {
                    self.begin(f, identified, offset.min(size), Copy::Of(fp))
                }
                Some(Copied::HandedOver(reading)) => self.go_on(f, *reading, fp),
                None if f.from_end => {
                    let offset = end_of_last_line(&f.file, size);
                    self.begin(f, own(0), offset, Copy::No)
                }
                None => self.begin(f, own(0), 0, Copy::No),
            },
        }
    }

    /// Starts reading `f` at `offset` as `identified`.
    fn begin(
        &mut self,
        f: &mut TrackedFile,
        identified: Identified,
        offset: u64,
        copy: Copy,
    ) -> bool {
        let source = source_key(
            &self.identity,
            with_generation(identified.fingerprint, identified.generation),
        );
        {
            let mut checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
            checkpoints.register(source, identified);
            if let Copy::Of(own) = copy {
                checkpoints.note_copy(source, own);
            }
        }
        if let Err(e) = f.file.seek(SeekFrom::Start(offset)) {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot seek");
            return false;
        }
        f.reading = Some(Reading {
            source,
            identified,
            copy: copy != Copy::No,
            splitter: LineSplitter::new(self.config.max_line_bytes, offset),
            parse: Parse {
                common: LogRecord {
                    source,
                    cluster: self.config.cluster.clone(),
                    node: self.config.node.clone(),
                    namespace: f.meta.namespace.clone(),
                    pod: f.meta.pod.clone(),
                    pod_uid: f.meta.pod_uid.clone(),
                    container: f.meta.container.clone(),
                    file_path: f.path_text.clone(),
                    ..LogRecord::default()
                },
                format: Format::Unknown,
                seconds: SecondCache::default(),
                cri: Assembler::new(self.config.max_line_bytes),
                joiner: Joiner::default(),
                last_read_ns: 0,
                time: self.config.timestamp.parser_for(&f.path),
                last_stamp_ns: None,
            },
        });
        true
    }

    /// Goes on in `f`, a copy, with the reading of the file it copies, where that stopped:
    /// a partial line or multi-line event read from the original is finished from the copy.
    fn go_on(&mut self, f: &mut TrackedFile, mut reading: Reading, own: u64) -> bool {
        let position = reading.splitter.position();
        let size = f.file.metadata().map(|m| m.len()).unwrap_or(0);
        if let Err(e) = f.file.seek(SeekFrom::Start(position.min(size))) {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot seek");
            return false;
        }
        self.checkpoints.lock().expect("checkpoints poisoned").note_copy(reading.source, own);
        reading.copy = true;
        f.path_text.clone_into(&mut reading.parse.common.file_path);
        f.reading = Some(reading);
        true
    }
}

/// Whether a file is read as itself or on behalf of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copy {
    No,
    /// A copy of another file; its own fingerprint.
    Of(u64),
    /// A compressed rotation, decompressed.
    Compressed,
}

/// Where the last complete line of the first `size` bytes ends: the start when tailing from
/// the end, so a half-written line is not read from its middle.
fn end_of_last_line(file: &File, size: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let from = size.saturating_sub(READ_CHUNK_BYTES as u64);
    let mut tail = vec![0; (size - from) as usize];
    match file.read_exact_at(&mut tail, from) {
        Ok(()) => tail.iter().rposition(|&b| b == b'\n').map_or(from, |i| from + i as u64 + 1),
        Err(_) => size,
    }
}
