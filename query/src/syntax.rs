//! The query language: terms, "phrases", `field:value`, `field:glob*`, ranges, AND / OR / NOT,
//! `-term`, parentheses.
//!
//! Hand-written rather than tantivy's `QueryParser` because ops paste log text into the box:
//! `workerEnv.init() ok`, `ERROR: db timeout`, `key=value`. Here a word is searched as the
//! phrase of its tokens, `(` and `)` glued to a word belong to it, and `x:y` with an unknown
//! field `x` is plain text; tantivy's parser rejects all three.
//!
//! Grammar (AND binds tighter than OR; juxtaposition means AND):
//! ```text
//! query   = or
//! or      = and ("OR" and)*
//! and     = unary (["AND"] unary)*
//! unary   = ("NOT" | "-") unary | primary
//! primary = "(" or ")" | FIELD ":" (WORD | QUOTED | RANGE) | QUOTED | WORD
//! RANGE   = ("[" | "{") LOW " TO " HIGH ("]" | "}") | (">" | ">=" | "<" | "<=") VALUE
//! ```
//! An unquoted field value with `*` or `?` is a glob (`pod:order-*`); `*` as a range end is
//! open. `[` `]` include their end, `{` `}` exclude it. A field with no value (`level:`,
//! `level:""`) is an error; `field:*` is any value and `-field:*` none.

use std::ops::Bound;

use crate::QueryError;

/// How deep `NOT`s and parentheses may nest. Every walk of a query (compiling it, finding its
/// phrases, judging its budget, tantivy's own scorers) recurses once per level, so the parser
/// is where depth is bounded: 600 `NOT`s or 2,000 parentheses overflowed a thread's stack and
/// took the process down. Real queries nest a handful deep.
pub const MAX_NESTING: usize = 64;

/// The longest query accepted, in bytes. Pasted lines and lists of ids fit; it also keeps any
/// query sendable by `GET`: percent-encoded, it stays under the 64 KiB an HTTP/1 request line
/// may hold in hyper, which refuses longer ones with a bare 414 before the API sees them (the
/// `POST` form of the API takes longer queries to this check instead).
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A bare word: the phrase of its tokens in the message.
    Text(String),
    /// A quoted phrase in the message.
    Phrase(String),
    /// An exact match on a keyword field.
    Field {
        field: String,
        value: String,
    },
    /// A glob on a keyword field: `*` any run, `?` any one character.
    Wildcard {
        field: String,
        pattern: String,
    },
    /// A range on a numeric field; the bounds are still text, read by the field's kind.
    Range {
        field: String,
        lower: Bound<String>,
        upper: Bound<String>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(String),
    Quoted(String),
    /// `name:` right before a quote.
    FieldPrefix(String),
    /// `name:value` for a known field.
    Field(String, String),
    /// `name:` for a known field, with no value after it.
    EmptyField(String),
    /// `name:[a TO b]` for a known field, brackets included.
    Range(String, String),
}

/// Parses `input`; `Ok(None)` means an empty query, which matches everything.
///
/// `is_field` tells which `name:` prefixes are fields; any other is part of the text.
pub fn parse(input: &str, is_field: impl Fn(&str) -> bool) -> Result<Option<Expr>, QueryError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(syntax(format!(
            "the query is {} bytes long; at most {MAX_QUERY_BYTES} are accepted",
            input.len()
        )));
    }
    let tokens = lex(input, &is_field)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut parser = Parser { tokens, pos: 0, depth: 0 };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(Some(expr)),
        Some((at, Tok::Close)) => Err(syntax(format!("unexpected ')' at character {at}"))),
        Some((at, _)) => Err(syntax(format!("unexpected text at character {at}"))),
    }
}

fn syntax(message: String) -> QueryError {
    QueryError::Syntax(message)
}

fn lex(input: &str, is_field: &impl Fn(&str) -> bool) -> Result<Vec<(usize, Tok)>, QueryError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let column = at + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push((column, Tok::Open));
            i += 1;
        } else if c == ')' {
            out.push((column, Tok::Close));
            i += 1;
        } else if c == '"' {
            let (text, next) = quoted(&chars, i)
                .ok_or_else(|| syntax(format!("unterminated quote at character {column}")))?;
            out.push((column, Tok::Quoted(text)));
            i = next;
        } else if let Some((name, text, next)) = bracket_range(&chars, i, is_field) {
            out.push((column, Tok::Range(name, text)));
            i = next;
        } else {
            // A word runs to whitespace, a quote, or a ')' that closes no '(' inside the word.
            let mut word = String::new();
            let mut depth = 0usize;
            while i < chars.len() {
                let c = chars[i].1;
                if c.is_whitespace() || c == '"' || (c == ')' && depth == 0) {
                    break;
                }
                if c == '(' {
                    depth += 1;
                } else if c == ')' {
                    depth -= 1;
                }
                word.push(c);
                i += 1;
            }
            let starts_quote = chars.get(i).is_some_and(|&(_, c)| c == '"');
            // `-word` negates; a lone `-` or `a-b` is text.
            if let Some(rest) = word.strip_prefix('-').filter(|r| !r.is_empty()) {
                out.push((column, Tok::Not));
                out.push((column + 1, classify(rest.to_owned(), starts_quote, is_field)));
            } else {
                out.push((column, classify(word, starts_quote, is_field)));
            }
        }
    }
    Ok(out)
}

/// `name:[…]` or `name:{…}` starting at `start`, which may hold spaces (`[a TO b]`).
fn bracket_range(
    chars: &[(usize, char)],
    start: usize,
    is_field: &impl Fn(&str) -> bool,
) -> Option<(String, String, usize)> {
    let colon = (start..chars.len())
        .take_while(|&j| chars[j].1.is_alphanumeric() || chars[j].1 == '_' || chars[j].1 == ':')
        .find(|&j| chars[j].1 == ':')?;
    let name: String = chars[start..colon].iter().map(|c| c.1).collect();
    let open = chars.get(colon + 1)?.1;
    if !is_field(&name) || !matches!(open, '[' | '{') {
        return None;
    }
    let close = (colon + 2..chars.len()).find(|&j| matches!(chars[j].1, ']' | '}'))?;
    let text = chars[colon + 1..=close].iter().map(|c| c.1).collect();
    Some((name, text, close + 1))
}

fn quoted(chars: &[(usize, char)], open: usize) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i].1 {
            '"' => return Some((text, i + 1)),
            '\\' if i + 1 < chars.len() => {
                text.push(chars[i + 1].1);
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    None
}

fn classify(word: String, starts_quote: bool, is_field: &impl Fn(&str) -> bool) -> Tok {
    match word.as_str() {
        "AND" | "&&" => return Tok::And,
        "OR" | "||" => return Tok::Or,
        "NOT" => return Tok::Not,
        _ => {}
    }
    if let Some((name, value)) = word.split_once(':')
        && is_field(name)
    {
        if value.is_empty() && starts_quote {
            return Tok::FieldPrefix(name.to_owned());
        }
        return match value.is_empty() {
            true => Tok::EmptyField(name.to_owned()),
            false => Tok::Field(name.to_owned(), value.to_owned()),
        };
    }
    Tok::Word(word)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    /// `NOT`s and parentheses open around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<(usize, &Tok)> {
        self.tokens.get(self.pos).map(|(at, t)| (*at, t))
    }

    fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.and()?];
        while let Some((at, Tok::Or)) = self.peek() {
            self.pos += 1;
            if self.at_end_of_group() {
                return Err(syntax(format!("OR at character {at} has nothing on its right")));
            }
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::Or(items) })
    }

    /// Enters one more level of nesting at character `at`.
    fn deeper(&mut self, at: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(syntax(format!(
                "the query nests NOT and parentheses more than {MAX_NESTING} deep at character {at}"
            )));
        }
        Ok(())
    }

    fn at_end_of_group(&self) -> bool {
        matches!(self.peek(), None | Some((_, Tok::Close)))
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.unary()?];
        loop {
            match self.peek() {
                None | Some((_, Tok::Close | Tok::Or)) => break,
                Some((at, Tok::And)) => {
                    self.pos += 1;
                    if self.at_end_of_group() {
                        return Err(syntax(format!(
                            "AND at character {at} has nothing on its right"
                        )));
                    }
                }
                Some(_) => {}
            }
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::And(items) })
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        match self.peek() {
            Some((at, Tok::Not)) => {
                self.pos += 1;
                if self.at_end_of_group() {
                    return Err(syntax(format!("NOT at character {at} has nothing on its right")));
                }
                self.deeper(at)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        match self.next() {
            Some((at, Tok::Open)) => {
                if self.at_end_of_group() {
                    return Err(syntax(format!("empty parentheses at character {at}")));
                }
                self.deeper(at)?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some((_, Tok::Close)) => Ok(inner),
                    _ => Err(syntax(format!("'(' at character {at} is never closed"))),
                }
            }
            Some((_, Tok::Word(w))) => Ok(Expr::Text(w)),
            Some((at, Tok::Field(field, value))) => field_expr(field, value, at),
            Some((at, Tok::Range(field, text))) => bracket_expr(field, &text, at),
            Some((at, Tok::EmptyField(field))) => Err(no_value(&field, at)),
            Some((_, Tok::Quoted(q))) => Ok(Expr::Phrase(q)),
            Some((at, Tok::FieldPrefix(field))) => match self.next() {
                Some((_, Tok::Quoted(value))) if value.is_empty() => Err(no_value(&field, at)),
                Some((_, Tok::Quoted(value))) => Ok(Expr::Field { field, value }),
                _ => unreachable!("a field prefix is only lexed before a quote"),
            },
            Some((at, Tok::Close)) => Err(syntax(format!("unexpected ')' at character {at}"))),
            Some((at, t)) => Err(syntax(format!("{t:?} at character {at} needs a term before it"))),
            None => Err(syntax("the query ends too early".to_owned())),
        }
    }
}

/// `field:` or `field:""`: empty keywords are not indexed, so such a filter could only ever
/// find nothing; records without a value are `-field:*`.
fn no_value(field: &str, at: usize) -> QueryError {
    syntax(format!(
        "{field}: at character {at} has no value: give one ({field}:value), or use -{field}:* for records without any"
    ))
}

/// An unquoted `field:value`: a comparison, a glob or an exact value.
fn field_expr(field: String, value: String, at: usize) -> Result<Expr, QueryError> {
    for (op, lower, inclusive) in
        [(">=", true, true), ("<=", false, true), (">", true, false), ("<", false, false)]
    {
        if let Some(v) = value.strip_prefix(op) {
            if v.is_empty() {
                return Err(syntax(format!("{field}:{op} at character {at} needs a value")));
            }
            let bound = if inclusive {
                Bound::Included(v.to_owned())
            } else {
                Bound::Excluded(v.to_owned())
            };
            let (lower, upper) =
                if lower { (bound, Bound::Unbounded) } else { (Bound::Unbounded, bound) };
            return Ok(Expr::Range { field, lower, upper });
        }
    }
    if value.contains(['*', '?']) {
        return Ok(Expr::Wildcard { field, pattern: value });
    }
    Ok(Expr::Field { field, value })
}

/// `[a TO b]`, `{a TO b}` or a mix; `*` for an open end.
fn bracket_expr(field: String, text: &str, at: usize) -> Result<Expr, QueryError> {
    let bad = || syntax(format!("range at character {at} should look like {field}:[LOW TO HIGH]"));
    let mut chars = text.chars();
    let (open, close) = (chars.next().ok_or_else(bad)?, chars.next_back().ok_or_else(bad)?);
    let (low, high) = chars.as_str().split_once(" TO ").ok_or_else(bad)?;
    let (low, high) = (low.trim(), high.trim());
    if low.is_empty() || high.is_empty() {
        return Err(bad());
    }
    let end = |v: &str, inclusive: bool| match v {
        "*" => Bound::Unbounded,
        v if inclusive => Bound::Included(v.to_owned()),
        v => Bound::Excluded(v.to_owned()),
    };
    Ok(Expr::Range { field, lower: end(low, open == '['), upper: end(high, close == ']') })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_field(name: &str) -> bool {
        matches!(name, "level" | "namespace" | "pod")
    }

    fn p(q: &str) -> Expr {
        parse(q, is_field).unwrap().unwrap()
    }

    fn text(s: &str) -> Expr {
        Expr::Text(s.into())
    }

    #[test]
    fn juxtaposition_is_and_and_and_binds_tighter_than_or() {
        assert_eq!(p("a b"), Expr::And(vec![text("a"), text("b")]));
        assert_eq!(
            p("a AND b OR c"),
            Expr::Or(vec![Expr::And(vec![text("a"), text("b")]), text("c")])
        );
        assert_eq!(
            p("a (b OR c)"),
            Expr::And(vec![text("a"), Expr::Or(vec![text("b"), text("c")])])
        );
    }

    #[test]
    fn negation() {
        assert_eq!(p("NOT a"), Expr::Not(Box::new(text("a"))));
        assert_eq!(p("a -b"), Expr::And(vec![text("a"), Expr::Not(Box::new(text("b")))]));
        assert_eq!(p("-"), text("-"));
    }

    #[test]
    fn phrases_and_fields() {
        assert_eq!(p("\"db timeout\""), Expr::Phrase("db timeout".into()));
        assert_eq!(p(r#""say \"hi\"""#), Expr::Phrase("say \"hi\"".into()));
        assert_eq!(p("level:error"), Expr::Field { field: "level".into(), value: "error".into() });
        assert_eq!(p("-level:debug"), Expr::Not(Box::new(p("level:debug"))));
        assert_eq!(p("user:bob"), text("user:bob"));
        assert_eq!(
            p("namespace:\"prod east\""),
            Expr::Field { field: "namespace".into(), value: "prod east".into() }
        );
    }

    #[test]
    fn a_field_without_a_value_is_an_error_that_says_how_to_ask_for_none() {
        for q in ["level:", "a level:", "level:\"\"", "-namespace:"] {
            let error = parse(q, is_field).unwrap_err().to_string();
            assert!(
                error.contains("has no value") && error.contains(":* for records without"),
                "{q}: {error}"
            );
        }
        assert_eq!(
            p("-namespace:*"),
            Expr::Not(Box::new(Expr::Wildcard { field: "namespace".into(), pattern: "*".into() }))
        );
        assert_eq!(p("user:"), text("user:"), "not a field: text, as before");
    }

    #[test]
    fn pasted_log_text_parses() {
        assert_eq!(p("workerEnv.init() ok"), Expr::And(vec![text("workerEnv.init()"), text("ok")]));
        assert_eq!(p("ERROR: timeout"), Expr::And(vec![text("ERROR:"), text("timeout")]));
        assert_eq!(p("(f(x))"), text("f(x)"));
        assert_eq!(p("订单创建失败"), text("订单创建失败"));
    }

    #[test]
    fn globs_and_ranges() {
        assert_eq!(
            p("pod:order-*"),
            Expr::Wildcard { field: "pod".into(), pattern: "order-*".into() }
        );
        assert_eq!(p("pod:\"a*\""), Expr::Field { field: "pod".into(), value: "a*".into() });
        let inc = |s: &str| Bound::Included(s.to_owned());
        let exc = |s: &str| Bound::Excluded(s.to_owned());
        assert_eq!(
            p("level:>=5"),
            Expr::Range { field: "level".into(), lower: inc("5"), upper: Bound::Unbounded }
        );
        assert_eq!(
            p("level:<x"),
            Expr::Range { field: "level".into(), lower: Bound::Unbounded, upper: exc("x") }
        );
        assert_eq!(
            p("a namespace:[1 TO 2} b"),
            Expr::And(vec![
                text("a"),
                Expr::Range { field: "namespace".into(), lower: inc("1"), upper: exc("2") },
                text("b"),
            ])
        );
        assert_eq!(
            p("pod:{* TO 9]"),
            Expr::Range { field: "pod".into(), lower: Bound::Unbounded, upper: inc("9") }
        );
        assert_eq!(p("user:[a TO b]"), Expr::And(vec![text("user:[a"), text("TO"), text("b]")]));
        for q in ["pod:[1 2]", "pod:[ TO 2]", "level:>="] {
            assert!(parse(q, is_field).is_err(), "{q}");
        }
    }

    #[test]
    fn empty_query_matches_everything() {
        assert_eq!(parse("   ", is_field).unwrap(), None);
    }

    #[test]
    fn errors_say_where() {
        for (q, want) in [
            ("(a OR b", "'(' at character 1 is never closed"),
            ("a )", "unexpected ')' at character 3"),
            ("a AND", "AND at character 3 has nothing on its right"),
            ("a OR", "OR at character 3 has nothing on its right"),
            ("\"open", "unterminated quote at character 1"),
            ("()", "empty parentheses at character 1"),
            ("OR a", "Or at character 1 needs a term before it"),
        ] {
            let err = parse(q, is_field).unwrap_err().to_string();
            assert!(err.contains(want), "{q:?}: {err}");
        }
    }

    #[test]
    fn nesting_is_bounded_with_an_error_that_names_the_limit() {
        let fields = |_: &str| false;
        for query in ["NOT ".repeat(600) + "x", "(".repeat(2000) + "x" + &")".repeat(2000)] {
            let err = parse(&query, fields).unwrap_err().to_string();
            assert!(err.contains(&format!("more than {MAX_NESTING} deep")), "{err}");
        }
        let deepest = "(".repeat(MAX_NESTING / 2)
            + &"NOT ".repeat(MAX_NESTING / 2)
            + "x"
            + &")".repeat(MAX_NESTING / 2);
        assert!(parse(&deepest, fields).unwrap().is_some(), "the limit itself parses");
        let siblings = vec!["(NOT a)"; 1_400].join(" OR ");
        assert!(parse(&siblings, fields).is_ok(), "width is not depth");
    }

    #[test]
    fn length_is_bounded_with_an_error_that_names_the_limit() {
        let fields = |_: &str| false;
        let longest = "订单 ".repeat(MAX_QUERY_BYTES / "订单 ".len());
        assert!(parse(&longest, fields).unwrap().is_some(), "the limit itself parses");
        let err = parse(&"x".repeat(100_000), fields).unwrap_err().to_string();
        assert!(err.contains(&format!("100000 bytes long; at most {MAX_QUERY_BYTES}")), "{err}");
    }
}
