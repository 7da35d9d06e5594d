//! What rules starting without counts (every rule on the first start, a new or reshaped one)
//! read of the past: the stored records their windows reach, counted before the WAL's records
//! — a record both hold counts once, by its id.

use std::time::Duration;

use crate::dispatch::{Dispatcher, NotifyState};
use crate::engine::now_ms;
use crate::evaluate::Evaluator;

/// Where rules that start without counts read what happened before: the local index, when
/// there is one. A rule added to the file, or every rule on the first start, would otherwise
/// see only the records arriving from now on, and a 10-minute window would take 10 minutes to
/// be whole.
pub trait History: Send + Sync {
    /// Records matching `query` with times in `[start_ns, end_ns)`, oldest first, at most
    /// `limit`.
    fn matching(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
    ) -> Result<Vec<sluice_proto::LogRecord>, String>;
}

/// At most this many stored records per rule; past it the counts are a lower bound.
const SEED_LIMIT: usize = 200_000;

/// Counts, for every rule starting without counts, the stored records its windows reach (the
/// WAL's records count from the rule sink's cursor; one both hold counts once, by its id).
pub(crate) fn seed(
    evaluator: &mut Evaluator,
    notify: &mut NotifyState,
    dispatcher: &Dispatcher,
    history: &dyn History,
) {
    let now = now_ms();
    let fresh: Vec<(String, String, Duration)> = evaluator
        .fresh()
        .into_iter()
        .map(|(rule, span)| (rule.name.clone(), rule.query.clone(), span))
        .collect();
    for (name, query, span) in fresh {
        let start_ns = (now - span.as_millis() as i64) * 1_000_000;
        let end_ns = (now + 60_000) * 1_000_000;
        match history.matching(&query, start_ns, end_ns, SEED_LIMIT) {
            Ok(records) => {
                if records.len() >= SEED_LIMIT {
                    tracing::warn!(rule = %name, limit = SEED_LIMIT, "more stored records than a rule counts at start; its first windows are a lower bound");
                }
                tracing::info!(rule = %name, records = records.len(), "rule counted the stored records its windows reach");
                for alert in evaluator.seed(&name, &records, now) {
                    dispatcher.add(notify, alert, now);
                }
            }
            Err(e) => {
                tracing::warn!(rule = %name, error = %e, "cannot read the store; the rule counts from now on")
            }
        }
    }
}
