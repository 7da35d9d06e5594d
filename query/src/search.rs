//! Running a search over the partitions its time range touches, newest first.

use std::ops::Bound;
use std::time::Instant;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use sluice_proto::RecordId;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{Field, Value};
use tantivy::{DocAddress, Order, TantivyDocument, Term};

use crate::QueryError;
use crate::compile::compile;
use crate::schema::LogSchema;
use crate::store::Store;
use crate::syntax::parse;

/// The most hits one request returns.
pub const MAX_LIMIT: usize = 10_000;
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub query: String,
    /// Inclusive lower bound on the record time, in Unix nanoseconds.
    pub start_ns: Option<i64>,
    /// Exclusive upper bound on the record time, in Unix nanoseconds.
    pub end_ns: Option<i64>,
    pub limit: usize,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into(), start_ns: None, end_ns: None, limit: DEFAULT_LIMIT }
    }
}

/// One matching record, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// RFC 3339 with nanoseconds, UTC.
    pub ts: String,
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub node: String,
    pub stream: String,
    pub level: String,
    pub file: String,
    pub message: String,
    pub id: String,
    /// What the agent altered in the line (`truncated`, `invalid_utf8`, ...), if anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    /// Every match in the range, not only those returned.
    pub total: u64,
    pub took_ms: u64,
}

impl Store {
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse, QueryError> {
        let started = Instant::now();
        if request.limit > MAX_LIMIT {
            return Err(QueryError::Parameter {
                name: "limit",
                reason: format!("{} is above the maximum of {MAX_LIMIT}", request.limit),
            });
        }
        let schema = self.schema();
        let expr = parse(&request.query, |name| schema.is_filter(name))?;
        let start = request.start_ns.unwrap_or(i64::MIN);
        let end = request.end_ns.unwrap_or(i64::MAX);
        if start >= end {
            return Err(QueryError::Parameter {
                name: "start",
                reason: "the range is empty: start is not before end".to_owned(),
            });
        }
        let query =
            within(schema, compile(schema, expr.as_ref())?, request.start_ns, request.end_ns);

        let mut total = 0;
        let mut candidates: Vec<(i64, usize, DocAddress)> = Vec::new();
        let partitions = self.partitions_overlapping(start, end);
        for (i, partition) in partitions.iter().enumerate() {
            let searcher = partition.searcher();
            let top = TopDocs::with_limit(request.limit.max(1))
                .order_by_fast_field::<i64>("ts", Order::Desc);
            let (hits, count) = searcher
                .search(&query, &(top, Count))
                .map_err(QueryError::index(self.dir().join(&partition.key)))?;
            total += count as u64;
            candidates.extend(hits.into_iter().map(|(ts, addr)| (ts.unwrap_or(i64::MIN), i, addr)));
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        candidates.truncate(request.limit);

        let mut hits = Vec::with_capacity(candidates.len());
        for (ts, i, addr) in candidates {
            let searcher = partitions[i].searcher();
            let doc: TantivyDocument = searcher
                .doc(addr)
                .map_err(QueryError::index(self.dir().join(&partitions[i].key)))?;
            // The id's parts live in fast fields only: stored, their random-looking bytes
            // would defeat the document store's compression.
            let fast = searcher.segment_reader(addr.segment_ord).fast_fields();
            let column = |name: &str| {
                fast.u64(name).ok().and_then(|c| c.first(addr.doc_id)).unwrap_or_default()
            };
            let id = RecordId::new(column("source"), column("offset"));
            hits.push(to_hit(schema, &doc, ts, id));
        }
        Ok(SearchResponse { hits, total, took_ms: started.elapsed().as_millis() as u64 })
    }
}

fn within(
    schema: &LogSchema,
    query: Box<dyn Query>,
    start: Option<i64>,
    end: Option<i64>,
) -> Box<dyn Query> {
    if start.is_none() && end.is_none() {
        return query;
    }
    let bound = |v: Option<i64>, inclusive: bool| match v {
        None => Bound::Unbounded,
        Some(v) if inclusive => Bound::Included(Term::from_field_i64(schema.ts, v)),
        Some(v) => Bound::Excluded(Term::from_field_i64(schema.ts, v)),
    };
    let range = RangeQuery::new(bound(start, true), bound(end, false));
    Box::new(BooleanQuery::new(vec![(Occur::Must, query), (Occur::Must, Box::new(range))]))
}

fn to_hit(schema: &LogSchema, doc: &TantivyDocument, ts: i64, id: RecordId) -> Hit {
    let text =
        |field: Field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let flags = doc.get_first(schema.flags).and_then(|v| v.as_u64()).unwrap_or_default() as u32;
    Hit {
        ts: format_ts(ts),
        cluster: text(schema.cluster),
        namespace: text(schema.namespace),
        pod: text(schema.pod),
        container: text(schema.container),
        node: text(schema.node),
        stream: text(schema.stream),
        level: text(schema.level),
        file: text(schema.file),
        message: text(schema.message),
        id: id.to_string(),
        flags: sluice_proto::flags::names(flags).into_iter().map(str::to_owned).collect(),
    }
}

/// RFC 3339 in UTC with nanoseconds, the way hits show time.
pub fn format_ts(ts_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ts_ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use sluice_proto::LogRecord;

    use super::*;
    use crate::store::StoreWriter;

    fn store_with(messages: &[(&str, i64, &str)]) -> (tempfile::TempDir, std::sync::Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        for (i, (message, ts, namespace)) in messages.iter().enumerate() {
            let record = LogRecord {
                source: 7,
                offset: i as u64,
                timestamp_ns: *ts,
                message: (*message).to_owned(),
                namespace: (*namespace).to_owned(),
                level: sluice_proto::level::canonical(message.split(' ').next().unwrap())
                    .unwrap_or_default()
                    .to_owned(),
                ..LogRecord::default()
            };
            writer.add(&record, i as u64 + 1).unwrap();
        }
        writer.commit(messages.len() as u64).unwrap();
        (dir, store)
    }

    fn count(store: &Store, q: &str) -> u64 {
        let mut request = SearchRequest::new(q);
        request.limit = 0;
        store.search(&request).unwrap().total
    }

    #[test]
    fn chinese_substrings_match_exactly_where_grep_would() {
        let (_dir, store) = store_with(&[
            ("ERROR 订单创建失败 orderId=1", 1, "prod"),
            ("INFO 订单创建成功", 2, "prod"),
            ("WARN 创建 失败", 3, "dev"),
        ]);
        assert_eq!(count(&store, "订单创建失败"), 1);
        assert_eq!(count(&store, "创建失败"), 1);
        assert_eq!(count(&store, "订单创建"), 2);
        assert_eq!(count(&store, "创"), 3);
        assert_eq!(count(&store, "\"创建 失败\""), 1);
        assert_eq!(count(&store, "单创"), 2);
        assert_eq!(count(&store, "失败成功"), 0);
    }

    #[test]
    fn boolean_logic_fields_and_time() {
        let (_dir, store) = store_with(&[
            ("ERROR db timeout", 10, "prod"),
            ("INFO db ok", 20, "prod"),
            ("ERROR disk full", 30, "dev"),
        ]);
        assert_eq!(count(&store, "ERROR"), 2);
        assert_eq!(count(&store, "level:error"), 2);
        assert_eq!(count(&store, "level:ERROR namespace:prod"), 1);
        assert_eq!(count(&store, "db AND NOT timeout"), 1);
        assert_eq!(count(&store, "-db"), 1);
        assert_eq!(count(&store, "timeout OR full"), 2);
        assert_eq!(count(&store, "(timeout OR full) namespace:dev"), 1);
        assert_eq!(count(&store, "\"db timeout\""), 1);
        assert_eq!(count(&store, "db-timeout"), 1);
        assert_eq!(count(&store, ""), 3);
        let mut ranged = SearchRequest::new("");
        ranged.start_ns = Some(20);
        ranged.end_ns = Some(30);
        assert_eq!(store.search(&ranged).unwrap().total, 1);
    }

    #[test]
    fn newest_first_with_limit_and_total() {
        let (_dir, store) = store_with(&[("a x", 1, ""), ("b x", 3, ""), ("c x", 2, "")]);
        let mut request = SearchRequest::new("x");
        request.limit = 2;
        let response = store.search(&request).unwrap();
        assert_eq!(response.total, 3);
        let messages: Vec<_> = response.hits.iter().map(|h| h.message.as_str()).collect();
        assert_eq!(messages, ["b x", "c x"]);
        assert_eq!(response.hits[0].ts, "1970-01-01T00:00:00.000000003Z");
    }

    #[test]
    fn a_hit_is_found_again_by_its_id() {
        let (_dir, store) = store_with(&[("a x", 1, ""), ("b x", 3, ""), ("c x", 2, "")]);
        let mut request = SearchRequest::new("b");
        request.limit = 1;
        let id = store.search(&request).unwrap().hits[0].id.clone();
        assert_eq!(id, sluice_proto::RecordId::new(7, 1).to_string());
        let by_id = store.search(&SearchRequest::new(format!("id:{id}"))).unwrap();
        assert_eq!(by_id.hits.len(), 1);
        assert_eq!(by_id.hits[0].message, "b x");
        assert_eq!(count(&store, &format!("id:{}", sluice_proto::RecordId::new(7, 9))), 0);
        assert!(matches!(
            store.search(&SearchRequest::new("id:nothex")),
            Err(QueryError::Syntax(m)) if m.contains("nothex")
        ));
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let (_dir, store) = store_with(&[("a", 1, "")]);
        for q in ["(a", "---", "a AND"] {
            assert!(
                matches!(store.search(&SearchRequest::new(q)), Err(QueryError::Syntax(_))),
                "{q}"
            );
        }
        let mut too_many = SearchRequest::new("a");
        too_many.limit = MAX_LIMIT + 1;
        assert!(matches!(
            store.search(&too_many),
            Err(QueryError::Parameter { name: "limit", .. })
        ));
    }
}
