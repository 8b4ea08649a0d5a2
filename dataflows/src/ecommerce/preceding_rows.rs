//! `COUNT(*) ... GROUP BY key` followed by a window over the N preceding rows
//! (`ORDER BY key ROWS BETWEEN N PRECEDING AND 1 PRECEDING`), maintained incrementally.
//!
//! A `reduce` over all groups would re-read every group whenever one changes. Here a
//! keyed timely operator keeps the per-key counts in a `BTreeMap`: a change to one
//! key's count (or a key appearing or vanishing) can only change the output rows of
//! that key and of the N keys after it, so a changed key costs O(log n) to find them
//! and O(N²) to recompute their windows, whatever the number of keys. It emits
//! differential updates: the old row retracted, the new one inserted.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use crate::Time;

/// Updates waiting for their time to complete, with the capability to answer at that time.
type Pending<K> = BTreeMap<Time, (Capability<Time>, Vec<(K, isize)>)>;

/// For a collection holding one record per event, keyed by its group: one output row
/// per group, built by `row(key, count, counts_of_up_to_n_preceding_groups)` where the
/// preceding counts come oldest first (an empty slice for the first group).
///
/// The window is over the whole relation (no PARTITION BY), so every update goes to
/// one worker; updates are applied in time order once the frontier has passed them.
pub fn rows_with_preceding<'s, K, O, F>(
    events: VecCollection<'s, Time, K>,
    preceding: usize,
    mut row: F,
) -> VecCollection<'s, Time, O>
where
    K: ExchangeData,
    O: ExchangeData,
    F: FnMut(&K, i64, &[i64]) -> O + 'static,
{
    events
        .inner
        .unary_frontier(Exchange::new(|_: &(K, Time, isize)| 0), "RowsWithPreceding", |_capability, _info| {
            let mut pending: Pending<K> = BTreeMap::new();
            let mut counts: BTreeMap<K, i64> = BTreeMap::new();
            let mut emitted: BTreeMap<K, O> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for (key, t, r) in data.drain(..) {
                        pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push((key, r));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, (cap, updates)) = entry.remove_entry();
                    let mut session = output.session(&cap);
                    let mut changed = BTreeSet::new();
                    for (key, r) in updates {
                        let count = counts.entry(key.clone()).or_insert(0);
                        *count += r as i64;
                        if *count == 0 {
                            counts.remove(&key);
                        }
                        changed.insert(key);
                    }
                    // Rows whose own count or whose window of preceding rows may have changed.
                    let mut affected = BTreeSet::new();
                    for key in &changed {
                        if counts.contains_key(key) {
                            affected.insert(key.clone());
                        } else if let Some(old) = emitted.remove(key) {
                            session.give((old, time, -1isize));
                        }
                        let after = counts.range((Bound::Excluded(key), Bound::Unbounded));
                        affected.extend(after.take(preceding).map(|(k, _)| k.clone()));
                    }
                    for key in affected {
                        let count = counts[&key];
                        let mut before: Vec<i64> =
                            counts.range(..&key).rev().take(preceding).map(|(_, c)| *c).collect();
                        before.reverse();
                        let new = row(&key, count, &before);
                        match emitted.get(&key) {
                            Some(old) if *old == new => continue,
                            Some(old) => session.give((old.clone(), time, -1isize)),
                            None => {}
                        }
                        session.give((new.clone(), time, 1isize));
                        emitted.insert(key, new);
                    }
                }
            }
        })
        .as_collection()
}
