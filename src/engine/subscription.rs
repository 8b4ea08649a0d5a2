//! Following relations: their rows at one time, then every change after it, batch by
//! batch, with the views completed at read time completed. What SUBSCRIBE, the live
//! dashboard and the Kafka sinks read.
//!
//! A view completed at read time (`dynamic_pricing_enriched`) is kept without the
//! columns a lookup fills in (see [`crate::engine::catalog::Lookup`]), so the store's
//! feed cannot carry its changes: a change of one lookup row changes every row it
//! completes, and the store would have to join to know them, on the one thread every
//! change passes through. [`Completer`] does that join for the follower, on the
//! follower's thread, from the maintained changes and the snapshots before and after:
//! what following the view costs is paid only by those who follow it.

use std::collections::BTreeSet;
use std::sync::Arc;

use differential_dataflow::consolidation::consolidate;
use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, Row};

use crate::compute::RelationId;
use crate::engine::catalog::{Catalog, Lookup};
use crate::engine::store::{ChangeBatch, ChangeFeed, FeedEnd, LagWatch, Lagged, Snapshot, Store};

/// A snapshot of some relations, then their changes, completed where they must be.
pub struct Subscription {
    feed: ChangeFeed,
    completer: Completer,
    snapshot: Arc<Snapshot>,
}

impl Subscription {
    /// Follows `relations` from the store's current snapshot; the store drops the
    /// subscription once more than `max_pending` changes wait for it ([`FeedEnd::Lagged`]).
    ///
    /// A source relation's rows that expire (`--retention`) are retracted, so the
    /// changes fold to what a SELECT reads at every time.
    pub fn new(store: &Arc<Store>, catalog: &Catalog, relations: &[RelationId], max_pending: usize) -> Subscription {
        let completer_needed = relations.iter().any(|&id| catalog.read_time_lookup(id).is_some());
        let (snapshot, feed) = store.subscribe_with(max_pending, completer_needed);
        let mut subscription = Subscription::from_feed(catalog, relations, snapshot, feed);
        subscription.completer.expiry = Some(Expiry(store.clone()));
        subscription
    }

    /// Follows `relations` on a feed taken at `snapshot` (which must carry maintained
    /// changes if one of them is completed at read time: [`Store::subscribe_with`]).
    /// Expiry is not a change here: the Kafka sinks do not delete old events downstream.
    pub fn from_feed(
        catalog: &Catalog,
        relations: &[RelationId],
        snapshot: Arc<Snapshot>,
        feed: ChangeFeed,
    ) -> Subscription {
        Subscription { completer: Completer::new(catalog, relations, snapshot.clone()), feed, snapshot }
    }

    /// The snapshot the subscription starts from.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The followed relations' rows at the snapshot, as inserts: each distinct row once,
    /// with its multiplicity.
    pub fn snapshot_rows(&self) -> Vec<(RelationId, Row, isize)> {
        let mut out = Vec::new();
        for &relation in &self.completer.relations {
            let mut rows: Vec<(Row, isize)> =
                self.snapshot.relation(relation).rows().map(|row| (row.into_owned(), 1)).collect();
            consolidate(&mut rows);
            out.extend(rows.into_iter().map(|(row, count)| (relation, row, count)));
        }
        out
    }

    /// The next batch of the followed relations' changes (possibly none: the store
    /// moved on without changing them), with its upper.
    pub async fn recv(&mut self) -> Result<Step, FeedEnd> {
        let batch = self.feed.recv().await?;
        Ok(self.completer.step(&batch))
    }

    /// [`Subscription::recv`] if a batch is waiting (`Ok(None)`: none yet).
    pub fn try_recv(&mut self) -> Result<Option<Step>, FeedEnd> {
        Ok(self.feed.try_recv()?.map(|batch| self.completer.step(&batch)))
    }

    /// Tells when the store drops this subscription for falling behind.
    pub fn lag_watch(&self) -> LagWatch {
        self.feed.lag_watch()
    }

    /// Whether the store has dropped this subscription (batches may still wait in it).
    pub fn lag(&self) -> Option<&Lagged> {
        self.feed.lag()
    }

    /// Changes sent and not taken yet.
    pub fn pending(&self) -> usize {
        self.feed.pending()
    }

    /// The relations followed.
    pub fn relations(&self) -> &[RelationId] {
        &self.completer.relations
    }
}

/// One step of a [`Subscription`]: the followed relations' changes that took the
/// store to its snapshot at `upper`.
#[derive(Clone)]
pub struct Step {
    /// Every change before it is in this step or an earlier one (`None`: compute shut down).
    pub upper: Option<Time>,
    /// Consolidated per relation: each row at most once.
    pub changes: Vec<(RelationId, Row, isize)>,
    /// The store after these changes.
    pub snapshot: Arc<Snapshot>,
}

/// Picks a follower's relations out of the store's change batches, and completes the
/// changes of views completed at read time.
pub struct Completer {
    /// Followed, in ascending id order.
    relations: Vec<RelationId>,
    /// Per relation id: followed.
    followed: Vec<bool>,
    /// The followed views completed at read time, with how.
    completed: Vec<(RelationId, Lookup)>,
    /// The store before the next batch.
    before: Arc<Snapshot>,
    /// With it, source rows that expire are retracted.
    expiry: Option<Expiry>,
}

/// How a [`Completer`] tells which source rows expired.
struct Expiry(Arc<Store>);

impl Completer {
    /// Follows `relations` from the store as `before` shows it.
    pub fn new(catalog: &Catalog, relations: &[RelationId], before: Arc<Snapshot>) -> Completer {
        let relations: Vec<RelationId> = relations.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        let mut followed = vec![false; catalog.len()];
        for &id in &relations {
            followed[id] = true;
        }
        let completed =
            relations.iter().filter_map(|&id| catalog.read_time_lookup(id).map(|lookup| (id, lookup))).collect();
        Completer { relations, followed, completed, before, expiry: None }
    }

    /// The followed relations' changes in `batch`, completed.
    pub fn step(&mut self, batch: &ChangeBatch) -> Step {
        let mut changes: Vec<(RelationId, Row, isize)> =
            batch.changes.iter().filter(|(relation, _, _)| self.followed[*relation]).cloned().collect();
        for &(view, lookup) in &self.completed {
            changes.extend(completed_changes(view, &lookup, &self.before, &batch.snapshot, batch));
        }
        if let Some(Expiry(store)) = &self.expiry {
            for &relation in &self.relations {
                expire(store, relation, &self.before, &batch.snapshot, &mut changes);
            }
        }
        self.before = batch.snapshot.clone();
        Step { upper: batch.upper, changes, snapshot: batch.snapshot.clone() }
    }

    /// After catching up from snapshots instead of batches: the store is now as
    /// `before` shows it.
    pub fn reset(&mut self, before: Arc<Snapshot>) {
        self.before = before;
    }
}

/// Source relation `relation`'s expiry from `before` to `after`, applied to its
/// `changes`: the store applies a batch, then drops the events before the new horizon.
/// So a change of an event before it is not seen by any reader (a late event, or one
/// gone already), and every event `before` held under it is retracted.
fn expire(
    store: &Store,
    relation: RelationId,
    before: &Snapshot,
    after: &Snapshot,
    changes: &mut Vec<(RelationId, Row, isize)>,
) {
    let Some(horizon) = store.expiry_horizon(after, relation) else { return };
    changes.retain(|(r, row, _)| *r != relation || store.event_time(relation, row) >= horizon);
    changes.extend(before.rows_before(relation, horizon).into_iter().map(|row| (relation, row, -1)));
}

/// The changes of `view`, completed by `lookup`, from `before` to `after` (whose
/// maintained changes are in `batch`).
///
/// A maintained row whose key's lookup row did not change is completed the same way
/// before and after: its change is its maintained change, completed. For a key whose
/// lookup row changed, every row of that key may change: all its rows before are
/// retracted and all its rows after inserted, and the rows whose completed columns came
/// out the same cancel.
fn completed_changes(
    view: RelationId,
    lookup: &Lookup,
    before: &Snapshot,
    after: &Snapshot,
    batch: &ChangeBatch,
) -> Vec<(RelationId, Row, isize)> {
    // The lookup's key is its first column (see `Snapshot::with_first_column`).
    let changed_keys: BTreeSet<&Datum> = batch
        .changes
        .iter()
        .filter(|(relation, _, _)| *relation == lookup.relation)
        .filter_map(|(_, row, _)| row.first())
        .collect();
    let mut rows: Vec<(Row, isize)> = Vec::new();
    for (_, row, diff) in batch.maintained.iter().filter(|(relation, _, _)| *relation == view) {
        let key = &row[lookup.key_column];
        if changed_keys.contains(key) {
            continue;
        }
        // NULL matches no key in a join.
        let found = if key.is_null() { Vec::new() } else { after.with_first_column(lookup.relation, key) };
        rows.push(((lookup.complete)(row, found.first().map(|r| &r[..])), *diff));
    }
    for key in changed_keys {
        rows.extend(before.with_first_column(view, key).into_iter().map(|row| (row, -1)));
        rows.extend(after.with_first_column(view, key).into_iter().map(|row| (row, 1)));
    }
    consolidate(&mut rows);
    rows.into_iter().map(|(row, diff)| (view, row, diff)).collect()
}
