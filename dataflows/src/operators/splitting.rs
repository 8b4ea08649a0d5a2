//! Splitting one collection into several in a single pass, so that readers of
//! different parts of a record do not each get a deep copy of all of it.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::vec::Partition;
use timely::progress::operate::FrontierInterest;

use crate::Time;

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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use proptest::prelude::*;

    use super::*;
    use crate::operators::answers_after_each_batch;

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
    }
}
