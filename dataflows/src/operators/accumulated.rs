//! The accumulation tap: a pass-through that remembers what has accumulated, so an
//! aggregate over a stream that is never retracted (late events, every product that
//! ever sold) survives a checkpoint without the events themselves.

use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::difference::Abelian;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

use crate::Time;
use crate::checkpoint::{SavedState, Slot};

/// Passes `input` through unchanged, keeping its consolidated accumulation. At a
/// checkpoint it saves that accumulation; restored, it ignores its input up to the
/// checkpoint's time and emits the accumulation there instead. Placed in front of a
/// pure operator (such as `count_total`) over a stream that is never retracted, it lets
/// that operator come back exactly. The accumulation must stay small: tap a stream
/// already cut down to the aggregate's key (`explode` into a key and a difference).
pub fn accumulated<'s, D, R>(input: VecCollection<'s, Time, D, R>, mut slot: Slot) -> VecCollection<'s, Time, D, R>
where
    D: ExchangeData + Hashable<Output = u64> + std::hash::Hash,
    R: Abelian + ExchangeData,
{
    let restored = slot.take_restored();
    let through = restored.as_ref().map(|r| r.through);
    let mut held: HashMap<D, R> = HashMap::new();
    if let Some(restored) = &restored {
        for (d, r) in restored.state.keyed::<(D, R)>() {
            add(&mut held, d, r);
        }
    }
    let held = Rc::new(std::cell::RefCell::new(held));
    let saved = held.clone();
    slot.on_save(move |_through| {
        let mut state = SavedState::default();
        for (d, r) in saved.borrow().iter() {
            state.push_keyed(d.hashed(), &(d.clone(), r.clone()));
        }
        state
    });
    input
        .inner
        .unary::<CapacityContainerBuilder<Vec<(D, Time, R)>>, _, _, _>(Pipeline, "Accumulated", move |capability, _| {
            // The restored accumulation, announced once at the checkpoint's time.
            let mut announce = through.map(|t| capability.delayed(&t));
            move |input, output| {
                if let Some(at) = announce.take() {
                    let mut session = output.session(&at);
                    for (d, r) in held.borrow().iter() {
                        session.give((d.clone(), through.expect("restoring"), r.clone()));
                    }
                }
                input.for_each(|cap, data| {
                    let mut held = held.borrow_mut();
                    data.retain(|(_, t, _)| through.is_none_or(|through| *t > through));
                    for (d, _, r) in data.iter() {
                        add(&mut held, d.clone(), r.clone());
                    }
                    output.session(&cap).give_container(data);
                });
            }
        })
        .as_collection()
}

fn add<D: std::hash::Hash + Eq, R: Abelian>(held: &mut HashMap<D, R>, d: D, r: R) {
    match held.entry(d) {
        std::collections::hash_map::Entry::Vacant(slot) => {
            if !r.is_zero() {
                slot.insert(r);
            }
        }
        std::collections::hash_map::Entry::Occupied(mut slot) => {
            slot.get_mut().plus_equals(&r);
            if slot.get().is_zero() {
                slot.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use differential_dataflow::VecCollection;

    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::checkpoint::testing::assert_restores_exactly;

    /// Counts per key behind the tap, as the pipelines use it.
    fn counted<'s>(
        input: VecCollection<'s, Time, u8>,
        checkpoints: &Checkpoints,
    ) -> VecCollection<'s, Time, (u8, isize)> {
        use differential_dataflow::operators::CountTotal;
        accumulated(input, checkpoints.slot("test.tap")).count_total()
    }

    #[test]
    fn a_count_behind_the_tap_restores_exactly() {
        let batches: Vec<Vec<(u8, isize)>> =
            (0..12u8).map(|b| (0..(b % 4 + 1)).map(|i| ((b * 7 + i * 3) % 5, 1)).collect()).collect();
        for cut in [0, 1, 5, 11, 12] {
            assert_restores_exactly(counted, &batches, cut);
        }
    }
}
