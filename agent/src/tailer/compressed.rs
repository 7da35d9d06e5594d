//! Compressed rotations: kubelet's `0.log.<time>.gz`, logrotate's `app.log.1.gz`. A tail not
//! read before the compression is only there. A `.gz` the patterns match, or one named after
//! a file rotated while the agent was away, is decompressed far enough to compare its head
//! with the files read before; when it holds one of them, its unread rest is read from a
//! decompressed scratch copy under that file's identity, so its records keep their ids. A
//! compressed file holding nothing the agent has read is an archive from before the agent
//! watched it: it is left alone and counted, as rotations of files never watched are.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::discovery::ParkedFile;
use super::file::{Continues, TrackedFile};
use super::{Halt, Tailer};
use crate::checkpoint::Known;
use crate::fingerprint::HEAD_BYTES;

/// The scratch copy a compressed file is decompressed into, in the data directory.
const SCRATCH: &str = "rotated.gz.tmp";

/// Whether `path` names a gzip file, by the suffix kubelet and logrotate give them.
pub(super) fn is_compressed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

impl Tailer {
    /// Examines the `.gz` files named after `path` (a file rotated while the agent was away).
    pub(super) fn read_compressed_siblings(&mut self, path: &Path) -> Result<(), Halt> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(()) };
        let name = name.to_string_lossy();
        let Ok(siblings) = std::fs::read_dir(dir) else { return Ok(()) };
        let named_after: Vec<_> = siblings
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                is_compressed(p)
                    && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&*name))
            })
            .collect();
        for gz in named_after {
            self.read_compressed(&gz)?;
        }
        Ok(())
    }

    /// Reads the unread rest of the file `gz` holds, if it holds one read before. Examined
    /// once per size: a file still being compressed is not whole yet, and is looked at again
    /// when it grows.
    pub(super) fn read_compressed(&mut self, gz: &Path) -> Result<(), Halt> {
        let Ok(compressed) = File::open(gz) else { return Ok(()) };
        let Ok(meta) = compressed.metadata() else { return Ok(()) };
        let seen = ParkedFile { dev: meta.dev(), ino: meta.ino(), size: meta.len() };
        if self.examined.insert(gz.to_path_buf(), seen) == Some(seen) {
            return Ok(());
        }
        let mut decoder = flate2::read::MultiGzDecoder::new(&compressed);
        let mut head = Vec::with_capacity(HEAD_BYTES);
        if (&mut decoder).take(HEAD_BYTES as u64).read_to_end(&mut head).is_err() {
            tracing::debug!(path = %gz.display(), "not a whole gzip file (yet)");
            return Ok(());
        }
        let Some(original) = self.original_of_compressed(&head) else {
            tracing::info!(path = %gz.display(), "compressed file holds nothing the agent has read; left alone");
            metrics::counter!("sluice_agent_compressed_skipped_total").increment(1);
            return Ok(());
        };
        let Some(offset) = self.unread_from(&original)? else { return Ok(()) };
        if trailer_size(&compressed, meta.len()) == Some(offset as u32) {
            // gzip's trailer holds the decompressed size (mod 2³²): read to its end already.
            return Ok(());
        }
        let scratch = self.config.data_dir.join(SCRATCH);
        let copied = decompress_from(&mut decoder, &head, offset, &scratch);
        let file = match copied.and_then(|end| Ok((end, File::open(&scratch)?))) {
            Ok((end, file)) if end > offset => file,
            Ok(_) => {
                let _ = std::fs::remove_file(&scratch);
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(path = %gz.display(), error = %e, "cannot decompress a rotated file");
                let _ = std::fs::remove_file(&scratch);
                return Ok(());
            }
        };
        tracing::info!(path = %gz.display(), was = %original.path, offset, "reading the unread tail of a rotated file from its compressed copy");
        metrics::counter!("sluice_agent_rotated_tails_read_total").increment(1);
        let Ok(scratch_meta) = file.metadata() else { return Ok(()) };
        let pod = self.config.pod_meta(gz);
        let mut tracked = TrackedFile::new(
            gz.to_path_buf(),
            pod,
            file,
            scratch_meta.dev(),
            scratch_meta.ino(),
            false,
        );
        tracked.continues = Some(Continues { identified: original.identified, offset });
        let result = self.read_to_end(&mut tracked);
        let _ = std::fs::remove_file(&scratch);
        match result {
            Err(Halt::Stopping) => Err(Halt::Stopping),
            _ => Ok(()),
        }
    }

    /// The file read before that the decompressed `head` starts with.
    fn original_of_compressed(&self, head: &[u8]) -> Option<Known> {
        self.originals().into_iter().find(|k| k.held_in(head))
    }

    /// Where the content of `original` is unread from; `None` when it is still in place (a
    /// compressed copy of a file that is read itself). A file being read whose content is
    /// gone (copied, compressed and truncated before it was seen shorter) is finished here.
    fn unread_from(&mut self, original: &Known) -> Result<Option<u64>, Halt> {
        let reader = self
            .files
            .iter()
            .find(|(_, t)| t.reading.as_ref().is_some_and(|r| r.source == original.source))
            .map(|(path, _)| path.clone());
        let Some(path) = reader else {
            return Ok((!super::copies::still_in_place(original)).then_some(original.offset));
        };
        let mut t = self.files.remove(&path).expect("found above");
        let reading = t.reading.as_ref().expect("found reading");
        let size = t.file.metadata().map_or(0, |m| m.len());
        let position = reading.splitter.position();
        let in_place =
            size >= position && reading.identified.head.still_heads(&t.file).unwrap_or(true);
        let result = if in_place {
            Ok(None)
        } else {
            self.truncated(&mut t).map(|()| Some(position.max(original.offset)))
        };
        self.files.insert(path, t);
        result
    }
}

/// The decompressed size gzip's trailer records (that of the last member, mod 2³²).
fn trailer_size(file: &File, len: u64) -> Option<u32> {
    let mut trailer = [0; 4];
    file.read_exact_at(&mut trailer, len.checked_sub(4)?).ok()?;
    Some(u32::from_le_bytes(trailer))
}

/// Writes what `decoder` holds from `offset` on into `scratch` at the same offsets (the bytes
/// before it are a hole, never read), `head` being what was decoded already; returns the
/// decompressed length.
fn decompress_from(
    decoder: &mut impl Read,
    head: &[u8],
    offset: u64,
    scratch: &Path,
) -> std::io::Result<u64> {
    let mut out = File::create(scratch)?;
    let decoded = head.len() as u64;
    if offset < decoded {
        out.seek(SeekFrom::Start(offset))?;
        std::io::Write::write_all(&mut out, &head[offset as usize..])?;
    } else {
        let skipped = std::io::copy(&mut decoder.take(offset - decoded), &mut std::io::sink())?;
        if skipped < offset - decoded {
            return Ok(decoded + skipped);
        }
        out.seek(SeekFrom::Start(offset))?;
    }
    let rest = std::io::copy(decoder, &mut out)?;
    Ok(offset.max(decoded) + rest)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::super::testing::{Harness, append, messages};

    fn gzip(from: &std::path::Path, to: &std::path::Path) {
        let whole = fs::read(from).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(
            fs::File::create(to).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&whole).unwrap();
        encoder.finish().unwrap();
    }

    #[test]
    fn a_compressed_copy_is_read_from_where_its_file_was_left() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        let log = h.logs.join("app.log");
        append(&log, "old 1\nold 2\n");
        h.scan_and_read();
        let source = h.shipped()[0].source;
        // logrotate with `compress` and `copytruncate`: copied, truncated and the copy
        // compressed, all before the agent looked again.
        append(&log, "old 3\n");
        gzip(&log, &h.logs.join("app.log.1.gz"));
        fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
        append(&log, "new 1, longer than anything before\n");
        h.scan_and_read();
        let got = h.shipped();
        let mut texts = messages(&got);
        texts.sort();
        assert_eq!(texts, ["new 1, longer than anything before", "old 3"]);
        let tail = got.iter().find(|r| r.message == "old 3").unwrap();
        assert_eq!(tail.source, source, "under the original's ids");
        assert!(tail.file_path.ends_with("app.log.1.gz"));
        assert_eq!(h.open_files(), ["app.log"], "the compressed file is not tailed");
        // Renamed along (app.log.1.gz → app.log.2.gz) and seen again after a restart.
        drop(h);
        fs::rename(root.path().join("logs/app.log.1.gz"), root.path().join("logs/app.log.2.gz"))
            .unwrap();
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        h.scan_and_read();
        assert!(h.shipped().is_empty(), "nothing read twice");
        assert!(!h.data.join(super::SCRATCH).exists(), "the scratch copy is gone");
    }

    #[test]
    fn an_archive_of_content_never_read_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        append(&logs.join("old.txt"), "from before the agent\n");
        gzip(&logs.join("old.txt"), &logs.join("app.log.7.gz"));
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        append(&h.logs.join("app.log"), "current\n");
        h.scan_and_read();
        assert_eq!(messages(&h.shipped()), ["current"]);
    }

    #[test]
    fn a_file_still_being_compressed_is_read_once_whole() {
        let root = tempfile::tempdir().unwrap();
        let mut h = Harness::new(root.path(), "app.log*", |_| {});
        let log = h.logs.join("app.log");
        append(&log, "kept 1\n");
        h.scan_and_read();
        h.shipped();
        let lines: String = (0..2000).map(|i| format!("later line {i}\n")).collect();
        append(&log, &lines);
        let gz = h.logs.join("app.log.1.gz");
        gzip(&log, &gz);
        fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
        let whole = fs::read(&gz).unwrap();
        // Half written: not whole yet, so nothing is read from it, and the rest not lost.
        fs::write(&gz, &whole[..whole.len() / 2]).unwrap();
        h.scan_and_read();
        let early = h.shipped().len();
        fs::write(&gz, &whole).unwrap();
        h.scan_and_read();
        assert_eq!(early + h.shipped().len(), 2000);
    }
}
