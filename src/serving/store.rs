//! The store: the contents of every relation, as a series of immutable snapshots.
//!
//! The compute sink publishes every change up to some logical time at once; the
//! store applies it to persistent maps and swaps in a new [`Snapshot`]. Taking a
//! snapshot is an `Arc` clone, and a snapshot never changes, so a query (or a
//! whole transaction) reads every relation at one time.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock, RwLock};

use datafusion::arrow::record_batch::RecordBatch;
use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, Micros, RelationKind, Row};
use imbl::OrdMap;

use crate::compute::{OutputBatch, RelationId};
use crate::serving::catalog::Catalog;

/// One relation's rows.
#[derive(Clone, Debug)]
pub enum RelationRows {
    /// Views and sources: a multiset, row → multiplicity.
    Multiset(OrdMap<Row, usize>),
    /// Tables: primary key → row, so key checks are O(log n).
    Keyed { primary_key: Vec<usize>, rows: OrdMap<Row, Row> },
}

impl RelationRows {
    fn new(kind: &RelationKind) -> RelationRows {
        match kind {
            RelationKind::Table { primary_key } => {
                RelationRows::Keyed { primary_key: primary_key.clone(), rows: OrdMap::new() }
            }
            _ => RelationRows::Multiset(OrdMap::new()),
        }
    }

    /// Every row, repeated by multiplicity, in key order.
    pub fn rows(&self) -> Box<dyn Iterator<Item = &Row> + '_> {
        match self {
            RelationRows::Multiset(rows) => {
                Box::new(rows.iter().flat_map(|(row, count)| std::iter::repeat_n(row, *count)))
            }
            RelationRows::Keyed { rows, .. } => Box::new(rows.values()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RelationRows::Multiset(rows) => rows.values().sum(),
            RelationRows::Keyed { rows, .. } => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row with this primary key, for tables.
    pub fn get_by_key(&self, key: &Row) -> Option<&Row> {
        match self {
            RelationRows::Keyed { rows, .. } => rows.get(key),
            RelationRows::Multiset(_) => None,
        }
    }

    /// Drops the rows of a source whose event time (its first column) is before
    /// `horizon`. Rows sort by their first column, so the oldest come first.
    fn expire_before(&mut self, horizon: Micros) {
        let RelationRows::Multiset(rows) = self else { return };
        while let Some((oldest, _)) = rows.get_min() {
            match oldest.first() {
                Some(Datum::Timestamp(t)) if *t < horizon => {
                    let oldest = oldest.clone();
                    rows.remove(&oldest);
                }
                _ => break,
            }
        }
    }

    pub fn primary_key_of(&self, row: &Row) -> Option<Row> {
        match self {
            RelationRows::Keyed { primary_key, .. } => Some(primary_key.iter().map(|&i| row[i].clone()).collect()),
            RelationRows::Multiset(_) => None,
        }
    }

    fn apply(&mut self, row: Row, diff: isize) {
        match self {
            RelationRows::Multiset(rows) => {
                let count = rows.get(&row).copied().unwrap_or(0) as isize + diff;
                assert!(
                    count >= 0,
                    "negative multiplicity for {row:?}: the dataflow retracted a row it never produced"
                );
                if count == 0 {
                    rows.remove(&row);
                } else {
                    rows.insert(row, count as usize);
                }
            }
            RelationRows::Keyed { primary_key, rows } => {
                let key: Row = primary_key.iter().map(|&i| row[i].clone()).collect();
                match diff {
                    1 => {
                        rows.insert(key, row);
                    }
                    -1 => {
                        rows.remove(&key);
                    }
                    _ => panic!("table rows change one at a time, got diff {diff} for {row:?}"),
                }
            }
        }
    }
}

/// Every relation at one logical time.
pub struct Snapshot {
    /// Contains every change at times before `upper`.
    pub upper: Time,
    relations: Vec<RelationRows>,
    /// Arrow copies, built on first read.
    batches: Vec<OnceLock<RecordBatch>>,
}

impl Snapshot {
    pub fn relation(&self, id: RelationId) -> &RelationRows {
        &self.relations[id]
    }

    /// Rows of a relation, repeated by multiplicity.
    pub fn rows(&self, id: RelationId) -> Vec<Row> {
        self.relations[id].rows().cloned().collect()
    }

    /// The relation as one Arrow batch, converted once per snapshot.
    pub fn batch(&self, id: RelationId, build: impl FnOnce(&RelationRows) -> RecordBatch) -> RecordBatch {
        self.batches[id].get_or_init(|| build(&self.relations[id])).clone()
    }
}

/// The latest snapshot, and a way to wait for a time to become visible.
pub struct Store {
    current: RwLock<Arc<Snapshot>>,
    /// Source relations and how much event time they keep.
    retention: Retention,
    upper_watch: tokio::sync::watch::Sender<Option<Time>>,
}

/// Which relations are sources, and the event-time window they keep: rows older
/// than the newest event time seen minus `keep` leave the relation.
struct Retention {
    keep: Micros,
    sources: Vec<bool>,
}

impl Store {
    /// `keep`: how much event time source relations hold, behind their newest event.
    pub fn new(catalog: &Catalog, keep: Micros) -> Arc<Store> {
        let sources = catalog
            .iter()
            .map(|(_, spec)| match spec.kind {
                RelationKind::Source { event_time_column } => {
                    assert_eq!(event_time_column, 0, "{}: a source's event time must be its first column", spec.name);
                    true
                }
                _ => false,
            })
            .collect();
        let relations: Vec<_> = catalog.iter().map(|(_, spec)| RelationRows::new(&spec.kind)).collect();
        let batches = relations.iter().map(|_| OnceLock::new()).collect();
        Arc::new(Store {
            retention: Retention { keep, sources },
            current: RwLock::new(Arc::new(Snapshot { upper: 0, relations, batches })),
            upper_watch: tokio::sync::watch::channel(Some(0)).0,
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap().clone()
    }

    /// Applies output batches until compute shuts down. Runs on its own thread.
    pub fn apply_outputs(&self, outputs: Receiver<OutputBatch>) {
        let mut relations = self.snapshot().relations.clone();
        let mut newest: Vec<Option<Micros>> = vec![None; relations.len()];
        while let Ok(mut batch) = outputs.recv() {
            // Coalesce whatever else is already waiting: fewer, larger snapshots under load.
            while let Ok(more) = outputs.try_recv() {
                batch.changes.extend(more.changes);
                batch.upper = more.upper;
            }
            for (relation, row, diff) in consolidate(batch.changes) {
                if self.retention.sources[relation]
                    && let Some(Datum::Timestamp(t)) = row.first()
                {
                    newest[relation] = newest[relation].max(Some(*t));
                }
                relations[relation].apply(row, diff);
            }
            for (relation, newest) in newest.iter().enumerate() {
                if let Some(newest) = newest {
                    relations[relation].expire_before(newest.saturating_sub(self.retention.keep));
                }
            }
            let upper = batch.upper.unwrap_or(Time::MAX);
            let batches = relations.iter().map(|_| OnceLock::new()).collect();
            *self.current.write().unwrap() = Arc::new(Snapshot { upper, relations: relations.clone(), batches });
            self.upper_watch.send_replace(batch.upper);
            if batch.upper.is_none() {
                break;
            }
        }
    }

    /// Waits until every change at `time` is visible. Returns false if compute shut down first.
    pub async fn wait_visible(&self, time: Time) -> bool {
        let mut watch = self.upper_watch.subscribe();
        let reached = watch.wait_for(|upper| upper.is_none_or(|u| u > time)).await;
        matches!(reached.as_deref(), Ok(Some(_)))
    }

    /// Blocking twin of [`Store::wait_visible`].
    pub fn wait_visible_blocking(&self, time: Time) -> bool {
        futures::executor::block_on(self.wait_visible(time))
    }
}

/// Sums the differences of equal rows and drops those that cancel, then orders
/// retractions first: in a net change between two states a table key loses its
/// old row before it gains the new one.
fn consolidate(mut changes: Vec<(RelationId, Row, isize)>) -> Vec<(RelationId, Row, isize)> {
    changes.sort();
    changes.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0 && later.1 == earlier.1;
        if same {
            earlier.2 += later.2;
        }
        same
    });
    changes.retain(|(_, _, diff)| *diff != 0);
    changes.sort_by_key(|(_, _, diff)| *diff > 0);
    changes
}
