//! The scan budget: an unselective query (nothing the inverted index could start from) reads
//! every record of its partitions, so beyond a configured size it is refused unless forced.
//!
//! A leaf: it judges an [`Expr`] and a size; [`crate::search`] applies it to what it prepared.

use crate::QueryError;
use crate::syntax::Expr;

/// Whether a query can only be answered by reading every record in its range: it has no
/// word, phrase or exact field value that the inverted index could start from.
pub fn is_unselective(expr: Option<&Expr>) -> bool {
    fn selective(e: &Expr) -> bool {
        match e {
            Expr::Text(_) | Expr::Phrase(_) | Expr::Field { .. } => true,
            // A glob with a literal prefix walks a slice of the term dictionary.
            Expr::Wildcard { pattern, .. } => !pattern.starts_with(['*', '?']),
            Expr::Range { .. } | Expr::Not(_) => false,
            Expr::And(items) => items.iter().any(selective),
            Expr::Or(items) => items.iter().all(selective),
        }
    }
    !expr.is_some_and(selective)
}

/// What a query would read: the partitions in its range and their size on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub partitions: usize,
    pub bytes: u64,
}

/// Refuses an unselective `expr` whose `scan` is larger than `budget_bytes`, unless `force`.
/// The sizes are said only when `reveal` (the caller may read everything): they count every
/// namespace's records.
pub fn check(
    expr: Option<&Expr>,
    scan: Scan,
    budget_bytes: Option<u64>,
    force: bool,
    reveal: bool,
) -> Result<(), QueryError> {
    let Some(budget) = budget_bytes else { return Ok(()) };
    if force || !is_unselective(expr) || scan.bytes <= budget {
        return Ok(());
    }
    let what = match reveal {
        true => format!(
            "all {} partitions in its range ({} bytes), above the budget of {budget} bytes",
            scan.partitions, scan.bytes
        ),
        false => "every record in its range, more than the scan budget allows".to_owned(),
    };
    Err(QueryError::Budget(format!(
        "this query has no word or field value to look up, so it would read {what}; narrow the time range, add a word or field:value, or pass force=true"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    #[test]
    fn queries_without_a_word_or_value_to_look_up_are_unselective() {
        for (q, unselective) in [
            ("", true),
            ("NOT a", true),
            ("ts:>5", true),
            ("pod:*x", true),
            ("a OR NOT b", true),
            ("a", false),
            ("level:info", false),
            ("pod:p*", false),
            ("a OR b", false),
            ("NOT a b", false),
        ] {
            let expr = parse(q, |f| matches!(f, "level" | "pod" | "ts")).unwrap();
            assert_eq!(is_unselective(expr.as_ref()), unselective, "{q}");
        }
    }

    #[test]
    fn unselective_scans_beyond_the_budget_are_refused_unless_forced() {
        let scan = Scan { partitions: 2, bytes: 10 };
        assert!(
            matches!(check(None, scan, Some(1), false, true), Err(QueryError::Budget(m)) if m.contains("force=true") && m.contains("2 partitions"))
        );
        let hidden = check(None, scan, Some(1), false, false).unwrap_err().to_string();
        assert!(hidden.contains("force=true") && !hidden.contains('2'), "{hidden}");
        assert!(check(None, scan, Some(1), true, true).is_ok());
        assert!(check(None, scan, None, false, true).is_ok());
        assert!(check(None, scan, Some(10), false, true).is_ok());
        let word = parse("a", |_| false).unwrap();
        assert!(check(word.as_ref(), scan, Some(1), false, true).is_ok());
    }
}
