//! The per-product pricing state machine, and the keyed timely operator that runs it.
//!
//! # Order
//!
//! Logical time is arrival order (one ingest batch per time); a batch's rows have no
//! order of their own. A product's inputs are folded one complete batch at a time,
//! in logical-time order, and inside a batch in this order:
//!
//! 1. table changes: catalog (`pricing_products`), removal times
//!    (`price_override_removals`), overrides (`price_overrides`), each retractions
//!    before insertions, so an UPDATE (retract old, insert new) ends on the new row;
//! 2. events, by (timestamp, event_type, user_id, price).
//!
//! That makes the views a function of the input batches alone, the same for any
//! number of workers: a product's state lives on one worker (keyed `Exchange`).
//!
//! # Rules (spec §E)
//!
//! - An event is *skipped* (no demand, no price, no row) while the product has an
//!   override, and when its timestamp is at or before the product's last removal time.
//! - Otherwise demand += weight, and price = event.price + sqrt(demand) × 5.
//! - The current price is the override's, else the last priced event's, else the
//!   catalog's base price.
//!
//! Each event costs O(log r) (r: retained history rows of the product); nothing
//! re-reads history.
//!
//! # Checkpoints
//!
//! Whether an event was skipped depended on the tables when it arrived, and the price
//! after the last priced event (an f64) cannot be rebuilt from rows once that event has
//! expired, so a product's whole [`ProductPricing`] is what a checkpoint saves (see
//! [`crate::checkpoint`]), one keyed entry per product. That includes its table rows:
//! restored, the operator ignores its inputs up to the checkpoint, the tables' current
//! rows re-fed there among them.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use super::{
    CatalogProduct, OverrideRemoval, PriceHistoryRow, PriceOverride, PriceUpdate, ProductEvent, ProductPrice,
    SOURCE_BASE, SOURCE_DYNAMIC, SOURCE_OVERRIDE, demand_weight, dynamic_price,
};
use crate::Time;
use crate::checkpoint::{SavedState, Slot};
use crate::datum::{F64, Micros};

/// One input of the state machine, keyed by product. The variant order is the
/// order table changes apply in within a batch; events come last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PricingInput {
    Catalog(CatalogProduct),
    Removal(OverrideRemoval),
    Override(PriceOverride),
    Event(ProductEvent),
}

/// What the state machine emits, split into the three views afterwards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PricingChange {
    Price(ProductPrice),
    History(PriceHistoryRow),
    Update(PriceUpdate),
}

impl PricingChange {
    /// The view a change is for, in [`crate::pricing`]'s order of views (see
    /// [`crate::operators::split_by_kind`]).
    pub fn kind(&self) -> usize {
        match self {
            PricingChange::Price(_) => 0,
            PricingChange::History(_) => 1,
            PricingChange::Update(_) => 2,
        }
    }
}

/// One product's state: O(1) fields plus the history rows still retained.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProductPricing {
    base: Option<CatalogProduct>,
    demand: i64,
    /// The price after the last priced event.
    dynamic_price: Option<f64>,
    active_override: Option<PriceOverride>,
    removed_at: Option<Micros>,
    /// Price changes so far: the next change is number `changes + 1`.
    changes: i64,
    /// Newest event time of any change, which retention counts back from.
    newest: Option<Micros>,
    /// Retained price changes by (event time, seq), a NULL event time first: each
    /// is a `price_updates` row, and a `price_history` row too when it has a source.
    retained: BTreeMap<RetainedKey, RetainedChange>,
}

/// What rebuilds a retained change's rows when it expires and is retracted. A
/// 24-hour history holds one per product event, so it keeps no product id and no
/// strings (the rows had both, in two maps: ~300 bytes a change), and not its
/// event time either, which its key in [`ProductPricing::retained`] holds: 16
/// bytes, 32 with the key (docs/benchmarks.md, #memory-for-24-hours-of-events).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RetainedChange {
    price: F64,
    /// The `price_source` of its `price_history` row, if it has one, as an index
    /// into [`HISTORY_SOURCES`].
    history_source: Option<u8>,
}

/// The `price_source`s a `price_history` row can have.
const HISTORY_SOURCES: [&str; 3] = [SOURCE_BASE, SOURCE_DYNAMIC, SOURCE_OVERRIDE];

/// The key of a retained change: its event time, a NULL one as [`Micros::MIN`]
/// (first, as SQL orders NULLs here), then its seq.
type RetainedKey = (Micros, i64);

impl RetainedChange {
    fn history_row(&self, product_id: &str, (time, seq): RetainedKey) -> Option<PriceHistoryRow> {
        self.history_source.map(|source| PriceHistoryRow {
            product_id: product_id.to_string(),
            price: self.price,
            price_source: HISTORY_SOURCES[usize::from(source)].to_string(),
            event_time: event_time(time),
            seq,
        })
    }

    fn update_row(&self, product_id: &str, (time, seq): RetainedKey) -> PriceUpdate {
        PriceUpdate { product_id: product_id.to_string(), seq, new_price: self.price, timestamp: event_time(time) }
    }
}

/// The event time a [`RetainedKey`] holds.
fn event_time(key_time: Micros) -> Option<Micros> {
    (key_time != Micros::MIN).then_some(key_time)
}

/// Orders a batch's inputs for one product (see the module documentation).
fn apply_order(input: &(PricingInput, isize)) -> impl Ord + '_ {
    let (value, diff) = input;
    let rank = match value {
        PricingInput::Catalog(_) => 0,
        PricingInput::Removal(_) => 1,
        PricingInput::Override(_) => 2,
        PricingInput::Event(_) => 3,
    };
    let event_key = match value {
        PricingInput::Event(e) => Some((e.timestamp, &e.event_type, &e.user_id, e.price)),
        _ => None,
    };
    (rank, *diff > 0, event_key, value)
}

impl ProductPricing {
    /// The product's `product_prices` row, if it has a price at all.
    pub fn current(&self, product_id: &str) -> Option<ProductPrice> {
        let (price, source) = if let Some(o) = &self.active_override {
            (o.override_price.get(), SOURCE_OVERRIDE)
        } else if let Some(p) = self.dynamic_price {
            (p, SOURCE_DYNAMIC)
        } else {
            (self.base.as_ref()?.base_price.get(), SOURCE_BASE)
        };
        Some(ProductPrice {
            product_id: product_id.to_string(),
            price: F64::new(price),
            demand: self.demand,
            price_source: source.to_string(),
        })
    }

    /// Whether the product holds no state worth keeping.
    pub fn is_empty(&self) -> bool {
        self.base.is_none()
            && self.active_override.is_none()
            && self.dynamic_price.is_none()
            && self.removed_at.is_none()
            && self.retained.is_empty()
    }

    /// Retained history rows (for tests of the retention bound).
    pub fn retained_rows(&self) -> usize {
        self.retained.values().map(|change| 1 + usize::from(change.history_source.is_some())).sum()
    }

    /// Pushes to `out` everything this state has emitted and not retracted: its
    /// `product_prices` row and its retained changes' rows. A restored product announces
    /// them, so the views, rebuilt from nothing, hold what they held at the checkpoint.
    fn announce(&self, product_id: &str, out: &mut Vec<(PricingChange, isize)>) {
        out.extend(self.current(product_id).map(|row| (PricingChange::Price(row), 1)));
        for (key, change) in &self.retained {
            out.extend(change.history_row(product_id, *key).map(|row| (PricingChange::History(row), 1)));
            out.push((PricingChange::Update(change.update_row(product_id, *key)), 1));
        }
    }

    /// Folds one complete batch of this product's inputs and pushes the resulting
    /// changes of the three views to `out`.
    pub fn apply(
        &mut self,
        product_id: &str,
        mut inputs: Vec<(PricingInput, isize)>,
        retention: Micros,
        out: &mut Vec<(PricingChange, isize)>,
    ) {
        let before = self.current(product_id);
        let override_before = self.active_override.clone();
        let base_before = self.base.clone();
        inputs.sort_by(|a, b| apply_order(a).cmp(&apply_order(b)));

        let mut events = Vec::new();
        for (input, diff) in inputs {
            match input {
                PricingInput::Catalog(row) => retract_or_set(&mut self.base, row, diff),
                PricingInput::Removal(row) => retract_or_set(&mut self.removed_at, row.removed_at, diff),
                PricingInput::Override(row) => retract_or_set(&mut self.active_override, row, diff),
                // `product_events` is a source: nothing retracts its rows.
                PricingInput::Event(event) if diff > 0 => events.push((event, diff)),
                PricingInput::Event(_) => {}
            }
        }

        // What the table changes did to the current price.
        let after_tables = self.current(product_id);
        if self.active_override != override_before
            && let Some(o) = self.active_override.clone()
        {
            self.record(product_id, o.override_price.get(), SOURCE_OVERRIDE, o.set_time, true, out);
        } else if after_tables != before
            && let Some(now) = &after_tables
        {
            let base_set = now.price_source == SOURCE_BASE && self.base != base_before;
            let time = if base_set {
                self.base.as_ref().and_then(|b| b.added_at)
            } else {
                // The override was removed: the price falls back at the removal time.
                self.removed_at.or(override_before.and_then(|o| o.set_time))
            };
            self.record(product_id, now.price.get(), &now.price_source, time, base_set, out);
        }

        for (event, copies) in events {
            for _ in 0..copies {
                self.price_event(product_id, &event, out);
            }
        }

        self.forget_older_than(product_id, retention, out);
        let after = self.current(product_id);
        if before != after {
            out.extend(before.map(|row| (PricingChange::Price(row), -1)));
            out.extend(after.map(|row| (PricingChange::Price(row), 1)));
        }
    }

    fn price_event(&mut self, product_id: &str, event: &ProductEvent, out: &mut Vec<(PricingChange, isize)>) {
        if self.active_override.is_some() || self.removed_at.is_some_and(|removed| event.timestamp <= removed) {
            return;
        }
        // Rows are checked on the way in (`pricing::check_row`): an invalid event cannot
        // get here, and if one did it must not move the price.
        let Some(weight) = demand_weight(&event.event_type).filter(|_| event.invalid_reason().is_none()) else {
            return;
        };
        self.demand += weight;
        let price = dynamic_price(event.price.get(), self.demand);
        self.dynamic_price = Some(price);
        self.record(product_id, price, SOURCE_DYNAMIC, Some(event.timestamp), true, out);
    }

    /// A change of the current price: a `price_updates` row, and a `price_history`
    /// row when `history`.
    fn record(
        &mut self,
        product_id: &str,
        price: f64,
        source: &str,
        time: Option<Micros>,
        history: bool,
        out: &mut Vec<(PricingChange, isize)>,
    ) {
        self.changes += 1;
        let seq = self.changes;
        let history_source = history.then(|| {
            let index =
                HISTORY_SOURCES.iter().position(|s| *s == source).expect("a price has one of the three sources");
            index as u8
        });
        let change = RetainedChange { price: F64::new(price), history_source };
        let key = (time.unwrap_or(Micros::MIN), seq);
        out.extend(change.history_row(product_id, key).map(|row| (PricingChange::History(row), 1)));
        out.push((PricingChange::Update(change.update_row(product_id, key)), 1));
        self.retained.insert(key, change);
        if time.is_some() {
            self.newest = self.newest.max(time);
        }
    }

    /// Drops (and retracts) rows more than `retention` older than the newest change.
    fn forget_older_than(&mut self, product_id: &str, retention: Micros, out: &mut Vec<(PricingChange, isize)>) {
        let Some(newest) = self.newest else { return };
        let horizon = newest.saturating_sub(retention);
        while let Some(entry) = self.retained.first_entry() {
            if entry.key().0 >= horizon {
                break;
            }
            let (key, change) = entry.remove_entry();
            out.extend(change.history_row(product_id, key).map(|row| (PricingChange::History(row), -1)));
            out.push((PricingChange::Update(change.update_row(product_id, key)), -1));
        }
    }
}

/// A table row's change applied to the one row its key holds: a retraction of the
/// current row clears it, an insertion replaces it.
fn retract_or_set<T: PartialEq>(slot: &mut Option<T>, row: T, diff: isize) {
    if diff > 0 {
        *slot = Some(row);
    } else if slot.as_ref() == Some(&row) {
        *slot = None;
    }
}

/// A batch waiting for its time to complete, with the capability to answer at that time.
type Pending = BTreeMap<Time, (Capability<Time>, Vec<((String, PricingInput), isize)>)>;

/// Runs [`ProductPricing`] per product: inputs are exchanged by product id, each
/// worker folds its products' complete batches in time order and emits the views'
/// changes at the batch's time. At a checkpoint each product's state is saved in
/// `slot`, routed by its product id's hash (as the exchange routes its inputs);
/// restored, the operator ignores its inputs up to the checkpoint and announces the
/// restored products' rows at its time.
pub fn per_product_pricing<'s>(
    inputs: VecCollection<'s, Time, (String, PricingInput)>,
    retention: Micros,
    mut slot: Slot,
) -> VecCollection<'s, Time, PricingChange> {
    let restored = slot.take_restored();
    let through = restored.as_ref().map(|r| r.through);
    let mut products: HashMap<String, ProductPricing> = HashMap::new();
    let mut announced = Vec::new();
    if let Some(restored) = &restored {
        for (product_id, state) in restored.state.keyed::<(String, ProductPricing)>() {
            state.announce(&product_id, &mut announced);
            products.insert(product_id, state);
        }
    }
    let products = Rc::new(RefCell::new(products));
    let saved = products.clone();
    slot.on_save(move |_through| {
        let mut state = SavedState::default();
        for (product_id, product) in saved.borrow().iter() {
            state.push_keyed(product_id.hashed(), &(product_id, product));
        }
        state
    });
    let restored_through = move |time: &Time| through.is_some_and(|through| *time <= through);
    inputs
        .inner
        .unary_frontier(
            Exchange::new(|((product_id, _), _t, _r): &((String, PricingInput), Time, isize)| product_id.hashed()),
            "PerProductPricing",
            move |capability, _info| {
                let mut pending: Pending = BTreeMap::new();
                // The restored products' rows, announced once at the checkpoint's time.
                let mut announce = through.map(|t| (capability.delayed(&t), announced));
                move |(input, frontier), output| {
                    if let Some((at, changes)) = announce.take() {
                        let mut session = output.session(&at);
                        for (change, diff) in changes {
                            session.give((change, *at.time(), diff));
                        }
                    }
                    input.for_each(|cap, data| {
                        for (update, t, r) in data.drain(..) {
                            if restored_through(&t) {
                                continue;
                            }
                            pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push((update, r));
                        }
                    });
                    let mut products = products.borrow_mut();
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (time, (cap, updates)) = entry.remove_entry();
                        let mut by_product: BTreeMap<String, Vec<(PricingInput, isize)>> = BTreeMap::new();
                        for ((product_id, input), diff) in updates {
                            by_product.entry(product_id).or_default().push((input, diff));
                        }
                        let mut changes = Vec::new();
                        for (product_id, inputs) in by_product {
                            let state = products.entry(product_id.clone()).or_default();
                            state.apply(&product_id, inputs, retention, &mut changes);
                            if state.is_empty() {
                                products.remove(&product_id);
                            }
                        }
                        let mut session = output.session(&cap);
                        for (change, diff) in changes {
                            session.give((change, time, diff));
                        }
                    }
                }
            },
        )
        .as_collection()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::checkpoint::testing::assert_restores_exactly;
    use crate::datum::MICROS_PER_SECOND;
    use crate::pricing::testing::{RETENTION, Step, batches, histories};

    const T0: Micros = 1_700_000_000 * MICROS_PER_SECOND;
    const DAY: Micros = 86_400 * MICROS_PER_SECOND;

    fn event(kind: &str, at_s: i64, price: f64) -> (PricingInput, isize) {
        let e = ProductEvent {
            event_type: kind.into(),
            product_id: "PA".into(),
            user_id: Some("u".into()),
            timestamp: T0 + at_s * MICROS_PER_SECOND,
            price: F64::new(price),
        };
        (PricingInput::Event(e), 1)
    }

    fn catalog(price: f64) -> PricingInput {
        PricingInput::Catalog(CatalogProduct {
            product_id: "PA".into(),
            base_price: F64::new(price),
            added_at: Some(T0),
        })
    }

    fn override_at(price: f64, at_s: i64) -> PricingInput {
        PricingInput::Override(PriceOverride {
            product_id: "PA".into(),
            override_price: F64::new(price),
            reason: Some("test".into()),
            set_time: Some(T0 + at_s * MICROS_PER_SECOND),
        })
    }

    fn removal(at_s: i64) -> PricingInput {
        PricingInput::Removal(OverrideRemoval { product_id: "PA".into(), removed_at: T0 + at_s * MICROS_PER_SECOND })
    }

    /// Applies batches in order; returns the state and everything emitted.
    fn run(batches: Vec<Vec<(PricingInput, isize)>>) -> (ProductPricing, Vec<(PricingChange, isize)>) {
        let mut state = ProductPricing::default();
        let mut out = Vec::new();
        for batch in batches {
            state.apply("PA", batch, DAY, &mut out);
        }
        (state, out)
    }

    fn price(state: &ProductPricing) -> (f64, i64, String) {
        let row = state.current("PA").unwrap();
        (row.price.get(), row.demand, row.price_source)
    }

    fn sources_of_history(out: &[(PricingChange, isize)]) -> Vec<(String, f64)> {
        out.iter()
            .filter_map(|(c, d)| match c {
                PricingChange::History(h) if *d > 0 => Some((h.price_source.clone(), h.price.get())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn demand_is_a_weighted_running_sum_and_prices_follow_it() {
        let (state, out) =
            run(vec![vec![(catalog(100.0), 1)], vec![event("view", 1, 100.0)], vec![event("cart", 2, 100.0)]]);
        // demand 1 + 3 = 4: 100 + 2 × 5.
        assert_eq!(price(&state), (110.0, 4, "dynamic".into()));
        assert_eq!(
            sources_of_history(&out),
            vec![("base".into(), 100.0), ("dynamic".into(), 105.0), ("dynamic".into(), 110.0)]
        );
        let (state, _) = run(vec![vec![event("purchase", 1, 100.0), event("view", 2, 100.0), event("cart", 3, 100.0)]]);
        assert_eq!(price(&state), (115.0, 9, "dynamic".into()), "price(100, demand 9) = 115");
    }

    #[test]
    fn an_active_override_skips_events_entirely() {
        let (state, out) = run(vec![
            vec![(catalog(100.0), 1), event("view", 1, 100.0)],
            vec![(override_at(80.0, 2), 1)],
            vec![event("purchase", 3, 100.0), event("cart", 4, 100.0)],
        ]);
        assert_eq!(price(&state), (80.0, 1, "override".into()), "no demand change while overridden");
        assert_eq!(sources_of_history(&out).last().unwrap(), &("override".into(), 80.0));
    }

    #[test]
    fn after_removal_events_up_to_the_removal_time_are_still_skipped() {
        let (state, out) = run(vec![
            vec![(catalog(100.0), 1), event("view", 1, 100.0)],
            vec![(override_at(80.0, 2), 1)],
            // Removed at 10 s: the table loses the row, the removal time is recorded.
            vec![(override_at(80.0, 2), -1), (removal(10), 1)],
            // Produced while the override was active (≤ 10 s), read after the removal.
            vec![event("purchase", 5, 100.0), event("purchase", 10, 100.0)],
            vec![event("cart", 11, 100.0)],
        ]);
        // demand 1 (view) + 3 (cart at 11 s); the purchases were skipped.
        assert_eq!(price(&state), (110.0, 4, "dynamic".into()));
        // The removal reverted the price to the last dynamic one, as a price update.
        let updates: Vec<(f64, Option<Micros>)> = out
            .iter()
            .filter_map(|(c, d)| match c {
                PricingChange::Update(u) if *d > 0 => Some((u.new_price.get(), u.timestamp)),
                _ => None,
            })
            .collect();
        assert_eq!(
            updates,
            vec![
                (100.0, Some(T0)),
                (105.0, Some(T0 + MICROS_PER_SECOND)),
                (80.0, Some(T0 + 2 * MICROS_PER_SECOND)),
                (105.0, Some(T0 + 10 * MICROS_PER_SECOND)),
                (110.0, Some(T0 + 11 * MICROS_PER_SECOND)),
            ]
        );
    }

    #[test]
    fn an_override_update_is_one_change_and_the_catalog_only_prices_before_events() {
        let (state, out) = run(vec![
            vec![(catalog(100.0), 1)],
            vec![(override_at(80.0, 1), 1)],
            vec![(override_at(80.0, 1), -1), (override_at(70.0, 2), 1)],
        ]);
        assert_eq!(price(&state), (70.0, 0, "override".into()));
        assert_eq!(
            sources_of_history(&out),
            vec![("base".into(), 100.0), ("override".into(), 80.0), ("override".into(), 70.0)]
        );
        // A new base price moves a product still on its base price, not a dynamic one.
        let (state, _) = run(vec![vec![(catalog(100.0), 1)], vec![(catalog(100.0), -1), (catalog(120.0), 1)]]);
        assert_eq!(price(&state), (120.0, 0, "base".into()));
        let (state, _) = run(vec![
            vec![(catalog(100.0), 1), event("view", 1, 100.0)],
            vec![(catalog(100.0), -1), (catalog(120.0), 1)],
        ]);
        assert_eq!(price(&state), (105.0, 1, "dynamic".into()));
    }

    #[test]
    fn events_of_one_batch_apply_in_timestamp_order_and_the_view_nets_out() {
        // Same events, two arrival orders inside one batch: same result.
        let a = run(vec![vec![event("view", 2, 50.0), event("purchase", 1, 100.0)]]);
        let b = run(vec![vec![event("purchase", 1, 100.0), event("view", 2, 50.0)]]);
        assert_eq!(price(&a.0), price(&b.0));
        assert_eq!(price(&a.0), (50.0 + 6f64.sqrt() * 5.0, 6, "dynamic".into()));
        // product_prices: each batch retracts the previous row, so one row remains.
        let mut net: BTreeMap<PricingChange, isize> = BTreeMap::new();
        let (_, out) = run(vec![vec![event("view", 1, 10.0)], vec![event("view", 2, 10.0)]]);
        for (change, diff) in out {
            if matches!(change, PricingChange::Price(_)) {
                *net.entry(change).or_default() += diff;
            }
        }
        net.retain(|_, d| *d != 0);
        assert_eq!(net.len(), 1);
    }

    #[test]
    fn history_keeps_the_retention_window() {
        let mut state = ProductPricing::default();
        let mut out = Vec::new();
        for hour in 0..100 {
            state.apply("PA", vec![event("view", hour * 3600, 10.0)], DAY, &mut out);
        }
        // 24 h behind the newest (hour 99): hours 75..=99 stay, in both views.
        assert_eq!(state.retained_rows(), 2 * 25);
        let live: isize = out.iter().filter(|(c, _)| matches!(c, PricingChange::History(_))).map(|(_, d)| d).sum();
        assert_eq!(live, 25);
    }

    /// The operator, registered as the pipeline registers it.
    fn checkpointed<'s>(
        inputs: VecCollection<'s, Time, (String, PricingInput)>,
        checkpoints: &Checkpoints,
    ) -> VecCollection<'s, Time, PricingChange> {
        per_product_pricing(inputs, RETENTION, checkpoints.slot("pricing.products"))
    }

    #[test]
    fn a_restored_product_goes_on_as_if_never_stopped() {
        use Step::*;
        let steps = vec![
            vec![
                Catalog { product: 0, price: 100, at: Some(0) },
                Event { product: 0, kind: 0, at: 5, price: 100, copies: 1 },
            ],
            // Out of order within and across batches; one behind the retention.
            vec![
                Event { product: 0, kind: 2, at: 30, price: 90, copies: 2 },
                Event { product: 0, kind: 1, at: -100, price: 95, copies: 1 },
                Event { product: 1, kind: 0, at: -500, price: 40, copies: 1 },
            ],
            vec![
                Override { product: 0, price: 80, at: Some(10) },
                Event { product: 0, kind: 1, at: 20, price: 90, copies: 1 },
            ],
            // Removed at a time later than events still to come.
            vec![Unoverride { product: 0, at: 100 }, Catalog { product: 2, price: 300, at: None }],
            vec![
                Event { product: 0, kind: 0, at: -30, price: 90, copies: 1 },
                Event { product: 0, kind: 2, at: 0, price: 91, copies: 1 },
            ],
            // A gap beyond the retention: the older changes expire.
            vec![Event { product: 0, kind: 0, at: 800, price: 92, copies: 1 }, Uncatalog { product: 2 }],
            vec![
                Event { product: 1, kind: 1, at: 0, price: 41, copies: 1 },
                Event { product: 0, kind: 3, at: 0, price: 1, copies: 1 },
            ],
        ];
        let batches = batches(&steps);
        for cut in 0..=batches.len() {
            assert_restores_exactly(checkpointed, &batches, cut);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn restored_pricing_equals_the_straight_run(steps in histories(), cut in 0..=12usize) {
            assert_restores_exactly(checkpointed, &batches(&steps), cut.min(steps.len()));
        }
    }
}
