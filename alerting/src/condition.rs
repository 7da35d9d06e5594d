//! A rule's `when:`: comparisons of the window's `count` with a number or with the previous
//! window's count, joined by `and`.
//!
//! ```text
//! when   = clause ("and" clause)*
//! clause = "count" OP value
//! OP     = ">=" | ">" | "<=" | "<" | "==" | "!="
//! value  = NUMBER | NUMBER "*" "previous" | "previous" ["*" NUMBER]
//! ```
//! `count >= 3` is a threshold, `count == 0` an absence, `count > 3 * previous and count >= 10`
//! a spike. Hand-written: a dozen tokens do not need an expression engine.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Clause {
    op: Op,
    /// The value is `factor * previous` when `of_previous`, else `factor`.
    factor: f64,
    of_previous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Condition {
    /// Whether the condition holds for a window of `count` records after one of `previous`.
    pub fn holds(&self, count: u64, previous: u64) -> bool {
        self.clauses.iter().all(|c| {
            let count = count as f64;
            let value = if c.of_previous { c.factor * previous as f64 } else { c.factor };
            match c.op {
                Op::Ge => count >= value,
                Op::Gt => count > value,
                Op::Le => count <= value,
                Op::Lt => count < value,
                Op::Eq => count == value,
                Op::Ne => count != value,
            }
        })
    }

    /// Whether more records can only make the condition true, never false: then it is decided
    /// as records arrive, without waiting for the window to close.
    pub fn rises(&self) -> bool {
        self.clauses.iter().all(|c| matches!(c.op, Op::Ge | Op::Gt))
    }

    /// Whether it reads the previous window.
    pub fn uses_previous(&self) -> bool {
        self.clauses.iter().any(|c| c.of_previous)
    }
}

impl FromStr for Condition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut clauses = Vec::new();
        for part in text.split(" and ") {
            clauses.push(clause(part.trim()).map_err(|e| {
                format!(
                    "{e} in {part:?}; write e.g. `count >= 3`, `count == 0`, `count > 2 * previous`"
                )
            })?);
        }
        Ok(Self { clauses })
    }
}

fn clause(text: &str) -> Result<Clause, String> {
    let rest = text.strip_prefix("count").ok_or("a comparison starts with `count`")?.trim_start();
    let (op, rest) = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (op, r.trim())))
    .ok_or("expected one of >= > <= < == != after `count`")?;
    let number = |s: &str| -> Result<f64, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{:?} is not a number", s.trim()))
    };
    let (factor, of_previous) = match rest.split_once('*') {
        Some((a, b)) if a.trim() == "previous" => (number(b)?, true),
        Some((a, b)) if b.trim() == "previous" => (number(a)?, true),
        Some(_) => return Err("a product is NUMBER * previous".to_owned()),
        None if rest == "previous" => (1.0, true),
        None => (number(rest)?, false),
    };
    Ok(Clause { op, factor, of_previous })
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            let op = match c.op {
                Op::Ge => ">=",
                Op::Gt => ">",
                Op::Le => "<=",
                Op::Lt => "<",
                Op::Eq => "==",
                Op::Ne => "!=",
            };
            let and = if i > 0 { " and " } else { "" };
            match c.of_previous {
                true => write!(f, "{and}count {op} {} * previous", c.factor)?,
                false => write!(f, "{and}count {op} {}", c.factor)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_absences_and_spikes() {
        let c: Condition = "count >= 3".parse().unwrap();
        assert!(!c.holds(2, 0) && c.holds(3, 0) && c.rises());
        let c: Condition = "count == 0".parse().unwrap();
        assert!(c.holds(0, 9) && !c.holds(1, 0) && !c.rises());
        let c: Condition = "count > 2 * previous and count >= 10".parse().unwrap();
        assert!(c.holds(21, 10) && !c.holds(20, 10) && !c.holds(9, 0) && c.uses_previous());
        let c: Condition = "count > previous * 1.5".parse().unwrap();
        assert!(c.holds(16, 10) && !c.holds(15, 10));
    }

    #[test]
    fn mistakes_are_explained() {
        for bad in ["count >>= 3", "rate > 3", "count >= x", "count >= 2 * 3", "count >= -1"] {
            let err = bad.parse::<Condition>().unwrap_err();
            assert!(err.contains("write e.g."), "{bad}: {err}");
        }
    }
}
