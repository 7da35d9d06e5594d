//! The most frequent values of keyword fields among the matches of a query.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::QueryError;
use crate::access::Scope;
use crate::collect::{ValueCounts, Values, merge_values};
use crate::schema::LogSchema;
use crate::search::Touched;
use crate::store::Store;

pub const MAX_SIZE: usize = 1_000;

#[derive(Debug, Clone)]
pub struct FacetsRequest {
    pub query: String,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// Fields from [`LogSchema::COUNTABLE`].
    pub fields: Vec<String>,
    /// Values per field.
    pub size: usize,
    pub scope: Scope,
    /// Run even an unselective query beyond the store's budget.
    pub force: bool,
}

impl FacetsRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            start_ns: None,
            end_ns: None,
            fields: ["namespace", "pod", "container", "level"].map(str::to_owned).to_vec(),
            size: 10,
            scope: Scope::All,
            force: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facet {
    pub field: String,
    /// Most frequent first; ties by value.
    pub values: Vec<FacetValue>,
    /// Records with a value beyond the `size` shown.
    pub other: u64,
    /// Records with no value for the field (`-field:*`), so values, `other` and this add up
    /// to the total.
    pub missing: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FacetsResponse {
    pub facets: Vec<Facet>,
    pub total: u64,
    /// Time spent in the store, in milliseconds (to the microsecond).
    pub took_ms: f64,
    pub touched: Touched,
}

impl Store {
    pub fn facets(&self, request: &FacetsRequest) -> Result<FacetsResponse, QueryError> {
        let started = Instant::now();
        if let Some(bad) =
            request.fields.iter().find(|f| !LogSchema::COUNTABLE.contains(&f.as_str()))
        {
            return Err(QueryError::Parameter {
                name: "fields",
                reason: format!("{bad:?} has no facet; use {}", LogSchema::COUNTABLE.join(", ")),
            });
        }
        if request.size == 0 || request.size > MAX_SIZE {
            return Err(QueryError::Parameter {
                name: "size",
                reason: format!("{} is not between 1 and {MAX_SIZE}", request.size),
            });
        }
        let prepared =
            self.prepare(&request.query, request.start_ns, request.end_ns, &request.scope)?;
        prepared.check_budget(self.query_budget(), request.force)?;
        let collector = Values { fields: request.fields.clone() };
        let mut fruits: Vec<ValueCounts> = Vec::new();
        let mut total = 0;
        for (key, searcher) in &prepared.partitions {
            let (fruit, n) = searcher
                .search(&prepared.query, &(collector.clone(), tantivy::collector::Count))
                .map_err(QueryError::index(self.dir().join(key)))?;
            fruits.push(fruit);
            total += n as u64;
        }
        let facets = merge_values(fruits, request.fields.len())
            .into_iter()
            .zip(&request.fields)
            .map(|(counts, field)| {
                let mut values: Vec<FacetValue> =
                    counts.into_iter().map(|(value, count)| FacetValue { value, count }).collect();
                values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                let other = values.iter().skip(request.size).map(|v| v.count).sum();
                // Each of these fields holds at most one value per record.
                let missing = total.saturating_sub(values.iter().map(|v| v.count).sum());
                values.truncate(request.size);
                Facet { field: field.clone(), values, other, missing }
            })
            .collect();
        Ok(FacetsResponse {
            facets,
            total,
            took_ms: crate::time::elapsed_ms(started),
            touched: prepared.touched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rec, store};
    use sluice_proto::LogRecord;

    #[test]
    fn top_values_with_counts_and_other() {
        let mut records = Vec::new();
        for i in 0..30u64 {
            let pod = format!("pod-{}", i % 4);
            let ns = if i < 20 { "prod" } else { "dev" };
            let level = if i % 5 == 0 { "ERROR" } else { "INFO" };
            records.push(rec(1, i, i as i64, ns, &pod, &format!("{level} m")));
        }
        let (_dir, store, _w) = store(&records);
        let mut request = FacetsRequest::new("");
        request.size = 2;
        let r = store.facets(&request).unwrap();
        assert_eq!(r.total, 30);
        let ns = &r.facets[0];
        assert_eq!(ns.field, "namespace");
        assert_eq!(
            ns.values,
            [
                FacetValue { value: "prod".into(), count: 20 },
                FacetValue { value: "dev".into(), count: 10 }
            ]
        );
        let pods = &r.facets[1];
        assert_eq!(pods.values.iter().map(|v| v.count).sum::<u64>() + pods.other, 30);
        assert_eq!(pods.missing, 0);
        assert_eq!(pods.values[0], FacetValue { value: "pod-0".into(), count: 8 });
        let level = &r.facets[3];
        assert_eq!(level.values[0], FacetValue { value: "info".into(), count: 24 });
        let mut scoped = FacetsRequest::new("level:error");
        scoped.scope = Scope::Only { clusters: vec!["*".into()], namespaces: vec!["dev".into()] };
        scoped.fields = vec!["namespace".into()];
        let r = store.facets(&scoped).unwrap();
        assert_eq!(r.total, 2);
        assert_eq!(r.facets[0].values, [FacetValue { value: "dev".into(), count: 2 }]);
        let without: Vec<LogRecord> = (30..32)
            .map(|i| LogRecord {
                level: String::new(),
                ..rec(1, i, i as i64, "", "", "no namespace")
            })
            .collect();
        let (_dir2, store2, _w2) =
            crate::testing::store(&[records[0].clone(), without[0].clone(), without[1].clone()]);
        let r = store2.facets(&FacetsRequest::new("")).unwrap();
        assert_eq!((r.total, r.facets[0].missing, r.facets[3].missing), (3, 2, 2), "{r:?}");
        assert_eq!(store2.search(&crate::SearchRequest::new("-namespace:*")).unwrap().total, 2);
        let mut bad = FacetsRequest::new("");
        bad.fields = vec!["message".into()];
        assert!(matches!(store.facets(&bad), Err(QueryError::Parameter { name: "fields", .. })));
    }
}
