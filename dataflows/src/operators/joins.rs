//! Joins over arrangements that differential's own operators would build with
//! more arrangements and more operators.

use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::consolidation::ConsolidatingContainerBuilder;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::operators::cursor::join::join_traces;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::container::PushInto;

use crate::Time;

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use proptest::prelude::*;

    use super::*;
    use crate::operators::answers_after_each_batch;

    /// One step of a left join history: `(kind, key, value)`; kind 0 adds a left row,
    /// 1 retracts the left row added last, 2 sets the key's right row to the value
    /// (replacing any), 3 removes the key's right row.
    type JoinStep = (u8, u8, u8);

    /// Left join rows after each batch: `(key, left value, right value)` with multiplicities.
    type JoinAnswers = Vec<Vec<((u8, u8, Option<u8>), isize)>>;

    /// `left LEFT JOIN right` after every batch, by [`left_join_unique`] or by the
    /// `join_map` + `antijoin` formulation that computes the same rows.
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
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
