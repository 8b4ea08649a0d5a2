//! Keyed latest-value state: the greatest value per key (the newest, when values
//! order by event time first), maintained in one keyed operator whose cost per update
//! does not grow with a key's history.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use crate::Time;
use crate::checkpoint::{SavedState, Slot};
use crate::datum::Micros;

/// Updates waiting for their time to complete, with the capability to answer at that time.
type Pending<K, V> = BTreeMap<Time, (Capability<Time>, Vec<((K, V), isize)>)>;

/// Reads a value's event time.
pub type EventTimeOf<V> = fn(&V) -> Micros;

/// Lets [`max_per_key`] forget the values that can no longer become a key's greatest.
///
/// What is left then depends on when each value arrived, not only on the values, so
/// the operator saves it at checkpoints in `slot`.
pub struct Forget<V> {
    pub event_time: EventTimeOf<V>,
    /// How far behind a key's greatest value's event time a value is still kept.
    pub retention: Micros,
    pub slot: Slot,
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
/// `forget`: for append-only inputs, drops a key's values older than its greatest
/// value's event time minus `retention` (never the greatest itself), so memory
/// follows the retention window instead of history. The output is unchanged, since
/// a dropped value can never become the maximum again, but a later retraction of a
/// dropped value would be lost: only use it where nothing is ever retracted. The
/// kept values are then history, saved at checkpoints (one entry per key) and
/// restored: restored, the operator ignores its input up to the checkpoint and
/// announces each key's greatest value at the checkpoint's time. Without `forget`
/// the output is a function of the input alone and needs no checkpoint.
pub fn max_per_key<'s, K, V>(
    input: VecCollection<'s, Time, (K, V)>,
    forget: Option<Forget<V>>,
) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    let live: Rc<RefCell<HashMap<K, BTreeMap<V, isize>>>> = Rc::default();
    let mut through = None;
    let forget = forget.map(|Forget { event_time, retention, mut slot }| {
        if let Some(restored) = slot.take_restored() {
            through = Some(restored.through);
            live.borrow_mut().extend(
                restored.state.keyed::<(K, Vec<(V, isize)>)>().map(|(k, values)| (k, values.into_iter().collect())),
            );
        }
        let saved = live.clone();
        slot.on_save(move |_through| {
            let mut state = SavedState::default();
            for (k, values) in saved.borrow().iter() {
                let values: Vec<(&V, &isize)> = values.iter().collect();
                state.push_keyed(k.hashed(), &(k, values));
            }
            state
        });
        (event_time, retention)
    });
    input
        .inner
        .unary_frontier(
            Exchange::new(|((k, _v), _t, _r): &((K, V), Time, isize)| k.hashed()),
            "MaxPerKey",
            move |capability, _info| {
                // Pending updates by time, each with the capability to emit at that time.
                let mut pending: Pending<K, V> = BTreeMap::new();
                // The restored greatest values, announced once at the checkpoint's time.
                let mut announce = through.map(|t| capability.delayed(&t));
                move |(input, frontier), output| {
                    let mut live = live.borrow_mut();
                    if let Some(at) = announce.take() {
                        let mut session = output.session(&at);
                        for (k, values) in live.iter() {
                            if let Some(greatest) = values.keys().next_back() {
                                session.give(((k.clone(), greatest.clone()), *at.time(), 1isize));
                            }
                        }
                    }
                    input.for_each(|cap, data| {
                        for ((k, v), t, r) in data.drain(..) {
                            if through.is_some_and(|through| t <= through) {
                                continue;
                            }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::checkpoint::testing::assert_restores_exactly;

    /// A value: `(event time, price)`.
    type Value = (Micros, i64);

    /// The latest value per key, forgetting values 10 behind a key's latest.
    fn latest<'s>(
        input: VecCollection<'s, Time, (u8, Value)>,
        checkpoints: &Checkpoints,
    ) -> VecCollection<'s, Time, (u8, Value)> {
        let event_time: EventTimeOf<Value> = |(ts, _)| *ts;
        max_per_key(input, Some(Forget { event_time, retention: 10, slot: checkpoints.slot("test.latest") }))
    }

    /// Batches from steps `(key, event time, price, retract)`: a retraction takes back
    /// the key's earliest value still inserted, if any (so it may hit a forgotten one).
    fn batches(history: &[Vec<(u8, Micros, i64, bool)>]) -> Vec<Vec<((u8, Value), isize)>> {
        let mut inserted: Vec<(u8, Value)> = Vec::new();
        history
            .iter()
            .map(|steps| {
                let mut batch = Vec::new();
                for &(key, ts, price, retract) in steps {
                    if retract {
                        if let Some(i) = inserted.iter().position(|(k, _)| *k == key) {
                            batch.push((inserted.remove(i), -1));
                        }
                    } else {
                        inserted.push((key, (ts, price)));
                        batch.push(((key, (ts, price)), 1));
                    }
                }
                batch
            })
            .collect()
    }

    #[test]
    fn a_forgetting_max_restores_exactly() {
        // Key 0 jumps ahead (forgetting all before), then gets an old value and loses its latest.
        let history = vec![
            vec![(0, 5, 50, false), (0, 3, 30, false), (1, 4, 40, false)],
            vec![(0, 40, 400, false), (1, 2, 20, false)],
            vec![(0, 1, 10, false), (1, 30, 300, false), (2, 7, 70, false)],
            vec![(0, 35, 350, false), (0, 0, 0, true)],
            vec![(1, 0, 0, true), (0, 0, 0, true), (2, 60, 600, false)],
            vec![(0, 38, 380, false)],
        ];
        let batches = batches(&history);
        for cut in [0, 1, 2, 3, 5, 6] {
            assert_restores_exactly(latest, &batches, cut);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn a_forgetting_max_restores_exactly_after_any_history(
            history in prop::collection::vec(
                prop::collection::vec((0u8..3, 0i64..60, 0i64..5, prop::bool::weighted(0.2)), 0..6),
                1..8,
            ),
            cut in 0usize..8,
        ) {
            assert_restores_exactly(latest, &batches(&history), cut);
        }
    }
}
