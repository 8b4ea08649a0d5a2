//! Prefix folds at query positions: for each query, the fold of its key's values at
//! the positions before it, kept in one keyed operator that refolds only from a
//! change on, and that can forget what lies behind an event-time horizon.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat};

use super::clocks::{EventClock, Watermark};
use crate::Time;
use crate::checkpoint::{SavedState, Slot};
use crate::datum::Micros;

/// One key's state in [`prefix_fold_at`].
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "D: Serialize", deserialize = "D: Deserialize<'de> + Ord"))]
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
///
/// The bases and the frozen answers then hold values no input holds any more, so the
/// fold is saved at checkpoints in `slot`.
pub struct Compaction<'s> {
    pub clock: EventClock<'s>,
    /// How far behind the watermark the horizon is.
    pub retention: Micros,
    /// The first position kept at a given horizon.
    pub first_kept: fn(Micros) -> usize,
    pub slot: Slot,
}

/// What [`prefix_fold_at`] carries from one time to the next, on one worker.
struct FoldState<K, D> {
    watermark: Watermark,
    keys: HashMap<K, KeyFold<D>>,
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
/// with a change, which would make it most of the fixed cost of a time. Here one keyed
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
/// gets `zero`. So the output depends on history: the fold saves its state at
/// checkpoints and, restored, ignores its inputs up to the checkpoint and announces
/// every query's answer there. Without `compaction` the output is a function of the
/// inputs alone and needs no checkpoint.
///
/// Updates are applied in timestamp order once every input frontier has passed their
/// time, so without `compaction` the output is a deterministic function of the input
/// collections.
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
    let state: Rc<RefCell<FoldState<K, D>>> =
        Rc::new(RefCell::new(FoldState { watermark: Watermark::default(), keys: HashMap::new() }));
    let mut through = None;
    let (maxima, first_kept) = match compaction {
        Some(Compaction { clock, retention, first_kept, slot }) => {
            through = restore_fold(&state, slot);
            (clock.maxima, Some((retention, first_kept)))
        }
        None => (timely::dataflow::operators::generic::operator::empty(scope), None),
    };
    let restored_through = move |time: &Time| through.is_some_and(|through| *time <= through);
    updates
        .binary_frontier(
            maxima,
            Exchange::new(|((k, _u), _t): &((K, FoldUpdate<D>), Time)| k.hashed()),
            Pipeline,
            "PrefixFoldAt",
            move |capability, _info| {
                let mut pending: PendingFolds<K, D> = BTreeMap::new();
                // The restored answers, announced once at the checkpoint's time.
                let mut announce = through.map(|t| capability.delayed(&t));
                move |(updates, updates_frontier), (maxima, maxima_frontier), output| {
                    let mut state = state.borrow_mut();
                    let FoldState { watermark, keys } = &mut *state;
                    if let Some(at) = announce.take() {
                        let mut session = output.session(&at);
                        for (k, fold) in keys.iter() {
                            for (&p, (count, answer)) in &fold.queries {
                                session.give((((p, k.clone()), answer.clone()), *at.time(), *count));
                            }
                        }
                    }
                    updates.for_each(|cap, data| {
                        for ((k, update), t) in data.drain(..) {
                            if restored_through(&t) {
                                continue;
                            }
                            pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push((k, update));
                        }
                    });
                    maxima.for_each(|_cap, data| {
                        for (t, max) in data.drain(..) {
                            if !restored_through(&t) {
                                watermark.record(t, max);
                            }
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
                        for (k, answers) in apply_fold_updates(keys, updates, kept, &zero, &combine) {
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

/// Registers a compacting fold's state in `slot`: its clock (alike on every worker,
/// so shared) and one entry per key, routed as the fold exchanges that key. Loads the
/// restored state, if any, and returns the checkpoint's time.
fn restore_fold<K, D>(state: &Rc<RefCell<FoldState<K, D>>>, mut slot: Slot) -> Option<Time>
where
    K: ExchangeData + Hash,
    D: ExchangeData,
{
    let restored = slot.take_restored();
    if let Some(restored) = &restored {
        let mut state = state.borrow_mut();
        state.watermark = Watermark::restored(restored.state.shared::<Option<Micros>>().flatten());
        state.keys.extend(restored.state.keyed::<(K, KeyFold<D>)>());
    }
    let shared = state.clone();
    slot.on_save(move |through| {
        let state = shared.borrow();
        let mut saved = SavedState::default();
        saved.set_shared(&state.watermark.saved_through(through));
        for (k, fold) in &state.keys {
            saved.push_keyed(k.hashed(), &(k, fold));
        }
        saved
    });
    restored.map(|r| r.through)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use differential_dataflow::algorithms::prefix_sum::PrefixSum;
    use differential_dataflow::input::Input;
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::checkpoint::testing::assert_restores_exactly;
    use crate::operators::answers_after_each_batch;
    use crate::operators::clocks::batch_maxima;

    /// One step of a history: `(key, position, kind, value)`; kind 0 sets the value at
    /// (key, position) (retracting the one there), 1 removes it, 2 toggles a query.
    type Step = (u8, u8, u8, i64);

    /// An answer: `((position, key), fold)`.
    type Answer = ((usize, u8), i64);
    /// Answers at each time, consolidated: what each implementation says after every batch.
    type Answers = Vec<Vec<(Answer, isize)>>;

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
                    let slot = Checkpoints::new().slot("test.fold");
                    let compaction = Compaction { clock, retention: 0, first_kept: |h| h as usize, slot };
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

    /// An input of [`compacting`]: `(kind, key, position, value)`; kind 0 is a value
    /// at (position, key), 1 a query there, 2 a clock tick at event time `value`.
    type FoldInput = (u8, u8, usize, i64);

    /// A step of a compacting history: `(kind, key, offset, value, retract)`, see
    /// [`compacting_batches`].
    type FoldStep = (u8, u8, i64, i64, bool);

    /// A fold compacting behind its clock's watermark, as the retail pipeline runs it.
    fn compacting<'s>(
        input: VecCollection<'s, Time, FoldInput>,
        checkpoints: &Checkpoints,
    ) -> VecCollection<'s, Time, ((usize, u8), i64)> {
        let ticks = input.clone().flat_map(|(kind, _, _, t)| (kind == 2).then_some(t));
        let clock = EventClock::of(vec![batch_maxima(&ticks, |t| *t)]);
        let values = input.clone().flat_map(|(kind, key, p, v)| (kind == 0).then_some(((p, key), v)));
        let queries = input.flat_map(|(kind, key, p, _)| (kind == 1).then_some((p, key)));
        let slot = checkpoints.slot("test.fold");
        let compaction = Compaction { clock, retention: 2, first_kept: |h| h.max(0) as usize, slot };
        prefix_fold_at(values, queries, 0, |_k, a, b| a + b, Some(compaction))
    }

    /// Batches from `(jump, steps)`: the clock moves up by `jump` (ticked when it
    /// moves), then each step `(kind, key, offset, value, retract)` adds a value
    /// (kind 0) or a query (1) at `offset` from the clock (behind the horizon when
    /// under -2), or a tick `offset` behind the clock (2); or it takes back the oldest
    /// value or query added.
    fn compacting_batches(history: &[(i64, Vec<FoldStep>)]) -> Vec<Vec<(FoldInput, isize)>> {
        let mut clock = 0;
        let mut added: [Vec<FoldInput>; 2] = [Vec::new(), Vec::new()];
        history
            .iter()
            .map(|(jump, steps)| {
                clock += jump;
                let mut batch = Vec::new();
                if *jump > 0 {
                    batch.push(((2, 0, 0, clock), 1));
                }
                for &(kind, key, offset, value, retract) in steps {
                    if kind == 2 {
                        batch.push(((2, 0, 0, clock - offset.abs()), 1));
                        continue;
                    }
                    let added = &mut added[kind as usize];
                    if retract {
                        if !added.is_empty() {
                            batch.push((added.remove(0), -1));
                        }
                    } else {
                        let input = (kind, key, (clock + offset).max(0) as usize, value);
                        added.push(input);
                        batch.push((input, 1));
                    }
                }
                batch
            })
            .collect()
    }

    #[test]
    fn a_compacting_fold_restores_exactly() {
        let batches = compacting_batches(&[
            (1, vec![(0, 0, 0, 5, false), (0, 0, 2, 7, false), (1, 0, 3, 0, false), (1, 1, 1, 0, false)]),
            (3, vec![(0, 1, 0, 4, false), (1, 0, 6, 0, false), (0, 0, 4, -2, false)]),
            (4, vec![(1, 0, -5, 0, false), (0, 0, -4, 9, false), (1, 0, 0, 0, true)]),
            (0, vec![(0, 0, 0, 0, true), (1, 1, 2, 0, false)]),
            (20, vec![(1, 0, -1, 0, false), (0, 2, 1, 3, false)]),
            // No tick: key 1, untouched since the clock moved, compacts on the restored clock.
            (0, vec![(1, 1, -4, 0, false), (0, 1, -3, 6, false), (2, 0, 9, 0, false)]),
            (1, vec![(1, 0, 0, 0, true), (0, 0, 0, 1, false)]),
        ]);
        for cut in 0..=batches.len() {
            assert_restores_exactly(compacting, &batches, cut);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
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
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Restored from a checkpoint, a compacting fold goes on as if run straight.
        #[test]
        fn a_compacting_fold_restores_exactly_after_any_history(
            history in prop::collection::vec(
                (0i64..6, prop::collection::vec((0u8..3, 0u8..3, -6i64..10, -20i64..20, prop::bool::weighted(0.2)), 0..6)),
                1..9,
            ),
            cut in 0usize..9,
        ) {
            assert_restores_exactly(compacting, &compacting_batches(&history), cut);
        }
    }
}
