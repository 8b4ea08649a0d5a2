//! The store: the contents of every relation, as a series of immutable snapshots.
//!
//! The compute sink publishes every change up to some logical time at once; the
//! store applies it to persistent maps and swaps in a new [`Snapshot`]. Taking a
//! snapshot is an `Arc` clone, and a snapshot never changes, so a query (or a
//! whole transaction) reads every relation at one time.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use datafusion::arrow::record_batch::RecordBatch;
use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, Micros, RelationKind, Row};
use imbl::{OrdMap, OrdSet};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::compute::{OutputBatch, RelationId};
use crate::engine::catalog::{Catalog, Lookup};
use crate::engine::changes::{PackedChange, PackedChanges, PackedInputs};
use crate::engine::events::EventLog;
use crate::engine::packed_row::{PackedRow, encode_key, key_of, unpack};

/// One relation's rows.
#[derive(Clone, Debug)]
pub enum RelationRows {
    /// Views: a multiset, each row with its multiplicity.
    Multiset(OrdSet<PackedRow>),
    /// Tables: primary key → row, so key checks are O(log n).
    Keyed { primary_key: Vec<usize>, rows: OrdMap<PackedRow, PackedRow> },
    /// Sources: every event (repeated by multiplicity) ordered by event time, then
    /// row, so the oldest rows expire first. Not a map: events arrive mostly in
    /// event-time order, and appending to a B-tree splits each full leaf in half,
    /// leaving every leaf half empty, while the log appends into full chunks.
    Events { events: EventLog },
    /// A view completed at read time (see [`Lookup`]): rows with multiplicities,
    /// computed for one snapshot and never changed.
    Completed(Vec<(Row, usize)>),
}

impl RelationRows {
    fn new(kind: &RelationKind) -> RelationRows {
        match kind {
            RelationKind::Table { primary_key } => {
                RelationRows::Keyed { primary_key: primary_key.clone(), rows: OrdMap::new() }
            }
            RelationKind::Source { .. } => RelationRows::Events { events: EventLog::default() },
            RelationKind::View => RelationRows::Multiset(OrdSet::new()),
        }
    }

    /// Every row, repeated by multiplicity, in row order (in key order for tables).
    /// Packed rows are unpacked as the iterator reaches them.
    pub fn rows(&self) -> Box<dyn Iterator<Item = Cow<'_, [Datum]>> + '_> {
        fn repeat(row: Cow<'_, [Datum]>, count: usize) -> impl Iterator<Item = Cow<'_, [Datum]>> {
            std::iter::repeat_n(row, count)
        }
        match self {
            RelationRows::Multiset(rows) => {
                Box::new(rows.iter().flat_map(|row| repeat(Cow::Owned(row.unpack()), row.multiplicity())))
            }
            RelationRows::Keyed { rows, .. } => Box::new(rows.values().map(|row| Cow::Owned(row.unpack()))),
            RelationRows::Events { events } => Box::new(events.rows().map(Cow::Owned)),
            RelationRows::Completed(rows) => {
                Box::new(rows.iter().flat_map(|(row, count)| repeat(Cow::Borrowed(&row[..]), *count)))
            }
        }
    }

    /// Calls `each` with every row as `packed_row::pack` wrote it, its multiplicity
    /// and its event time (sources; 0 otherwise), in the order [`RelationRows::rows`] has.
    fn for_each_packed(&self, mut each: impl FnMut(&[u8], usize, Micros)) {
        match self {
            RelationRows::Multiset(rows) => rows.iter().for_each(|row| each(row.packed(), row.multiplicity(), 0)),
            RelationRows::Keyed { rows, .. } => rows.values().for_each(|row| each(row.packed(), 1, 0)),
            RelationRows::Events { events } => events.for_each_packed(|time, packed| each(packed, 1, time)),
            RelationRows::Completed(_) => unreachable!("completed rows are not packed"),
        }
    }

    /// The rows of a view whose first column is `first`, found by range: a view's
    /// rows are ordered, so those are adjacent. Repeated by multiplicity.
    pub fn with_first_column<'a: 'k, 'k>(&'a self, first: &'k Datum) -> Box<dyn Iterator<Item = Row> + 'k> {
        match self {
            RelationRows::Multiset(rows) => Box::new(
                view_rows_with_first_column(rows, first)
                    .flat_map(|row| std::iter::repeat_n(row.unpack(), row.multiplicity())),
            ),
            other => Box::new(other.rows().filter(move |row| row.first() == Some(first)).map(Cow::into_owned)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RelationRows::Multiset(rows) => rows.iter().map(PackedRow::multiplicity).sum(),
            RelationRows::Keyed { rows, .. } => rows.len(),
            RelationRows::Events { events } => events.len(),
            RelationRows::Completed(rows) => rows.iter().map(|(_, count)| count).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row with this primary key, for tables.
    pub fn get_by_key(&self, key: &[Datum]) -> Option<Row> {
        match self {
            RelationRows::Keyed { rows, .. } => {
                let mut packed_key = Vec::new();
                encode_key(key, &mut packed_key);
                rows.get::<[u8]>(&packed_key).map(PackedRow::unpack)
            }
            _ => None,
        }
    }

    /// The newest event time of a source's rows.
    fn newest_event(&self) -> Option<Micros> {
        match self {
            RelationRows::Events { events } => events.newest(),
            _ => None,
        }
    }

    /// Drops the rows of a source whose event time is before `horizon`
    /// (rows with a NULL event time sort first and go first).
    fn expire_before(&mut self, horizon: Micros) {
        if let RelationRows::Events { events } = self {
            events.expire_before(horizon);
        }
    }

    pub fn primary_key_of(&self, row: &[Datum]) -> Option<Row> {
        match self {
            RelationRows::Keyed { primary_key, .. } => Some(primary_key.iter().map(|&i| row[i].clone()).collect()),
            _ => None,
        }
    }

    /// Applies one change, from the row as `packed_row::pack` wrote it. `scratch` is
    /// a buffer to pack search keys into.
    fn apply(&mut self, change: PackedChange<'_>, scratch: &mut Vec<u8>) {
        /// Adds `diff` to the multiplicity of a view's `packed` row. A retraction of a
        /// row held once allocates nothing; a change of multiplicity copies the row
        /// with the new one.
        fn add(rows: &mut OrdSet<PackedRow>, packed: &[u8], diff: isize) {
            let never_produced = || {
                panic!("negative multiplicity for {:?}: the dataflow retracted a row it never produced", unpack(packed))
            };
            let key = key_of(packed);
            match rows.get(key) {
                Some(held) => {
                    let changed = held.multiplicity() as isize + diff;
                    if changed < 0 {
                        never_produced();
                    } else if changed == 0 {
                        rows.remove(key);
                    } else {
                        // Replaces the row held: equal keys.
                        rows.insert(held.with_multiplicity(changed as usize));
                    }
                }
                None if diff > 0 => {
                    rows.insert(PackedRow::from_packed(packed, diff as usize));
                }
                None => never_produced(),
            }
        }
        let PackedChange { packed, diff, event_time, .. } = change;
        match self {
            RelationRows::Multiset(rows) => add(rows, packed, diff),
            RelationRows::Completed(_) => unreachable!("completed rows belong to one snapshot and never change"),
            RelationRows::Events { events } => {
                if diff > 0 {
                    events.insert(event_time, packed, diff as usize);
                } else {
                    for _ in 0..-diff {
                        if !events.remove(event_time, packed) {
                            panic!("the source retracted {:?}, which it does not hold", unpack(packed))
                        }
                    }
                }
            }
            RelationRows::Keyed { primary_key, rows } => {
                // The primary key is some of the row's datums: unpacked to pack it apart.
                let row = unpack(packed);
                let key: Row = primary_key.iter().map(|&i| row[i].clone()).collect();
                match diff {
                    1 => {
                        rows.insert(PackedRow::new(&key, 1), PackedRow::from_packed(packed, 1));
                    }
                    -1 => {
                        scratch.clear();
                        encode_key(&key, scratch);
                        rows.remove::<[u8]>(scratch);
                    }
                    _ => panic!("table rows change one at a time, got diff {diff} for {row:?}"),
                }
            }
        }
    }
}

/// A view's packed rows whose first column is `first`: rows are ordered by their
/// packed bytes, which begin with the first column, so they are one range.
fn view_rows_with_first_column<'a>(
    rows: &'a OrdSet<PackedRow>,
    first: &Datum,
) -> impl Iterator<Item = &'a PackedRow> + use<'a> {
    let mut prefix = Vec::new();
    encode_key(std::slice::from_ref(first), &mut prefix);
    rows.range::<_, [u8]>((Bound::Included(&prefix[..]), Bound::Unbounded))
        .take_while(move |row| row.key().starts_with(&prefix))
}

/// The event time of a source's row (NULL sorts first, and expires first).
fn event_time(row: &[Datum], event_time_column: usize) -> Micros {
    match row.get(event_time_column) {
        Some(Datum::Timestamp(t)) => *t,
        _ => Micros::MIN,
    }
}

/// Every relation at one logical time.
pub struct Snapshot {
    /// Contains every change at times before `upper`.
    pub upper: Time,
    /// As maintained: a view completed at read time holds its rows before completion.
    relations: Vec<RelationRows>,
    /// Per relation, how it is completed at read time, if it is.
    lookups: Arc<[Option<Lookup>]>,
    /// Views completed at read time, completed on first read.
    completed: Vec<OnceLock<RelationRows>>,
    /// Arrow copies, built on first read.
    batches: Vec<OnceLock<RecordBatch>>,
}

impl Snapshot {
    fn new(upper: Time, relations: Vec<RelationRows>, lookups: Arc<[Option<Lookup>]>) -> Snapshot {
        let completed = relations.iter().map(|_| OnceLock::new()).collect();
        let batches = relations.iter().map(|_| OnceLock::new()).collect();
        Snapshot { upper, relations, lookups, completed, batches }
    }

    /// A relation's rows at this snapshot.
    pub fn relation(&self, id: RelationId) -> &RelationRows {
        match &self.lookups[id] {
            None => &self.relations[id],
            Some(lookup) => self.completed[id]
                .get_or_init(|| complete(&self.relations[id], &self.relations[lookup.relation], lookup)),
        }
    }

    /// A view's rows whose first column is `first` (a range of the view, not a
    /// scan), repeated by multiplicity. A view completed at read time completes only
    /// these, unless this snapshot has completed it whole already.
    pub fn with_first_column(&self, id: RelationId, first: &Datum) -> Vec<Row> {
        match (&self.lookups[id], &self.relations[id], self.completed[id].get()) {
            (Some(lookup), RelationRows::Multiset(rows), None) => {
                let completed =
                    complete_rows(view_rows_with_first_column(rows, first), &self.relations[lookup.relation], lookup);
                completed.into_iter().flat_map(|(row, count)| std::iter::repeat_n(row, count)).collect()
            }
            _ => self.relation(id).with_first_column(first).collect(),
        }
    }

    /// Every row of the relations `ids` (not completed at read time), packed as
    /// inserts, each relation in its order.
    pub fn pack_rows(&self, ids: impl Iterator<Item = RelationId>) -> PackedChanges {
        let mut changes = PackedChanges::default();
        for id in ids {
            assert!(self.lookups[id].is_none(), "rows completed at read time are not packed");
            self.relations[id].for_each_packed(|packed, count, event_time| {
                changes.push_packed(id, packed, count as isize, event_time)
            });
        }
        changes
    }

    /// The rows of a source relation whose event time is before `horizon` (the ones
    /// expiry at `horizon` drops), repeated by multiplicity; none for other relations.
    pub fn rows_before(&self, id: RelationId, horizon: Micros) -> Vec<Row> {
        let mut rows = Vec::new();
        if let RelationRows::Events { events } = &self.relations[id] {
            events.for_each_before(horizon, |_, packed| rows.push(unpack(packed)));
        }
        rows
    }

    /// How many rows a relation has (without completing a read-time view).
    pub fn len(&self, id: RelationId) -> usize {
        self.relations[id].len()
    }

    /// Rows of a relation, repeated by multiplicity.
    pub fn rows(&self, id: RelationId) -> Vec<Row> {
        self.relation(id).rows().map(Cow::into_owned).collect()
    }

    /// The relation as one Arrow batch, converted once per snapshot.
    pub fn batch(&self, id: RelationId, build: impl FnOnce(&RelationRows) -> RecordBatch) -> RecordBatch {
        self.batches[id].get_or_init(|| build(self.relation(id))).clone()
    }
}

/// Completes every maintained row of a read-time view with the lookup row of its
/// key.
fn complete(maintained: &RelationRows, lookup_rows: &RelationRows, lookup: &Lookup) -> RelationRows {
    let RelationRows::Multiset(rows) = maintained else { unreachable!("read-time lookups complete views") };
    RelationRows::Completed(complete_rows(rows.iter(), lookup_rows, lookup))
}

/// Completes maintained rows given in row order. The key is their first column in
/// every lookup there is, so rows with one key are adjacent: one search per key.
fn complete_rows<'a>(
    rows: impl Iterator<Item = &'a PackedRow>,
    lookup_rows: &RelationRows,
    lookup: &Lookup,
) -> Vec<(Row, usize)> {
    let RelationRows::Multiset(_) = lookup_rows else { unreachable!("read-time lookups join views") };
    let find = |key: &Datum| -> Option<Row> {
        if key.is_null() {
            return None; // NULL matches no key in a join
        }
        lookup_rows.with_first_column(key).next()
    };
    let mut last: Option<(Datum, Option<Row>)> = None;
    rows.map(|packed| {
        let row = packed.unpack();
        let key = &row[lookup.key_column];
        if last.as_ref().is_none_or(|(last_key, _)| last_key != key) {
            last = Some((key.clone(), find(key)));
        }
        let found = last.as_ref().and_then(|(_, found)| found.as_deref());
        ((lookup.complete)(&row, found), packed.multiplicity())
    })
    .collect()
}

/// The changes that took the store from one snapshot to the next.
pub struct ChangeBatch {
    /// The snapshot these changes lead to contains every change before `upper`
    /// (`None`: compute shut down).
    pub upper: Option<Time>,
    /// Consolidated: each row at most once, retractions first. Views completed at
    /// read time are left out: their changes are derived from `maintained` by
    /// [`crate::engine::subscription::Completer`].
    pub changes: Vec<(RelationId, Row, isize)>,
    /// Changes of views completed at read time, as the dataflow maintains them
    /// (without their completed columns); empty unless a feed asked for them.
    pub maintained: Vec<(RelationId, Row, isize)>,
    /// The store after these changes (a snapshot no reader builds caches in).
    pub snapshot: Arc<Snapshot>,
}

impl std::fmt::Debug for ChangeBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeBatch")
            .field("upper", &self.upper)
            .field("changes", &self.changes)
            .field("maintained", &self.maintained)
            .finish()
    }
}

/// How many changes a feed taken with [`Store::subscribe`] may have waiting before the
/// store drops it: what a sink may fall behind by.
pub const DEFAULT_MAX_PENDING_CHANGES: usize = 1_000_000;

/// A subscriber's change feed: every change batch after its snapshot, in order, as
/// long as it keeps up. Batches the store has sent and the subscriber has not taken
/// are bounded: past `max_pending` changes waiting (a batch counts at least one), the
/// store drops the feed ([`FeedEnd::Lagged`]) rather than block on it or hold more.
/// Batches are shared by every feed, so many slow subscribers together hold no more
/// than the slowest one.
pub struct ChangeFeed {
    /// Bounded by the count in `shared`, not by the channel: the bound is in changes.
    batches: UnboundedReceiver<Arc<ChangeBatch>>,
    shared: Arc<FeedShared>,
}

/// What a feed's two ends share.
struct FeedShared {
    max_pending: usize,
    /// Changes sent and not taken yet.
    pending: AtomicUsize,
    /// Set once, when the store drops the feed for falling behind.
    lagged: OnceLock<Lagged>,
    /// Woken when `lagged` is set.
    lag_signal: tokio::sync::Notify,
    /// Whether batches carry the maintained changes of views completed at read time.
    wants_maintained: bool,
}

/// The store's end of a feed.
struct FeedSender {
    batches: UnboundedSender<Arc<ChangeBatch>>,
    shared: Arc<FeedShared>,
}

/// A feed the store dropped because its subscriber fell behind.
#[derive(Clone)]
pub struct Lagged {
    /// Changes that were waiting for the subscriber when it was dropped.
    pub pending: usize,
    /// The bound they would have passed.
    pub max_pending: usize,
    /// The store as it was after the last batch the feed holds: a subscriber that must
    /// miss nothing takes every batch left in the feed, then catches up from this
    /// snapshot to a new subscription's ([`Store::changes_between`]).
    pub last: Arc<Snapshot>,
}

impl std::fmt::Debug for Lagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lagged")
            .field("pending", &self.pending)
            .field("max_pending", &self.max_pending)
            .field("last_upper", &self.last.upper)
            .finish()
    }
}

impl std::fmt::Display for Lagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "too slow: {} changes behind (at most {} may wait)", self.pending, self.max_pending)
    }
}

/// Why a feed has no more batches.
#[derive(Debug, Clone)]
pub enum FeedEnd {
    /// Compute shut down: nothing more will change.
    Closed,
    /// The subscriber fell behind and the store dropped the feed.
    Lagged(Lagged),
}

impl ChangeFeed {
    /// The next batch; the batches already sent come first, even after the store
    /// dropped the feed for lagging.
    pub async fn recv(&mut self) -> Result<Arc<ChangeBatch>, FeedEnd> {
        match self.batches.recv().await {
            Some(batch) => Ok(self.took(batch)),
            None => Err(self.end()),
        }
    }

    /// The next batch if one is waiting (`Ok(None)`: none yet).
    pub fn try_recv(&mut self) -> Result<Option<Arc<ChangeBatch>>, FeedEnd> {
        match self.batches.try_recv() {
            Ok(batch) => Ok(Some(self.took(batch))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.end()),
        }
    }

    /// Whether the store has dropped the feed for lagging (batches may still wait in it).
    pub fn lag(&self) -> Option<&Lagged> {
        self.shared.lagged.get()
    }

    /// A handle that tells when the store drops this feed for lagging, to wait on
    /// beside [`ChangeFeed::recv`]: for a subscriber that stops at once rather than
    /// take what is left.
    pub fn lag_watch(&self) -> LagWatch {
        LagWatch(self.shared.clone())
    }

    /// Changes sent and not taken yet.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    fn took(&self, batch: Arc<ChangeBatch>) -> Arc<ChangeBatch> {
        self.shared.pending.fetch_sub(batch_cost(&batch), Ordering::Relaxed);
        batch
    }

    fn end(&self) -> FeedEnd {
        match self.shared.lagged.get() {
            Some(lagged) => FeedEnd::Lagged(lagged.clone()),
            None => FeedEnd::Closed,
        }
    }
}

/// See [`ChangeFeed::lag_watch`].
pub struct LagWatch(Arc<FeedShared>);

impl LagWatch {
    /// Waits until the store drops the feed for lagging.
    pub async fn lagged(&self) -> &Lagged {
        loop {
            let woken = self.0.lag_signal.notified();
            if let Some(lagged) = self.0.lagged.get() {
                return lagged;
            }
            woken.await;
        }
    }
}

/// What a batch counts against a feed's bound: its changes, at least one (an empty
/// batch still takes room).
fn batch_cost(batch: &ChangeBatch) -> usize {
    batch.changes.len().max(1)
}

impl FeedSender {
    /// Sends `batch` if the feed has room for it; otherwise marks the feed lagged,
    /// `last` being the store after the batches it holds. False: drop this feed.
    fn send(&self, batch: &Arc<ChangeBatch>, last: &Arc<Snapshot>) -> bool {
        let cost = batch_cost(batch);
        let pending = self.shared.pending.load(Ordering::Relaxed);
        // A batch larger than the bound still goes to a feed that has taken everything.
        if pending > 0 && pending.saturating_add(cost) > self.shared.max_pending {
            let lagged = Lagged { pending, max_pending: self.shared.max_pending, last: last.clone() };
            let _ = self.shared.lagged.set(lagged);
            self.shared.lag_signal.notify_one();
            return false;
        }
        self.shared.pending.fetch_add(cost, Ordering::Relaxed);
        self.batches.send(batch.clone()).is_ok()
    }
}

/// The latest snapshot, a way to wait for a time to become visible, and change feeds.
///
/// Feeds leave out views completed at read time: their changes are the join's,
/// which is the cost completing at read time avoids (no sink or stream follows one).
pub struct Store {
    current: RwLock<Arc<Snapshot>>,
    lookups: Arc<[Option<Lookup>]>,
    /// How much event time source relations keep, behind their newest event.
    keep: Micros,
    upper_watch: tokio::sync::watch::Sender<Option<Time>>,
    /// Per relation, the column of a source's event time.
    event_time_columns: Box<[Option<usize>]>,
    /// Change feeds (sinks, WebSocket streams, SUBSCRIBE). Locked while a new
    /// snapshot is installed, so a subscriber's first snapshot and its first
    /// change batch line up exactly.
    subscribers: Mutex<Vec<FeedSender>>,
}

impl Store {
    /// `keep`: how much event time source relations hold, behind their newest event.
    pub fn new(catalog: &Catalog, keep: Micros) -> Arc<Store> {
        let relations: Vec<_> = catalog.iter().map(|(_, spec)| RelationRows::new(&spec.kind)).collect();
        let lookups: Arc<[Option<Lookup>]> = catalog.iter().map(|(id, _)| catalog.read_time_lookup(id)).collect();
        let event_time_columns = catalog
            .iter()
            .map(|(_, spec)| match spec.kind {
                RelationKind::Source { event_time_column } => Some(event_time_column),
                _ => None,
            })
            .collect();
        Arc::new(Store {
            keep,
            event_time_columns,
            current: RwLock::new(Arc::new(Snapshot::new(0, relations, lookups.clone()))),
            lookups,
            upper_watch: tokio::sync::watch::channel(Some(0)).0,
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// The current snapshot and every change after it, batch by batch, bounded by
    /// [`DEFAULT_MAX_PENDING_CHANGES`]. The feed ends when compute shuts down, or when
    /// the subscriber falls behind ([`ChangeFeed`]).
    pub fn subscribe(&self) -> (Arc<Snapshot>, ChangeFeed) {
        self.subscribe_bounded(DEFAULT_MAX_PENDING_CHANGES)
    }

    /// [`Store::subscribe`], dropped once more than `max_pending` changes wait for the
    /// subscriber.
    pub fn subscribe_bounded(&self, max_pending: usize) -> (Arc<Snapshot>, ChangeFeed) {
        self.subscribe_with(max_pending, false)
    }

    /// [`Store::subscribe_bounded`]; with `wants_maintained`, each batch also carries
    /// the maintained changes of views completed at read time ([`ChangeBatch::maintained`]),
    /// which following one of them takes.
    pub fn subscribe_with(&self, max_pending: usize, wants_maintained: bool) -> (Arc<Snapshot>, ChangeFeed) {
        let mut subscribers = self.subscribers.lock().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(FeedShared {
            max_pending: max_pending.max(1),
            pending: AtomicUsize::new(0),
            lagged: OnceLock::new(),
            lag_signal: tokio::sync::Notify::new(),
            wants_maintained,
        });
        subscribers.push(FeedSender { batches: tx, shared: shared.clone() });
        (self.snapshot(), ChangeFeed { batches: rx, shared })
    }

    /// Followers of the store's change feeds now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().unwrap().len()
    }

    /// The changes of `relations` that take `earlier` to `later` (a later snapshot of
    /// this store), consolidated: how a subscriber the store dropped catches up
    /// without the store buffering for it. Costs a pass over both snapshots' rows of
    /// those relations. A source's events that expired in between (older than
    /// `later` keeps) are not changes, as in the feed.
    pub fn changes_between(&self, earlier: &Snapshot, later: &Arc<Snapshot>, relations: &[RelationId]) -> ChangeBatch {
        let mut changes = Vec::new();
        for &relation in relations {
            if self.lookups[relation].is_some() {
                // Completed rows are not packed: compared as rows, whole.
                let counted = |snapshot: &Snapshot| {
                    let mut rows: Vec<(Row, isize)> =
                        snapshot.relation(relation).rows().map(|r| (r.into_owned(), 1)).collect();
                    differential_dataflow::consolidation::consolidate(&mut rows);
                    rows
                };
                let mut both: Vec<(Row, isize)> = counted(later);
                both.extend(counted(earlier).into_iter().map(|(row, count)| (row, -count)));
                differential_dataflow::consolidation::consolidate(&mut both);
                changes.extend(both.into_iter().map(|(row, diff)| (relation, row, diff)));
                continue;
            }
            let horizon = later.relations[relation].newest_event().map_or(Micros::MIN, |n| n.saturating_sub(self.keep));
            let sorted = |snapshot: &Snapshot| {
                let mut rows: Vec<(Micros, Vec<u8>, isize)> = Vec::new();
                snapshot.relations[relation].for_each_packed(|packed, count, time| {
                    rows.push((time, packed.to_vec(), count as isize));
                });
                rows.sort_unstable();
                rows
            };
            let (before, after) = (sorted(earlier), sorted(later));
            let (mut old, mut new) = (before.into_iter().peekable(), after.into_iter().peekable());
            let mut emit = |packed: &[u8], diff: isize| {
                if diff != 0 {
                    changes.push((relation, unpack(packed), diff));
                }
            };
            loop {
                match (old.peek(), new.peek()) {
                    (None, None) => break,
                    (Some(o), Some(n)) if (o.0, &o.1) == (n.0, &n.1) => {
                        let (o, n) = (old.next().expect("peeked"), new.next().expect("peeked"));
                        emit(&n.1, n.2 - o.2);
                    }
                    (Some(o), n) if n.is_none_or(|n| (o.0, &o.1) < (n.0, &n.1)) => {
                        let o = old.next().expect("peeked");
                        if o.0 >= horizon {
                            emit(&o.1, -o.2);
                        }
                    }
                    _ => {
                        let n = new.next().expect("peeked");
                        emit(&n.1, n.2);
                    }
                }
            }
        }
        // Retractions first, as in the feed.
        changes.sort_by_key(|change| change.2 > 0);
        ChangeBatch { upper: Some(later.upper), changes, maintained: Vec::new(), snapshot: later.clone() }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap().clone()
    }

    /// The store's copy of an input batch, packed (ingest sends it ahead of compute).
    pub fn pack_inputs(&self, time: Time, updates: &[(RelationId, Row, isize)]) -> PackedInputs {
        let mut changes = PackedChanges::with_capacity(updates.len());
        for (relation, row, diff) in updates {
            changes.push(*relation, row, *diff, self.event_time(*relation, row));
        }
        PackedInputs { time, changes }
    }

    /// Puts a checkpoint's input relations (`rows`, as [`Snapshot::pack_rows`] wrote
    /// them) in the store. Called before the store thread starts, whose first snapshot
    /// then holds them: they are the store's state at the checkpoint, applied in the
    /// order they were kept (each source's events oldest first, which only append),
    /// without the sort and merge a batch of changes needs.
    pub fn load_checkpoint_rows(&self, rows: &PackedChanges) {
        let mut current = self.current.write().unwrap();
        let mut relations = current.relations.clone();
        let mut scratch = Vec::new();
        for change in rows.iter() {
            relations[change.relation].apply(change, &mut scratch);
        }
        *current = Arc::new(Snapshot::new(current.upper, relations, self.lookups.clone()));
    }

    /// The event time of a row of `relation` if it is a source, else 0.
    /// Where expiry stands for source relation `id` in `snapshot`: its rows before
    /// this event time are gone (`None`: not a source, or empty).
    pub fn expiry_horizon(&self, snapshot: &Snapshot, id: RelationId) -> Option<Micros> {
        self.event_time_columns[id]?;
        snapshot.relations[id].newest_event().map(|newest| newest.saturating_sub(self.keep))
    }

    /// The event time of a row of `relation` (0 if it is not a source).
    pub fn event_time(&self, relation: RelationId, row: &[Datum]) -> Micros {
        self.event_time_columns[relation].map_or(0, |column| event_time(row, column))
    }

    /// Applies compute's output batches, with the input batches ingest sent at the
    /// same times, until compute shuts down. Runs on its own thread.
    ///
    /// Ingest sends an input batch here before compute sees it, so by the time an
    /// output batch says a time is complete, that time's inputs are waiting in `inputs`.
    pub fn apply_outputs(&self, outputs: Receiver<OutputBatch>, inputs: Receiver<PackedInputs>) {
        let mut relations = self.snapshot().relations.clone();
        let mut waiting_inputs: VecDeque<PackedInputs> = VecDeque::new();
        let mut scratch = Vec::new();
        while let Ok(batch) = outputs.recv() {
            let mut upper = batch.upper;
            let mut changes = PackedChanges::with_capacity(batch.changes.len());
            let mut pack_outputs = |outputs: Vec<(RelationId, Row, isize)>| {
                for (relation, row, diff) in outputs {
                    changes.push(relation, &row, diff, self.event_time(relation, &row));
                }
            };
            pack_outputs(batch.changes);
            // Coalesce whatever else is already waiting: fewer, larger snapshots under load.
            while let Ok(more) = outputs.try_recv() {
                pack_outputs(more.changes);
                upper = more.upper;
            }
            waiting_inputs.extend(inputs.try_iter());
            while waiting_inputs.front().is_some_and(|i| upper.is_none_or(|upper| i.time < upper)) {
                changes.append(waiting_inputs.pop_front().expect("checked").changes);
            }
            // Held until the new snapshot is in: whoever subscribes meanwhile gets it,
            // and the feed only from the next batch on.
            let mut subscribers = self.subscribers.lock().unwrap();
            changes.consolidate();
            // Rows are unpacked for feeds only when someone follows one.
            let (unpack_plain, unpack_maintained) =
                (!subscribers.is_empty(), subscribers.iter().any(|s| s.shared.wants_maintained));
            let mut feed_changes = Vec::new();
            let mut maintained = Vec::new();
            if unpack_plain {
                for change in changes.iter() {
                    match self.lookups[change.relation] {
                        None => feed_changes.push((change.relation, change.row(), change.diff)),
                        Some(_) if unpack_maintained => maintained.push((change.relation, change.row(), change.diff)),
                        Some(_) => {}
                    }
                }
            }
            for change in changes.iter() {
                relations[change.relation].apply(change, &mut scratch);
            }
            // Sources keep a window of event time; expiry is not a change (the
            // dataflow still holds those events), so feeds do not see it.
            for rows in relations.iter_mut() {
                if let Some(newest) = rows.newest_event() {
                    rows.expire_before(newest.saturating_sub(self.keep));
                }
            }
            let new_snapshot =
                || Arc::new(Snapshot::new(upper.unwrap_or(Time::MAX), relations.clone(), self.lookups.clone()));
            let replaced = std::mem::replace(&mut *self.current.write().unwrap(), new_snapshot());
            if unpack_plain {
                // A snapshot of its own, not the readers': what readers cache in theirs
                // (Arrow copies) is not held by batches waiting in slow feeds.
                let feed = Arc::new(ChangeBatch { upper, changes: feed_changes, maintained, snapshot: new_snapshot() });
                subscribers.retain(|s| s.send(&feed, &replaced));
            }
            drop(subscribers);
            self.upper_watch.send_replace(upper);
            // Freeing what only the old snapshot held waits until readers were told.
            drop(replaced);
            if upper.is_none() {
                break;
            }
        }
    }

    /// Follows the upper of what is visible (`None` once compute has shut down).
    pub fn visible_upper(&self) -> tokio::sync::watch::Receiver<Option<Time>> {
        self.upper_watch.subscribe()
    }
    /// Waits until every change at `time` is visible. Returns false if compute shut down first.
    pub async fn wait_visible(&self, time: Time) -> bool {
        let mut watch = self.visible_upper();
        let reached = watch.wait_for(|&upper| is_past(upper, time)).await;
        matches!(reached.as_deref(), Ok(Some(_)))
    }

    /// Blocking twin of [`Store::wait_visible`].
    pub fn wait_visible_blocking(&self, time: Time) -> bool {
        futures::executor::block_on(self.wait_visible(time))
    }
}

/// Whether a visible upper is past `time`: every change at `time` is visible, or
/// compute has shut down (`None`) and nothing more will be.
pub fn is_past(upper: Option<Time>, time: Time) -> bool {
    upper.is_none_or(|u| u > time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A store applying output batches on a thread of its own, as the engine runs it,
    /// with a view and a table to change (neither completed at read time).
    struct Running {
        store: Arc<Store>,
        outputs: std::sync::mpsc::Sender<OutputBatch>,
        _inputs: std::sync::mpsc::Sender<PackedInputs>,
        view: RelationId,
        table: RelationId,
        table_width: usize,
        primary_key: Vec<usize>,
    }

    impl Running {
        fn start() -> Running {
            let catalog = Catalog::all_pipelines();
            let store = Store::new(&catalog, Micros::MAX);
            let plain = |id: RelationId| catalog.read_time_lookup(id).is_none();
            let view = catalog.iter().find(|(id, spec)| plain(*id) && spec.kind == RelationKind::View).unwrap().0;
            let (table, spec) =
                catalog.iter().find(|(_, spec)| matches!(spec.kind, RelationKind::Table { .. })).unwrap();
            let RelationKind::Table { primary_key } = &spec.kind else { unreachable!() };
            let (outputs, outputs_rx) = std::sync::mpsc::channel();
            let (inputs, inputs_rx) = std::sync::mpsc::channel();
            let applying = store.clone();
            std::thread::spawn(move || applying.apply_outputs(outputs_rx, inputs_rx));
            Running {
                store,
                outputs,
                _inputs: inputs,
                view,
                table,
                table_width: spec.columns.len(),
                primary_key: primary_key.clone(),
            }
        }

        /// Publishes one batch and waits until it is visible (so batches are not coalesced).
        fn publish(&self, upper: Time, changes: Vec<(RelationId, Row, isize)>) {
            self.outputs.send(OutputBatch { upper: Some(upper), changes }).unwrap();
            assert!(self.store.wait_visible_blocking(upper - 1));
        }

        fn view_row(&self, name: &str) -> (RelationId, Row, isize) {
            (self.view, vec![Datum::text(name)], 1)
        }

        /// A table row whose key columns hold `key` and the others `value`.
        fn table_row(&self, key: i32, value: i32, diff: isize) -> (RelationId, Row, isize) {
            let row = (0..self.table_width)
                .map(|c| Datum::Int32(if self.primary_key.contains(&c) { key } else { value }))
                .collect();
            (self.table, row, diff)
        }
    }

    fn sorted(mut changes: Vec<(RelationId, Row, isize)>) -> Vec<(RelationId, Row, isize)> {
        changes.sort();
        changes
    }

    /// A feed holds at most its bound of changes: the batch that would pass it drops the
    /// feed, which still yields what it held, then why it ended and where it stopped;
    /// a feed that keeps up is not affected. The changes from where it stopped to a new
    /// subscription are those of the batches it missed, consolidated.
    #[test]
    fn a_feed_that_falls_behind_is_dropped_and_catches_up_from_snapshots() {
        let running = Running::start();
        let (_, mut slow) = running.store.subscribe_bounded(5);
        let (_, mut fast) = running.store.subscribe_bounded(5);
        let (a, b, c, d) = (running.view_row("a"), running.view_row("b"), running.view_row("c"), running.view_row("d"));
        let with_diff = |(relation, row, _): (RelationId, Row, isize), diff: isize| (relation, row, diff);
        let batches = [
            vec![a.clone(), with_diff(b.clone(), 2), running.table_row(1, 10, 1)],
            vec![c.clone(), running.table_row(2, 10, 1)],
            vec![with_diff(a.clone(), -1), b.clone(), running.table_row(1, 10, -1), running.table_row(1, 11, 1)],
            vec![d.clone(), with_diff(c.clone(), -1)],
        ];
        for (i, changes) in batches.iter().enumerate() {
            running.publish(i as Time + 1, changes.clone());
            let taken = fast.try_recv().expect("the fast feed is not dropped").expect("a batch");
            assert_eq!(sorted(taken.changes.clone()), sorted(changes.clone()));
            assert_eq!(fast.pending(), 0);
        }
        assert!(fast.lag().is_none());
        assert_eq!(running.store.subscribers(), 1, "the slow feed is dropped, the fast one kept");

        // 3 + 2 changes fit in 5; the third batch would not.
        let lagged = slow.lag().expect("the slow feed is dropped").clone();
        assert_eq!((lagged.pending, lagged.max_pending, lagged.last.upper), (5, 5, 2));
        for upper in [1, 2] {
            assert_eq!(slow.try_recv().unwrap().expect("what the feed held").upper, Some(upper));
        }
        match slow.try_recv() {
            Err(FeedEnd::Lagged(end)) => assert_eq!(end.last.upper, 2),
            other => panic!("expected the lag, got {:?}", other.map(|b| b.map(|b| b.upper))),
        }

        let (now, _) = running.store.subscribe();
        assert_eq!(now.upper, 4);
        let caught_up = running.store.changes_between(&lagged.last, &now, &[running.view, running.table]);
        assert_eq!(caught_up.upper, Some(4));
        let expected =
            vec![with_diff(a, -1), b, with_diff(c, -1), d, running.table_row(1, 10, -1), running.table_row(1, 11, 1)];
        assert_eq!(sorted(caught_up.changes.clone()), sorted(expected));
        assert!(caught_up.changes.is_sorted_by_key(|change| change.2 > 0), "retractions first");
    }

    #[derive(Clone, Debug)]
    enum Change {
        /// A row `(id, event time)`, `count` times.
        Add { id: i32, time: Option<Micros>, count: isize },
        /// Retracts the `nth` event held (modulo how many there are), once.
        Retract { nth: usize },
        /// Expires events older than this.
        Expire { horizon: Micros },
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            6 => (0..4i32, prop::option::weighted(0.95, 0..20i64), 1..3isize)
                .prop_map(|(id, time, count)| Change::Add { id, time, count }),
            1 => any::<usize>().prop_map(|nth| Change::Retract { nth }),
            1 => (0..20i64).prop_map(|horizon| Change::Expire { horizon }),
        ]
    }

    /// Packs `row` and applies it with `diff`, as the store does (a source's event
    /// time is in column 1, as in `event_row`).
    fn apply_row(rows: &mut RelationRows, row: Row, diff: isize, scratch: &mut Vec<u8>) {
        let time = match rows {
            RelationRows::Events { .. } => event_time(&row, 1),
            _ => 0,
        };
        let mut changes = PackedChanges::default();
        changes.push(0, &row, diff, time);
        rows.apply(changes.iter().next().expect("one change"), scratch);
    }

    fn event_row(id: i32, time: Option<Micros>) -> Row {
        vec![Datum::Int32(id), time.map_or(Datum::Null, Datum::Timestamp)]
    }

    proptest! {
        /// A source holds exactly its events, in (event time, row) order, whatever
        /// order they arrive in (late events, ties, NULL times, multiplicities),
        /// through retractions and expiry; a snapshot taken before a change keeps
        /// what it held.
        #[test]
        fn source_events_match_a_sorted_list(changes in prop::collection::vec(change(), 1..200)) {
            let mut source = RelationRows::new(&RelationKind::Source { event_time_column: 1 });
            let mut model: Vec<(Micros, Row)> = Vec::new();
            let mut scratch = Vec::new();
            for change in changes {
                let before = source.clone();
                let model_before = model.clone();
                match change {
                    Change::Add { id, time, count } => {
                        apply_row(&mut source, event_row(id, time), count, &mut scratch);
                        for _ in 0..count {
                            model.push((time.unwrap_or(Micros::MIN), event_row(id, time)));
                        }
                    }
                    Change::Retract { nth } if !model.is_empty() => {
                        let (_, row) = model.remove(nth % model.len());
                        apply_row(&mut source, row, -1, &mut scratch);
                    }
                    Change::Retract { .. } => {}
                    Change::Expire { horizon } => {
                        source.expire_before(horizon);
                        model.retain(|(time, _)| *time >= horizon);
                    }
                }
                model.sort();
                let held: Vec<Row> = source.rows().map(Cow::into_owned).collect();
                let expected: Vec<Row> = model.iter().map(|(_, row)| row.clone()).collect();
                prop_assert_eq!(held, expected);
                prop_assert_eq!(source.len(), model.len());
                prop_assert_eq!(source.newest_event(), model.last().map(|(time, _)| *time));
                let kept: Vec<Row> = before.rows().map(Cow::into_owned).collect();
                prop_assert_eq!(kept, model_before.into_iter().map(|(_, row)| row).collect::<Vec<_>>());
            }
        }
    }

    proptest! {
        /// A view holds each row as many times as its changes add up to, through
        /// changes of multiplicity and removals; lookups by first column find
        /// exactly those rows; a snapshot taken before a change keeps what it held.
        #[test]
        fn view_rows_match_a_counted_map(changes in prop::collection::vec((0..3i32, 0..4i32, 1..4isize, any::<bool>()), 1..120)) {
            let mut view = RelationRows::new(&RelationKind::View);
            let mut model: std::collections::BTreeMap<Row, usize> = Default::default();
            let mut scratch = Vec::new();
            for (first, second, amount, retract) in changes {
                let before = view.clone();
                let model_before = model.clone();
                let row = vec![Datum::Int32(first), Datum::Text(format!("r{second}"))];
                let held = model.get(&row).copied().unwrap_or(0);
                // A retraction takes at most what is held: the dataflow never retracts more.
                let diff = if retract { -(amount.min(held as isize)) } else { amount };
                if diff == 0 {
                    continue;
                }
                apply_row(&mut view, row.clone(), diff, &mut scratch);
                let count = (held as isize + diff) as usize;
                if count == 0 { model.remove(&row); } else { model.insert(row, count); }
                let expand = |model: &std::collections::BTreeMap<Row, usize>| -> Vec<Row> {
                    model.iter().flat_map(|(row, count)| std::iter::repeat_n(row.clone(), *count)).collect()
                };
                prop_assert_eq!(view.rows().map(Cow::into_owned).collect::<Vec<_>>(), expand(&model));
                prop_assert_eq!(view.len(), model.values().sum::<usize>());
                let starting = view.with_first_column(&Datum::Int32(first)).collect::<Vec<_>>();
                let expected: Vec<Row> = expand(&model).into_iter().filter(|row| row[0] == Datum::Int32(first)).collect();
                prop_assert_eq!(starting, expected);
                prop_assert_eq!(before.rows().map(Cow::into_owned).collect::<Vec<_>>(), expand(&model_before));
            }
        }
    }
}
