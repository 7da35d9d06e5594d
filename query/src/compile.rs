//! Turns a parsed [`Expr`] into a tantivy query over the log schema.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use crate::QueryError;
use crate::cjk;
use crate::phrase::{PhraseMatch, relative};
use crate::schema::{LogSchema, NumericKind};
use crate::syntax::Expr;
use crate::tokenizer::{MAX_TOKEN_BYTES, is_cjk};

/// Compiles `expr`; `None` (the empty query) matches every record.
pub fn compile(schema: &LogSchema, expr: Option<&Expr>) -> Result<Box<dyn Query>, QueryError> {
    match expr {
        None => Ok(Box::new(AllQuery)),
        Some(expr) => compile_expr(schema, expr),
    }
}

fn compile_expr(schema: &LogSchema, expr: &Expr) -> Result<Box<dyn Query>, QueryError> {
    Ok(match expr {
        Expr::Text(text) | Expr::Phrase(text) => message_query(schema, text)?,
        Expr::Field { field, value } if field == "id" => {
            let id = value
                .parse::<sluice_proto::RecordId>()
                .map_err(|e| QueryError::Syntax(e.to_string()))?;
            Box::new(schema.id_query(&id))
        }
        Expr::Field { field, value } if field == "source" => {
            let source = u64::from_str_radix(value, 16).map_err(|_| {
                QueryError::Syntax(format!("source:{value} is not a 16-digit hex source key"))
            })?;
            Box::new(TermQuery::new(
                Term::from_field_text(schema.source, &crate::schema::source_term(source)),
                IndexRecordOption::Basic,
            ))
        }
        Expr::Wildcard { field, pattern } => {
            let (handle, pattern) = keyword_term(schema, field, pattern)?;
            glob_query(handle, &pattern)?
        }
        Expr::Range { field, lower, upper } => {
            let (handle, kind) = schema.numeric_field(field).ok_or_else(|| {
                QueryError::Syntax(format!("{field}: has no order; ranges apply to ts and offset"))
            })?;
            let term = |v: &String| -> Result<Term, QueryError> {
                Ok(match kind {
                    NumericKind::Time => Term::from_field_i64(
                        handle,
                        crate::time::parse_time("ts", v)
                            .map_err(|e| QueryError::Syntax(e.to_string()))?,
                    ),
                    NumericKind::Unsigned => Term::from_field_u64(
                        handle,
                        v.parse().map_err(|_| {
                            QueryError::Syntax(format!("{field}: {v:?} is not a whole number"))
                        })?,
                    ),
                })
            };
            let bound = |b: &Bound<String>| -> Result<Bound<Term>, QueryError> {
                Ok(match b {
                    Bound::Included(v) => Bound::Included(term(v)?),
                    Bound::Excluded(v) => Bound::Excluded(term(v)?),
                    Bound::Unbounded => Bound::Unbounded,
                })
            };
            match (bound(lower)?, bound(upper)?) {
                // Every record has a time and an offset; tantivy panics on a range open at
                // both ends.
                (Bound::Unbounded, Bound::Unbounded) => Box::new(AllQuery),
                (lower, upper) => Box::new(RangeQuery::new(lower, upper)),
            }
        }
        Expr::Field { field, value } => {
            let (handle, value) = keyword_term(schema, field, value)?;
            Box::new(TermQuery::new(
                Term::from_field_text(handle, &value),
                IndexRecordOption::Basic,
            ))
        }
        Expr::And(items) => {
            let mut clauses = Vec::with_capacity(items.len() + 1);
            for item in items {
                match item {
                    Expr::Not(inner) => {
                        clauses.push((Occur::MustNot, compile_expr(schema, inner)?))
                    }
                    other => clauses.push((Occur::Must, compile_expr(schema, other)?)),
                }
            }
            if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Expr::Or(items) => Box::new(BooleanQuery::new(
            items
                .iter()
                .map(|item| Ok((Occur::Should, compile_expr(schema, item)?)))
                .collect::<Result<_, QueryError>>()?,
        )),
        Expr::Not(inner) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, compile_expr(schema, inner)?),
        ])),
    })
}

/// The keyword field a `field:value` filter (or glob) reads, and the term it looks for: levels
/// by their canonical name, a label as `key=value`.
fn keyword_term(
    schema: &LogSchema,
    field: &str,
    value: &str,
) -> Result<(Field, String), QueryError> {
    if let Some(key) = crate::schema::label_key(field) {
        return Ok((schema.labels, format!("{key}={value}")));
    }
    let handle = schema.keyword_field(field).ok_or_else(|| {
        QueryError::Syntax(format!("{field}: is not a keyword field; globs and values apply to cluster, namespace, pod, pod_uid, container, node, stream, level, file, owner and labels.<key>"))
    })?;
    let value = match field {
        "level" if !value.contains(['*', '?']) => sluice_proto::level::canonical(value)
            .map_or_else(|| value.to_lowercase(), str::to_owned),
        "level" => value.to_lowercase(),
        _ => value.to_owned(),
    };
    Ok((handle, value))
}

/// A glob (`*` any run, `?` any one character) over the terms of a keyword field.
pub fn glob_query(field: Field, glob: &str) -> Result<Box<dyn Query>, QueryError> {
    let mut regex = String::with_capacity(glob.len() * 2);
    for c in glob.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            c => regex.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    let query = RegexQuery::from_pattern(&regex, field)
        .map_err(|e| QueryError::Syntax(format!("glob {glob:?}: {e}")))?;
    Ok(Box::new(query))
}

/// One word is a term query; several tokens are the phrase of them at the positions the
/// tokenizer gave, so CJK runs and `db-timeout` match only adjacent text.
///
/// A text of CJK characters alone, up to [`cjk::GRAM_CHARS`] of them, is answered from the CJK
/// field's terms (`crate::cjk`); otherwise the words and the runs find the candidates, and each
/// is checked against its stored message (see [`PhraseMatch`]). Either is joined with the
/// query of formats before 6, whose message terms hold every CJK character: a segment written
/// by one format finds nothing through the other's terms, so the union is exact wherever old
/// and new records stand, and costs a dictionary lookup where there are none.
fn message_query(schema: &LogSchema, text: &str) -> Result<Box<dyn Query>, QueryError> {
    let tokens = relative(text);
    if tokens.is_empty() {
        return Err(
            if text.split(|c: char| !c.is_alphanumeric()).any(|w| w.len() > MAX_TOKEN_BYTES) {
                QueryError::Syntax(format!(
                    "{:?}…: a word longer than {MAX_TOKEN_BYTES} bytes is not indexed; search for a shorter part of the line",
                    text.chars().take(40).collect::<String>()
                ))
            } else {
                QueryError::Syntax(format!(
                    "{text:?} has no letters, digits or CJK characters to search for"
                ))
            },
        );
    }
    let term = |t: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(schema.message, t), IndexRecordOption::Basic))
    };
    let (runs, words) = cjk_runs(&tokens);
    let before_6: Box<dyn Query> = match tokens.len() {
        1 => term(&tokens[0].1),
        _ => Box::new(PhraseMatch::of_terms(schema.message, tokens.clone())),
    };
    if runs.is_empty() {
        return Ok(before_6);
    }
    let current: Box<dyn Query> = if words.is_empty() && runs.len() == 1 && cjk::is_exact(&runs[0])
    {
        cjk::run_query(schema.cjk, &runs[0]).remove(0)
    } else {
        let mut candidates: Vec<(Occur, Box<dyn Query>)> = runs
            .iter()
            .flat_map(|run| cjk::run_query(schema.cjk, run))
            .map(|q| (Occur::Must, q))
            .collect();
        candidates.extend(words.into_iter().map(|w| (Occur::Must, term(w))));
        Box::new(PhraseMatch::new(schema.message, tokens, Box::new(BooleanQuery::new(candidates))))
    };
    Ok(Box::new(BooleanQuery::new(vec![(Occur::Should, current), (Occur::Should, before_6)])))
}

/// A phrase's runs of adjacent CJK characters, and its other words.
fn cjk_runs(phrase: &[(usize, String)]) -> (Vec<String>, Vec<&str>) {
    let mut runs: Vec<String> = Vec::new();
    let mut words = Vec::new();
    let mut last_cjk = None;
    for (position, token) in phrase {
        let mut chars = token.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if is_cjk(c) => {
                match (last_cjk, runs.last_mut()) {
                    (Some(p), Some(run)) if p + 1 == *position => run.push(c),
                    _ => runs.push(c.to_string()),
                }
                last_cjk = Some(*position);
            }
            _ => {
                words.push(token.as_str());
                last_cjk = None;
            }
        }
    }
    (runs, words)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::syntax::{MAX_NESTING, parse};

    fn depth(expr: &Expr) -> usize {
        match expr {
            Expr::Not(inner) => 1 + depth(inner),
            Expr::And(items) | Expr::Or(items) => items.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Pieces users and attackers put in the box, joined at random.
    fn query() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("NOT ".to_owned()),
            Just("-".to_owned()),
            Just(" AND ".to_owned()),
            Just(" OR ".to_owned()),
            Just("\"".to_owned()),
            Just("ts:[* TO *]".to_owned()),
            Just("offset:>".to_owned()),
            Just("ts:<2026-11-30T10:00:00Z".to_owned()),
            Just("pod:pay-*".to_owned()),
            Just("level:".to_owned()),
            Just("订单".to_owned()),
            "[a-z0-9:=*?{}\\[\\] .-]{0,12}",
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..80).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever is typed, parsing and compiling answer (an error or a query) without a
        /// panic or a stack overflow, and what parses nests no deeper than the limit.
        #[test]
        fn any_query_parses_and_compiles_or_is_refused(input in query()) {
            let schema = LogSchema::new();
            if let Ok(expr) = parse(&input, |f| schema.is_filter(f)) {
                if let Some(expr) = &expr {
                    prop_assert!(depth(expr) <= MAX_NESTING);
                }
                let _ = compile(&schema, expr.as_ref());
            }
        }

        /// Nesting at any depth a query of accepted length holds is refused, never overflowed.
        #[test]
        fn deep_nesting_is_refused(depth in MAX_NESTING + 1..4_000usize, not in any::<bool>()) {
            let input = if not {
                "NOT ".repeat(depth) + "x"
            } else {
                "(".repeat(depth) + "x" + &")".repeat(depth)
            };
            let err = parse(&input, |_| false).unwrap_err().to_string();
            prop_assert!(err.contains("deep"), "{}", err);
        }
    }
}
