//! The lines around a hit in its own source, in the order they were written (by byte offset,
//! the per-source sequence), and the query that continues live from there.

use serde::{Deserialize, Serialize};
use sluice_proto::RecordId;

use crate::QueryError;
use crate::access::Scope;
use crate::collect::{Order, Rank, TopByTime};
use crate::search::Hit;
use crate::store::Store;

pub const MAX_LINES: usize = 1_000;

#[derive(Debug, Clone)]
pub struct ContextRequest {
    pub id: RecordId,
    pub before: usize,
    pub after: usize,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextResponse {
    pub hit: Hit,
    /// Oldest first, ending just before `hit`.
    pub before: Vec<Hit>,
    /// Oldest first, starting just after `hit`.
    pub after: Vec<Hit>,
    /// A query for `/api/v1/tail` that follows this source from now on.
    pub live_query: String,
}

impl Store {
    pub fn context(&self, request: &ContextRequest) -> Result<ContextResponse, QueryError> {
        for (name, n) in [("before", request.before), ("after", request.after)] {
            if n > MAX_LINES {
                return Err(QueryError::Parameter {
                    name: if name == "before" { "before" } else { "after" },
                    reason: format!("{n} is above the maximum of {MAX_LINES}"),
                });
            }
        }
        let id = request.id;
        let lines = |query: String, limit: usize, order: Order| {
            let prepared = self.prepare(&query, None, None, &request.scope)?;
            let collector = TopByTime { limit, order, cursor: None, rank: Rank::Offset };
            self.top_ranked(&prepared, collector, false).map(|(hits, _)| hits)
        };
        // The scope is in every one of these queries, so an id the caller may not see is
        // "not found", exactly like an id that does not exist.
        let hit = lines(format!("id:{id}"), 1, Order::Newest)?
            .pop()
            .map(|(_, hit)| hit)
            .ok_or_else(|| QueryError::NotFound(format!("no record with id {id}")))?;
        let source = format!("source:{:016x}", id.source);
        let mut before =
            lines(format!("{source} offset:<{}", id.offset), request.before, Order::Newest)?;
        before.reverse();
        let after = lines(format!("{source} offset:>{}", id.offset), request.after, Order::Oldest)?;
        Ok(ContextResponse {
            hit,
            before: before.into_iter().map(|(_, h)| h).collect(),
            after: after.into_iter().map(|(_, h)| h).collect(),
            live_query: source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rec, store};

    #[test]
    fn lines_around_a_hit_in_write_order_within_its_source() {
        let mut records = Vec::new();
        // Source 1's times go backwards halfway (a clock step); context follows offsets.
        for i in 0..20u64 {
            let ts = if i < 10 { 1000 + i as i64 } else { 500 + i as i64 };
            records.push(rec(1, i * 100, ts, "prod", "a", &format!("INFO a{i}")));
            records.push(rec(2, i * 100, ts, "prod", "b", &format!("INFO b{i}")));
        }
        let (_dir, store, _w) = store(&records);
        let request = |offset: u64, before: usize, after: usize| ContextRequest {
            id: RecordId::new(1, offset),
            before,
            after,
            scope: Scope::All,
        };
        let r = store.context(&request(1000, 3, 2)).unwrap();
        assert_eq!(r.hit.message, "INFO a10");
        let text = |hits: &[Hit]| hits.iter().map(|h| h.message.clone()).collect::<Vec<_>>();
        assert_eq!(text(&r.before), ["INFO a7", "INFO a8", "INFO a9"]);
        assert_eq!(text(&r.after), ["INFO a11", "INFO a12"]);
        assert_eq!(r.live_query, "source:0000000000000001");
        let edge = store.context(&request(0, 5, 0)).unwrap();
        assert!(edge.before.is_empty());
        let missing = store.context(&request(50, 1, 1));
        assert!(matches!(missing, Err(QueryError::NotFound(_))));
        let mut hidden = request(1000, 1, 1);
        hidden.scope = Scope::Only { clusters: vec!["*".into()], namespaces: vec!["dev".into()] };
        assert!(matches!(store.context(&hidden), Err(QueryError::NotFound(_))));
    }
}
