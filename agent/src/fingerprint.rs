//! A file's identity: device and inode, and a hash of its first line.
//!
//! The inode alone is not enough: an inode freed by a deleted file is soon reused by a new
//! one, which would then be taken for the old file and read from its old offset. The first
//! line alone is not enough either: two files may start alike. Together they name a file
//! across renames (rotation keeps the inode) and survive reuse (the content differs).
//!
//! A copy (logrotate's `copytruncate`, a compressed rotation) has a new inode, so it is known
//! by its [`Head`] instead: a hash of its first [`HEAD_BYTES`], which tells apart files that
//! only share a first line.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use xxhash_rust::xxh3::Xxh3;

/// How many leading bytes are hashed when the first line is longer.
pub const FINGERPRINT_BYTES: usize = 1024;

/// The fingerprint of `file`, or `None` while it is too short to have one: neither a whole
/// first line nor [`FINGERPRINT_BYTES`] bytes yet.
pub fn fingerprint(file: &File) -> io::Result<Option<u64>> {
    Ok(identify(file)?.map(|identity| identity.fingerprint))
}

/// What a file is known by: its [`fingerprint`], and the [`content_hash`] of its head, which
/// finds it again once kubelet compressed it (a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub fingerprint: u64,
    pub content: u64,
}

/// The identity of `file`; `None` while it has no whole first line.
pub fn identify(file: &File) -> io::Result<Option<Identity>> {
    let meta = file.metadata()?;
    // Positional reads leave the cursor of a file being tailed where it is.
    let mut head = vec![0; FINGERPRINT_BYTES];
    let filled = read_head(file, &mut head)?;
    head.truncate(filled);
    let Some(head) = first_line(&head) else { return Ok(None) };
    let mut hasher = Xxh3::new();
    hasher.update(&meta.dev().to_le_bytes());
    hasher.update(&meta.ino().to_le_bytes());
    hasher.update(head);
    Ok(Some(Identity { fingerprint: hasher.digest(), content: content_hash(head) }))
}

/// What the fingerprint hashes of a file that starts with `bytes`: its first line with the
/// `\n`, or its first [`FINGERPRINT_BYTES`]; `None` while there is neither.
pub fn first_line(bytes: &[u8]) -> Option<&[u8]> {
    let bytes = &bytes[..bytes.len().min(FINGERPRINT_BYTES)];
    match memchr::memchr(b'\n', bytes) {
        Some(i) => Some(&bytes[..=i]),
        None if bytes.len() == FINGERPRINT_BYTES => Some(bytes),
        None => None,
    }
}

/// A hash of a file's head alone, without device and inode: it survives what changes the
/// inode, such as kubelet compressing a rotated log into `0.log.<time>.gz`.
pub fn content_hash(head: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(head)
}

/// How many leading bytes a [`Head`] covers at most: a few dozen lines of a typical log, so
/// files with the same header line still differ, read in one system call.
pub const HEAD_BYTES: usize = 4096;

/// A hash of a file's first `len` bytes (all of them while it is shorter than
/// [`HEAD_BYTES`]), without device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub hash: u64,
}

impl Head {
    /// The head of `bytes`, the start of a file.
    pub fn of(bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(HEAD_BYTES)];
        Self { len: bytes.len() as u32, hash: xxhash_rust::xxh3::xxh3_64(bytes) }
    }

    /// The head of `file` as it is now.
    pub fn read(file: &File) -> io::Result<Self> {
        let mut buf = [0; HEAD_BYTES];
        let len = read_head(file, &mut buf)?;
        Ok(Self::of(&buf[..len]))
    }

    /// Whether `file` still starts with the bytes this head was taken of.
    pub fn still_heads(&self, file: &File) -> io::Result<bool> {
        let mut buf = [0; HEAD_BYTES];
        let len = self.len as usize;
        Ok(read_head(file, &mut buf[..len])? == len && Self::of(&buf[..len]) == *self)
    }

    /// Whether `bytes` (the start of another file) begin with the bytes this head was taken of.
    pub fn starts(&self, bytes: &[u8]) -> bool {
        let len = self.len as usize;
        self.len > 0 && bytes.len() >= len && Self::of(&bytes[..len]) == *self
    }
}

/// Fills `buf` from the start of `file` as far as it goes; how many bytes that was.
pub fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The identity of a file's `generation`-th content: a file truncated in place (copytruncate)
/// keeps its inode and often its first line, so each truncation starts a new generation, and
/// its records new ids rather than ids the old content already used.
pub fn with_generation(fingerprint: u64, generation: u32) -> u64 {
    if generation == 0 {
        return fingerprint;
    }
    let mut hasher = Xxh3::new();
    hasher.update(&fingerprint.to_le_bytes());
    hasher.update(&generation.to_le_bytes());
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn generations_differ_and_the_first_is_the_fingerprint() {
        assert_eq!(with_generation(42, 0), 42);
        assert_ne!(with_generation(42, 1), 42);
        assert_ne!(with_generation(42, 1), with_generation(42, 2));
    }

    #[test]
    fn needs_a_first_line_and_then_stays_put() {
        let mut file = tempfile::tempfile().unwrap();
        assert_eq!(fingerprint(&file).unwrap(), None);
        file.write_all(b"first").unwrap();
        assert_eq!(fingerprint(&file).unwrap(), None);
        file.write_all(b"first line\n").unwrap();
        let fp = fingerprint(&file).unwrap().unwrap();
        file.write_all(b"more lines\n").unwrap();
        assert_eq!(fingerprint(&file).unwrap(), Some(fp));
    }

    #[test]
    fn same_text_in_another_file_is_another_fingerprint() {
        let mut a = tempfile::tempfile().unwrap();
        let mut b = tempfile::tempfile().unwrap();
        for f in [&mut a, &mut b] {
            f.write_all(b"same\n").unwrap();
        }
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&b).unwrap());
    }

    #[test]
    fn the_content_hash_ignores_the_inode() {
        let mut a = tempfile::tempfile().unwrap();
        let mut b = tempfile::tempfile().unwrap();
        for f in [&mut a, &mut b] {
            f.write_all(b"same\nthen different").unwrap();
        }
        let Identity { fingerprint: fa, content: ca } = identify(&a).unwrap().unwrap();
        let Identity { fingerprint: fb, content: cb } = identify(&b).unwrap().unwrap();
        assert_ne!(fa, fb);
        assert_eq!(ca, cb);
        assert_eq!(ca, content_hash(first_line(b"same\nother").unwrap()));
        assert_eq!(first_line(b"no newline"), None);
    }

    #[test]
    fn a_head_tells_apart_files_sharing_a_first_line_and_finds_a_copy() {
        let mut a = tempfile::tempfile().unwrap();
        let mut b = tempfile::tempfile().unwrap();
        a.write_all(b"header\nalpha\n").unwrap();
        b.write_all(b"header\nbeta\n").unwrap();
        let head = Head::read(&a).unwrap();
        assert_eq!(head.len, 13);
        assert!(head.still_heads(&a).unwrap());
        assert!(!head.still_heads(&b).unwrap());
        assert!(head.starts(b"header\nalpha\nand what the copy has after\n"));
        assert!(!head.starts(b"header\nalp"), "shorter than the head");
        a.set_len(0).unwrap();
        assert!(!head.still_heads(&a).unwrap(), "truncated");
        let long = vec![b'x'; HEAD_BYTES * 2];
        assert_eq!(Head::of(&long).len as usize, HEAD_BYTES);
        assert!(!Head::of(b"").starts(b"anything"), "an empty head names nothing");
    }

    #[test]
    fn a_long_first_line_uses_its_head() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![b'x'; FINGERPRINT_BYTES + 10]).unwrap();
        assert!(fingerprint(&file).unwrap().is_some());
    }
}
