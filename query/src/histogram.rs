//! Counts of matching records over time, in buckets of an automatic (or given) width, split
//! by the values of a keyword field (level by default).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::QueryError;
use crate::access::Scope;
use crate::collect::{BucketCounts, Buckets, Order, merge_buckets};
use crate::schema::LogSchema;
use crate::search::Touched;
use crate::store::Store;
use crate::time::format_ts;

/// About this many buckets when the width is automatic.
const TARGET_BUCKETS: i64 = 100;
/// More would make a response no chart can draw.
pub const MAX_BUCKETS: usize = 10_000;

/// Bucket widths an automatic interval is rounded up to, in seconds.
const NICE_SECONDS: [i64; 21] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800, 2_592_000,
];

#[derive(Debug, Clone)]
pub struct HistogramRequest {
    pub query: String,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// `None`: chosen from the range for about a hundred buckets.
    pub interval: Option<Duration>,
    /// A field in [`LogSchema::COUNTABLE`], or `None` for one series.
    pub split: Option<String>,
    pub scope: Scope,
    /// Run even an unselective query beyond the store's budget.
    pub force: bool,
}

impl HistogramRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            start_ns: None,
            end_ns: None,
            interval: None,
            split: Some("level".to_owned()),
            scope: Scope::All,
            force: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's first instant (RFC 3339); it ends where the next begins.
    pub ts: String,
    pub total: u64,
    /// Count per value of the split field; `""` for records without one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramResponse {
    pub interval_ms: u64,
    pub start: Option<String>,
    pub end: Option<String>,
    pub split: Option<String>,
    pub buckets: Vec<Bucket>,
    pub total: u64,
    /// Time spent in the store, in milliseconds (to the microsecond).
    pub took_ms: f64,
    pub touched: Touched,
}

/// The bucket width for `span_ns` of time: the smallest nice width giving at most about
/// [`TARGET_BUCKETS`] buckets.
pub fn auto_interval(span_ns: i64) -> i64 {
    let wanted = (span_ns / TARGET_BUCKETS).max(1);
    NICE_SECONDS.iter().map(|s| s * 1_000_000_000).find(|&w| w >= wanted).unwrap_or_else(|| {
        let days = ceil_div(i128::from(wanted), i128::from(DAY_NS));
        i64::try_from(days * i128::from(DAY_NS)).unwrap_or(i64::MAX)
    })
}

const DAY_NS: i64 = 86_400_000_000_000;

/// `a / b` rounded up, for `a >= 0` and `b > 0` (`i128::div_ceil` is not stable for signed
/// integers).
fn ceil_div(a: i128, b: i128) -> i128 {
    a / b + i128::from(a % b != 0)
}

/// Where bucket `index` starts, or the last representable time for one past the end.
fn bucket_start(first: i64, interval_ns: i64, index: usize) -> i64 {
    let wide = i128::from(first) + i128::from(interval_ns) * index as i128;
    i64::try_from(wide).unwrap_or(i64::MAX)
}

impl Store {
    pub fn histogram(&self, request: &HistogramRequest) -> Result<HistogramResponse, QueryError> {
        let started = Instant::now();
        if let Some(field) = &request.split
            && !LogSchema::COUNTABLE.contains(&field.as_str())
        {
            return Err(QueryError::Parameter {
                name: "split",
                reason: format!(
                    "{field:?} cannot be counted; use one of {}",
                    LogSchema::COUNTABLE.join(", ")
                ),
            });
        }
        let prepared =
            self.prepare(&request.query, request.start_ns, request.end_ns, &request.scope)?;
        prepared.check_budget(self.query_budget(), request.force)?;
        // An open end is closed at the data's own first or last record: from the partitions'
        // statistics for a caller who may read everything, else from the caller's own first
        // and last match, so nothing of another namespace's data shows in the range.
        let (data_min, data_max) = if request.start_ns.is_some() && request.end_ns.is_some() {
            (i64::MAX, i64::MIN)
        } else if prepared.scoped {
            let edge = |order| -> Result<Option<i64>, QueryError> {
                let (hits, _) = self.top(&prepared, 1, order, None, false)?;
                Ok(hits.first().map(|(key, _)| key.0))
            };
            (edge(Order::Oldest)?.unwrap_or(i64::MAX), edge(Order::Newest)?.unwrap_or(i64::MIN))
        } else {
            let stats = self.partition_stats();
            let data = prepared.partitions.iter().filter_map(|(k, _)| stats.get(k));
            data.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s.min_ts), hi.max(s.max_ts)))
        };
        let start = request.start_ns.unwrap_or(data_min);
        let end = request.end_ns.unwrap_or(data_max.saturating_add(1));
        let empty = |interval_ns: i64| HistogramResponse {
            interval_ms: (interval_ns / 1_000_000) as u64,
            start: request.start_ns.map(format_ts),
            end: request.end_ns.map(format_ts),
            split: request.split.clone(),
            buckets: Vec::new(),
            total: 0,
            took_ms: crate::time::elapsed_ms(started),
            touched: prepared.touched.clone(),
        };
        if start >= end {
            return Ok(empty(1_000_000_000));
        }
        let interval_ns = match request.interval {
            Some(d) if d.as_nanos() == 0 => {
                return Err(QueryError::Parameter {
                    name: "interval",
                    reason: "must be above zero".to_owned(),
                });
            }
            Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            None => auto_interval(end.saturating_sub(start)),
        };
        // In i128: a range may run from i64::MIN to i64::MAX, whose width no i64 holds.
        let wide_interval = i128::from(interval_ns);
        let wide_first = i128::from(start).div_euclid(wide_interval) * wide_interval;
        let wide_buckets = ceil_div(i128::from(end) - wide_first, wide_interval);
        let buckets = usize::try_from(wide_buckets).unwrap_or(usize::MAX);
        if buckets > MAX_BUCKETS {
            return Err(QueryError::Parameter {
                name: "interval",
                reason: format!(
                    "{buckets} buckets for this range; the most is {MAX_BUCKETS}, so widen the interval"
                ),
            });
        }
        // A first bucket that would begin before the earliest time there is begins at it.
        let first = i64::try_from(wide_first).unwrap_or(i64::MIN);
        let collector =
            Buckets { start_ns: first, interval_ns, buckets, split: request.split.clone() };
        let mut fruits: Vec<BucketCounts> = Vec::new();
        for (key, searcher) in &prepared.partitions {
            fruits.push(
                searcher
                    .search(&prepared.query, &collector)
                    .map_err(QueryError::index(self.dir().join(key)))?,
            );
        }
        let counts = merge_buckets(fruits, buckets);
        let mut out = Vec::with_capacity(buckets);
        let mut total = 0;
        for b in 0..buckets {
            let per_value: BTreeMap<String, u64> =
                counts.iter().filter(|(_, c)| c[b] > 0).map(|(v, c)| (v.clone(), c[b])).collect();
            let bucket_total = per_value.values().sum();
            total += bucket_total;
            out.push(Bucket {
                ts: format_ts(bucket_start(first, interval_ns, b)),
                total: bucket_total,
                counts: if request.split.is_some() { per_value } else { BTreeMap::new() },
            });
        }
        let mut response = empty(interval_ns);
        response.start = Some(format_ts(first));
        response.end = Some(format_ts(bucket_start(first, interval_ns, buckets)));
        response.buckets = out;
        response.total = total;
        response.took_ms = crate::time::elapsed_ms(started);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn automatic_intervals_are_round() {
        assert_eq!(auto_interval(15 * 60 * S), 10 * S);
        assert_eq!(auto_interval(3600 * S), 60 * S);
        assert_eq!(auto_interval(86_400 * S), 900 * S);
        assert_eq!(auto_interval(7 * 86_400 * S), 7200 * S);
        assert_eq!(auto_interval(1), S);
        assert_eq!(auto_interval(10_000 * 86_400 * S), 100 * 86_400 * S);
    }

    #[test]
    fn counts_per_bucket_and_level_add_up() {
        use crate::testing::{rec, store};
        // 60 records, one a second from t=10 s: 0..59 levels cycling error, warn, info.
        let records: Vec<_> = (0..60u64)
            .map(|i| {
                let level = ["ERROR", "WARN", "INFO"][i as usize % 3];
                rec(1, i, (10 + i as i64) * S, "ns", "p", &format!("{level} x{i}"))
            })
            .collect();
        let (_dir, store, _w) = store(&records);
        let mut request = HistogramRequest::new("");
        request.start_ns = Some(0);
        request.end_ns = Some(120 * S);
        request.interval = Some(Duration::from_secs(30));
        let h = store.histogram(&request).unwrap();
        assert_eq!(h.buckets.len(), 4);
        assert_eq!(h.interval_ms, 30_000);
        assert_eq!(h.buckets.iter().map(|b| b.total).collect::<Vec<_>>(), [20, 30, 10, 0]);
        assert_eq!(h.total, 60);
        assert_eq!(h.buckets[0].ts, "1970-01-01T00:00:00.000000000Z");
        let b = &h.buckets[1];
        assert_eq!(b.counts.values().sum::<u64>(), b.total);
        assert_eq!(b.counts["error"], 10);
        // Automatic width, open range: closed at the data.
        let mut auto = HistogramRequest::new("level:error");
        auto.split = None;
        let h = store.histogram(&auto).unwrap();
        assert_eq!(h.interval_ms, 1_000);
        assert_eq!(h.total, 20);
        assert!(h.buckets.iter().all(|b| b.counts.is_empty()));
        let mut bad = HistogramRequest::new("");
        bad.split = Some("message".into());
        assert!(matches!(store.histogram(&bad), Err(QueryError::Parameter { name: "split", .. })));
        let mut tiny = HistogramRequest::new("");
        tiny.start_ns = Some(0);
        tiny.end_ns = Some(86_400 * S);
        tiny.interval = Some(Duration::from_millis(1));
        assert!(matches!(
            store.histogram(&tiny),
            Err(QueryError::Parameter { name: "interval", .. })
        ));
    }

    #[test]
    fn a_scoped_open_range_closes_at_the_callers_own_data() {
        use crate::access::Scope;
        use crate::testing::{rec, store};
        const DAY: i64 = 86_400 * S;
        let (_dir, store, _w) = store(&[
            rec(1, 0, 2 * DAY, "prod", "p", "INFO early prod"),
            rec(2, 0, 9 * DAY, "dev", "d", "INFO dev"),
            rec(1, 1, 20 * DAY, "prod", "p", "INFO late prod"),
        ]);
        let scope = Scope::Only { clusters: vec!["*".into()], namespaces: vec!["dev".into()] };
        let request = HistogramRequest { scope, ..HistogramRequest::new("") };
        let response = store.histogram(&request).unwrap();
        assert_eq!(response.total, 1);
        let (start, end) = (response.start.unwrap(), response.end.unwrap());
        assert!(start.starts_with("1970-01-10"), "from dev's record, not prod's: {start}");
        assert!(end.starts_with("1970-01-10"), "{end}");
        assert_eq!(response.touched.partitions, None, "partition counts are left out");
        let all = store.histogram(&HistogramRequest::new("")).unwrap();
        assert!(all.start.unwrap().starts_with("1970-01-03"));
        assert_eq!(all.touched.partitions, Some(3));
    }
}
