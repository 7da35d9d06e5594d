//! Splits a file's bytes into lines, remembering where each began and ended.
//!
//! A line is only emitted once its `\n` has been read: a half-written last line waits for
//! the writer. Bytes past the cap are counted but not kept, so a 10 MB line costs the cap in
//! memory, never more. A line that lies whole in the bytes just read is lent from them, not
//! copied: copying every line and allocating for it was a tenth of the agent's CPU.

/// The most a file's buffer for lines split across reads keeps between lines: one long line
/// must not hold the cap's worth of memory for as long as the file is read.
const KEEP_CAPACITY: usize = 64 << 10;

/// One complete line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// Offset of the line's first byte in the file.
    pub start: u64,
    /// Offset just past its `\n`: where reading resumes after this line.
    pub end: u64,
    /// The line without `\n` and without a `\r` before it; at most the cap.
    pub bytes: &'a [u8],
    /// Whether bytes past the cap were dropped.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct LineSplitter {
    cap: usize,
    /// Offset of the next byte `push` will receive.
    next: u64,
    start: u64,
    partial: Vec<u8>,
    truncated: bool,
}

impl LineSplitter {
    /// A splitter whose next byte is at `offset` in the file.
    pub fn new(cap: usize, offset: u64) -> Self {
        Self { cap, next: offset, start: offset, partial: Vec::new(), truncated: false }
    }

    /// Offset of the first byte of the line not yet complete: where a restart must resume.
    pub fn pending_start(&self) -> u64 {
        self.start
    }

    /// Offset of the next byte to be read: how far the file has been read.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Feeds the next bytes of the file; calls `emit` for each line they complete.
    pub fn push(&mut self, mut chunk: &[u8], mut emit: impl FnMut(Line<'_>)) {
        while let Some(i) = memchr::memchr(b'\n', chunk) {
            let end = self.next + i as u64 + 1;
            if self.start == self.next {
                let (kept, truncated) = capped(&chunk[..i], self.cap);
                emit(Line { start: self.start, end, bytes: kept, truncated });
            } else {
                self.keep(&chunk[..i]);
                let mut kept = self.partial.as_slice();
                if !self.truncated && kept.last() == Some(&b'\r') {
                    kept = &kept[..kept.len() - 1];
                }
                emit(Line { start: self.start, end, bytes: kept, truncated: self.truncated });
                self.partial.clear();
                if self.partial.capacity() > KEEP_CAPACITY {
                    self.partial = Vec::new();
                }
            }
            self.next = end;
            self.start = end;
            self.truncated = false;
            chunk = &chunk[i + 1..];
        }
        self.keep(chunk);
        self.next += chunk.len() as u64;
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.partial.len());
        if bytes.len() > room {
            // A `\r` right past the cap is the line ending, not lost text.
            let lost = &bytes[room..];
            if lost != b"\r" {
                self.truncated = true;
            }
        }
        self.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// A whole line's first `cap` bytes without its `\r`, and whether anything else was cut.
fn capped(line: &[u8], cap: usize) -> (&[u8], bool) {
    // A `\r` right past the cap is the line ending, not lost text.
    let truncated = line.len() > cap && &line[cap..] != b"\r";
    let mut kept = &line[..line.len().min(cap)];
    if !truncated && kept.last() == Some(&b'\r') {
        kept = &kept[..kept.len() - 1];
    }
    (kept, truncated)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A line with its bytes copied out of the splitter.
    #[derive(Debug, PartialEq, Eq)]
    struct Owned {
        start: u64,
        end: u64,
        bytes: Vec<u8>,
        truncated: bool,
    }

    fn split(cap: usize, chunks: &[&[u8]]) -> Vec<Owned> {
        let mut splitter = LineSplitter::new(cap, 0);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |l| {
                lines.push(Owned {
                    start: l.start,
                    end: l.end,
                    bytes: l.bytes.to_vec(),
                    truncated: l.truncated,
                })
            });
        }
        lines
    }

    #[test]
    fn lines_carry_offsets_and_lose_crlf() {
        let lines = split(100, &[b"ab\r\ncd", b"e\nf"]);
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].start, lines[0].end, &lines[0].bytes[..]), (0, 4, &b"ab"[..]));
        assert_eq!((lines[1].start, lines[1].end, &lines[1].bytes[..]), (4, 8, &b"cde"[..]));
    }

    #[test]
    fn a_lone_cr_inside_a_line_is_kept() {
        assert_eq!(split(100, &[b"a\rb\n"])[0].bytes, b"a\rb");
    }

    #[test]
    fn overlong_lines_are_cut_and_flagged_and_the_next_line_is_whole() {
        let long = vec![b'x'; 50];
        let lines = split(10, &[&long, &long, b"\nok\n"]);
        assert_eq!(lines[0].bytes.len(), 10);
        assert!(lines[0].truncated);
        assert_eq!(lines[0].end, 101);
        assert_eq!(
            (lines[1].bytes.as_slice(), lines[1].truncated, lines[1].start),
            (&b"ok"[..], false, 101)
        );
        let exact = split(2, &[b"ab\r\n"]);
        assert_eq!((exact[0].bytes.as_slice(), exact[0].truncated), (&b"ab"[..], false));
    }

    #[test]
    fn an_unterminated_tail_waits() {
        let mut splitter = LineSplitter::new(10, 7);
        let mut lines = 0;
        splitter.push(b"half", |_| lines += 1);
        assert_eq!(lines, 0);
        assert_eq!(splitter.pending_start(), 7);
    }

    proptest! {
        /// However the bytes are chunked, the lines and offsets are the same.
        #[test]
        fn chunking_does_not_matter(data in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let whole = split(16, &[&data]);
            let chunked = split(16, &[&data[..cut], &data[cut..]]);
            prop_assert_eq!(&whole, &chunked);
            let ends: u64 = whole.last().map_or(0, |l| l.end);
            prop_assert_eq!(ends as usize, data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
        }
    }
}
