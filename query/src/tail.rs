//! Live tail: the matches of a query among the records of commits a follower has not seen.
//!
//! Every record carries the number of the commit that made it searchable (`seq`), so a
//! follower that last saw commit `n` asks for `seq > n` up to the commit now visible: nothing
//! committed in between is missed or sent twice, whatever the records' own timestamps.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::RangeQuery;

use crate::QueryError;
use crate::access::Scope;
use crate::collect::{Key, Order};
use crate::search::{Cursor, Hit};
use crate::store::Store;

/// Hits per page when a commit brought many matches.
pub const PAGE: usize = 1_000;

impl Store {
    /// The matches of `query` committed after commit `after_seq` and up to `upto_seq`, oldest
    /// first, at most [`PAGE`], after `cursor` (the key of the last hit of the previous page).
    pub fn tail_page(
        &self,
        query: &str,
        scope: &Scope,
        after_seq: u64,
        upto_seq: u64,
        cursor: Option<Key>,
    ) -> Result<Vec<(Key, Hit)>, QueryError> {
        let schema = self.schema();
        let seq = RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(schema.seq, after_seq)),
            Bound::Included(Term::from_field_u64(schema.seq, upto_seq)),
        );
        let prepared = self.prepare(query, None, None, scope)?.and(Box::new(seq));
        let (hits, _) = self.top(&prepared, PAGE, Order::Oldest, cursor.map(Cursor), false)?;
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rec, store};

    #[test]
    fn each_commit_is_seen_once_whatever_the_timestamps() {
        let (_dir, store, mut writer) = store(&[rec(1, 0, 50, "prod", "a", "INFO old")]);
        let seen = store.commit_seq();
        // A late record (older time) and a new one, committed together, then one more.
        writer.add(&rec(1, 1, 10, "prod", "a", "INFO late"), 2).unwrap();
        writer.add(&rec(2, 0, 99, "dev", "b", "INFO new"), 3).unwrap();
        writer.commit(3).unwrap();
        let upto = store.commit_seq();
        assert_eq!(upto, seen + 1);
        let page = store.tail_page("", &Scope::All, seen, upto, None).unwrap();
        let text: Vec<_> = page.iter().map(|(_, h)| h.message.as_str()).collect();
        assert_eq!(text, ["INFO late", "INFO new"]);
        let dev = Scope::Only { clusters: vec!["*".into()], namespaces: vec!["dev".into()] };
        assert_eq!(store.tail_page("INFO", &dev, seen, upto, None).unwrap().len(), 1);
        assert!(store.tail_page("", &Scope::All, upto, upto, None).unwrap().is_empty());
        // Uncommitted records are not visible yet.
        writer.add(&rec(2, 1, 100, "dev", "b", "INFO pending"), 4).unwrap();
        assert!(store.tail_page("", &Scope::All, upto, upto + 1, None).unwrap().is_empty());
        writer.commit(4).unwrap();
        let next = store.tail_page("", &Scope::All, upto, store.commit_seq(), None).unwrap();
        assert_eq!(next.len(), 1);
    }

    #[test]
    fn commit_numbers_survive_a_restart() {
        let (dir, store, mut writer) = store(&[rec(1, 0, 1, "prod", "a", "INFO x")]);
        writer.add(&rec(1, 1, 2, "prod", "a", "INFO y"), 2).unwrap();
        writer.commit(2).unwrap();
        let seq = store.commit_seq();
        drop((writer, store));
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.commit_seq(), seq);
        let mut writer = crate::StoreWriter::new(reopened.clone());
        writer.add(&rec(1, 2, 3, "prod", "a", "INFO z"), 3).unwrap();
        writer.commit(3).unwrap();
        let page = reopened.tail_page("", &Scope::All, seq, reopened.commit_seq(), None).unwrap();
        assert_eq!(page.iter().map(|(_, h)| h.message.as_str()).collect::<Vec<_>>(), ["INFO z"]);
    }
}
