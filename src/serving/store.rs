//! The store: the contents of every relation, as a series of immutable snapshots.
//!
//! The compute sink publishes every change up to some logical time at once; the
//! store applies it to persistent maps and swaps in a new [`Snapshot`]. Taking a
//! snapshot is an `Arc` clone, and a snapshot never changes, so a query (or a
//! whole transaction) reads every relation at one time.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use datafusion::arrow::record_batch::RecordBatch;
use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, Micros, RelationKind, Row};
use imbl::OrdMap;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::compute::{InputBatch, OutputBatch, RelationId};
use crate::serving::catalog::Catalog;

/// One relation's rows.
#[derive(Clone, Debug)]
pub enum RelationRows {
    /// Views: a multiset, row → multiplicity.
    Multiset(OrdMap<Row, usize>),
    /// Tables: primary key → row, so key checks are O(log n).
    Keyed { primary_key: Vec<usize>, rows: OrdMap<Row, Row> },
    /// Sources: a multiset ordered by event time, so the oldest rows expire first.
    Events { event_time_column: usize, rows: OrdMap<(Micros, Row), usize> },
}

impl RelationRows {
    fn new(kind: &RelationKind) -> RelationRows {
        match kind {
            RelationKind::Table { primary_key } => {
                RelationRows::Keyed { primary_key: primary_key.clone(), rows: OrdMap::new() }
            }
            RelationKind::Source { event_time_column } => {
                RelationRows::Events { event_time_column: *event_time_column, rows: OrdMap::new() }
            }
            RelationKind::View => RelationRows::Multiset(OrdMap::new()),
        }
    }

    /// Every row, repeated by multiplicity, in key order.
    pub fn rows(&self) -> Box<dyn Iterator<Item = &Row> + '_> {
        match self {
            RelationRows::Multiset(rows) => {
                Box::new(rows.iter().flat_map(|(row, count)| std::iter::repeat_n(row, *count)))
            }
            RelationRows::Keyed { rows, .. } => Box::new(rows.values()),
            RelationRows::Events { rows, .. } => {
                Box::new(rows.iter().flat_map(|((_, row), count)| std::iter::repeat_n(row, *count)))
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RelationRows::Multiset(rows) => rows.values().sum(),
            RelationRows::Keyed { rows, .. } => rows.len(),
            RelationRows::Events { rows, .. } => rows.values().sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row with this primary key, for tables.
    pub fn get_by_key(&self, key: &Row) -> Option<&Row> {
        match self {
            RelationRows::Keyed { rows, .. } => rows.get(key),
            _ => None,
        }
    }

    /// The newest event time of a source's rows.
    fn newest_event(&self) -> Option<Micros> {
        match self {
            RelationRows::Events { rows, .. } => rows.get_max().map(|((t, _), _)| *t),
            _ => None,
        }
    }

    /// Drops the rows of a source whose event time is before `horizon`
    /// (rows with a NULL event time sort first and go first).
    fn expire_before(&mut self, horizon: Micros) {
        let RelationRows::Events { rows, .. } = self else { return };
        while let Some(((time, row), _)) = rows.get_min() {
            if *time >= horizon {
                break;
            }
            let oldest = (*time, row.clone());
            rows.remove(&oldest);
        }
    }

    pub fn primary_key_of(&self, row: &Row) -> Option<Row> {
        match self {
            RelationRows::Keyed { primary_key, .. } => Some(primary_key.iter().map(|&i| row[i].clone()).collect()),
            _ => None,
        }
    }

    fn apply(&mut self, row: Row, diff: isize) {
        fn add<K: Ord + Clone + std::fmt::Debug>(rows: &mut OrdMap<K, usize>, key: K, diff: isize) {
            let count = rows.get(&key).copied().unwrap_or(0) as isize + diff;
            assert!(count >= 0, "negative multiplicity for {key:?}: the dataflow retracted a row it never produced");
            if count == 0 {
                rows.remove(&key);
            } else {
                rows.insert(key, count as usize);
            }
        }
        match self {
            RelationRows::Multiset(rows) => add(rows, row, diff),
            RelationRows::Events { event_time_column, rows } => {
                let time = match row.get(*event_time_column) {
                    Some(Datum::Timestamp(t)) => *t,
                    _ => Micros::MIN,
                };
                add(rows, (time, row), diff)
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

/// The changes that took the store from one snapshot to the next.
#[derive(Debug)]
pub struct ChangeBatch {
    /// The snapshot these changes lead to contains every change before `upper`
    /// (`None`: compute shut down).
    pub upper: Option<Time>,
    /// Consolidated: each row at most once, retractions first.
    pub changes: Vec<(RelationId, Row, isize)>,
}

/// The latest snapshot, a way to wait for a time to become visible, and change feeds.
pub struct Store {
    current: RwLock<Arc<Snapshot>>,
    /// How much event time source relations keep, behind their newest event.
    keep: Micros,
    upper_watch: tokio::sync::watch::Sender<Option<Time>>,
    /// Change feeds (sinks, WebSocket streams, SUBSCRIBE). Locked while a new
    /// snapshot is installed, so a subscriber's first snapshot and its first
    /// change batch line up exactly.
    subscribers: Mutex<Vec<UnboundedSender<Arc<ChangeBatch>>>>,
}

impl Store {
    /// `keep`: how much event time source relations hold, behind their newest event.
    pub fn new(catalog: &Catalog, keep: Micros) -> Arc<Store> {
        let relations: Vec<_> = catalog.iter().map(|(_, spec)| RelationRows::new(&spec.kind)).collect();
        let batches = relations.iter().map(|_| OnceLock::new()).collect();
        Arc::new(Store {
            keep,
            current: RwLock::new(Arc::new(Snapshot { upper: 0, relations, batches })),
            upper_watch: tokio::sync::watch::channel(Some(0)).0,
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// The current snapshot and every change after it, batch by batch. The feed
    /// ends when compute shuts down or the receiver is dropped. Unbounded: a
    /// subscriber must keep up (or drop the receiver).
    pub fn subscribe(&self) -> (Arc<Snapshot>, UnboundedReceiver<Arc<ChangeBatch>>) {
        let mut subscribers = self.subscribers.lock().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        subscribers.push(tx);
        (self.snapshot(), rx)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap().clone()
    }

    /// Applies compute's output batches, with the input batches ingest sent at the
    /// same times, until compute shuts down. Runs on its own thread.
    ///
    /// Ingest sends an input batch here before compute sees it, so by the time an
    /// output batch says a time is complete, that time's inputs are waiting in `inputs`.
    pub fn apply_outputs(&self, outputs: Receiver<OutputBatch>, inputs: Receiver<InputBatch>) {
        let mut relations = self.snapshot().relations.clone();
        let mut waiting_inputs: VecDeque<InputBatch> = VecDeque::new();
        while let Ok(mut batch) = outputs.recv() {
            // Coalesce whatever else is already waiting: fewer, larger snapshots under load.
            while let Ok(more) = outputs.try_recv() {
                batch.changes.extend(more.changes);
                batch.upper = more.upper;
            }
            waiting_inputs.extend(inputs.try_iter());
            while waiting_inputs.front().is_some_and(|i| batch.upper.is_none_or(|upper| i.time < upper)) {
                batch.changes.extend(waiting_inputs.pop_front().expect("checked").updates);
            }
            let changes = consolidate(batch.changes);
            for (relation, row, diff) in &changes {
                relations[*relation].apply(row.clone(), *diff);
            }
            // Sources keep a window of event time; expiry is not a change (the
            // dataflow still holds those events), so feeds do not see it.
            for rows in relations.iter_mut() {
                if let Some(newest) = rows.newest_event() {
                    rows.expire_before(newest.saturating_sub(self.keep));
                }
            }
            let upper = batch.upper.unwrap_or(Time::MAX);
            let batches = relations.iter().map(|_| OnceLock::new()).collect();
            let snapshot = Arc::new(Snapshot { upper, relations: relations.clone(), batches });
            {
                let mut subscribers = self.subscribers.lock().unwrap();
                *self.current.write().unwrap() = snapshot;
                if !subscribers.is_empty() {
                    let feed = Arc::new(ChangeBatch { upper: batch.upper, changes });
                    subscribers.retain(|s| s.send(feed.clone()).is_ok());
                }
            }
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
    changes.sort_unstable();
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
