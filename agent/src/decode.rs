//! Bytes of a line into the message text, flagging every change made on the way.

use std::borrow::Cow;

use sluice_proto::flags;

/// Decodes a line's bytes; invalid UTF-8 becomes U+FFFD and NUL bytes are dropped, each
/// flagged. A line cut at the cap loses a character split by the cut, without a flag for it.
/// Clean text, nearly every line, is lent back as it is.
pub fn decode(bytes: Cow<'_, [u8]>, truncated: bool) -> (Cow<'_, str>, u32) {
    if let Cow::Borrowed(lent) = bytes
        && !truncated
        && memchr::memchr(0, lent).is_none()
        && let Ok(text) = simdutf8::basic::from_utf8(lent)
    {
        return (Cow::Borrowed(text), 0);
    }
    let mut bytes = bytes.into_owned();
    let mut flag_bits = 0;
    if truncated {
        flag_bits |= flags::TRUNCATED;
        drop_split_character(&mut bytes);
    }
    if bytes.contains(&0) {
        bytes.retain(|&b| b != 0);
        flag_bits |= flags::NUL_REMOVED;
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            flag_bits |= flags::INVALID_UTF8;
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    (Cow::Owned(text), flag_bits)
}

fn drop_split_character(bytes: &mut Vec<u8>) {
    let from = bytes.len().saturating_sub(3);
    let Some(lead) = (from..bytes.len()).rev().find(|&i| bytes[i] & 0xC0 != 0x80) else {
        return;
    };
    let width = match bytes[lead] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        b if b >= 0xC0 => 2,
        _ => 1,
    };
    if lead + width > bytes.len() {
        bytes.truncate(lead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_unflagged() {
        let (text, flag_bits) = decode(Cow::Borrowed("订单 ok".as_bytes()), false);
        assert_eq!((&*text, flag_bits), ("订单 ok", 0));
        assert!(matches!(text, Cow::Borrowed(_)), "clean text is lent, not copied");
        assert_eq!(decode(Cow::Owned(b"ok".to_vec()), false), (Cow::Borrowed("ok"), 0));
    }

    #[test]
    fn invalid_utf8_and_nul_are_flagged() {
        assert_eq!(
            decode(Cow::Borrowed(b"a\xffb"), false),
            (Cow::Borrowed("a\u{fffd}b"), flags::INVALID_UTF8)
        );
        assert_eq!(
            decode(Cow::Borrowed(b"a\0b\0"), false),
            (Cow::Borrowed("ab"), flags::NUL_REMOVED)
        );
    }

    #[test]
    fn a_cut_through_a_character_is_not_invalid_utf8() {
        let cut = &"订单".as_bytes()[..5];
        assert_eq!(decode(Cow::Borrowed(cut), true), (Cow::Borrowed("订"), flags::TRUNCATED));
    }
}
