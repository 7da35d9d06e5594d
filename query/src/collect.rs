//! Tantivy collectors over the record columns: the top hits by (time, id) after a cursor,
//! time buckets split by a keyword, and top values of keyword fields.
//!
//! Hand-written rather than tantivy's `TopDocs` and aggregations: `TopDocs` orders by one
//! column, which cannot break ties between records of the same nanosecond stably enough for
//! a cursor, and the aggregations compute in `f64`, which cannot hold nanosecond times
//! (2^53 ns is about 104 days).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// A record's place in time order: its time, then its id (source, offset).
pub type Key = (i64, u64, u64);

/// Which end of time a search starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

impl Order {
    /// Whether `key` comes after `cursor` in this order.
    fn after(self, key: &Key, cursor: &Key) -> bool {
        match self {
            Order::Newest => key < cursor,
            Order::Oldest => key > cursor,
        }
    }

    /// Sorts hits into this order by their rank keys.
    pub fn sort_ranked<A, B>(self, items: &mut [(Key, A, B)]) {
        match self {
            Order::Newest => items.sort_unstable_by_key(|a| Reverse(a.0)),
            Order::Oldest => items.sort_unstable_by_key(|a| a.0),
        }
    }
}

/// What a top-hits collector ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rank {
    /// Time, then id: the order of search results.
    #[default]
    Time,
    /// Id only (source, then offset): the order of lines within one source, for context.
    Offset,
}

/// The first `limit` records in `order` that come after `cursor`. A hit is its rank key,
/// its address and its time.
#[derive(Debug, Clone, Copy)]
pub struct TopByTime {
    pub limit: usize,
    pub order: Order,
    pub cursor: Option<Key>,
    pub rank: Rank,
}

/// A collected hit: rank key, address, record time.
pub type Ranked = (Key, DocAddress, i64);

pub struct TopByTimeSegment {
    limit: usize,
    order: Order,
    cursor: Option<Key>,
    rank: Rank,
    segment: SegmentOrdinal,
    /// Opened at the segment's first match: opening a column reads its block index, which
    /// costs more than a rare term's whole search in a segment without a match.
    reader: SegmentReader,
    columns: Option<Columns>,
    /// Newest: a min-heap of the largest keys; oldest: a max-heap of the smallest.
    newest: BinaryHeap<Reverse<(Key, DocId, i64)>>,
    oldest: BinaryHeap<(Key, DocId, i64)>,
}

struct Columns {
    ts: Column<i64>,
    /// Source keys as hex terms: a dictionary column costs a few bits per record where a
    /// u64 column of hashes in shape order cost all 64 (see `LogSchema`).
    source: Option<StrColumn>,
    /// Source keys by term ordinal, parsed at first use: a segment holds few sources.
    sources: HashMap<u64, u64>,
    offset: Column<u64>,
}

impl Columns {
    fn open(reader: &SegmentReader) -> tantivy::Result<Self> {
        let fast = reader.fast_fields();
        Ok(Columns {
            ts: fast.i64("ts")?,
            source: fast.str("source")?,
            sources: HashMap::new(),
            offset: fast.u64("offset")?,
        })
    }

    fn source(&mut self, doc: DocId) -> u64 {
        let Some(column) = &self.source else { return 0 };
        let Some(ord) = column.term_ords(doc).next() else { return 0 };
        *self.sources.entry(ord).or_insert_with(|| {
            let mut hex = String::new();
            match column.ord_to_str(ord, &mut hex) {
                Ok(true) => u64::from_str_radix(&hex, 16).unwrap_or_default(),
                _ => 0,
            }
        })
    }
}

impl Collector for TopByTime {
    type Fruit = Vec<Ranked>;
    type Child = TopByTimeSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopByTimeSegment> {
        Ok(TopByTimeSegment {
            limit: self.limit,
            order: self.order,
            cursor: self.cursor,
            rank: self.rank,
            segment,
            reader: reader.clone(),
            columns: None,
            newest: BinaryHeap::new(),
            oldest: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<_> = fruits.into_iter().flatten().collect();
        self.order.sort_ranked(&mut all);
        all.truncate(self.limit);
        Ok(all)
    }
}

impl SegmentCollector for TopByTimeSegment {
    type Fruit = Vec<Ranked>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if self.limit == 0 {
            return;
        }
        if self.columns.is_none() {
            // The schema has these columns, so opening them fails only on a damaged index,
            // which the search would have failed on before collecting.
            match Columns::open(&self.reader) {
                Ok(c) => self.columns = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the time and id columns");
                    self.limit = 0;
                    return;
                }
            }
        }
        let columns = self.columns.as_mut().expect("opened above");
        let ts = columns.ts.first(doc).unwrap_or(i64::MIN);
        let full = match self.order {
            Order::Newest => self.newest.len() >= self.limit,
            Order::Oldest => self.oldest.len() >= self.limit,
        };
        // Most documents lose on time alone; read the id columns only for contenders.
        if full && self.rank == Rank::Time {
            let beaten = match self.order {
                Order::Newest => self.newest.peek().is_some_and(|w| ts < w.0.0.0),
                Order::Oldest => self.oldest.peek().is_some_and(|w| ts > w.0.0),
            };
            if beaten {
                return;
            }
        }
        let (source, offset) = (columns.source(doc), columns.offset.first(doc).unwrap_or_default());
        let key = match self.rank {
            Rank::Time => (ts, source, offset),
            Rank::Offset => (0, source, offset),
        };
        if let Some(cursor) = &self.cursor
            && !self.order.after(&key, cursor)
        {
            return;
        }
        match self.order {
            Order::Newest => {
                if !full {
                    self.newest.push(Reverse((key, doc, ts)));
                } else if self.newest.peek().is_some_and(|w| key > w.0.0) {
                    self.newest.pop();
                    self.newest.push(Reverse((key, doc, ts)));
                }
            }
            Order::Oldest => {
                if !full {
                    self.oldest.push((key, doc, ts));
                } else if self.oldest.peek().is_some_and(|w| key < w.0) {
                    self.oldest.pop();
                    self.oldest.push((key, doc, ts));
                }
            }
        }
    }

    fn harvest(self) -> Self::Fruit {
        let segment = self.segment;
        let address = |(key, doc, ts): (Key, DocId, i64)| (key, DocAddress::new(segment, doc), ts);
        let mut out: Vec<_> = match self.order {
            Order::Newest => self.newest.into_iter().map(|r| address(r.0)).collect(),
            Order::Oldest => self.oldest.into_iter().map(address).collect(),
        };
        self.order.sort_ranked(&mut out);
        out
    }
}

/// Counts per time bucket, split by the values of a keyword column (or not split).
pub struct Buckets {
    pub start_ns: i64,
    pub interval_ns: i64,
    pub buckets: usize,
    /// A keyword field with a column; `None` counts all records under one empty key.
    pub split: Option<String>,
}

pub struct BucketsSegment {
    start_ns: i64,
    interval_ns: i64,
    buckets: usize,
    ts: Column<i64>,
    split: Option<StrColumn>,
    /// `buckets` counters per term ordinal, and one row for records without the field.
    counts: Vec<u64>,
}

/// Per split value, the count of each bucket.
pub type BucketCounts = HashMap<String, Vec<u64>>;

impl Collector for Buckets {
    type Fruit = BucketCounts;
    type Child = BucketsSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<BucketsSegment> {
        let split = match &self.split {
            Some(field) => reader.fast_fields().str(field)?,
            None => None,
        };
        let rows = split.as_ref().map_or(0, |c| c.num_terms()) + 1;
        Ok(BucketsSegment {
            start_ns: self.start_ns,
            interval_ns: self.interval_ns,
            buckets: self.buckets,
            ts: reader.fast_fields().i64("ts")?,
            split,
            counts: vec![0; rows * self.buckets],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<BucketCounts>) -> tantivy::Result<BucketCounts> {
        Ok(merge_buckets(fruits, self.buckets))
    }
}

/// Adds bucket counts of the same split value.
pub fn merge_buckets(fruits: Vec<BucketCounts>, buckets: usize) -> BucketCounts {
    let mut out: BucketCounts = HashMap::new();
    for fruit in fruits {
        for (value, counts) in fruit {
            let row = out.entry(value).or_insert_with(|| vec![0; buckets]);
            row.iter_mut().zip(counts).for_each(|(a, b)| *a += b);
        }
    }
    out
}

impl SegmentCollector for BucketsSegment {
    type Fruit = BucketCounts;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(ts) = self.ts.first(doc) else { return };
        // In i128: a wide range starts so early that `ts - start` leaves i64.
        let offset = i128::from(ts) - i128::from(self.start_ns);
        let Ok(bucket) = usize::try_from(offset.div_euclid(i128::from(self.interval_ns))) else {
            return;
        };
        if bucket >= self.buckets {
            return;
        }
        let row = match &self.split {
            Some(column) => column.ords().first(doc).map_or(column.num_terms(), |o| o as usize),
            None => 0,
        };
        self.counts[row * self.buckets + bucket] += 1;
    }

    fn harvest(self) -> BucketCounts {
        let mut out = HashMap::new();
        for (row, counts) in self.counts.chunks(self.buckets.max(1)).enumerate() {
            if counts.iter().all(|&c| c == 0) {
                continue;
            }
            let mut value = String::new();
            if let Some(column) = &self.split
                && row < column.num_terms()
            {
                let _ = column.ord_to_str(row as u64, &mut value);
            }
            out.insert(value, counts.to_vec());
        }
        out
    }
}

/// How many matching records have each value of some keyword columns.
#[derive(Debug, Clone)]
pub struct Values {
    pub fields: Vec<String>,
}

pub struct ValuesSegment {
    columns: Vec<(usize, StrColumn, Vec<u64>)>,
    fields: usize,
}

/// Per field (in request order), count per value.
pub type ValueCounts = Vec<HashMap<String, u64>>;

impl Collector for Values {
    type Fruit = ValueCounts;
    type Child = ValuesSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<ValuesSegment> {
        let mut columns = Vec::new();
        for (i, field) in self.fields.iter().enumerate() {
            if let Some(column) = reader.fast_fields().str(field)? {
                let terms = column.num_terms();
                columns.push((i, column, vec![0; terms]));
            }
        }
        Ok(ValuesSegment { columns, fields: self.fields.len() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<ValueCounts>) -> tantivy::Result<ValueCounts> {
        Ok(merge_values(fruits, self.fields.len()))
    }
}

/// Adds counts of the same field and value.
pub fn merge_values(fruits: Vec<ValueCounts>, fields: usize) -> ValueCounts {
    let mut out = vec![HashMap::new(); fields];
    for fruit in fruits {
        for (i, counts) in fruit.into_iter().enumerate() {
            for (value, n) in counts {
                *out[i].entry(value).or_insert(0) += n;
            }
        }
    }
    out
}

impl SegmentCollector for ValuesSegment {
    type Fruit = ValueCounts;

    fn collect(&mut self, doc: DocId, _score: Score) {
        for (_, column, counts) in &mut self.columns {
            if let Some(ord) = column.ords().first(doc) {
                counts[ord as usize] += 1;
            }
        }
    }

    fn harvest(self) -> ValueCounts {
        let mut out = vec![HashMap::new(); self.fields];
        for (i, column, counts) in self.columns {
            for (ord, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                let mut value = String::new();
                if column.ord_to_str(ord as u64, &mut value).unwrap_or(false) {
                    out[i].insert(value, n);
                }
            }
        }
        out
    }
}
