//! Finding the level in a log line: the first of its leading words that is an upper-case level
//! (`INFO`, `WARN`), a bracketed one (`[error]`), or a `level=` pair.
//!
//! Only the first words are looked at, and lower-case words only in brackets or `level=`,
//! so "connection error" in the text of an INFO line is not taken for a level.

use sluice_proto::level::canonical;

const WORDS_LOOKED_AT: usize = 8;

/// Works on bytes: every character it trims or compares is ASCII, and `str`'s char-wise
/// trimming was most of the cost of detection, itself a tenth of the reader's CPU.
pub fn detect(message: &str) -> Option<&'static str> {
    let words = message.as_bytes().split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
    for word in words.take(WORDS_LOOKED_AT) {
        if let Some(value) = word.strip_prefix(b"level=").or_else(|| word.strip_prefix(b"lvl=")) {
            return canonical_bytes(trim(value, |b| matches!(b, b'"' | b',')));
        }
        let bracketed = word.first() == Some(&b'[') && word.last() == Some(&b']');
        let bare = trim(word, |b| {
            matches!(b, b'[' | b']' | b'(' | b')' | b':' | b'|' | b'<' | b'>' | b',')
        });
        if bare.len() >= 3
            && (bracketed || bare.iter().all(u8::is_ascii_uppercase))
            && let Some(level) = canonical_bytes(bare)
        {
            return Some(level);
        }
    }
    None
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

/// Level words are ASCII; anything else is not one.
fn canonical_bytes(word: &[u8]) -> Option<&'static str> {
    canonical(std::str::from_utf8(word).ok()?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        #[test]
        fn agrees_with_the_str_version(
            words in prop::collection::vec(
                prop_oneof![
                    Just("INFO".to_owned()), Just("[error]".to_owned()), Just("level=\"warn\",".to_owned()),
                    Just("(WARNING):".to_owned()), Just("[]".to_owned()), Just("订单".to_owned()),
                    Just("lvl=".to_owned()), Just("|DEBUG|".to_owned()), "[a-zA-Z\\[\\]:,]{0,9}",
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
