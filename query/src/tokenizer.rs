//! How a message is cut into tokens: the rule every query follows.
//!
//! Every CJK character is a token of its own and every run of other alphanumeric characters
//! is one token, lowercased; everything else separates tokens. Positions leave a gap of one
//! wherever separators stood, so a phrase of adjacent CJK characters (`创建失败`) does not
//! match text where they are split (`创建 失败`): a CJK substring matches exactly where
//! `grep -F` would. Tantivy's own tokenizers either split CJK text into nothing useful
//! (`simple`) or need a dictionary (jieba), which misses substrings across word boundaries.
//!
//! The index keeps the two kinds apart (format 6): the message field indexes the words
//! ([`WordTokenizer`]), and the CJK characters go to a field of their own as bigrams with
//! positions (`crate::cjk`). [`SluiceTokenizer`] is the rule itself, which phrases, highlights
//! and in-memory matches apply to a message's text.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the message field's tokenizer ([`WordTokenizer`]) is registered under.
pub const TOKENIZER_NAME: &str = "sluice";

/// Longer alphanumeric runs (base64 blobs, hex dumps) are not indexed: like Lucene's
/// standard tokenizer, we cap a token at 255 bytes.
pub const MAX_TOKEN_BYTES: usize = 255;

/// Whether a character is indexed one by one: Han ideographs, kana and Hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF     // Hangul Jamo
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3100..=0x312F   // Bopomofo
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0x20000..=0x3134F // CJK extensions B to G
    )
}

/// Every token of a message: CJK characters and words.
#[derive(Debug, Clone, Copy, Default)]
pub struct SluiceTokenizer;

impl Tokenizer for SluiceTokenizer {
    type TokenStream<'a> = SluiceTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SluiceTokenStream<'a> {
        SluiceTokenStream::new(text, true)
    }
}

/// The words of a message, what its field indexes: CJK characters only separate them.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordTokenizer;

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = SluiceTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SluiceTokenStream<'a> {
        SluiceTokenStream::new(text, false)
    }
}

pub struct SluiceTokenStream<'a> {
    text: &'a str,
    cursor: usize,
    next_position: usize,
    /// Whether CJK characters are tokens, or only separate words.
    with_cjk: bool,
    token: Token,
}

impl<'a> SluiceTokenStream<'a> {
    fn new(text: &'a str, with_cjk: bool) -> Self {
        Self { text, cursor: 0, next_position: 0, with_cjk, token: Token::default() }
    }

    /// Finds the next token's byte range, noting whether separators came before it. Walks
    /// bytes, decoding a char only off the ASCII path: most log text is ASCII.
    fn next_span(&mut self) -> Option<(usize, usize, bool)> {
        let bytes = self.text.as_bytes();
        let mut i = self.cursor;
        let mut separated = false;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_alphanumeric() {
                return Some(self.word_from(i, separated));
            }
            if b.is_ascii() {
                separated = true;
                i += 1;
                continue;
            }
            let c = self.char_at(i);
            if is_cjk(c) && self.with_cjk {
                self.cursor = i + c.len_utf8();
                return Some((i, self.cursor, separated));
            }
            if c.is_alphanumeric() && !is_cjk(c) {
                return Some(self.word_from(i, separated));
            }
            separated = true;
            i += c.len_utf8();
        }
        self.cursor = bytes.len();
        None
    }

    /// The run of non-CJK alphanumeric characters starting at `start`.
    fn word_from(&mut self, start: usize, separated: bool) -> (usize, usize, bool) {
        let bytes = self.text.as_bytes();
        let mut end = start;
        while end < bytes.len() {
            let b = bytes[end];
            if b.is_ascii() {
                if !b.is_ascii_alphanumeric() {
                    break;
                }
                end += 1;
                continue;
            }
            let c = self.char_at(end);
            if is_cjk(c) || !c.is_alphanumeric() {
                break;
            }
            end += c.len_utf8();
        }
        self.cursor = end;
        (start, end, separated)
    }

    fn char_at(&self, i: usize) -> char {
        self.text[i..].chars().next().expect("the cursor stays on a char boundary")
    }
}

impl TokenStream for SluiceTokenStream<'_> {
    fn advance(&mut self) -> bool {
        loop {
            let Some((start, end, separated)) = self.next_span() else {
                return false;
            };
            let position = self.next_position + usize::from(separated && self.next_position > 0);
            self.next_position = position + 1;
            if end - start > MAX_TOKEN_BYTES {
                continue;
            }
            let word = &self.text[start..end];
            self.token.text.clear();
            if word.is_ascii() {
                self.token.text.push_str(word);
                self.token.text.make_ascii_lowercase();
            } else {
                self.token.text.extend(word.chars().flat_map(char::to_lowercase));
            }
            self.token.offset_from = start;
            self.token.offset_to = end;
            self.token.position = position;
            self.token.position_length = 1;
            return true;
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The tokens of `text` with their positions, as the index sees them.
pub fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut tokenizer = SluiceTokenizer;
    let mut stream = tokenizer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push((t.position, t.text.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn cjk_characters_are_single_tokens_and_words_are_lowercased() {
        assert_eq!(
            texts("订单创建失败 orderId=935351532923 DB-Timeout"),
            ["订", "单", "创", "建", "失", "败", "orderid", "935351532923", "db", "timeout"]
        );
        assert_eq!(texts("耗时24352ms"), ["耗", "时", "24352ms"]);
        assert_eq!(texts("ÉTÉ café"), ["été", "café"]);
    }

    #[test]
    fn the_word_tokenizer_leaves_cjk_characters_out() {
        let mut tokenizer = WordTokenizer;
        let mut stream = tokenizer.token_stream("订单创建失败 orderId=935 耗时24352ms ÉTÉ");
        let mut words = Vec::new();
        while stream.advance() {
            words.push(stream.token().text.clone());
        }
        assert_eq!(words, ["orderid", "935", "24352ms", "été"]);
    }

    #[test]
    fn separators_leave_a_position_gap() {
        assert_eq!(
            tokens("创建失败"),
            [(0, "创".into()), (1, "建".into()), (2, "失".into()), (3, "败".into())]
        );
        assert_eq!(tokens("创建 失败")[2].0, 3);
        assert_eq!(tokens("  db,,, timeout"), [(0, "db".into()), (2, "timeout".into())]);
    }

    #[test]
    fn overlong_runs_are_skipped_but_keep_their_position() {
        let blob = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(tokens(&format!("x {blob} y")), [(0, "x".into()), (4, "y".into())]);
    }

    #[test]
    fn nothing_to_index() {
        assert!(tokens("").is_empty());
        assert!(tokens(" -- ,, ").is_empty());
    }

    proptest! {
        #[test]
        fn offsets_point_at_the_token_and_positions_grow(text in "\\PC{0,80}") {
            let mut tokenizer = SluiceTokenizer;
            let mut stream = tokenizer.token_stream(&text);
            let mut last = None;
            while stream.advance() {
                let t = stream.token();
                let original = &text[t.offset_from..t.offset_to];
                prop_assert_eq!(original.chars().flat_map(char::to_lowercase).collect::<String>(), t.text.clone());
                if let Some(previous) = last {
                    prop_assert!(t.position > previous);
                }
                last = Some(t.position);
            }
        }

        /// The byte-walking tokenizer agrees with the plain char-by-char definition.
        #[test]
        fn matches_the_char_by_char_definition(text in "[a-zA-Z0-9 ._=\\-订单创建失败é日本語한국ß\u{0663}]{0,60}") {
            let mut expected = Vec::new();
            let mut word = String::new();
            for c in text.chars() {
                if c.is_alphanumeric() && !is_cjk(c) {
                    word.push(c);
                    continue;
                }
                if !word.is_empty() {
                    expected.push(std::mem::take(&mut word).to_lowercase());
                }
                if is_cjk(c) {
                    expected.push(c.to_string());
                }
            }
            if !word.is_empty() {
                expected.push(word.to_lowercase());
            }
            expected.retain(|t| t.len() <= MAX_TOKEN_BYTES);
            prop_assert_eq!(texts(&text), expected);
        }
    }
}
