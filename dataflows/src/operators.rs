//! Operators differential does not ship, written as timely operators that emit
//! differential updates.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::consolidation::ConsolidatingContainerBuilder;
use differential_dataflow::difference::Abelian;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::operators::cursor::join::join_traces;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::container::PushInto;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map, Partition};
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::operate::FrontierInterest;

use serde::{Deserialize, Serialize};

use crate::Time;
use crate::datum::Micros;

/// Updates waiting for their time to complete, with the capability to answer at that time.
type Pending<K, V> = BTreeMap<Time, (Capability<Time>, Vec<((K, V), isize)>)>;

/// Reads a value's event time.
pub type EventTimeOf<V> = fn(&V) -> Micros;

/// A collection arranged by key, as `arrange_by_key` builds it.
pub type ByKey<'s, K, V> = Arranged<'s, TraceAgent<ValSpine<K, V, Time, isize>>>;

/// `left LEFT JOIN right USING (key)`, where `right` holds at most one row per key
/// (a GROUP BY's output, say): `row(key, left value, right value or NULL)` gives
/// each output row, or `None` for none (`None` whenever the right value is
/// present is an anti-join).
///
/// differential's `antijoin` would arrange both sides again and negate a
/// semijoin, six operators beside the join. Here one join over the arrangements
/// computes both sides: every left row contributes its NULL-extended row on its own
/// (read straight off the left arrangement), and each match adds its matched row and
/// takes that NULL-extended row back. This relies on `right`'s uniqueness: a key
/// with two right rows would take the NULL row back twice.
pub fn left_join_unique<'s, K, V, W, D>(
    left: ByKey<'s, K, V>,
    right: ByKey<'s, K, W>,
    row: impl Fn(&K, &V, Option<&W>) -> Option<D> + 'static,
) -> VecCollection<'s, Time, D>
where
    K: ExchangeData + Hashable,
    V: ExchangeData,
    W: ExchangeData,
    D: ExchangeData,
{
    let row = Rc::new(row);
    let unmatched = row.clone();
    let alone = left.clone().flat_map_ref(move |k, v| unmatched(k, v, None));
    let corrections = join_traces::<_, _, _, _, ConsolidatingContainerBuilder<Vec<(D, Time, isize)>>>(
        left,
        right,
        "LeftJoinUnique",
        move |k, v, w, t, r1, r2, output| {
            let r = r1 * r2;
            if let Some(matched) = row(k, v, Some(w)) {
                output.push_into((matched, t, r));
            }
            if let Some(alone) = row(k, v, None) {
                output.push_into((alone, t, -r));
            }
        },
    )
    .as_collection();
    alone.concat(corrections)
}

/// The greatest value per key, kept up to date under insertions *and* retractions.
///
/// `reduce` would re-read every value of a key whenever one changes, so a key's cost
/// would grow with its history. Here each key keeps its live values in a
/// `BTreeMap` (value → multiplicity): an update costs O(log n) and emits at most a
/// retraction of the old maximum and an insertion of the new one.
///
/// Updates are applied in timestamp order once the input frontier has passed
/// their time, so the output is a deterministic function of the input collection.
///
/// `forget`: for append-only inputs, `Some((event_time, retention))` drops a key's
/// values older than its greatest value's event time minus `retention` (never the
/// greatest itself), so memory follows the retention window instead of history.
/// The output is unchanged, since a dropped value can never become the maximum
/// again, but a later retraction of a dropped value would be lost: only use it
/// where nothing is ever retracted.
pub fn max_per_key<'s, K, V>(
    input: VecCollection<'s, Time, (K, V)>,
    forget: Option<(EventTimeOf<V>, Micros)>,
) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    input
        .inner
        .unary_frontier(
            Exchange::new(|((k, _v), _t, _r): &((K, V), Time, isize)| k.hashed()),
            "MaxPerKey",
            |_capability, _info| {
                // Pending updates by time, each with the capability to emit at that time.
                let mut pending: Pending<K, V> = BTreeMap::new();
                let mut live: HashMap<K, BTreeMap<V, isize>> = HashMap::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for ((k, v), t, r) in data.drain(..) {
                            pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push(((k, v), r));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (time, (cap, updates)) = entry.remove_entry();
                        let mut session = output.session(&cap);
                        // Old maxima of the keys this batch touches, before any change.
                        let mut before: HashMap<K, Option<V>> = HashMap::new();
                        for ((k, v), r) in updates {
                            let values = live.entry(k.clone()).or_default();
                            before.entry(k).or_insert_with(|| values.keys().next_back().cloned());
                            let count = values.entry(v.clone()).or_insert(0);
                            *count += r;
                            if *count == 0 {
                                values.remove(&v);
                            }
                        }
                        for (k, old) in before {
                            if let (Some((event_time, retention)), Some(values)) = (forget, live.get_mut(&k)) {
                                forget_older(values, event_time, retention);
                            }
                            let values = live.get(&k);
                            let new = values.and_then(|vs| vs.keys().next_back().cloned());
                            if values.is_some_and(|vs| vs.is_empty()) {
                                live.remove(&k);
                            }
                            if old != new {
                                if let Some(old) = old {
                                    session.give(((k.clone(), old), time, -1isize));
                                }
                                if let Some(new) = new {
                                    session.give(((k, new), time, 1isize));
                                }
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}

/// Drops values older than the greatest value's event time minus `retention`,
/// keeping the greatest. Values are ordered by event time first, so the old ones
/// are at the front.
fn forget_older<V: Ord + Clone>(values: &mut BTreeMap<V, isize>, event_time: fn(&V) -> Micros, retention: Micros) {
    let Some(newest) = values.keys().next_back().map(event_time) else { return };
    let horizon = newest.saturating_sub(retention);
    while values.len() > 1 {
        let oldest = values.keys().next().expect("non-empty").clone();
        if event_time(&oldest) >= horizon {
            break;
        }
        values.remove(&oldest);
    }
}

/// A per-worker state machine over keyed, order-dependent inputs (a casino member's
/// windows, a product's inventory book), fed one logical time's batch at a time.
pub trait ClockedState: 'static {
    type Input: ExchangeData;
    type Change: ExchangeData;
    /// Applies one batch of this worker's inputs. `batch_max` is the newest event time
    /// any worker saw in the batch (the shared clock); changes go to `out`.
    fn process(
        &mut self,
        batch: Vec<(Self::Input, isize)>,
        batch_max: Option<Micros>,
        out: &mut Vec<(Self::Change, isize)>,
    );
}

/// Splits a collection of `N` kinds of change into one collection per kind
/// (`kind` gives a change's index), in one pass that moves each change into its
/// kind's collection.
///
/// A keyed state machine emits one collection of changes for several views. Were
/// each view to pick its kind out of that collection, timely would copy every batch
/// for each reader but the last, and each reader would test every change.
pub fn split_by_kind<'s, const N: usize, D: Clone + 'static>(
    changes: VecCollection<'s, Time, D>,
    kind: fn(&D) -> usize,
) -> [VecCollection<'s, Time, D>; N] {
    let parts =
        changes.inner.partition(N as u64, move |(change, time, diff)| (kind(&change) as u64, (change, time, diff)));
    let parts: Vec<_> = parts.into_iter().map(|part| part.as_collection()).collect();
    parts.try_into().unwrap_or_else(|_| unreachable!("partition makes N streams"))
}

/// Splits every record of `collection` into two parts, one for each of two readers,
/// in one pass (`None`: the second reader gets nothing of that record).
///
/// Timely copies a stream's batches for every reader but the last, so a record two
/// operators read is deep-copied once, every string of it. When the readers need
/// different parts of a record, this moves each part to its reader instead.
pub fn unzip<'s, D, A, B>(
    collection: VecCollection<'s, Time, D>,
    name: &str,
    mut split: impl FnMut(D) -> (A, Option<B>) + 'static,
) -> (VecCollection<'s, Time, A>, VecCollection<'s, Time, B>)
where
    D: Clone + 'static,
    A: Clone + 'static,
    B: Clone + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_string(), collection.inner.scope());
    let mut input = builder.new_input(collection.inner, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut first_output, first) = builder.new_output::<Vec<(A, Time, isize)>>();
    let (mut second_output, second) = builder.new_output::<Vec<(B, Time, isize)>>();
    builder.build(move |_capabilities| {
        move |_frontiers| {
            let mut first_output = first_output.activate();
            let mut second_output = second_output.activate();
            input.for_each(|capability, data| {
                let mut firsts = Vec::with_capacity(data.len());
                let mut seconds = Vec::with_capacity(data.len());
                for (record, time, diff) in data.drain(..) {
                    let (a, b) = split(record);
                    firsts.push((a, time, diff));
                    if let Some(b) = b {
                        seconds.push((b, time, diff));
                    }
                }
                first_output.give(&capability, &mut firsts);
                second_output.give(&capability, &mut seconds);
            });
        }
    });
    (first.as_collection(), second.as_collection())
}

/// The newest event time of each batch's insertions, as `(batch, time)`, from this worker.
pub type BatchMaxima<'s> = StreamVec<'s, Time, (Time, Micros)>;

/// The newest event time among each batch's insertions into `collection`, from this worker.
pub fn batch_maxima<'s, D: ExchangeData>(
    collection: &VecCollection<'s, Time, D>,
    event_time: fn(&D) -> Micros,
) -> BatchMaxima<'s> {
    collection.inner.clone().unary::<CapacityContainerBuilder<Vec<(Time, Micros)>>, _, _, _>(
        Pipeline,
        "BatchMaxima",
        |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut maxima: BTreeMap<Time, Micros> = BTreeMap::new();
                    for (row, time, diff) in data.drain(..) {
                        if diff > 0 {
                            let max = maxima.entry(time).or_insert(event_time(&row));
                            *max = (*max).max(event_time(&row));
                        }
                    }
                    for (time, max) in maxima {
                        output.session(&cap.delayed(&time, 0)).give((time, max));
                    }
                });
            }
        },
    )
}

/// A pipeline's event-time clock: the newest event time of its streams, batch by
/// batch, delivered to every worker. Its watermark at a logical time is the newest
/// event time of every batch up to and including that time, so all workers expire
/// the same state at the same logical time whatever the worker count.
#[derive(Clone)]
pub struct EventClock<'s> {
    /// Every worker's batch maxima, on every worker.
    maxima: BatchMaxima<'s>,
    /// This worker's batch maxima.
    local: BatchMaxima<'s>,
}

impl<'s> EventClock<'s> {
    /// The clock of the streams whose batch maxima these are.
    pub fn of(streams: Vec<BatchMaxima<'s>>) -> EventClock<'s> {
        let mut streams = streams.into_iter();
        let first = streams.next().expect("a clock needs at least one stream");
        let local = streams.fold(first, |all, more| all.concat(more));
        EventClock { maxima: local.clone().broadcast(), local }
    }

    /// The watermark as a collection: one record, the newest event time so far,
    /// from the first batch with an event on.
    pub fn watermark(&self) -> VecCollection<'s, Time, Micros> {
        let newest: EventTimeOf<Micros> = |t| *t;
        let maxima = self.local.clone().map(|(time, max)| (((), max), time, 1isize)).as_collection();
        max_per_key(maxima, Some((newest, 0))).map(|((), watermark)| watermark)
    }
}

/// One operator's reading of an [`EventClock`]: batch maxima waiting for their
/// time, and the watermark through the last time taken.
#[derive(Default)]
struct Watermark {
    pending: BTreeMap<Time, Micros>,
    newest: Option<Micros>,
}

impl Watermark {
    fn record(&mut self, time: Time, max: Micros) {
        let at = self.pending.entry(time).or_insert(max);
        *at = (*at).max(max);
    }
    /// The watermark at `time`: the newest event time of every batch up to and including it.
    fn through(&mut self, time: Time) -> Option<Micros> {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > time {
                break;
            }
            self.newest = self.newest.max(Some(entry.remove()));
        }
        self.newest
    }
}

/// What [`horizon_filter`] keeps. The horizon is the clock's watermark minus
/// `retention`, this batch included; a record is late when its `expires_at` is at
/// or behind the horizon as it arrives. Late records are dropped either way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Only drop late records (events too late to be kept). What it lets through stays.
    DropLate,
    /// A temporal filter: also retract each record it let through at the first
    /// logical time whose horizon reaches its `expires_at`. The held records are
    /// consolidated, so memory follows the distinct records within retention (one
    /// per product and minute for per-minute aggregates), not history.
    Retract,
}

/// Updates of [`horizon_filter`] waiting for their time, with a capability for each output.
type PendingUpdates<D, R> = BTreeMap<Time, ([Capability<Time>; 2], Vec<(D, R)>)>;

/// Filters `input` by event-time horizon, as `expiry` says: returns what it keeps,
/// and a `()` for every late record it dropped (to count them).
///
/// One operator for both: reading `input` a second time to find the late records
/// would copy every record for the second reader and hold it there until its time
/// completes, to keep almost none of them.
pub fn horizon_filter<'s, D, R>(
    input: VecCollection<'s, Time, D, R>,
    clock: &EventClock<'s>,
    expires_at: fn(&D) -> Micros,
    retention: Micros,
    expiry: Expiry,
) -> (VecCollection<'s, Time, D, R>, VecCollection<'s, Time, (), R>)
where
    D: ExchangeData,
    R: Abelian + ExchangeData,
{
    let mut builder = OperatorBuilder::new("HorizonFilter".to_string(), input.inner.scope());
    let mut updates = builder.new_input(input.inner, Pipeline);
    let mut maxima = builder.new_input(clock.maxima.clone(), Pipeline);
    let (kept_output, kept) = builder.new_output::<Vec<(D, Time, R)>>();
    let (late_output, late) = builder.new_output::<Vec<((), Time, R)>>();
    let mut kept_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<(D, Time, R)>>>::from(kept_output);
    let mut late_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<((), Time, R)>>>::from(late_output);
    builder.build(move |_capabilities| {
        let mut pending: PendingUpdates<D, R> = BTreeMap::new();
        let mut watermark = Watermark::default();
        // Records let through and not yet expired, by expiry.
        let mut held: BTreeMap<(Micros, D), R> = BTreeMap::new();
        move |frontiers| {
            let (updates_frontier, maxima_frontier) = (&frontiers[0], &frontiers[1]);
            let mut kept_output = kept_output.activate();
            let mut late_output = late_output.activate();
            let capabilities = |cap: &InputCapability<Time>, t: &Time| [cap.delayed(t, 0), cap.delayed(t, 1)];
            updates.for_each(|cap, data| {
                for (d, t, r) in data.drain(..) {
                    pending.entry(t).or_insert_with(|| (capabilities(&cap, &t), Vec::new())).1.push((d, r));
                }
            });
            maxima.for_each(|cap, data| {
                for (t, max) in data.drain(..) {
                    watermark.record(t, max);
                    if expiry == Expiry::Retract {
                        pending.entry(t).or_insert_with(|| (capabilities(&cap, &t), Vec::new()));
                    }
                }
            });
            while let Some(entry) = pending.first_entry() {
                let time = *entry.key();
                if updates_frontier.less_equal(&time) || maxima_frontier.less_equal(&time) {
                    break;
                }
                let ([kept_cap, late_cap], batch) = entry.remove();
                let horizon = watermark.through(time).map(|w| w.saturating_sub(retention));
                let mut kept = kept_output.session(&kept_cap);
                let mut late = late_output.session(&late_cap);
                for (d, r) in batch {
                    let at = expires_at(&d);
                    if horizon.is_some_and(|h| at <= h) {
                        late.give(((), time, r));
                        continue;
                    }
                    if expiry == Expiry::Retract {
                        match held.entry((at, d.clone())) {
                            std::collections::btree_map::Entry::Vacant(slot) => {
                                slot.insert(r.clone());
                            }
                            std::collections::btree_map::Entry::Occupied(mut slot) => {
                                slot.get_mut().plus_equals(&r);
                                if slot.get().is_zero() {
                                    slot.remove();
                                }
                            }
                        }
                    }
                    kept.give((d, time, r));
                }
                if let Some(horizon) = horizon {
                    while let Some(entry) = held.first_entry() {
                        if entry.key().0 > horizon {
                            break;
                        }
                        let ((_, d), mut r) = entry.remove_entry();
                        r.negate();
                        kept.give((d, time, r));
                    }
                }
            }
            // Clock entries of completed times that carried no updates.
            let done = |t: &Time| !maxima_frontier.less_equal(t) && !updates_frontier.less_equal(t);
            if let Some(&last) = watermark.pending.keys().take_while(|t| done(t)).last() {
                watermark.through(last);
            }
        }
    });
    (kept.as_collection(), late.as_collection())
}

/// One batch of [`run_clocked`] waiting for its time to complete.
struct ClockedBatch<I> {
    capability: Capability<Time>,
    inputs: Vec<(I, isize)>,
    batch_max: Option<Micros>,
}

/// Runs `state` on every worker over `inputs` exchanged by `key`, batch by batch in
/// logical-time order. Every worker also receives every batch's newest event time
/// (`event_time` of its insertions), so the state machines share one clock whatever
/// the worker count. Returns the changes and each worker's batch maxima (the clock's
/// source, for views of the clock itself such as a watermark).
pub fn run_clocked<'s, S: ClockedState>(
    name: &str,
    inputs: VecCollection<'s, Time, S::Input>,
    key: fn(&S::Input) -> u64,
    event_time: fn(&S::Input) -> Micros,
    mut state: S,
) -> (VecCollection<'s, Time, S::Change>, BatchMaxima<'s>) {
    // The event times travel apart: reading the inputs twice would deep-copy each one.
    let (inputs, event_times) = unzip(inputs, "EventTimes", move |input| {
        let time = event_time(&input);
        (input, Some(time))
    });
    let batch_maxima = batch_maxima(&event_times, |time| *time);
    let changes = inputs
        .inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(S::Change, Time, isize)>>, _, _, _, _>(
            batch_maxima.clone().broadcast(),
            Exchange::new(move |(input, _time, _diff): &(S::Input, Time, isize)| key(input)),
            Pipeline,
            name,
            move |_capability, _info| {
                let mut pending: BTreeMap<Time, ClockedBatch<S::Input>> = BTreeMap::new();
                move |(rows, rows_frontier), (maxima, maxima_frontier), output| {
                    rows.for_each(|cap, data| {
                        for (input, time, diff) in data.drain(..) {
                            clocked_batch(&mut pending, time, || cap.delayed(&time, 0)).inputs.push((input, diff));
                        }
                    });
                    maxima.for_each(|cap, data| {
                        for (time, max) in data.drain(..) {
                            let batch = clocked_batch(&mut pending, time, || cap.delayed(&time, 0));
                            batch.batch_max = batch.batch_max.max(Some(max));
                        }
                    });
                    // Batches in arrival order, each once every worker's share of it is in.
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if rows_frontier.less_equal(&time) || maxima_frontier.less_equal(&time) {
                            break;
                        }
                        let batch = entry.remove();
                        let mut changes = Vec::new();
                        state.process(batch.inputs, batch.batch_max, &mut changes);
                        let mut session = output.session(&batch.capability);
                        for (change, diff) in changes {
                            session.give((change, time, diff));
                        }
                    }
                }
            },
        )
        .as_collection();
    (changes, batch_maxima)
}

fn clocked_batch<I>(
    pending: &mut BTreeMap<Time, ClockedBatch<I>>,
    time: Time,
    capability: impl FnOnce() -> Capability<Time>,
) -> &mut ClockedBatch<I> {
    pending.entry(time).or_insert_with(|| ClockedBatch {
        capability: capability(),
        inputs: Vec::new(),
        batch_max: None,
    })
}

/// One key's state in [`prefix_fold_at`].
struct KeyFold<D> {
    /// Position → (the values there, value → multiplicity; the fold of every value at
    /// this position and before it).
    values: BTreeMap<usize, (BTreeMap<D, isize>, D)>,
    /// Query position → (multiplicity, the answer emitted with that multiplicity).
    queries: BTreeMap<usize, (isize, D)>,
    /// Positions before this one were compacted into `base`.
    kept_from: usize,
    /// The fold of every value at a position before `kept_from`.
    base: D,
}

impl<D: Clone> KeyFold<D> {
    fn new(zero: &D) -> Self {
        KeyFold { values: BTreeMap::new(), queries: BTreeMap::new(), kept_from: 0, base: zero.clone() }
    }

    /// Folds the values at positions before `kept_from` into `base` and forgets them.
    fn compact(&mut self, kept_from: usize) {
        if kept_from <= self.kept_from {
            return;
        }
        if let Some((_, (_, fold))) = self.values.range(..kept_from).next_back() {
            self.base = fold.clone();
        }
        self.values = self.values.split_off(&kept_from);
        self.kept_from = kept_from;
    }

    /// The fold of every value strictly before `position`.
    fn fold_before(&self, position: usize) -> D {
        self.values.range(..position).next_back().map_or_else(|| self.base.clone(), |(_, (_, fold))| fold.clone())
    }
}

/// Lets [`prefix_fold_at`] forget what lies behind an event-time horizon.
pub struct Compaction<'s> {
    pub clock: EventClock<'s>,
    /// How far behind the watermark the horizon is.
    pub retention: Micros,
    /// The first position kept at a given horizon.
    pub first_kept: fn(Micros) -> usize,
}

/// An update to one of [`prefix_fold_at`]'s inputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum FoldUpdate<D> {
    Value(usize, D, isize),
    Query(usize, isize),
}

/// Updates of [`prefix_fold_at`]'s inputs waiting for their time, by key.
type PendingFolds<K, D> = BTreeMap<Time, (Capability<Time>, Vec<(K, FoldUpdate<D>)>)>;

/// For every query `(position, key)`, the fold (`combine`, left to right from `zero`)
/// of that key's values at positions strictly before `position`: the contract of
/// differential's `prefix_sum_at`, each answer carrying its query's multiplicity.
/// Values at one position are folded in value order, each as often as its multiplicity.
///
/// `prefix_sum_at` runs two iterative scopes of up to 64 rounds at every logical time
/// with a change, which made it most of the fixed cost of a time. Here one keyed
/// operator keeps, per key, its values by position next to the fold up to each
/// position. A change at position `p` refolds the positions from `p` on and re-answers
/// the queries after `p`: work proportional to the answers that may change (which the
/// view emits anyway) plus O(log n) to find `p`, never a rescan of what came before.
/// With in-order streams `p` is the newest position, so the cost per change stays flat
/// as history grows.
///
/// With `compaction`, positions before `kept_from(watermark)` are final: their values
/// fold into one base per key and are forgotten, so state follows the retention
/// window. The caller promises that a value there only changes by expiring (a
/// temporal filter retracting it), so updates to such values are ignored. A query
/// there keeps the answer it had; a new one there cannot be answered any more and
/// gets `zero`.
///
/// Updates are applied in timestamp order once every input frontier has passed their
/// time, so the output is a deterministic function of the input collections.
pub fn prefix_fold_at<'s, K, D, F>(
    values: VecCollection<'s, Time, ((usize, K), D)>,
    queries: VecCollection<'s, Time, (usize, K)>,
    zero: D,
    combine: F,
    compaction: Option<Compaction<'s>>,
) -> VecCollection<'s, Time, ((usize, K), D)>
where
    K: ExchangeData + Hash,
    D: ExchangeData,
    F: Fn(&K, &D, &D) -> D + 'static,
{
    let scope = values.inner.scope();
    let updates = values
        .inner
        .map(|(((p, k), d), t, r)| ((k, FoldUpdate::Value(p, d, r)), t))
        .concat(queries.inner.map(|((p, k), t, r)| ((k, FoldUpdate::Query(p, r)), t)));
    let (maxima, first_kept) = match compaction {
        Some(Compaction { clock, retention, first_kept }) => (clock.maxima, Some((retention, first_kept))),
        None => (timely::dataflow::operators::generic::operator::empty(scope), None),
    };
    updates
        .binary_frontier(
            maxima,
            Exchange::new(|((k, _u), _t): &((K, FoldUpdate<D>), Time)| k.hashed()),
            Pipeline,
            "PrefixFoldAt",
            move |_capability, _info| {
                let mut pending: PendingFolds<K, D> = BTreeMap::new();
                let mut watermark = Watermark::default();
                let mut keys: HashMap<K, KeyFold<D>> = HashMap::new();
                move |(updates, updates_frontier), (maxima, maxima_frontier), output| {
                    updates.for_each(|cap, data| {
                        for ((k, update), t) in data.drain(..) {
                            pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push((k, update));
                        }
                    });
                    maxima.for_each(|_cap, data| {
                        for (t, max) in data.drain(..) {
                            watermark.record(t, max);
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if updates_frontier.less_equal(entry.key()) || maxima_frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (time, (cap, updates)) = entry.remove_entry();
                        let kept = first_kept.and_then(|(retention, first_kept)| {
                            watermark.through(time).map(|w| first_kept(w.saturating_sub(retention)))
                        });
                        let mut session = output.session(&cap);
                        for (k, answers) in apply_fold_updates(&mut keys, updates, kept, &zero, &combine) {
                            for (p, (old_count, old), (new_count, new)) in answers {
                                if old_count != 0 {
                                    session.give((((p, k.clone()), old), time, -old_count));
                                }
                                if new_count != 0 {
                                    session.give((((p, k.clone()), new), time, new_count));
                                }
                            }
                        }
                    }
                    let done = |t: &Time| !maxima_frontier.less_equal(t) && !updates_frontier.less_equal(t);
                    if let Some(&last) = watermark.pending.keys().take_while(|t| done(t)).last() {
                        watermark.through(last);
                    }
                }
            },
        )
        .as_collection()
}

/// A query's answer before and after a time: `(position, (multiplicity, answer) before,
/// (multiplicity, answer) after)`.
type AnswerChange<D> = (usize, (isize, D), (isize, D));

/// Applies one time's updates of [`prefix_fold_at`] and returns, per key, the answers
/// that changed. `kept_from`: where compaction stands at this time.
fn apply_fold_updates<K, D, F>(
    keys: &mut HashMap<K, KeyFold<D>>,
    updates: Vec<(K, FoldUpdate<D>)>,
    kept_from: Option<usize>,
    zero: &D,
    combine: &F,
) -> Vec<(K, Vec<AnswerChange<D>>)>
where
    K: Eq + Hash + Clone,
    D: Ord + Clone,
    F: Fn(&K, &D, &D) -> D,
{
    // Per touched key: the first value position that changed, and the multiplicity
    // each changed query had before this time.
    let mut touched: HashMap<K, (Option<usize>, BTreeMap<usize, isize>)> = HashMap::new();
    for (k, update) in updates {
        let state = keys.entry(k.clone()).or_insert_with(|| KeyFold::new(zero));
        if let Some(kept_from) = kept_from {
            state.compact(kept_from);
        }
        let (first_value, old_counts) = touched.entry(k).or_default();
        match update {
            // Behind the horizon a value only changes by expiring: its contribution stays in the base.
            FoldUpdate::Value(p, _, _) if p < state.kept_from => {}
            FoldUpdate::Value(p, d, r) => {
                let (at, _) = state.values.entry(p).or_insert_with(|| (BTreeMap::new(), zero.clone()));
                let count = at.entry(d.clone()).or_insert(0);
                *count += r;
                if *count == 0 {
                    at.remove(&d);
                }
                *first_value = Some(first_value.map_or(p, |f| f.min(p)));
            }
            FoldUpdate::Query(p, r) => {
                let (count, _) = state.queries.entry(p).or_insert_with(|| (0, zero.clone()));
                old_counts.entry(p).or_insert(*count);
                *count += r;
            }
        }
    }
    let mut changes = Vec::new();
    for (k, (first_value, old_counts)) in touched {
        let state = keys.get_mut(&k).expect("touched keys have state");
        let mut positions: Vec<usize> = old_counts.keys().copied().collect();
        if let Some(first) = first_value {
            refold_from(state, first, &k, combine);
            positions.extend(state.queries.range(first + 1..).map(|(&p, _)| p));
            positions.sort_unstable();
            positions.dedup();
        }
        let mut answers = Vec::new();
        for p in positions {
            let Some((count, answer)) = state.queries.get(&p).cloned() else { continue };
            let old_count = old_counts.get(&p).copied().unwrap_or(count);
            let new = if p >= state.kept_from {
                state.fold_before(p)
            } else if old_count != 0 {
                answer.clone()
            } else {
                zero.clone()
            };
            if count == 0 {
                state.queries.remove(&p);
            } else {
                state.queries.insert(p, (count, new.clone()));
            }
            if (old_count, &answer) != (count, &new) {
                answers.push((p, (old_count, answer), (count, new)));
            }
        }
        if state.values.is_empty() && state.queries.is_empty() && state.base == *zero {
            keys.remove(&k);
        }
        if !answers.is_empty() {
            changes.push((k, answers));
        }
    }
    changes
}

/// Recomputes the folds of `state`'s positions from `first` on, dropping positions
/// left without values.
fn refold_from<K, D: Ord + Clone, F: Fn(&K, &D, &D) -> D>(state: &mut KeyFold<D>, first: usize, k: &K, combine: &F) {
    let mut fold = state.fold_before(first);
    // Only positions from `first` on can have lost their last value. `retain` would
    // visit every position of the key, a cost growing with history.
    let emptied: Vec<usize> =
        state.values.range(first..).filter(|(_, (at, _))| at.is_empty()).map(|(&p, _)| p).collect();
    for p in emptied {
        state.values.remove(&p);
    }
    for (_, (at, at_fold)) in state.values.range_mut(first..) {
        for (d, &count) in at.iter() {
            for _ in 0..count.max(0) {
                fold = combine(k, &fold, d);
            }
        }
        *at_fold = fold.clone();
    }
}

/// An update to one of [`range_sum_at`]'s inputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum RangeUpdate {
    /// A weight at a position, with its multiplicity.
    Value(Micros, i64, isize),
    Query(Micros, isize),
}

/// One key's state in [`range_sum_at`].
#[derive(Default)]
struct KeyRanges {
    /// Position → the sum of the weights there.
    values: BTreeMap<Micros, i64>,
    /// Query position → (multiplicity, the sum emitted with it; 0 emits nothing).
    queries: BTreeMap<Micros, (isize, i64)>,
}

impl KeyRanges {
    fn sum_over(&self, position: Micros, preceding: Micros) -> i64 {
        self.values.range(position.saturating_sub(preceding)..=position).map(|(_, w)| w).sum()
    }
}

/// Updates of [`range_sum_at`]'s inputs waiting for their time, by key.
type PendingRanges<K> = BTreeMap<Time, (Capability<Time>, Vec<(K, RangeUpdate)>)>;

/// For every query `(key, p)`, the sum of the weights of that key's values at
/// positions from `p - preceding` to `p` inclusive: SQL's
/// `SUM(w) OVER (PARTITION BY key ORDER BY position RANGE BETWEEN preceding PRECEDING
/// AND CURRENT ROW)`, read at the query positions. Each answer carries its query's
/// multiplicity; a sum of 0 is no row (as `count` has no row for a count of 0).
///
/// The same answers come from copying each value into every position whose range
/// holds it (`explode`), then `count` and a `semijoin` with the queries: with
/// 15-minute ranges over minutes, 16 copies of every change, each through a `count`
/// and its arrangements. Here one keyed operator keeps each key's weights by position:
/// a changed position re-answers only the queries whose range holds it, each by
/// summing its range (O(range) for positions spaced like the range's unit).
///
/// State follows the inputs: a value or query retracted (by a temporal filter
/// upstream) is forgotten. Updates are applied in timestamp order once both input
/// frontiers have passed their time, so the output is a deterministic function of
/// the input collections.
pub fn range_sum_at<'s, K>(
    values: VecCollection<'s, Time, ((K, Micros), i64)>,
    queries: VecCollection<'s, Time, (K, Micros)>,
    preceding: Micros,
) -> VecCollection<'s, Time, ((K, Micros), i64)>
where
    K: ExchangeData + Hash,
{
    let updates = values
        .inner
        .map(|(((k, p), w), t, r)| ((k, RangeUpdate::Value(p, w, r)), t))
        .concat(queries.inner.map(|((k, p), t, r)| ((k, RangeUpdate::Query(p, r)), t)));
    updates
        .unary_frontier(
            Exchange::new(|((k, _u), _t): &((K, RangeUpdate), Time)| k.hashed()),
            "RangeSumAt",
            move |_capability, _info| {
                let mut pending: PendingRanges<K> = BTreeMap::new();
                let mut keys: HashMap<K, KeyRanges> = HashMap::new();
                move |(updates, frontier), output| {
                    updates.for_each(|cap, data| {
                        for ((k, update), t) in data.drain(..) {
                            pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push((k, update));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (time, (cap, updates)) = entry.remove_entry();
                        let mut session = output.session(&cap);
                        for (k, p, (old_count, old), (new_count, new)) in
                            apply_range_updates(&mut keys, updates, preceding)
                        {
                            if old_count != 0 && old != 0 {
                                session.give((((k.clone(), p), old), time, -old_count));
                            }
                            if new_count != 0 && new != 0 {
                                session.give((((k, p), new), time, new_count));
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}

/// A query's state in [`range_sum_at`]: its multiplicity and the sum emitted with it.
type RangeAnswer = (isize, i64);

/// A query's answer before and after a time: `(key, position, before, after)`.
type RangeAnswerChange<K> = (K, Micros, RangeAnswer, RangeAnswer);

/// Applies one time's updates of [`range_sum_at`] and returns the answers that changed.
fn apply_range_updates<K: Eq + Hash + Clone>(
    keys: &mut HashMap<K, KeyRanges>,
    updates: Vec<(K, RangeUpdate)>,
    preceding: Micros,
) -> Vec<RangeAnswerChange<K>> {
    // Per touched key: value positions changed, and each touched query as it was.
    let mut touched: HashMap<K, (Vec<Micros>, BTreeMap<Micros, RangeAnswer>)> = HashMap::new();
    for (k, update) in updates {
        let state = keys.entry(k.clone()).or_default();
        let (changed, before) = touched.entry(k).or_default();
        match update {
            RangeUpdate::Value(p, w, r) => {
                let sum = state.values.entry(p).or_insert(0);
                *sum += w * r as i64;
                if *sum == 0 {
                    state.values.remove(&p);
                }
                changed.push(p);
            }
            RangeUpdate::Query(p, r) => {
                let query = state.queries.entry(p).or_insert((0, 0));
                before.entry(p).or_insert(*query);
                query.0 += r;
            }
        }
    }
    let mut changes = Vec::new();
    for (k, (changed, mut before)) in touched {
        let state = keys.get_mut(&k).expect("touched keys have state");
        for p in changed {
            for (&q, &answer) in state.queries.range(p..=p.saturating_add(preceding)) {
                before.entry(q).or_insert(answer);
            }
        }
        for (q, old) in before {
            let count = state.queries[&q].0;
            let new = (count, if count == 0 { 0 } else { state.sum_over(q, preceding) });
            if count == 0 {
                state.queries.remove(&q);
            } else {
                state.queries.insert(q, new);
            }
            let emitted = |(count, sum): (isize, i64)| if count == 0 || sum == 0 { (0, 0) } else { (count, sum) };
            if emitted(old) != emitted(new) {
                changes.push((k.clone(), q, emitted(old), emitted(new)));
            }
        }
        if state.values.is_empty() && state.queries.is_empty() {
            keys.remove(&k);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use differential_dataflow::algorithms::prefix_sum::PrefixSum;
    use differential_dataflow::input::Input;
    use proptest::prelude::*;

    use super::*;

    /// One step of a history: `(key, position, kind, value)`; kind 0 sets the value at
    /// (key, position) (retracting the one there), 1 removes it, 2 toggles a query.
    type Step = (u8, u8, u8, i64);

    /// An answer: `((position, key), fold)`.
    type Answer = ((usize, u8), i64);
    /// Answers at each time, consolidated: what each implementation says after every batch.
    type Answers = Vec<Vec<(Answer, isize)>>;

    /// The answers as of each of `batches` batches, from every update captured.
    fn answers_after_each_batch<D: Ord + Clone>(updates: &[(D, Time, isize)], batches: usize) -> Vec<Vec<(D, isize)>> {
        (0..batches)
            .map(|time| {
                let mut at: Vec<_> =
                    updates.iter().filter(|(_, t, _)| *t <= time as Time).map(|(d, _, r)| (d.clone(), *r)).collect();
                differential_dataflow::consolidation::consolidate(&mut at);
                at
            })
            .collect()
    }

    fn run(history: &[Vec<Step>], ours: bool) -> Answers {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let batches = history.len();
        let history = history.to_vec();
        timely::execute_directly(move |worker| {
            let (mut values, mut queries) = worker.dataflow::<Time, _, _>(|scope| {
                let (values_in, values) = scope.new_collection::<((usize, u8), i64), isize>();
                let (queries_in, queries) = scope.new_collection::<(usize, u8), isize>();
                let answers = if ours {
                    prefix_fold_at(values, queries, 0, |_k, a, b| a + b, None)
                } else {
                    values.prefix_sum_at(queries, 0, |_k, a, b| a + b)
                };
                answers.inspect(move |(d, t, r)| sink.lock().unwrap().push((*d, *t, *r)));
                (values_in, queries_in)
            });
            let mut present: BTreeMap<(u8, u8), i64> = BTreeMap::new();
            let mut asked: BTreeMap<(u8, u8), bool> = BTreeMap::new();
            for (time, batch) in history.iter().enumerate() {
                for &(key, position, kind, value) in batch {
                    let at = position as usize;
                    match kind {
                        0 | 1 => {
                            if let Some(old) = present.remove(&(key, position)) {
                                values.update(((at, key), old), -1);
                            }
                            if kind == 0 {
                                present.insert((key, position), value);
                                values.update(((at, key), value), 1);
                            }
                        }
                        _ => {
                            let on = asked.entry((key, position)).or_default();
                            *on = !*on;
                            queries.update((at, key), if *on { 1 } else { -1 });
                        }
                    }
                }
                values.advance_to(time as Time + 1);
                queries.advance_to(time as Time + 1);
                values.flush();
                queries.flush();
            }
        });
        answers_after_each_batch(&captured.lock().unwrap(), batches)
    }

    /// Like [`run`], with an event-time horizon that moves up by `advance` before each
    /// batch. With `ours`, values behind the horizon are retracted when it passes them
    /// (as a temporal filter upstream would) and the fold compacts them away; the
    /// reference is differential's `prefix_sum_at` over the values never retracted.
    /// Steps only touch positions at or after the horizon, except that queries may
    /// go away anywhere.
    fn run_compacting(history: &[(u8, Vec<Step>)], ours: bool) -> Answers {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let batches = history.len();
        let history = history.to_vec();
        timely::execute_directly(move |worker| {
            let (mut values, mut queries, mut clock) = worker.dataflow::<Time, _, _>(|scope| {
                let (values_in, values) = scope.new_collection::<((usize, u8), i64), isize>();
                let (queries_in, queries) = scope.new_collection::<(usize, u8), isize>();
                let (clock_in, clock) = scope.new_collection::<Micros, isize>();
                let answers = if ours {
                    let clock = EventClock::of(vec![batch_maxima(&clock, |t| *t)]);
                    let compaction = Compaction { clock, retention: 0, first_kept: |h| h as usize };
                    prefix_fold_at(values, queries, 0, |_k, a, b| a + b, Some(compaction))
                } else {
                    values.prefix_sum_at(queries, 0, |_k, a, b| a + b)
                };
                answers.inspect(move |(d, t, r)| sink.lock().unwrap().push((*d, *t, *r)));
                (values_in, queries_in, clock_in)
            });
            let mut present: BTreeMap<(u8, usize), i64> = BTreeMap::new();
            let mut asked: BTreeMap<(u8, usize), bool> = BTreeMap::new();
            let mut horizon = 0usize;
            for (time, (advance, batch)) in history.iter().enumerate() {
                horizon += *advance as usize;
                clock.update(horizon as Micros, 1);
                if ours {
                    let expired: Vec<_> =
                        present.range(..).filter(|((_, p), _)| *p < horizon).map(|(k, v)| (*k, *v)).collect();
                    for ((key, at), old) in expired {
                        present.remove(&(key, at));
                        values.update(((at, key), old), -1);
                    }
                } else {
                    present.retain(|(_, p), _| *p >= horizon);
                }
                for &(key, offset, kind, value) in batch {
                    let at = horizon + offset as usize;
                    match kind {
                        0 | 1 => {
                            if let Some(old) = present.remove(&(key, at)) {
                                values.update(((at, key), old), -1);
                            }
                            if kind == 0 {
                                present.insert((key, at), value);
                                values.update(((at, key), value), 1);
                            }
                        }
                        _ => {
                            // Toggle a query here, or drop one anywhere, behind the horizon too.
                            let behind =
                                asked.iter().find(|((k, p), on)| *k == key && **on && *p < horizon).map(|(kp, _)| *kp);
                            let slot = if value < 0 { behind.unwrap_or((key, at)) } else { (key, at) };
                            let on = asked.entry(slot).or_default();
                            *on = !*on;
                            queries.update((slot.1, slot.0), if *on { 1 } else { -1 });
                        }
                    }
                }
                let next = time as Time + 1;
                values.advance_to(next);
                queries.advance_to(next);
                clock.advance_to(next);
                values.flush();
                queries.flush();
                clock.flush();
            }
        });
        answers_after_each_batch(&captured.lock().unwrap(), batches)
    }

    /// One step of a range-sum history: `(key, position, kind, weight)`; kind 0 adds
    /// the weight at (key, position), 1 retracts what was added there last, 2 toggles
    /// a query.
    type RangeStep = (u8, u8, u8, i64);

    /// Range sums after each batch: `((key, position), sum)` with multiplicities.
    type RangeAnswers = Vec<Vec<(((u8, Micros), i64), isize)>>;

    /// Range sums after every batch, by [`range_sum_at`] or by the `explode` + `count`
    /// + join formulation it replaces.
    fn run_ranges(history: &[Vec<RangeStep>], preceding: Micros, ours: bool) -> RangeAnswers {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let batches = history.len();
        let history = history.to_vec();
        timely::execute_directly(move |worker| {
            let (mut values, mut queries) = worker.dataflow::<Time, _, _>(|scope| {
                let (values_in, values) = scope.new_collection::<((u8, Micros), i64), isize>();
                let (queries_in, queries) = scope.new_collection::<(u8, Micros), isize>();
                let answers = if ours {
                    range_sum_at(values, queries, preceding)
                } else {
                    values
                        .explode(move |((k, p), w)| {
                            (0..=preceding).map(move |d| ((k, p + d), w as isize)).collect::<Vec<_>>()
                        })
                        .count()
                        .join_map(queries.map(|q| (q, ())), |kp, &sum, &()| (*kp, sum as i64))
                };
                answers.inspect(move |(d, t, r)| sink.lock().unwrap().push((*d, *t, *r)));
                (values_in, queries_in)
            });
            let mut added: BTreeMap<(u8, u8), Vec<i64>> = BTreeMap::new();
            let mut asked: BTreeMap<(u8, u8), bool> = BTreeMap::new();
            for (time, batch) in history.iter().enumerate() {
                for &(key, position, kind, weight) in batch {
                    let at = (key, position as Micros);
                    match kind {
                        0 => {
                            added.entry((key, position)).or_default().push(weight);
                            values.update((at, weight), 1);
                        }
                        1 => {
                            if let Some(weight) = added.entry((key, position)).or_default().pop() {
                                values.update((at, weight), -1);
                            }
                        }
                        _ => {
                            let on = asked.entry((key, position)).or_default();
                            *on = !*on;
                            queries.update(at, if *on { 1 } else { -1 });
                        }
                    }
                }
                values.advance_to(time as Time + 1);
                queries.advance_to(time as Time + 1);
                values.flush();
                queries.flush();
            }
        });
        answers_after_each_batch(&captured.lock().unwrap(), batches)
    }

    /// One step of a left join history: `(kind, key, value)`; kind 0 adds a left row,
    /// 1 retracts the left row added last, 2 sets the key's right row to the value
    /// (replacing any), 3 removes the key's right row.
    type JoinStep = (u8, u8, u8);

    /// Left join rows after each batch: `(key, left value, right value)` with multiplicities.
    type JoinAnswers = Vec<Vec<((u8, u8, Option<u8>), isize)>>;

    /// `left LEFT JOIN right` after every batch, by [`left_join_unique`] or by the
    /// `join_map` + `antijoin` formulation it replaces.
    fn run_left_joins(history: &[Vec<JoinStep>], ours: bool) -> JoinAnswers {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let batches = history.len();
        let history = history.to_vec();
        timely::execute_directly(move |worker| {
            let (mut left, mut right) = worker.dataflow::<Time, _, _>(|scope| {
                let (left_in, left) = scope.new_collection::<(u8, u8), isize>();
                let (right_in, right) = scope.new_collection::<(u8, u8), isize>();
                let rows = if ours {
                    left_join_unique(left.arrange_by_key(), right.arrange_by_key(), |k, v, w| {
                        Some((*k, *v, w.copied()))
                    })
                } else {
                    let matched = left.clone().join_map(right.clone(), |k, v, w| (*k, *v, Some(*w)));
                    let unmatched = left.antijoin(right.map(|(k, _)| k)).map(|(k, v)| (k, v, None));
                    matched.concat(unmatched)
                };
                rows.inspect(move |(d, t, r)| sink.lock().unwrap().push((*d, *t, *r)));
                (left_in, right_in)
            });
            let mut added: Vec<(u8, u8)> = Vec::new();
            let mut right_rows: BTreeMap<u8, u8> = BTreeMap::new();
            for (time, batch) in history.iter().enumerate() {
                for &(kind, key, value) in batch {
                    match kind {
                        0 => {
                            added.push((key, value));
                            left.update((key, value), 1);
                        }
                        1 => {
                            if let Some(row) = added.pop() {
                                left.update(row, -1);
                            }
                        }
                        2 => {
                            if let Some(old) = right_rows.insert(key, value) {
                                right.update((key, old), -1);
                            }
                            right.update((key, value), 1);
                        }
                        _ => {
                            if let Some(old) = right_rows.remove(&key) {
                                right.update((key, old), -1);
                            }
                        }
                    }
                }
                left.advance_to(time as Time + 1);
                right.advance_to(time as Time + 1);
                left.flush();
                right.flush();
            }
        });
        answers_after_each_batch(&captured.lock().unwrap(), batches)
    }

    /// A collection's contents after each batch.
    type Contents = Vec<Vec<(i64, isize)>>;

    /// Both parts of `unzip` after each batch, or those of a `map` and a `flat_map`
    /// reading the same collection.
    fn run_unzip(history: &[Vec<(i8, bool)>], ours: bool) -> (Contents, Contents) {
        let first = |v: i8| v as i64 * 2;
        let second = |v: i8| (v % 2 == 0).then_some(v as i64 + 100);
        let captured = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let sink = captured.clone();
        let batches = history.len();
        let history = history.to_vec();
        timely::execute_directly(move |worker| {
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, values) = scope.new_collection::<i8, isize>();
                let (firsts, seconds) = if ours {
                    unzip(values, "Unzip", move |v| (first(v), second(v)))
                } else {
                    (values.clone().map(first), values.flat_map(second))
                };
                let to_firsts = sink.clone();
                firsts.inspect(move |(d, t, r)| to_firsts.lock().unwrap().0.push((*d, *t, *r)));
                seconds.inspect(move |(d, t, r)| sink.lock().unwrap().1.push((*d, *t, *r)));
                input
            });
            for (time, batch) in history.iter().enumerate() {
                for &(value, insert) in batch {
                    input.update(value, if insert { 1 } else { -1 });
                }
                input.advance_to(time as Time + 1);
                input.flush();
            }
        });
        let captured = captured.lock().unwrap();
        (answers_after_each_batch(&captured.0, batches), answers_after_each_batch(&captured.1, batches))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// After every batch, each part of `unzip` equals what a `map` and a `flat_map`
        /// of the same collection hold, retractions included.
        #[test]
        fn unzip_agrees_with_map_and_flat_map(
            history in prop::collection::vec(prop::collection::vec((-6i8..6, any::<bool>()), 0..12), 1..8)
        ) {
            prop_assert_eq!(run_unzip(&history, true), run_unzip(&history, false));
        }

        /// After every batch, the answers equal differential's own `prefix_sum_at`'s,
        /// through insertions, retractions and queries coming and going.
        #[test]
        fn prefix_fold_at_agrees_with_prefix_sum_at(
            history in prop::collection::vec(
                prop::collection::vec((0u8..3, 0u8..24, 0u8..3, -50i64..50), 0..12),
                1..10,
            )
        ) {
            prop_assert_eq!(run(&history, true), run(&history, false));
        }

        /// With a moving horizon, compacting what lies behind it changes no answer.
        #[test]
        fn prefix_fold_at_compaction_keeps_every_answer(
            history in prop::collection::vec(
                (0u8..4, prop::collection::vec((0u8..3, 0u8..12, 0u8..3, -50i64..50), 0..12)),
                1..12,
            )
        ) {
            prop_assert_eq!(run_compacting(&history, true), run_compacting(&history, false));
        }

        /// After every batch, the range sums equal those of `explode` + `count` +
        /// `semijoin`, through weights added and retracted (zero sums included) and
        /// queries coming and going.
        #[test]
        fn range_sum_at_agrees_with_exploding_into_every_range(
            history in prop::collection::vec(
                prop::collection::vec((0u8..3, 0u8..20, 0u8..3, -3i64..6), 0..14),
                1..10,
            ),
            preceding in 0i64..5,
        ) {
            prop_assert_eq!(run_ranges(&history, preceding, true), run_ranges(&history, preceding, false));
        }

        /// After every batch, the left join over a unique right side equals
        /// `join_map` + `antijoin`, through left duplicates, retractions and right rows
        /// replaced and removed.
        #[test]
        fn left_join_unique_agrees_with_join_and_antijoin(
            history in prop::collection::vec(prop::collection::vec((0u8..4, 0u8..4, 0u8..3), 0..12), 1..10)
        ) {
            prop_assert_eq!(run_left_joins(&history, true), run_left_joins(&history, false));
        }
    }
}
