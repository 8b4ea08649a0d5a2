//! Range sums at query positions: SQL's `SUM(..) OVER (.. RANGE BETWEEN n PRECEDING
//! AND CURRENT ROW)`, read at the query positions, kept in one keyed operator that
//! re-answers only the queries whose range a change falls in.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use differential_dataflow::AsCollection;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat};

use crate::Time;
use crate::datum::Micros;

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

    use differential_dataflow::input::Input;
    use proptest::prelude::*;

    use super::*;
    use crate::operators::answers_after_each_batch;

    /// One step of a range-sum history: `(key, position, kind, weight)`; kind 0 adds
    /// the weight at (key, position), 1 retracts what was added there last, 2 toggles
    /// a query.
    type RangeStep = (u8, u8, u8, i64);

    /// Range sums after each batch: `((key, position), sum)` with multiplicities.
    type RangeAnswers = Vec<Vec<(((u8, Micros), i64), isize)>>;

    /// Range sums after every batch, by [`range_sum_at`] or by the `explode` + `count`
    /// + join formulation that computes the same sums.
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
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
    }
}
