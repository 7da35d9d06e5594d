//! Segment files, the on-disk layout the collector's WAL and the agent's spool share: one
//! rule for naming, listing, reading and recovering them, so the two logs cannot drift apart.
//!
//! A log is a directory of files `<base:020><suffix>`, each a run of [`frame`]s, named by the
//! position of its first byte in the whole log, so positions stay valid as old segments are
//! deleted. A frame is whole when its announced length is between 1 and [`MAX_FRAME_BYTES`],
//! it fits in its segment, and its payload matches its checksum. Both logs write only
//! non-empty payloads, so a zero-filled tail (a power cut after the file grew but before its
//! blocks were written) is never taken for frames.
//!
//! Recovery, the same for both: at open, the last segment is cut back to its whole frames (a
//! torn tail); a damaged frame found later ends its segment — the rest of it is skipped and
//! counted by the log — and reading goes on with the next segment; a segment missing from the
//! middle is skipped the same way.
//!
//! # Layout
//! - this file: [`Segments`] (naming, listing, creating), [`read_frame_at`], [`scan`].
//! - `damage` (feature `test-support`): the suite of damaged files every log must survive.

#[cfg(any(test, feature = "test-support"))]
pub mod damage;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::frame;

/// Frames announcing more than this are refused on append and taken as damage on read.
pub const MAX_FRAME_BYTES: u64 = 256 << 20;

const HEADER_BYTES: u64 = frame::HEADER_BYTES as u64;

/// Why the bytes at a position are not a whole frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("frame length {len} is outside 1..={MAX_FRAME_BYTES} or runs past the segment")]
    Length { len: u64 },
    #[error("checksum mismatch")]
    Checksum,
}

/// The segment files of one log directory.
#[derive(Debug, Clone)]
pub struct Segments {
    dir: PathBuf,
    suffix: &'static str,
}

impl Segments {
    /// The segments `<base:020><suffix>` in `dir`.
    pub fn new(dir: &Path, suffix: &'static str) -> Self {
        Self { dir: dir.to_owned(), suffix }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the segment starting at position `base`.
    pub fn path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}{}", self.suffix))
    }

    /// The bases of every segment on disk, oldest first; other files are left alone.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut bases: Vec<u64> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(self.suffix)?.parse().ok())
            .collect();
        bases.sort_unstable();
        Ok(bases)
    }

    /// Creates (or opens) the segment at `base` for appending, and makes its name durable.
    pub fn create(&self, base: u64) -> io::Result<File> {
        let file = OpenOptions::new().create(true).read(true).append(true).open(self.path(base))?;
        self.sync_dir()?;
        Ok(file)
    }

    /// Makes created and deleted names durable.
    pub fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Cuts the segment at `base` back to its whole frames (see [`scan`]); returns its scan
    /// taken before the cut, so `on_disk - whole` bytes were cut.
    pub fn cut_torn_tail(&self, base: u64, each: impl FnMut(&[u8])) -> io::Result<Scan> {
        let path = self.path(base);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let scanned = scan(&file, each)?;
        if scanned.whole < scanned.on_disk {
            file.set_len(scanned.whole)?;
            file.sync_all()?;
        }
        Ok(scanned)
    }
}

/// The payload of the frame at `offset` of a segment file, which holds `room` bytes of the
/// log from `offset` on; returns it with the frame's whole length.
pub fn read_frame_at(file: &File, offset: u64, room: u64) -> Result<(Vec<u8>, u64), FrameError> {
    let mut header = [0u8; frame::HEADER_BYTES];
    if room < HEADER_BYTES {
        return Err(FrameError::Length { len: room });
    }
    file.read_exact_at(&mut header, offset)?;
    let (len, crc) = frame::header(&header);
    let total = HEADER_BYTES + len;
    if !(1..=MAX_FRAME_BYTES).contains(&len) || total > room {
        return Err(FrameError::Length { len });
    }
    let mut payload = vec![0; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_BYTES)?;
    if !frame::verify(&payload, crc) {
        return Err(FrameError::Checksum);
    }
    Ok((payload, total))
}

/// How much of a segment file is whole frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// The length of the whole frames at the start of the file.
    pub whole: u64,
    /// The file's length.
    pub on_disk: u64,
    pub frames: u64,
}

/// Reads a segment file from its start, one frame at a time (a segment may be far larger than
/// what the process should hold), passing each whole frame's payload to `each`, up to the
/// first frame that is not whole.
pub fn scan(file: &File, mut each: impl FnMut(&[u8])) -> io::Result<Scan> {
    let on_disk = file.metadata()?.len();
    let mut scanned = Scan { whole: 0, on_disk, frames: 0 };
    while scanned.whole < on_disk {
        match read_frame_at(file, scanned.whole, on_disk - scanned.whole) {
            Ok((payload, total)) => {
                each(&payload);
                scanned.whole += total;
                scanned.frames += 1;
            }
            Err(FrameError::Io(e)) if e.kind() != io::ErrorKind::UnexpectedEof => return Err(e),
            Err(_) => break,
        }
    }
    Ok(scanned)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn segment_of(payloads: &[&[u8]]) -> (tempfile::TempDir, Segments, File) {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::new(dir.path(), ".log");
        let mut file = segments.create(0).unwrap();
        let mut bytes = Vec::new();
        for p in payloads {
            frame::encode(p, &mut bytes);
        }
        file.write_all(&bytes).unwrap();
        (dir, segments, file)
    }

    #[test]
    fn segments_are_named_by_base_and_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::new(dir.path(), ".wal");
        for base in [300, 7, 12_000_000_000] {
            segments.create(base).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        fs::write(dir.path().join("00000000000000000001.spool"), b"x").unwrap();
        assert_eq!(segments.list().unwrap(), [7, 300, 12_000_000_000]);
        assert!(segments.path(7).ends_with("00000000000000000007.wal"));
    }

    #[test]
    fn a_scan_stops_at_the_first_frame_that_is_not_whole() {
        let (_dir, segments, mut file) = segment_of(&[b"one", b"two"]);
        let mut seen = Vec::new();
        let whole = scan(&file, |p| seen.push(p.to_vec())).unwrap();
        assert_eq!((whole.frames, whole.whole, whole.on_disk), (2, 22, 22));
        assert_eq!(seen, [b"one".to_vec(), b"two".to_vec()]);
        file.write_all(&[0; 64]).unwrap();
        let zeroed = scan(&file, |_| {}).unwrap();
        assert_eq!(
            (zeroed.frames, zeroed.whole, zeroed.on_disk),
            (2, 22, 86),
            "zeros are no frames"
        );
        let cut = segments.cut_torn_tail(0, |_| {}).unwrap();
        assert_eq!(cut.whole, 22);
        assert_eq!(file.metadata().unwrap().len(), 22);
    }

    #[test]
    fn damaged_frames_say_what_is_wrong() {
        let (_dir, segments, file) = segment_of(&[b"payload"]);
        assert_eq!(read_frame_at(&file, 0, 15).unwrap(), (b"payload".to_vec(), 15));
        assert!(matches!(read_frame_at(&file, 0, 14), Err(FrameError::Length { len: 7 })));
        // Appends go to the end whatever the offset: damage goes through a handle of its own.
        let file = OpenOptions::new().read(true).write(true).open(segments.path(0)).unwrap();
        let mut bytes = fs::read(segments.path(0)).unwrap();
        bytes[10] ^= 1;
        file.write_all_at(&bytes, 0).unwrap();
        assert!(matches!(read_frame_at(&file, 0, 15), Err(FrameError::Checksum)));
        file.write_all_at(&u32::MAX.to_le_bytes(), 0).unwrap();
        let err = read_frame_at(&file, 0, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("4294967295"), "{err}");
    }
}
