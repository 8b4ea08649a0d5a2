//! Keyed latest-value state: the greatest value per key (the newest, when values
//! order by event time first), maintained in one keyed operator whose cost per update
//! does not grow with a key's history.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use differential_dataflow::AsCollection;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use crate::Time;
use crate::datum::Micros;

/// Updates waiting for their time to complete, with the capability to answer at that time.
type Pending<K, V> = BTreeMap<Time, (Capability<Time>, Vec<((K, V), isize)>)>;

/// Reads a value's event time.
pub type EventTimeOf<V> = fn(&V) -> Micros;

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
