//! CJK text as the index keeps it since format 6: from each character of a run of adjacent CJK
//! characters, the rest of the run, up to [`GRAM_CHARS`] characters, as a term of a field of its
//! own (`订单创建成功` gives `订单创建成功`, `单创建成功`, … `功`).
//!
//! Before, every CJK character was a term of the message field, and a phrase of them was
//! checked against each candidate's stored message: `订单创建成功`, 249 k hits over 2 GiB, took
//! 445 ms, ten times Elasticsearch. Every substring of a run is the start of one of these
//! terms, so a CJK text of up to [`GRAM_CHARS`] characters is exactly the documents of the terms
//! it prefixes: a walk of the term dictionary and a union of a few posting lists, with no
//! positions and no document read. Bigrams with positions were measured first: positions were
//! a third of a phrase's time, and they left it slower than OpenSearch. A longer text is the
//! conjunction of its pieces, checked against the stored message (`crate::phrase`).
//!
//! The postings are one per CJK character, as a bigram index has; the terms are longer, but
//! log lines repeat their Chinese, so the dictionary stays a small part of the index.

use tantivy::query::{Query, RegexQuery};
use tantivy::schema::Field;
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use crate::tokenizer::is_cjk;

/// The name the CJK field's tokenizer is registered under.
pub const CJK_TOKENIZER_NAME: &str = "sluice_cjk";

/// The longest term, in characters: the longest CJK text answered from the terms alone.
pub const GRAM_CHARS: usize = 8;

/// A message's CJK runs as the terms of the module's documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CjkTokenizer;

impl Tokenizer for CjkTokenizer {
    type TokenStream<'a> = CjkTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkTokenStream<'a> {
        CjkTokenStream {
            text,
            cursor: 0,
            starts: Vec::new(),
            run_end: 0,
            next: 0,
            position: 0,
            token: Token::default(),
        }
    }
}

pub struct CjkTokenStream<'a> {
    text: &'a str,
    cursor: usize,
    /// Where each character of the current run starts, and where the run ends.
    starts: Vec<usize>,
    run_end: usize,
    /// The run's character whose term comes next.
    next: usize,
    position: usize,
    token: Token,
}

impl CjkTokenStream<'_> {
    /// Moves to the next run of CJK characters; false at the end of the text.
    fn next_run(&mut self) -> bool {
        let bytes = self.text.as_bytes();
        self.starts.clear();
        self.next = 0;
        while self.cursor < bytes.len() {
            let i = self.cursor;
            // ASCII is never CJK: skip it without decoding, most log text is ASCII.
            if bytes[i].is_ascii() {
                if !self.starts.is_empty() {
                    break;
                }
                self.cursor += 1;
                continue;
            }
            let c = self.text[i..].chars().next().expect("the cursor stays on a char boundary");
            if is_cjk(c) {
                self.starts.push(i);
            } else if !self.starts.is_empty() {
                break;
            }
            self.cursor += c.len_utf8();
        }
        self.run_end = self.cursor;
        !self.starts.is_empty()
    }
}

impl TokenStream for CjkTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next >= self.starts.len() && !self.next_run() {
            return false;
        }
        let from = self.starts[self.next];
        let to = self.starts.get(self.next + GRAM_CHARS).copied().unwrap_or(self.run_end);
        self.next += 1;
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.position;
        self.position += 1;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Whether [`run_query`] finds exactly the documents holding `run`, with no check.
pub fn is_exact(run: &str) -> bool {
    run.chars().count() <= GRAM_CHARS
}

/// The documents whose CJK field holds `run` (adjacent CJK characters) somewhere: exactly when
/// [`is_exact`], else those holding each of its pieces of [`GRAM_CHARS`] characters.
pub fn run_query(field: Field, run: &str) -> Vec<Box<dyn Query>> {
    let chars: Vec<char> = run.chars().collect();
    chars
        .chunks(GRAM_CHARS)
        .map(|piece| {
            let prefix: String = piece.iter().collect();
            Box::new(
                RegexQuery::from_pattern(&format!("{}.*", regex::escape(&prefix)), field)
                    .expect("escaped text and .* make a valid pattern"),
            ) as Box<dyn Query>
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tantivy::collector::Count;
    use tantivy::query::{BooleanQuery, Occur};
    use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
    use tantivy::{Index, doc};

    use super::*;

    fn tokens(text: &str) -> Vec<(usize, String)> {
        let mut tokenizer = CjkTokenizer;
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token();
            assert_eq!(&text[t.offset_from..t.offset_to], t.text);
            out.push((t.position, t.text.clone()));
        }
        out
    }

    #[test]
    fn each_character_starts_a_term_of_the_rest_of_its_run() {
        let t = |p: usize, s: &str| (p, s.to_owned());
        assert_eq!(
            tokens("订单创建 id=7 失败,好"),
            [
                t(0, "订单创建"),
                t(1, "单创建"),
                t(2, "创建"),
                t(3, "建"),
                t(4, "失败"),
                t(5, "败"),
                t(6, "好")
            ]
        );
        assert!(tokens("plain ascii, ÉTÉ").is_empty());
        assert_eq!(tokens("耗时24352ms"), [t(0, "耗时"), t(1, "时")]);
        let long = "一二三四五六七八九十";
        let terms: Vec<String> = tokens(long).into_iter().map(|(_, t)| t).collect();
        assert_eq!(terms[0], "一二三四五六七八");
        assert_eq!(terms[2], "三四五六七八九十");
        assert_eq!(terms[9], "十");
    }

    fn count(messages: &[&str], run: &str) -> usize {
        let mut b = Schema::builder();
        let options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(CJK_TOKENIZER_NAME)
                .set_fieldnorms(false)
                .set_index_option(IndexRecordOption::Basic),
        );
        let field = b.add_text_field("cjk", options);
        let index = Index::create_in_ram(b.build());
        index.tokenizers().register(CJK_TOKENIZER_NAME, CjkTokenizer);
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for m in messages {
            writer.add_document(doc!(field => *m)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let pieces = run_query(field, run);
        assert_eq!(pieces.len() == 1, is_exact(run));
        let query = BooleanQuery::new(pieces.into_iter().map(|q| (Occur::Must, q)).collect());
        searcher.search(&query, &Count).unwrap()
    }

    proptest::proptest! {
        /// Whatever the text and the run, a document matches exactly when its text contains
        /// the run, as `grep -F` finds it.
        #[test]
        fn a_run_matches_where_its_text_is_a_substring(
            messages in proptest::collection::vec("[订单创建成功 a,]{0,16}", 1..12),
            run in "[订单创建成功]{1,8}",
        ) {
            let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
            let expected = messages.iter().filter(|m| m.contains(run.as_str())).count();
            proptest::prop_assert_eq!(count(&messages, &run), expected);
        }

        /// A longer text finds every document holding it, and others only beside them.
        #[test]
        fn a_longer_text_finds_a_superset(
            messages in proptest::collection::vec("[一二三 ]{0,30}", 1..12),
            run in "[一二三]{9,14}",
        ) {
            let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
            let expected = messages.iter().filter(|m| m.contains(run.as_str())).count();
            proptest::prop_assert!(count(&messages, &run) >= expected);
        }
    }

    #[test]
    fn a_text_does_not_span_two_runs() {
        let messages = ["订单创 建成功", "订单创,建成功", "订单创建成功", "订单 单创建"];
        assert_eq!(count(&messages, "订单创建成功"), 1);
        assert_eq!(count(&messages, "订单创建"), 1);
        assert_eq!(count(&messages, "单创建"), 2);
        assert_eq!(count(&messages, "创"), 4);
        assert_eq!(count(&messages, "功"), 3);
        assert_eq!(count(&messages, "创建"), 2);
    }
}
