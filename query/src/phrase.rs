//! Phrases over an index that keeps no positions for words: the documents a narrower query
//! finds (the phrase's words, and its CJK runs), each checked against its stored message by
//! the index's own tokenizer.
//!
//! Positions were a quarter of the index (bench/results/search.json before format 4), and a
//! phrase of words is the only query that needs them. The price is a stored-document read
//! per candidate, which is why a text of CJK characters alone is answered from the CJK
//! field's terms instead (`crate::cjk`). The check is the same rule the highlight uses,
//! so a hit and its marks always agree.

use std::ops::ControlFlow;
use std::sync::Arc;

use tantivy::query::{
    BooleanQuery, EnableScoring, Explanation, Occur, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::store::StoreReader;
use tantivy::tokenizer::{TokenStream, Tokenizer};
use tantivy::{
    DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyDocument, TantivyError, Term,
};

use crate::tokenizer::{SluiceTokenizer, is_cjk, tokens};

/// Tokens with their positions relative to the first.
pub type Phrase = Vec<(usize, String)>;

/// The tokens of `text` with positions relative to the first (empty when it has none).
pub fn relative(text: &str) -> Phrase {
    let toks = tokens(text);
    let first = toks.first().map_or(0, |(p, _)| *p);
    toks.into_iter().map(|(p, t)| (p - first, t)).collect()
}

/// Store blocks a phrase's scorer keeps decompressed: candidates come in document order, so
/// one block serves a run of them and the next is read once.
const CACHED_BLOCKS: usize = 2;

/// Calls `found` with the byte range of each place `message` holds `phrase`, by the rule a
/// positional phrase query follows: each token at its position relative to the first. One
/// pass and no allocation per token, since a phrase's check runs on every candidate.
pub fn find(
    message: &str,
    phrase: &[(usize, String)],
    mut found: impl FnMut(usize, usize) -> ControlFlow<()>,
) {
    let Some((_, head)) = phrase.first() else { return };
    let mut tokenizer = SluiceTokenizer;
    let mut stream = tokenizer.token_stream(message);
    // Matches under way: the first token's position and byte, and the next token to meet.
    let mut partial: Vec<(usize, usize, usize)> = Vec::new();
    while stream.advance() {
        let t = stream.token();
        let mut k = 0;
        while k < partial.len() {
            let (base, next, from) = partial[k];
            let (rel, text) = &phrase[next];
            if t.position < base + rel {
                k += 1;
            } else if t.position == base + rel && t.text == *text {
                if next + 1 < phrase.len() {
                    partial[k].1 += 1;
                    k += 1;
                } else {
                    partial.swap_remove(k);
                    if found(from, t.offset_to).is_break() {
                        return;
                    }
                }
            } else {
                partial.swap_remove(k);
            }
        }
        if t.text == *head {
            if phrase.len() > 1 {
                partial.push((t.position, 1, t.offset_from));
            } else if found(t.offset_from, t.offset_to).is_break() {
                return;
            }
        }
    }
}

/// Documents whose `field` holds `phrase` (at least two tokens) at its relative positions.
#[derive(Debug)]
pub struct PhraseMatch {
    check: Arc<Check>,
    /// Every document holding the phrase, and others: the candidates checked.
    candidates: Box<dyn Query>,
}

/// What a candidate's stored message is checked for.
#[derive(Debug)]
struct Check {
    field: Field,
    phrase: Phrase,
    literal: Option<String>,
}

impl Check {
    /// Whether the stored message of `doc` holds the phrase. A document the store cannot
    /// give back is no match: it is logged, since it means a damaged segment.
    fn holds(&self, store: &StoreReader, doc: DocId) -> bool {
        let stored: TantivyDocument = match store.get(doc) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(doc, error = %e, "cannot read a stored document to check a phrase");
                return false;
            }
        };
        let Some(message) = stored.get_first(self.field).and_then(|v| v.as_str()) else {
            return false;
        };
        if let Some(literal) = &self.literal {
            return message.contains(literal.as_str());
        }
        let mut holds = false;
        find(message, &self.phrase, |_, _| {
            holds = true;
            ControlFlow::Break(())
        });
        holds
    }
}

/// The text a phrase of adjacent CJK characters is, when it is one: each such character is
/// a token and adjacent ones have consecutive positions, so such a phrase holds exactly where
/// its characters stand side by side, and a substring search checks it without tokenizing.
fn cjk_literal(phrase: &[(usize, String)]) -> Option<String> {
    let mut literal = String::new();
    for (i, (rel, text)) in phrase.iter().enumerate() {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if *rel == i && is_cjk(c) => literal.push(c),
            _ => return None,
        }
    }
    Some(literal)
}

/// The documents whose `field` holds every one of `words`.
pub fn all_terms<'a>(field: Field, words: impl IntoIterator<Item = &'a str>) -> BooleanQuery {
    let mut words: Vec<&str> = words.into_iter().collect();
    words.sort_unstable();
    words.dedup();
    BooleanQuery::new(
        words
            .into_iter()
            .map(|w| {
                let term = Term::from_field_text(field, w);
                (
                    Occur::Must,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>,
                )
            })
            .collect(),
    )
}

impl Clone for PhraseMatch {
    fn clone(&self) -> Self {
        Self { check: self.check.clone(), candidates: self.candidates.box_clone() }
    }
}

impl PhraseMatch {
    /// The phrase over `field`, checked on the documents `candidates` finds.
    pub fn new(field: Field, phrase: Phrase, candidates: Box<dyn Query>) -> Self {
        let literal = cjk_literal(&phrase);
        Self { check: Arc::new(Check { field, phrase, literal }), candidates }
    }

    /// The phrase over an index whose `field` holds every token of it as a term: formats
    /// before 6, and phrases of words alone.
    pub fn of_terms(field: Field, phrase: Phrase) -> Self {
        let words = all_terms(field, phrase.iter().map(|(_, t)| t.as_str()));
        Self::new(field, phrase, Box::new(words))
    }
}

impl Query for PhraseMatch {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        // Hits are ordered by time: scores would cost the words' statistics for nothing.
        let words =
            self.candidates.weight(EnableScoring::disabled_from_schema(scoring.schema()))?;
        Ok(Box::new(PhraseWeight { check: self.check.clone(), words }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.candidates.query_terms(visitor);
    }
}

struct PhraseWeight {
    check: Arc<Check>,
    words: Box<dyn Weight>,
}

impl PhraseWeight {
    fn phrase_scorer(&self, reader: &SegmentReader) -> tantivy::Result<PhraseScorer> {
        let mut scorer = PhraseScorer {
            words: self.words.scorer(reader, 1.0)?,
            store: reader.get_store_reader(CACHED_BLOCKS)?,
            check: self.check.clone(),
            doc: TERMINATED,
        };
        scorer.doc = scorer.settle(scorer.words.doc());
        Ok(scorer)
    }
}

impl Weight for PhraseWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(self.phrase_scorer(reader)?))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.phrase_scorer(reader)?;
        if scorer.doc() <= doc && scorer.seek(doc) == doc {
            Ok(Explanation::new("the phrase, checked against the stored message", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!("document {doc} does not hold the phrase")))
        }
    }
}

struct PhraseScorer {
    words: Box<dyn Scorer>,
    store: StoreReader,
    check: Arc<Check>,
    doc: DocId,
}

impl PhraseScorer {
    /// The first match at or after `doc`, where the words' scorer stands.
    fn settle(&mut self, doc: DocId) -> DocId {
        if doc == TERMINATED || self.check.holds(&self.store, doc) {
            doc
        } else {
            self.next_match()
        }
    }

    fn next_match(&mut self) -> DocId {
        loop {
            let doc = self.words.advance();
            if doc == TERMINATED || self.check.holds(&self.store, doc) {
                return doc;
            }
        }
    }
}

impl DocSet for PhraseScorer {
    fn advance(&mut self) -> DocId {
        self.doc = self.next_match();
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        let doc = self.words.seek(target);
        self.doc = self.settle(doc);
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.words.size_hint()
    }
}

impl Scorer for PhraseScorer {
    fn score(&mut self) -> Score {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::Count;
    use tantivy::schema::{Schema, TEXT, TextFieldIndexing, TextOptions};
    use tantivy::{Index, doc};

    use super::*;
    use crate::tokenizer::TOKENIZER_NAME;

    /// An index without positions of `messages`, split over two segments.
    fn index_of(messages: &[String]) -> (Index, Field) {
        let mut b = Schema::builder();
        let options = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER_NAME)
                .set_index_option(IndexRecordOption::Basic),
        );
        let field = b.add_text_field("message", options);
        let other = b.add_text_field("other", TEXT);
        let index = Index::create_in_ram(b.build());
        index.tokenizers().register(TOKENIZER_NAME, SluiceTokenizer);
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for (i, m) in messages.iter().enumerate() {
            writer.add_document(doc!(field => m.as_str(), other => "x")).unwrap();
            if i == messages.len() / 2 {
                writer.commit().unwrap();
            }
        }
        writer.commit().unwrap();
        (index, field)
    }

    /// Counts the messages that hold `phrase`.
    fn count(messages: &[&str], phrase: &str) -> usize {
        let messages: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
        let (index, field) = index_of(&messages);
        let searcher = index.reader().unwrap().searcher();
        let query = PhraseMatch::of_terms(field, relative(phrase));
        let n = searcher.search(&query, &Count).unwrap();
        assert_eq!(n, query.count(&searcher).unwrap(), "count and collect agree");
        n
    }

    proptest::proptest! {
        /// The one-pass matcher agrees with the definition: a token at each relative position.
        #[test]
        fn find_agrees_with_positions(message in "[ab 创建,]{0,24}", query in "[ab 创建]{1,8}|[创建]{1,4}") {
            let phrase = relative(&query);
            proptest::prop_assume!(!phrase.is_empty());
            let at: std::collections::HashMap<usize, String> = tokens(&message).into_iter().collect();
            let expected = at
                .keys()
                .filter(|base| phrase.iter().all(|(rel, t)| at.get(&(*base + rel)) == Some(t)))
                .count();
            let mut found = 0;
            find(&message, &phrase, |_, _| {
                found += 1;
                ControlFlow::Continue(())
            });
            proptest::prop_assert_eq!(found, expected);
            if let Some(literal) = cjk_literal(&phrase) {
                proptest::prop_assert_eq!(message.contains(&literal), expected > 0);
            }
        }
    }

    #[test]
    fn adjacent_words_only() {
        let messages = [
            "db timeout after 3s",
            "timeout db",
            "db slow, then timeout",
            "DB Timeout again",
            "db-timeout",
            "nothing here",
        ];
        assert_eq!(count(&messages, "db timeout"), 3);
        assert_eq!(count(&messages, "timeout db"), 1);
    }

    #[test]
    fn cjk_runs_match_where_grep_would() {
        let messages = [
            "错误: 订单创建失败 id=1",
            "创建 失败",
            "订单创建成功",
            "失败创建",
            "创建失败创建失败",
        ];
        assert_eq!(count(&messages, "创建失败"), 2);
        assert_eq!(count(&messages, "订单创建"), 2);
        assert_eq!(count(&messages, "建失"), 2);
    }

    #[test]
    fn repeated_tokens_and_later_starts() {
        let messages = ["a a b", "a b a", "b a a", "a x a b"];
        assert_eq!(count(&messages, "a a"), 2);
        assert_eq!(count(&messages, "a b"), 3);
        assert_eq!(count(&messages, "a a b"), 1);
    }

    #[test]
    fn inside_a_conjunction() {
        let messages: Vec<String> = (0..500)
            .map(|i| {
                if i % 7 == 0 {
                    format!("pay failed code {i}")
                } else {
                    format!("failed pay code {i}")
                }
            })
            .collect();
        let (index, field) = index_of(&messages);
        let searcher = index.reader().unwrap().searcher();
        let code = Term::from_field_text(field, "code");
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(code, IndexRecordOption::Basic)) as Box<dyn Query>,
            ),
            (Occur::Must, Box::new(PhraseMatch::of_terms(field, relative("pay failed")))),
        ]);
        assert_eq!(searcher.search(&query, &Count).unwrap(), 72);
        let not = BooleanQuery::new(vec![
            (Occur::Must, Box::new(tantivy::query::AllQuery) as Box<dyn Query>),
            (Occur::MustNot, Box::new(PhraseMatch::of_terms(field, relative("pay failed")))),
        ]);
        assert_eq!(searcher.search(&not, &Count).unwrap(), 428);
    }
}
