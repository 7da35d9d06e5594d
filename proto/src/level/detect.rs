//! Finding the level in a log line: the first of its leading words that is an upper-case level
//! (`INFO`, `WARN`), a bracketed one (`[error]`), or a `level=` pair.
//!
//! Only the first words are looked at, and lower-case words only in brackets or `level=`,
//! so "connection error" in the text of an INFO line is not taken for a level.

use super::canonical_bytes;

const WORDS_LOOKED_AT: usize = 8;

/// Works on bytes: every character it trims or compares is ASCII, and `str`'s char-wise
/// trimming was most of the cost of detection, itself a tenth of the reader's CPU. A word
/// that starts with a digit (the times, dates, pids and counts most lines begin with) is
/// passed over at once, and word ends are found eight bytes at a time: 72 → 48 ns a line on
/// the shared samples (`cargo bench --bench read_path`), where lines hold their level within
/// 45 bytes on average.
pub fn detect(message: &str) -> Option<&'static str> {
    for word in words(message.as_bytes()).take(WORDS_LOOKED_AT) {
        // None of the shapes below starts with a digit: trimming keeps it, it is not upper case.
        if word[0].is_ascii_digit() {
            continue;
        }
        if let Some(value) = word.strip_prefix(b"level=").or_else(|| word.strip_prefix(b"lvl=")) {
            return canonical_bytes(trim(value, |b| matches!(b, b'"' | b',')));
        }
        let bracketed = word.first() == Some(&b'[') && word.last() == Some(&b']');
        let bare = trim(word, |b| {
            matches!(b, b'[' | b']' | b'(' | b')' | b':' | b'|' | b'<' | b'>' | b',')
        });
        // The longest level word is eight letters (`critical`).
        if (3..=8).contains(&bare.len())
            && (bracketed || bare.iter().all(u8::is_ascii_uppercase))
            && let Some(level) = canonical_bytes(bare)
        {
            return Some(level);
        }
    }
    None
}

/// The words of a line, cut at ASCII whitespace as [`u8::is_ascii_whitespace`] does.
fn words(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let end = start + next_space(&rest[start..]);
        let word = &rest[start..end];
        rest = &rest[end..];
        Some(word)
    })
}

/// Where the first ASCII whitespace in `bytes` is, or their length. Eight bytes at a time
/// (SWAR): bytes up to `0x20` are found by one addition per eight, and only those are
/// tested one by one. Testing every byte was most of the cost of detection.
fn next_space(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let mut blocks = bytes.chunks_exact(8);
    let mut at = 0;
    for block in blocks.by_ref() {
        let x = u64::from_le_bytes(block.try_into().expect("eight bytes"));
        // Adding 0x5F to the low seven bits of a byte sets its top bit when the byte is
        // 0x21 or more; nothing carries into the next byte.
        let mut low = !((x & !HIGH) + ONES * 0x5F) & !x & HIGH;
        while low != 0 {
            let i = low.trailing_zeros() as usize / 8;
            if block[i].is_ascii_whitespace() {
                return at + i;
            }
            low &= low - 1;
        }
        at += 8;
    }
    let rest = blocks.remainder();
    at + rest.iter().position(u8::is_ascii_whitespace).unwrap_or(rest.len())
}

fn trim(mut word: &[u8], strip: impl Fn(u8) -> bool) -> &[u8] {
    while let [first, rest @ ..] = word
        && strip(*first)
    {
        word = rest;
    }
    while let [rest @ .., last] = word
        && strip(*last)
    {
        word = rest;
    }
    word
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::canonical;

    use super::*;

    /// The `str` version `detect` replaced, as the reference it must agree with.
    fn reference(message: &str) -> Option<&'static str> {
        for word in message.split_ascii_whitespace().take(WORDS_LOOKED_AT) {
            if let Some(value) = word.strip_prefix("level=").or_else(|| word.strip_prefix("lvl=")) {
                return canonical(value.trim_matches(|c: char| c == '"' || c == ','));
            }
            let bracketed = word.starts_with('[') && word.ends_with(']');
            let bare = word
                .trim_matches(|c| matches!(c, '[' | ']' | '(' | ')' | ':' | '|' | '<' | '>' | ','));
            if bare.len() >= 3
                && (bracketed || bare.bytes().all(|b| b.is_ascii_uppercase()))
                && let Some(level) = canonical(bare)
            {
                return Some(level);
            }
        }
        None
    }

    proptest! {
        /// Words are what splitting at whitespace finds, whatever the bytes.
        #[test]
        fn words_are_the_split_words(
            bytes in prop::collection::vec(
                prop_oneof![Just(b' '), Just(b'\t'), Just(b'\x0B'), Just(b'\x0C'), Just(b'\r'), Just(b'a'), any::<u8>()],
                0..100,
            )
        ) {
            let split: Vec<&[u8]> =
                bytes.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty()).collect();
            prop_assert_eq!(words(&bytes).collect::<Vec<_>>(), split);
        }

        #[test]
        fn agrees_with_the_str_version(
            words in prop::collection::vec(
                prop_oneof![
                    Just("INFO".to_owned()), Just("[error]".to_owned()), Just("level=\"warn\",".to_owned()),
                    Just("(WARNING):".to_owned()), Just("[]".to_owned()), Just("订单".to_owned()),
                    Just("lvl=".to_owned()), Just("|DEBUG|".to_owned()), "[a-zA-Z\\[\\]:,]{0,9}",
                    Just("10:00:00.002".to_owned()), "[0-9][0-9A-Z:.\\]-]{0,9}",
                ],
                0..12,
            ),
            spaces in prop::collection::vec(prop_oneof![Just(" "), Just("  "), Just("\t")], 12),
        ) {
            let message: String = words.iter().zip(&spaces).map(|(w, s)| format!("{w}{s}")).collect();
            prop_assert_eq!(detect(&message), reference(&message), "{:?}", message);
        }
    }

    #[test]
    fn finds_common_shapes() {
        assert_eq!(
            detect("2026-11-23 10:00:00.004 INFO  [order-service] 订单创建成功"),
            Some("info")
        );
        assert_eq!(detect("2015-07-29 17:41:44,747 - WARN  [SendWorker] leaving"), Some("warn"));
        assert_eq!(detect("[Sun Dec 04 04:47:44 2005] [error] mod_jk child"), Some("error"));
        assert_eq!(detect("081109 203615 148 INFO dfs.DataNode: x"), Some("info"));
        assert_eq!(detect("ts=1 level=error msg=boom"), Some("error"));
        assert_eq!(detect("E1123 FATAL: x"), Some("fatal"));
    }

    #[test]
    fn ignores_words_in_the_text() {
        assert_eq!(detect("connection error while reading"), None);
        assert_eq!(detect("java.lang.NullPointerException: 用户信息为空"), None);
        assert_eq!(detect("\tat com.zto.Foo.bar(Foo.java:12)"), None);
        assert_eq!(detect(""), None);
    }
}
