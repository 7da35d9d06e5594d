//! The query language over one record in memory, with the index's own rules: what a search
//! finds in the store, a matcher finds in the record before it is stored. Alert rules and
//! log-to-metric counters run it on every record passing through the WAL, so they work
//! whatever sinks run and cost the store nothing.

use std::ops::{Bound, ControlFlow, RangeBounds};

use regex::Regex;
use sluice_proto::{LogRecord, RecordId, Stream};

use crate::QueryError;
use crate::phrase::{Phrase, find, relative};
use crate::schema::{LogSchema, label_key};
use crate::syntax::{Expr, parse};

/// A compiled query; `matches` answers for one record.
#[derive(Debug, Clone)]
pub struct Matcher {
    node: Option<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Phrase(Phrase),
    Keyword { field: Keyword, value: String },
    Glob { field: Keyword, pattern: Regex },
    Id(RecordId),
    Source(u64),
    Range { field: Numeric, lower: Bound<i128>, upper: Bound<i128> },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// A keyword field of a record, as the schema names them.
#[derive(Debug, Clone)]
enum Keyword {
    Cluster,
    Namespace,
    Pod,
    PodUid,
    Container,
    Node,
    Stream,
    Level,
    File,
    Owner,
    Reason,
    EventType,
    Object,
    ObjectKind,
    Reporter,
    Label(String),
}

#[derive(Debug, Clone, Copy)]
enum Numeric {
    Ts,
    Offset,
}

impl Matcher {
    /// Parses `query` in the search language; the empty query matches every record.
    pub fn new(query: &str) -> Result<Self, QueryError> {
        let schema = LogSchema::new();
        let expr = parse(query, |f| schema.is_filter(f))?;
        Ok(Self { node: expr.as_ref().map(node).transpose()? })
    }

    pub fn matches(&self, record: &LogRecord) -> bool {
        self.node.as_ref().is_none_or(|n| n.matches(record))
    }

    /// The keyword fields a query reads (`namespace`, `labels.app`): for checks that a
    /// grouping or a variable names a field the records have.
    pub fn is_keyword_field(name: &str) -> bool {
        keyword(name).is_some()
    }
}

fn keyword(name: &str) -> Option<Keyword> {
    if let Some(key) = label_key(name) {
        return Some(Keyword::Label(key.to_owned()));
    }
    Some(match name {
        "cluster" => Keyword::Cluster,
        "namespace" => Keyword::Namespace,
        "pod" => Keyword::Pod,
        "pod_uid" => Keyword::PodUid,
        "container" => Keyword::Container,
        "node" => Keyword::Node,
        "stream" => Keyword::Stream,
        "level" => Keyword::Level,
        "file" => Keyword::File,
        "owner" => Keyword::Owner,
        "reason" => Keyword::Reason,
        "event_type" => Keyword::EventType,
        "object" => Keyword::Object,
        "object_kind" => Keyword::ObjectKind,
        "reporter" => Keyword::Reporter,
        _ => return None,
    })
}

/// A record's value of a keyword field; empty when it has none (the index leaves it out, so
/// no filter finds it).
pub fn field_value(record: &LogRecord, name: &str) -> String {
    keyword(name).map(|k| value(record, &k)).unwrap_or_default()
}

fn value(r: &LogRecord, field: &Keyword) -> String {
    let event = r.event.as_ref();
    let ev = |f: fn(&sluice_proto::KubeEvent) -> String| event.map(f).unwrap_or_default();
    match field {
        Keyword::Cluster => r.cluster.clone(),
        Keyword::Namespace => r.namespace.clone(),
        Keyword::Pod => r.pod.clone(),
        Keyword::PodUid => r.pod_uid.clone(),
        Keyword::Container => r.container.clone(),
        Keyword::Node => r.node.clone(),
        Keyword::Stream => Stream::try_from(r.stream).unwrap_or_default().name().to_owned(),
        Keyword::Level => r.level.clone(),
        Keyword::File => r.file_path.clone(),
        Keyword::Owner => r.owner.clone(),
        Keyword::Reason => ev(|e| e.reason.clone()),
        Keyword::EventType => ev(|e| e.r#type.clone()),
        Keyword::Object => ev(|e| e.object()),
        Keyword::ObjectKind => ev(|e| e.object_kind.clone()),
        Keyword::Reporter => ev(|e| e.reporter.clone()),
        Keyword::Label(key) => r.labels.get(key).cloned().unwrap_or_default(),
    }
}

fn node(expr: &Expr) -> Result<Node, QueryError> {
    let syntax = |m: String| QueryError::Syntax(m);
    Ok(match expr {
        Expr::Text(text) | Expr::Phrase(text) => {
            let phrase = relative(text);
            if phrase.is_empty() {
                return Err(syntax(format!(
                    "{text:?} has no letters, digits or CJK characters to search for"
                )));
            }
            Node::Phrase(phrase)
        }
        Expr::Field { field, value } if field == "id" => {
            Node::Id(value.parse::<RecordId>().map_err(|e| syntax(e.to_string()))?)
        }
        Expr::Field { field, value } if field == "source" => Node::Source(
            u64::from_str_radix(value, 16)
                .map_err(|_| syntax(format!("source:{value} is not a 16-digit hex source key")))?,
        ),
        Expr::Field { field, value } => {
            let handle =
                keyword(field).ok_or_else(|| syntax(format!("{field}: is not a keyword field")))?;
            let value = match field.as_str() {
                "level" => sluice_proto::level::canonical(value)
                    .map_or_else(|| value.to_lowercase(), str::to_owned),
                _ => value.clone(),
            };
            Node::Keyword { field: handle, value }
        }
        Expr::Wildcard { field, pattern } => {
            let handle =
                keyword(field).ok_or_else(|| syntax(format!("{field}: is not a keyword field")))?;
            let pattern = if field == "level" { pattern.to_lowercase() } else { pattern.clone() };
            let mut re = String::from("^(?s:");
            for c in pattern.chars() {
                match c {
                    '*' => re.push_str(".*"),
                    '?' => re.push('.'),
                    c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
                }
            }
            re.push_str(")$");
            let pattern = Regex::new(&re).map_err(|e| syntax(format!("glob {pattern:?}: {e}")))?;
            Node::Glob { field: handle, pattern }
        }
        Expr::Range { field, lower, upper } => {
            let numeric = match field.as_str() {
                "ts" => Numeric::Ts,
                "offset" => Numeric::Offset,
                _ => {
                    return Err(syntax(format!(
                        "{field}: has no order; ranges apply to ts and offset"
                    )));
                }
            };
            let read = |v: &String| -> Result<i128, QueryError> {
                match numeric {
                    Numeric::Ts => crate::time::parse_time("ts", v)
                        .map(i128::from)
                        .map_err(|e| syntax(e.to_string())),
                    Numeric::Offset => v
                        .parse::<u64>()
                        .map(i128::from)
                        .map_err(|_| syntax(format!("{field}: {v:?} is not a whole number"))),
                }
            };
            let bound = |b: &Bound<String>| -> Result<Bound<i128>, QueryError> {
                Ok(match b {
                    Bound::Included(v) => Bound::Included(read(v)?),
                    Bound::Excluded(v) => Bound::Excluded(read(v)?),
                    Bound::Unbounded => Bound::Unbounded,
                })
            };
            Node::Range { field: numeric, lower: bound(lower)?, upper: bound(upper)? }
        }
        Expr::And(items) => {
            // Field checks first: a phrase tokenizes the message, the costliest check by far,
            // and most records fail a conjunction's field filter before it.
            let mut nodes = items.iter().map(node).collect::<Result<Vec<_>, _>>()?;
            nodes.sort_by_key(|n| matches!(n, Node::Phrase(_)));
            Node::And(nodes)
        }
        Expr::Or(items) => Node::Or(items.iter().map(node).collect::<Result<_, _>>()?),
        Expr::Not(inner) => Node::Not(Box::new(node(inner)?)),
    })
}

impl Node {
    fn matches(&self, r: &LogRecord) -> bool {
        match self {
            Node::Phrase(phrase) => {
                let mut hit = false;
                find(&r.message, phrase, |_, _| {
                    hit = true;
                    ControlFlow::Break(())
                });
                hit
            }
            Node::Keyword { field, value: wanted } => {
                let v = value(r, field);
                !v.is_empty() && v == *wanted
            }
            Node::Glob { field, pattern } => {
                let v = value(r, field);
                !v.is_empty() && pattern.is_match(&v)
            }
            Node::Id(id) => r.source == id.source && r.offset == id.offset,
            Node::Source(source) => r.source == *source,
            Node::Range { field, lower, upper } => {
                let v = match field {
                    Numeric::Ts => i128::from(r.timestamp_ns),
                    Numeric::Offset => i128::from(r.offset),
                };
                (*lower, *upper).contains(&v)
            }
            Node::And(items) => items.iter().all(|n| n.matches(r)),
            Node::Or(items) => items.iter().any(|n| n.matches(r)),
            Node::Not(inner) => !inner.matches(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(namespace: &str, level: &str, message: &str) -> LogRecord {
        LogRecord {
            namespace: namespace.into(),
            level: level.into(),
            message: message.into(),
            timestamp_ns: 1_700_000_000_000_000_000,
            ..Default::default()
        }
    }

    fn hits(query: &str, records: &[LogRecord]) -> Vec<usize> {
        let m = Matcher::new(query).unwrap();
        records.iter().enumerate().filter(|(_, r)| m.matches(r)).map(|(i, _)| i).collect()
    }

    #[test]
    fn cjk_substrings_match_as_grep_does() {
        let rs = [
            record("pay", "error", "2024-01-01 支付失败: 订单 42"),
            record("pay", "error", "支付 失败"),
            record("web", "info", "支付成功"),
        ];
        assert_eq!(hits("支付失败", &rs), [0]);
        assert_eq!(hits("支付", &rs), [0, 1, 2]);
        assert_eq!(hits("支付失败 AND level:error", &rs), [0]);
        assert_eq!(hits("支付 -namespace:web", &rs), [0, 1]);
        assert_eq!(hits("\"订单 42\"", &rs), [0]);
    }

    #[test]
    fn fields_globs_ranges_and_levels_follow_the_index() {
        let mut rs =
            vec![record("pay-prod", "warn", "db timeout"), record("", "error", "DB Timeout again")];
        rs[1].labels.insert("app".into(), "api".into());
        assert_eq!(hits("namespace:pay-*", &rs), [0]);
        assert_eq!(hits("level:WARNING", &rs), [0]);
        assert_eq!(hits("-namespace:*", &rs), [1]);
        assert_eq!(hits("labels.app:api", &rs), [1]);
        assert_eq!(hits("db-timeout", &rs), [0, 1]);
        assert_eq!(hits("timeout OR nothing", &rs), [0, 1]);
        assert_eq!(hits("ts:>=2023-11-14T22:13:20Z", &rs), [0, 1]);
        assert_eq!(hits("ts:<2023-11-14T22:13:20Z", &rs), Vec::<usize>::new());
        assert_eq!(hits("", &rs), [0, 1]);
    }

    #[test]
    fn event_fields_are_matched() {
        let mut r = record("default", "warn", "Back-off restarting failed container");
        r.stream = Stream::Event as i32;
        r.event = Some(sluice_proto::KubeEvent {
            reason: "BackOff".into(),
            r#type: "Warning".into(),
            object_kind: "Pod".into(),
            object_name: "nginx-1".into(),
            ..Default::default()
        });
        let rs = [r];
        assert_eq!(hits("stream:event AND reason:BackOff AND object:Pod/nginx-*", &rs), [0]);
        assert_eq!(field_value(&rs[0], "event_type"), "Warning");
    }

    #[test]
    fn bad_queries_are_refused_with_the_reason() {
        assert!(Matcher::new("!!!").unwrap_err().to_string().contains("no letters"));
        assert!(Matcher::new("level:").is_err());
        assert!(Matcher::new("namespace:>3").unwrap_err().to_string().contains("no order"));
    }
}
