//! What the agent altered in a record, so a reader can tell the stored text from the original.

/// The line was not valid UTF-8; invalid sequences were replaced with U+FFFD.
pub const INVALID_UTF8: u32 = 1;
/// The line was longer than the agent's cap; the stored message is its first bytes.
pub const TRUNCATED: u32 = 1 << 1;
/// The file looked like CRI output but this line did not parse as CRI; it is kept whole.
pub const CRI_MALFORMED: u32 = 1 << 2;
/// The line held NUL bytes, which were removed.
pub const NUL_REMOVED: u32 = 1 << 3;
/// The agent's redaction rules masked part of the message.
pub const REDACTED: u32 = 1 << 4;
/// The file looked like Docker json-file output but this line did not parse; kept whole.
pub const DOCKER_MALFORMED: u32 = 1 << 5;
/// The record's final CRI or Docker part never came (`P` without `F`): it was sent as it
/// was after a while without more parts, or when its file was let go.
pub const PARTIAL: u32 = 1 << 6;
/// The record's own time was outside [`crate::time`]'s window; it carries the time it was
/// received instead.
pub const TIME_REPLACED: u32 = 1 << 7;
/// A plain-file line that the agent read for its time started with none it knows: it has the
/// time of the line before it in its file (a line before any stamp has the read time, unflagged).
pub const TIME_NOT_FOUND: u32 = 1 << 8;

/// Names of the bits set in `flags`, in bit order, for display and metrics labels.
pub fn names(flags: u32) -> Vec<&'static str> {
    [
        (INVALID_UTF8, "invalid_utf8"),
        (TRUNCATED, "truncated"),
        (CRI_MALFORMED, "cri_malformed"),
        (NUL_REMOVED, "nul_removed"),
        (REDACTED, "redacted"),
        (DOCKER_MALFORMED, "docker_malformed"),
        (PARTIAL, "partial"),
        (TIME_REPLACED, "time_replaced"),
        (TIME_NOT_FOUND, "time_not_found"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_set_bits_in_order() {
        assert_eq!(names(0), Vec::<&str>::new());
        assert_eq!(names(TRUNCATED | INVALID_UTF8), vec!["invalid_utf8", "truncated"]);
        assert_eq!(names(NUL_REMOVED), vec!["nul_removed"]);
    }
}
