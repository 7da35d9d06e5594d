//! The window of record times the pipeline keeps: from 1970 to 2200. Nanoseconds in an `i64`
//! end in April 2262, and day arithmetic near either end of that range overflows; a time
//! outside the window is a clock or parsing error, never a real log line, and one such record
//! must not stop a sink.

/// 1970-01-01T00:00:00Z.
pub const EARLIEST_NS: i64 = 0;
/// 2200-01-01T00:00:00Z, excluded.
pub const END_NS: i64 = 7_258_118_400_000_000_000;

/// Whether a record may carry the time `ns`.
pub fn in_window(ns: i64) -> bool {
    (EARLIEST_NS..END_NS).contains(&ns)
}

/// The window, for error messages.
pub const WINDOW: &str = "1970-01-01T00:00:00Z..2200-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_ends_in_2200_and_excludes_the_extremes() {
        assert_eq!(END_NS / 1_000_000_000, 7_258_118_400, "2200-01-01 in Unix seconds");
        assert!(in_window(0) && in_window(1_764_496_800_000_000_000) && in_window(END_NS - 1));
        assert!(
            !in_window(-1) && !in_window(END_NS) && !in_window(i64::MIN) && !in_window(i64::MAX)
        );
    }
}
