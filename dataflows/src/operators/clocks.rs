//! Event-time clocks and watermarks: a pipeline's newest event time, batch by batch,
//! shared by every worker so that they all expire the same state at the same logical
//! time; the filter that drops or retracts what falls behind the retention horizon;
//! and the runner of keyed state machines driven by that clock.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::difference::Abelian;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Capability, InputCapability};

use super::max_per_key::{EventTimeOf, Forget, max_per_key};
use super::splitting::unzip;
use crate::Time;
use crate::checkpoint::{SavedState, Slot};
use crate::datum::Micros;

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
    pub(super) maxima: BatchMaxima<'s>,
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
    /// from the first batch with an event on. It is a maximum over every batch, events
    /// long expired included, so it is saved at checkpoints in `slot`.
    pub fn watermark(&self, slot: Slot) -> VecCollection<'s, Time, Micros> {
        let event_time: EventTimeOf<Micros> = |t| *t;
        let maxima = self.local.clone().map(|(time, max)| (((), max), time, 1isize)).as_collection();
        max_per_key(maxima, Some(Forget { event_time, retention: 0, slot })).map(|((), watermark)| watermark)
    }
}

/// One operator's reading of an [`EventClock`]: batch maxima waiting for their
/// time, and the watermark through the last time taken.
#[derive(Default)]
pub(super) struct Watermark {
    pub(super) pending: BTreeMap<Time, Micros>,
    newest: Option<Micros>,
}

impl Watermark {
    pub(super) fn record(&mut self, time: Time, max: Micros) {
        let at = self.pending.entry(time).or_insert(max);
        *at = (*at).max(max);
    }
    /// The watermark at `time`: the newest event time of every batch up to and including it.
    pub(super) fn through(&mut self, time: Time) -> Option<Micros> {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > time {
                break;
            }
            self.newest = self.newest.max(Some(entry.remove()));
        }
        self.newest
    }
    /// The watermark at `through` without taking the pending maxima: what a
    /// checkpoint at `through` saves (the clock is alike on every worker, so shared).
    pub(super) fn saved_through(&self, through: Time) -> Option<Micros> {
        self.newest.max(self.pending.range(..=through).map(|(_, max)| *max).max())
    }
    /// A watermark restored from [`Watermark::saved_through`].
    pub(super) fn restored(newest: Option<Micros>) -> Watermark {
        Watermark { pending: BTreeMap::new(), newest }
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

/// What a [`horizon_filter`] carries from one batch to the next.
struct HorizonState<D, R> {
    watermark: Watermark,
    /// Records let through and not yet expired, by expiry (only with [`Expiry::Retract`]).
    held: BTreeMap<(Micros, D), R>,
}

/// Adds `r` to the held record `key`, dropping it when its multiplicity cancels.
fn hold<K: Ord, R: Abelian>(held: &mut BTreeMap<K, R>, key: K, r: R) {
    match held.entry(key) {
        std::collections::btree_map::Entry::Vacant(slot) => {
            if !r.is_zero() {
                slot.insert(r);
            }
        }
        std::collections::btree_map::Entry::Occupied(mut slot) => {
            slot.get_mut().plus_equals(&r);
            if slot.get().is_zero() {
                slot.remove();
            }
        }
    }
}

/// Filters `input` by event-time horizon, as `expiry` says: returns what it keeps,
/// and a `()` for every late record it dropped (to count them).
///
/// One operator for both: reading `input` a second time to find the late records
/// would copy every record for the second reader and hold it there until its time
/// completes, to keep almost none of them.
///
/// Which records were late depended on the clock when they arrived, so the filter is
/// saved at checkpoints in `slot`: its clock (shared) and, with `Retract`, the held
/// records (keyed by a hash of each, since the filter does not exchange its input).
/// Restored, it ignores its inputs up to the checkpoint and announces the held
/// records there. It never announces late records again, nor, with `DropLate`, what
/// it let through: whatever reads those outputs must keep its own history (a
/// history-dependent operator or an accumulation tap, [`super::accumulated`]).
pub fn horizon_filter<'s, D, R>(
    input: VecCollection<'s, Time, D, R>,
    clock: &EventClock<'s>,
    expires_at: fn(&D) -> Micros,
    retention: Micros,
    expiry: Expiry,
    mut slot: Slot,
) -> (VecCollection<'s, Time, D, R>, VecCollection<'s, Time, (), R>)
where
    D: ExchangeData + Hash,
    R: Abelian + ExchangeData,
{
    let restored = slot.take_restored();
    let through = restored.as_ref().map(|r| r.through);
    let mut state = HorizonState { watermark: Watermark::default(), held: BTreeMap::new() };
    if let Some(restored) = &restored {
        state.watermark = Watermark::restored(restored.state.shared::<Option<Micros>>().flatten());
        for (at, d, r) in restored.state.keyed::<(Micros, D, R)>() {
            hold(&mut state.held, (at, d), r);
        }
    }
    let state = Rc::new(RefCell::new(state));
    let shared = state.clone();
    slot.on_save(move |through| {
        let state = shared.borrow();
        let mut saved = SavedState::default();
        saved.set_shared(&state.watermark.saved_through(through));
        for ((at, d), r) in &state.held {
            saved.push_keyed((at, d).hashed(), &(at, d, r));
        }
        saved
    });
    let restored_through = move |time: &Time| through.is_some_and(|through| *time <= through);

    let mut builder = OperatorBuilder::new("HorizonFilter".to_string(), input.inner.scope());
    let mut updates = builder.new_input(input.inner, Pipeline);
    let mut maxima = builder.new_input(clock.maxima.clone(), Pipeline);
    let (kept_output, kept) = builder.new_output::<Vec<(D, Time, R)>>();
    let (late_output, late) = builder.new_output::<Vec<((), Time, R)>>();
    let mut kept_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<(D, Time, R)>>>::from(kept_output);
    let mut late_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<((), Time, R)>>>::from(late_output);
    builder.build(move |capabilities| {
        let mut pending: PendingUpdates<D, R> = BTreeMap::new();
        // The restored held records, announced once at the checkpoint's time.
        let mut announce = through.map(|t| capabilities[0].delayed(&t));
        move |frontiers| {
            let (updates_frontier, maxima_frontier) = (&frontiers[0], &frontiers[1]);
            let mut kept_output = kept_output.activate();
            let mut late_output = late_output.activate();
            let mut state = state.borrow_mut();
            let HorizonState { watermark, held } = &mut *state;
            if let Some(at) = announce.take() {
                let mut kept = kept_output.session(&at);
                for ((_, d), r) in held.iter() {
                    kept.give((d.clone(), *at.time(), r.clone()));
                }
            }
            let capabilities = |cap: &InputCapability<Time>, t: &Time| [cap.delayed(t, 0), cap.delayed(t, 1)];
            updates.for_each(|cap, data| {
                for (d, t, r) in data.drain(..) {
                    if restored_through(&t) {
                        continue;
                    }
                    pending.entry(t).or_insert_with(|| (capabilities(&cap, &t), Vec::new())).1.push((d, r));
                }
            });
            maxima.for_each(|cap, data| {
                for (t, max) in data.drain(..) {
                    if restored_through(&t) {
                        continue;
                    }
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
                        hold(held, (at, d.clone()), r.clone());
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
    /// This worker's state at a checkpoint (see [`crate::checkpoint`]): the clock as
    /// shared state, and keyed entries routed by the `key` of the inputs they came from,
    /// so a restore on any number of workers puts each where its inputs go.
    fn save(&self) -> SavedState;
    /// Takes back this worker's share of a saved state (on a state just made), and
    /// pushes to `out` the changes that announce everything it had emitted and not
    /// retracted.
    fn restore(&mut self, saved: &SavedState, out: &mut Vec<(Self::Change, isize)>);
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
/// source, for views of the clock itself such as a watermark). The state is saved at
/// checkpoints in `slot`; restored, it ignores the batches up to the checkpoint.
pub fn run_clocked<'s, S: ClockedState>(
    name: &str,
    inputs: VecCollection<'s, Time, S::Input>,
    key: fn(&S::Input) -> u64,
    event_time: fn(&S::Input) -> Micros,
    mut state: S,
    mut slot: Slot,
) -> (VecCollection<'s, Time, S::Change>, BatchMaxima<'s>) {
    let restored = slot.take_restored();
    let through = restored.as_ref().map(|r| r.through);
    let mut announced = Vec::new();
    if let Some(restored) = &restored {
        state.restore(&restored.state, &mut announced);
    }
    let state = Rc::new(RefCell::new(state));
    let saved = state.clone();
    slot.on_save(move |_through| saved.borrow().save());
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
            move |capability, _info| {
                let mut pending: BTreeMap<Time, ClockedBatch<S::Input>> = BTreeMap::new();
                // The restored state's output, announced once at the checkpoint's time.
                let mut announce = through.map(|t| (capability.delayed(&t), announced));
                let restored_through = move |time: &Time| through.is_some_and(|through| *time <= through);
                move |(rows, rows_frontier), (maxima, maxima_frontier), output| {
                    if let Some((at, changes)) = announce.take() {
                        let mut session = output.session(&at);
                        for (change, diff) in changes {
                            session.give((change, *at.time(), diff));
                        }
                    }
                    rows.for_each(|cap, data| {
                        for (input, time, diff) in data.drain(..) {
                            if restored_through(&time) {
                                continue;
                            }
                            clocked_batch(&mut pending, time, || cap.delayed(&time, 0)).inputs.push((input, diff));
                        }
                    });
                    maxima.for_each(|cap, data| {
                        for (time, max) in data.drain(..) {
                            if restored_through(&time) {
                                continue;
                            }
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
                        state.borrow_mut().process(batch.inputs, batch.batch_max, &mut changes);
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

#[cfg(test)]
mod tests {
    use differential_dataflow::operators::CountTotal;
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::checkpoint::testing::assert_restores_exactly;
    use crate::operators::accumulated;

    /// An event: `(event time, key)`. It expires at its event time.
    type Event = (Micros, u8);
    /// What a filter let through (`Ok`), and how many events it dropped late (`Err`).
    type Filtered = Result<Event, isize>;

    /// A step of a history: `(behind, key, retract)`, see [`batches`].
    type Step = (Micros, u8, bool);

    const RETENTION: Micros = 10;

    /// A filter over events on their own clock, read as a pipeline reads it: the late
    /// events counted behind a tap, and, with `DropLate`, what it keeps behind a tap too.
    fn filtered<'s>(
        input: VecCollection<'s, Time, Event>,
        checkpoints: &Checkpoints,
        expiry: Expiry,
    ) -> VecCollection<'s, Time, Filtered> {
        let clock = EventClock::of(vec![batch_maxima(&input, |(t, _)| *t)]);
        let slot = checkpoints.slot("test.filter");
        let (kept, late) = horizon_filter(input, &clock, |(t, _)| *t, RETENTION, expiry, slot);
        let late = accumulated(late, checkpoints.slot("test.late")).count_total().map(|((), n)| Err(n));
        let kept = match expiry {
            Expiry::DropLate => accumulated(kept, checkpoints.slot("test.kept")),
            Expiry::Retract => kept,
        };
        kept.map(Ok).concat(late)
    }

    fn dropping_late<'s>(input: VecCollection<'s, Time, Event>, c: &Checkpoints) -> VecCollection<'s, Time, Filtered> {
        filtered(input, c, Expiry::DropLate)
    }

    fn retracting<'s>(input: VecCollection<'s, Time, Event>, c: &Checkpoints) -> VecCollection<'s, Time, Filtered> {
        filtered(input, c, Expiry::Retract)
    }

    fn watermark<'s>(input: VecCollection<'s, Time, Event>, c: &Checkpoints) -> VecCollection<'s, Time, Micros> {
        EventClock::of(vec![batch_maxima(&input, |(t, _)| *t)]).watermark(c.slot("test.watermark"))
    }

    /// Batches from `(jump, steps)`: the clock's base moves up by `jump` (past the
    /// retention when it is over 10), then each step `(behind, key, retract)` adds an
    /// event `behind` the base (late when over 10), or takes back the oldest one added.
    fn batches(history: &[(Micros, Vec<Step>)]) -> Vec<Vec<(Event, isize)>> {
        let mut base = 0;
        let mut added: Vec<Event> = Vec::new();
        history
            .iter()
            .map(|(jump, steps)| {
                base += jump;
                let mut batch = Vec::new();
                for &(behind, key, retract) in steps {
                    if retract {
                        if !added.is_empty() {
                            batch.push((added.remove(0), -1));
                        }
                    } else {
                        added.push((base - behind, key));
                        batch.push(((base - behind, key), 1));
                    }
                }
                batch
            })
            .collect()
    }

    fn fixed_history() -> Vec<Vec<(Event, isize)>> {
        batches(&[
            (5, vec![(0, 0, false), (3, 1, false), (20, 2, false)]),
            (2, vec![(1, 0, false), (12, 1, false)]),
            (0, vec![(8, 2, false), (0, 0, true)]),
            (30, vec![]),
            (1, vec![(25, 0, false), (2, 1, false), (9, 2, false)]),
            // All behind the clock, late by it, so kept if the clock were lost.
            (0, vec![(12, 1, false), (14, 2, false)]),
            (0, vec![]),
            (4, vec![(0, 1, true), (11, 0, false), (3, 0, false)]),
            (15, vec![(1, 2, false)]),
        ])
    }

    #[test]
    fn a_late_dropping_filter_restores_exactly() {
        for cut in 0..=fixed_history().len() {
            assert_restores_exactly(dropping_late, &fixed_history(), cut);
        }
    }

    #[test]
    fn a_retracting_filter_restores_exactly() {
        for cut in 0..=fixed_history().len() {
            assert_restores_exactly(retracting, &fixed_history(), cut);
        }
    }

    #[test]
    fn the_watermark_restores_exactly() {
        for cut in 0..=fixed_history().len() {
            assert_restores_exactly(watermark, &fixed_history(), cut);
        }
    }

    /// Histories of up to 8 batches, and a cut among them.
    fn histories() -> impl Strategy<Value = (Vec<Vec<(Event, isize)>>, usize)> {
        let step = (0i64..16, 0u8..3, prop::bool::weighted(0.15));
        let history = prop::collection::vec((0i64..25, prop::collection::vec(step, 0..6)), 1..9);
        (history.prop_map(|history| batches(&history)), 0usize..9)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn a_late_dropping_filter_restores_exactly_after_any_history((batches, cut) in histories()) {
            assert_restores_exactly(dropping_late, &batches, cut);
        }

        #[test]
        fn a_retracting_filter_restores_exactly_after_any_history((batches, cut) in histories()) {
            assert_restores_exactly(retracting, &batches, cut);
        }

        #[test]
        fn the_watermark_restores_exactly_after_any_history((batches, cut) in histories()) {
            assert_restores_exactly(watermark, &batches, cut);
        }
    }
}
