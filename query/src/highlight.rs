//! Where a hit's message matched: the query's positive words and phrases, found again in the
//! message with the index's own tokenizer, so a highlight covers exactly what matched.

use std::ops::ControlFlow;

use crate::phrase::{find, relative};
use crate::syntax::Expr;

/// The token sequences (with position gaps) of the words and phrases a hit must or may
/// contain; what sits under a NOT is left out.
pub fn phrases(expr: &Expr) -> Vec<Vec<(usize, String)>> {
    let mut out = Vec::new();
    collect(expr, &mut out);
    out
}

fn collect(expr: &Expr, out: &mut Vec<Vec<(usize, String)>>) {
    match expr {
        Expr::Text(t) | Expr::Phrase(t) => {
            let phrase = relative(t);
            if !phrase.is_empty() {
                out.push(phrase);
            }
        }
        Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| collect(e, out)),
        Expr::Not(_) | Expr::Field { .. } | Expr::Wildcard { .. } | Expr::Range { .. } => {}
    }
}

/// The matched spans of `message` as `[start, end)` character offsets, sorted and merged.
pub fn highlight(message: &str, phrases: &[Vec<(usize, String)>]) -> Vec<[usize; 2]> {
    if phrases.is_empty() {
        return Vec::new();
    }
    let mut spans = Vec::new();
    for phrase in phrases {
        find(message, phrase, |from, to| {
            spans.push((from, to));
            ControlFlow::Continue(())
        });
    }
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // Byte offsets become character offsets, which a browser can slice by.
    merged
        .into_iter()
        .map(|(s, e)| {
            let start = message[..s].chars().count();
            [start, start + message[s..e].chars().count()]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn marks(query: &str, message: &str) -> Vec<String> {
        let expr = parse(query, |f| f == "level").unwrap().unwrap();
        let chars: Vec<char> = message.chars().collect();
        highlight(message, &phrases(&expr))
            .into_iter()
            .map(|[s, e]| chars[s..e].iter().collect())
            .collect()
    }

    #[test]
    fn words_phrases_and_cjk() {
        assert_eq!(marks("timeout", "DB Timeout after timeout"), ["Timeout", "timeout"]);
        assert_eq!(marks("\"db timeout\"", "db timeout; timeout db"), ["db timeout"]);
        assert_eq!(marks("订单创建失败", "错误: 订单创建失败 id=1"), ["订单创建失败"]);
        assert_eq!(marks("创建失败", "创建 失败"), Vec::<String>::new());
        assert_eq!(marks("db-timeout", "db-timeout"), ["db-timeout"]);
    }

    #[test]
    fn negated_and_field_terms_are_not_marked() {
        assert_eq!(marks("db -timeout level:error", "db timeout"), ["db"]);
        assert_eq!(marks("a OR b", "b a"), ["b", "a"]);
    }
}
