//! The local index as the alerting's [`History`]: what a rule starting without counts reads of
//! the records its windows reach.

use std::sync::Arc;

use sluice_alerting::History;
use sluice_proto::LogRecord;
use sluice_query::collect::Order;
use sluice_query::search::Cursor;
use sluice_query::{SearchRequest, Store};

pub(crate) struct StoreHistory(pub(crate) Arc<Store>);

impl History for StoreHistory {
    fn matching(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
    ) -> Result<Vec<LogRecord>, String> {
        let mut request = SearchRequest::new(query);
        request.start_ns = Some(start_ns);
        request.end_ns = Some(end_ns);
        request.order = Order::Oldest;
        request.limit = limit.min(10_000);
        request.force = true;
        let mut out = Vec::new();
        loop {
            let response = self.0.search(&request).map_err(|e| e.to_string())?;
            for hit in &response.hits {
                out.push(sluice_alerting::backtest::hit_record(hit)?);
            }
            match response.next_cursor {
                Some(cursor) if out.len() < limit => {
                    request.cursor = Some(cursor.parse::<Cursor>().map_err(|e| e.to_string())?);
                }
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}
