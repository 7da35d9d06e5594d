//! Running a search over the partitions its time range touches, newest or oldest first,
//! page by page with a cursor on (time, id).

use std::ops::Bound;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sluice_proto::RecordId;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{Field, Value};
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use crate::QueryError;
use crate::access::Scope;
use crate::budget::{self, Scan};
use crate::collect::{Key, Order, Rank, TopByTime};
use crate::compile::compile;
use crate::highlight::{highlight, phrases};
use crate::schema::LogSchema;
use crate::store::Store;
use crate::syntax::{Expr, parse};
use crate::time::{elapsed_ms, format_ts};

/// The most hits one request returns; more come page by page with the cursor.
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
    pub order: Order,
    /// Continue after this hit (a previous response's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// What the caller may see; ANDed into the query.
    pub scope: Scope,
    /// Run even an unselective query beyond the store's budget.
    pub force: bool,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            start_ns: None,
            end_ns: None,
            limit: DEFAULT_LIMIT,
            order: Order::Newest,
            cursor: None,
            scope: Scope::All,
            force: false,
        }
    }
}

/// A place in the time order of hits: `<ts ns>:<record id>`, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub Key);

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ts, source, offset) = self.0;
        write!(f, "{ts}:{}", RecordId::new(source, offset))
    }
}

impl std::str::FromStr for Cursor {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::Parameter {
            name: "cursor",
            reason: format!("{s:?} is not a cursor from a previous response"),
        };
        let (ts, id) = s.split_once(':').ok_or_else(bad)?;
        let ts = ts.parse().map_err(|_| bad())?;
        let id: RecordId = id.parse().map_err(|_| bad())?;
        Ok(Cursor((ts, id.source, id.offset)))
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
    /// The pod's controller, when the collector knew the pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// The pod's labels, when the collector knew the pod.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub message: String,
    pub id: String,
    /// What the agent altered in the line (`truncated`, `invalid_utf8`, ...), if anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Matched text in `message` as `[start, end)` in characters (Unicode scalar values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub highlights: Vec<[usize; 2]>,
    /// What a Kubernetes event record (`stream` `event`) is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<HitEvent>,
}

/// A Kubernetes event occurrence as a hit shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitEvent {
    pub uid: String,
    pub reason: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Pod/nginx-7d9f`.
    pub object: String,
    pub reporter: String,
    /// Which occurrence of the event this record is.
    pub count: u64,
    /// RFC 3339, when the event said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    /// Every match in the range, not only those returned.
    pub total: u64,
    /// Time spent in the store, in milliseconds (to the microsecond).
    pub took_ms: f64,
    /// Pass as `cursor` for the next page; absent when this page was the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(default)]
    pub touched: Touched,
}

/// What a request read, and how fresh the data was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    /// Every record the collector acknowledged before this time is searchable (RFC 3339);
    /// absent until the index first caught up with its WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Day partitions searched, and their size on disk; left out for a caller whose scope is
    /// narrower than everything, as they count other namespaces' records too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A query ready to run: the user's query, the time range and the caller's scope in one
/// conjunction, and a searcher of each partition it can match in, pinned so that the pages
/// of one export read one snapshot. Every read path starts here.
pub struct Prepared {
    pub query: Box<dyn Query>,
    pub expr: Option<Expr>,
    /// Partition key (day) and its searcher, newest first.
    pub partitions: Vec<(String, Searcher)>,
    /// What the partitions hold, whoever's records they are: for the budget only.
    pub scan: Scan,
    /// What the caller is told of the request.
    pub touched: Touched,
    /// Whether the caller's scope is narrower than everything.
    pub scoped: bool,
}

impl Prepared {
    /// Refuses an unselective query whose partitions hold more than `budget_bytes`, unless
    /// `force` (see [`crate::budget`]).
    pub fn check_budget(&self, budget_bytes: Option<u64>, force: bool) -> Result<(), QueryError> {
        budget::check(self.expr.as_ref(), self.scan, budget_bytes, force, !self.scoped)
    }

    /// Narrows the query further (the caller's scope stays in it).
    pub fn and(mut self, extra: Box<dyn Query>) -> Self {
        self.query =
            Box::new(BooleanQuery::new(vec![(Occur::Must, self.query), (Occur::Must, extra)]));
        self
    }
}

impl Store {
    /// Parses and compiles `query` for the range and scope; the only way to a [`Prepared`].
    pub fn prepare(
        &self,
        query: &str,
        start_ns: Option<i64>,
        end_ns: Option<i64>,
        scope: &Scope,
    ) -> Result<Prepared, QueryError> {
        let schema = self.schema();
        let expr = parse(query, |name| schema.is_filter(name))?;
        let start = start_ns.unwrap_or(i64::MIN);
        let end = end_ns.unwrap_or(i64::MAX);
        if start >= end {
            return Err(QueryError::Parameter {
                name: "start",
                reason: "the range is empty: start is not before end".to_owned(),
            });
        }
        let mut query = within(schema, compile(schema, expr.as_ref())?, start_ns, end_ns);
        if let Some(filter) = scope.filter(schema)? {
            query = Box::new(BooleanQuery::new(vec![(Occur::Must, query), (Occur::Must, filter)]));
        }
        let partitions: Vec<_> = self
            .partitions_overlapping(start, end)
            .iter()
            .map(|p| (p.key.clone(), p.searcher()))
            .collect();
        let stats = self.partition_stats();
        let scan = Scan {
            partitions: partitions.len(),
            bytes: partitions.iter().filter_map(|(k, _)| stats.get(k)).map(|s| s.bytes).sum(),
        };
        let scoped = *scope != Scope::All;
        let touched = Touched {
            watermark: self.complete_until().map(format_ts),
            partitions: (!scoped).then_some(scan.partitions),
            bytes: (!scoped).then_some(scan.bytes),
        };
        Ok(Prepared { query, expr, partitions, scan, touched, scoped })
    }

    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse, QueryError> {
        let started = Instant::now();
        if request.limit > MAX_LIMIT {
            return Err(QueryError::Parameter {
                name: "limit",
                reason: format!(
                    "{} is above the maximum of {MAX_LIMIT}; page with the cursor",
                    request.limit
                ),
            });
        }
        let prepared =
            self.prepare(&request.query, request.start_ns, request.end_ns, &request.scope)?;
        prepared.check_budget(self.query_budget(), request.force)?;
        let (hits, total) =
            self.top(&prepared, request.limit, request.order, request.cursor, true)?;
        let next_cursor = (request.limit > 0 && hits.len() == request.limit)
            .then(|| hits.last().map(|(key, _)| Cursor(*key).to_string()))
            .flatten();
        Ok(SearchResponse {
            hits: hits.into_iter().map(|(_, hit)| hit).collect(),
            total,
            took_ms: elapsed_ms(started),
            next_cursor,
            touched: prepared.touched,
        })
    }

    /// The first `limit` hits of `prepared` in `order` after `cursor`, and (when `count`) how
    /// many records match in all.
    pub fn top(
        &self,
        prepared: &Prepared,
        limit: usize,
        order: Order,
        cursor: Option<Cursor>,
        count: bool,
    ) -> Result<(Vec<(Key, Hit)>, u64), QueryError> {
        self.top_ranked(
            prepared,
            TopByTime { limit, order, cursor: cursor.map(|c| c.0), rank: Rank::Time },
            count,
        )
    }

    /// [`Self::top`] with any ranking.
    pub fn top_ranked(
        &self,
        prepared: &Prepared,
        collector: TopByTime,
        count: bool,
    ) -> Result<(Vec<(Key, Hit)>, u64), QueryError> {
        let (limit, order) = (collector.limit, collector.order);
        let mut total = 0;
        let mut candidates: Vec<(Key, (usize, DocAddress), i64)> = Vec::new();
        for (i, (key, searcher)) in prepared.partitions.iter().enumerate() {
            let path = || self.dir().join(key);
            let found = if count {
                let (found, n) = searcher
                    .search(&prepared.query, &(collector, Count))
                    .map_err(QueryError::index(path()))?;
                total += n as u64;
                found
            } else {
                searcher.search(&prepared.query, &collector).map_err(QueryError::index(path()))?
            };
            candidates.extend(found.into_iter().map(|(key, addr, ts)| (key, (i, addr), ts)));
        }
        order.sort_ranked(&mut candidates);
        candidates.truncate(limit);
        let schema = self.schema();
        let terms = prepared.expr.as_ref().map(phrases).unwrap_or_default();
        let mut hits = Vec::with_capacity(candidates.len());
        for (key, (i, addr), ts) in candidates {
            let (partition, searcher) = &prepared.partitions[i];
            let doc: TantivyDocument =
                searcher.doc(addr).map_err(QueryError::index(self.dir().join(partition)))?;
            let mut hit = to_hit(schema, &doc, ts, RecordId::new(key.1, key.2));
            hit.highlights = highlight(&hit.message, &terms);
            hits.push((key, hit));
        }
        Ok((hits, total))
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
        owner: text(schema.owner),
        labels: doc
            .get_all(schema.labels)
            .filter_map(|v| v.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        message: text(schema.message),
        id: id.to_string(),
        flags: sluice_proto::flags::names(flags).into_iter().map(str::to_owned).collect(),
        highlights: Vec::new(),
        event: doc.get_first(schema.event_count).and_then(|v| v.as_u64()).map(|count| {
            let seen = |field: Field| {
                doc.get_first(field).and_then(|v| v.as_i64()).filter(|&ns| ns != 0).map(format_ts)
            };
            HitEvent {
                uid: text(schema.event_uid),
                reason: text(schema.reason),
                kind: text(schema.event_type),
                object: text(schema.object),
                reporter: text(schema.reporter),
                count,
                first_seen: seen(schema.event_first_seen),
                last_seen: seen(schema.event_last_seen),
            }
        }),
    }
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
    fn pod_labels_and_owner_are_filters_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        for (i, (app, owner)) in
            [("pay", "ReplicaSet/pay-7d9f8"), ("pay-dev", "StatefulSet/pay-dev"), ("", "")]
                .into_iter()
                .enumerate()
        {
            let mut record = LogRecord {
                source: 7,
                offset: i as u64,
                timestamp_ns: 1 + i as i64,
                message: format!("line {i}"),
                owner: owner.to_owned(),
                ..LogRecord::default()
            };
            if !app.is_empty() {
                record.labels.insert("app".into(), app.into());
                record.labels.insert("tier".into(), "web".into());
            }
            writer.add(&record, i as u64 + 1).unwrap();
        }
        writer.commit(3).unwrap();
        assert_eq!(count(&store, "labels.app:pay"), 1);
        assert_eq!(count(&store, "labels.app:pay*"), 2);
        assert_eq!(count(&store, "labels.tier:web -labels.app:pay"), 1);
        assert_eq!(count(&store, "labels.app:web"), 0, "a value is its key's only");
        assert_eq!(count(&store, "owner:StatefulSet/pay-dev"), 1);
        assert_eq!(count(&store, "owner:ReplicaSet/*"), 1);
        let mut request = SearchRequest::new("owner:ReplicaSet/pay-7d9f8");
        request.limit = 1;
        let hit = &store.search(&request).unwrap().hits[0];
        assert_eq!(hit.labels.get("app").map(String::as_str), Some("pay"));
        assert_eq!(hit.labels.len(), 2);
        assert_eq!(hit.owner, "ReplicaSet/pay-7d9f8");
        let json =
            serde_json::to_value(&store.search(&SearchRequest::new("line 2")).unwrap().hits[0])
                .unwrap();
        assert!(json.get("owner").is_none() && json.get("labels").is_none(), "{json}");
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

    fn messages(response: &SearchResponse) -> Vec<&str> {
        response.hits.iter().map(|h| h.message.as_str()).collect()
    }

    #[test]
    fn cursor_pages_through_everything_once_in_both_orders() {
        use crate::testing::{rec, store};
        // 250 records, many sharing a nanosecond, over two days and two sources.
        let day = 86_400_000_000_000i64;
        let records: Vec<_> = (0..250u64)
            .map(|i| rec(i % 2, i, (i as i64 / 7) * (day / 20), "ns", "p", &format!("line {i}")))
            .collect();
        let (_dir, store, _w) = store(&records);
        for order in [Order::Newest, Order::Oldest] {
            let mut request = SearchRequest::new("line");
            request.limit = 30;
            request.order = order;
            let mut seen = Vec::new();
            let mut pages = 0;
            loop {
                let response = store.search(&request).unwrap();
                assert_eq!(response.total, 250);
                pages += 1;
                let keys: Vec<i64> = response
                    .hits
                    .iter()
                    .map(|h| {
                        h.ts.parse::<chrono::DateTime<chrono::Utc>>()
                            .unwrap()
                            .timestamp_nanos_opt()
                            .unwrap()
                    })
                    .collect();
                let mut sorted = keys.clone();
                match order {
                    Order::Newest => sorted.sort_by(|a, b| b.cmp(a)),
                    Order::Oldest => sorted.sort(),
                }
                assert_eq!(keys, sorted, "hits of a page are in order");
                seen.extend(response.hits.iter().map(|h| h.id.clone()));
                match response.next_cursor {
                    Some(c) => request.cursor = Some(c.parse().unwrap()),
                    None => break,
                }
            }
            assert_eq!(pages, 9, "{order:?}");
            let unique: std::collections::HashSet<_> = seen.iter().collect();
            assert_eq!((seen.len(), unique.len()), (250, 250), "{order:?}");
        }
        assert!(matches!(
            "nonsense".parse::<Cursor>(),
            Err(QueryError::Parameter { name: "cursor", .. })
        ));
    }

    #[test]
    fn globs_ranges_and_highlights() {
        use crate::testing::{rec, store};
        let (_dir, store, _w) = store(&[
            rec(1, 0, 100, "prod", "order-api-1", "ERROR 支付超时 db timeout"),
            rec(1, 1, 200, "prod", "order-worker-2", "INFO ok"),
            rec(1, 2, 300, "dev", "cart-1", "WARN slow db"),
        ]);
        assert_eq!(count(&store, "pod:order-*"), 2);
        assert_eq!(count(&store, "pod:*-1"), 2);
        assert_eq!(count(&store, "pod:order-?pi-1"), 1);
        assert_eq!(count(&store, "pod:\"order-*\""), 0);
        assert_eq!(count(&store, "NOT pod:order-*"), 1);
        assert_eq!(count(&store, "level:WARN*"), 1);
        assert_eq!(count(&store, "ts:>=200"), 2);
        assert_eq!(count(&store, "ts:<200"), 1);
        assert_eq!(count(&store, "ts:[100 TO 200]"), 2);
        assert_eq!(count(&store, "ts:{100 TO 300}"), 1);
        assert_eq!(count(&store, "ts:[1970-01-01T00:00:00.0000002Z TO *]"), 2);
        assert_eq!(count(&store, "offset:>0 db"), 1);
        assert!(
            matches!(store.search(&SearchRequest::new("pod:>3")), Err(QueryError::Syntax(m)) if m.contains("ranges apply to ts"))
        );
        assert!(matches!(
            store.search(&SearchRequest::new("ts:>yesterday")),
            Err(QueryError::Syntax(_))
        ));
        let response = store.search(&SearchRequest::new("支付 OR db")).unwrap();
        assert_eq!(messages(&response), ["WARN slow db", "ERROR 支付超时 db timeout"]);
        assert_eq!(response.hits[0].highlights, [[10, 12]]);
        assert_eq!(response.hits[1].highlights, [[6, 8], [11, 13]]);
        assert_eq!(response.touched.partitions, Some(1));
        assert!(response.touched.bytes.unwrap() > 0);
    }

    #[test]
    fn the_scope_cannot_be_escaped_by_the_query() {
        use crate::testing::{rec, store};
        let (_dir, store, _w) = store(&[
            rec(1, 0, 1, "prod", "pay", "ERROR secret prod line"),
            rec(2, 0, 2, "dev", "pay", "ERROR dev line"),
            rec(3, 0, 3, "", "pay", "ERROR line without namespace"),
        ]);
        let dev = Scope::Only { clusters: vec!["*".into()], namespaces: vec!["dev".into()] };
        let seen = |q: &str| {
            let mut r = SearchRequest::new(q);
            r.scope = dev.clone();
            store.search(&r).unwrap().hits.into_iter().map(|h| h.namespace).collect::<Vec<_>>()
        };
        for q in [
            "",
            "ERROR",
            "namespace:prod",
            "namespace:prod OR namespace:dev",
            "secret OR line",
            "namespace:*",
            "NOT namespace:dev",
            "(namespace:prod) OR (NOT namespace:prod)",
            &format!("id:{}", RecordId::new(1, 0)),
            "source:0000000000000001",
        ] {
            let namespaces = seen(q);
            assert!(namespaces.iter().all(|n| n == "dev"), "{q}: {namespaces:?}");
        }
        assert_eq!(seen("line"), ["dev"]);
        let wide = Scope::Only { clusters: vec!["c*".into()], namespaces: vec!["*".into()] };
        let mut r = SearchRequest::new("");
        r.scope = wide;
        assert_eq!(store.search(&r).unwrap().total, 3);
        let other_cluster =
            Scope::Only { clusters: vec!["c2".into()], namespaces: vec!["*".into()] };
        r.scope = other_cluster;
        assert_eq!(store.search(&r).unwrap().total, 0);
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
