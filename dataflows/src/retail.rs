//! A. Retail: live inventory and dynamic pricing (`shared/spec/PIPELINES.md` §A, seed 000).
//!
//! Six views over four event streams and two tables, plus the spec's `comp_min` CTE as
//! the view `competitor_minimum` and diffmart's `retail_watermark` (the retention
//! horizon and the late events). Each view's function sits under the SQL that defines
//! it, beside the record its rows are (declared with `relation!`); the Rust computes
//! exactly that, incrementally. By topic:
//!
//! - [`inputs`], the event streams and tables;
//! - [`stock`], `minute_join` and `product_stock_status`;
//! - [`clicks`], `web_clicks_minutely`;
//! - [`pricing`], `competitor_latest`, `competitor_minimum` and `dynamic_pricing_enriched`;
//! - [`sales`], `sales_profit`;
//! - [`watermark`], `retail_watermark`.
//!
//! [`price_rules`] holds the SQL's pricing expressions as plain functions; this module
//! wires the views together and holds the [`Horizon`] that bounds them by event time.

pub mod clicks;
pub mod inputs;
pub mod price_rules;
pub mod pricing;
pub mod sales;
pub mod stock;
pub mod watermark;

use std::hash::Hash;

use differential_dataflow::difference::Abelian;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::{ExchangeData, VecCollection};

pub use self::clicks::WebClicksMinutely;
use self::inputs::{Click, PurchasedQuantity};
pub use self::inputs::{CompetitorPrice, Order, ProductInventory, Purchase, Restock, WebClick};
pub use self::price_rules::{StockCategory, final_price, high_demand, round2};
pub use self::pricing::{
    CompetitorLatest, CompetitorMinimum, DynamicPricingEnriched, read_time_lookups, with_competitor_minimum,
};
pub use self::sales::SalesProfit;
pub use self::stock::{MinuteJoin, ProductStockStatus};
pub use self::watermark::RetailWatermark;
use crate::boundary::{Inputs, View};
use crate::checkpoint::Checkpoints;
use crate::datum::{ColumnType, MICROS_PER_MINUTE, Micros, Record, RelationSpec};
use crate::operators::{Compaction, EventClock, Expiry, accumulated, batch_maxima, horizon_filter};
use crate::{PipelineConfig, Time};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// Money columns carry two decimal places, like the original `NUMERIC(10,2)` prices.
pub const MONEY: ColumnType = ColumnType::Numeric { scale: 2 };
/// Sums of integers, which SQL types as `numeric`.
pub const WHOLE: ColumnType = ColumnType::Numeric { scale: 0 };

/// The retail inputs as the views read them.
struct RetailInputs<'s> {
    web_clicks: Coll<'s, Click>,
    competitor_prices: Coll<'s, CompetitorPrice>,
    purchases: Coll<'s, PurchasedQuantity>,
    restocks: Coll<'s, Restock>,
    product_inventory: Coll<'s, ProductInventory>,
    orders: Coll<'s, Order>,
}

/// Input relations, in the order `RetailInputs` lists them.
pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![
        WebClick::spec(),
        CompetitorPrice::spec(),
        Purchase::spec(),
        Restock::spec(),
        ProductInventory::spec(),
        Order::spec(),
    ]
}

/// The six views of the spec, the spec's `comp_min` as `competitor_minimum`, then
/// diffmart's `retail_watermark`: the catalog lists them in this order.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        MinuteJoin::spec(),
        ProductStockStatus::spec(),
        WebClicksMinutely::spec(),
        CompetitorLatest::spec(),
        CompetitorMinimum::spec(),
        DynamicPricingEnriched::spec(),
        SalesProfit::spec(),
        RetailWatermark::spec(),
    ]
}

/// Builds the retail views from its inputs.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let checkpoints = inputs.checkpoints().clone();
    let inputs = RetailInputs {
        web_clicks: inputs.projected(|c: WebClick| Click { event_time: c.event_time, product_id: c.product_id }),
        competitor_prices: inputs.records(),
        purchases: inputs.projected(|p: Purchase| PurchasedQuantity {
            purchase_time: p.purchase_time,
            product_id: p.product_id,
            quantity_purchased: p.quantity_purchased,
        }),
        restocks: inputs.records(),
        product_inventory: inputs.records(),
        orders: inputs.records(),
    };
    retail(inputs, config.retention, checkpoints)
}

/// `(product_id, window_start)`: one product's one-minute window.
type ProductMinute = (i32, Micros);
/// `((product_id, window_start), total_purchased, total_restocked)`: rows of `minute_join`.
type MinuteFlows<'s> = Coll<'s, (ProductMinute, i64, i64)>;
/// A count per product and minute.
type MinuteCounts<'s> = Coll<'s, (ProductMinute, isize)>;
/// `((product_id, window_start), (running net flow, clicks_15m))`: see [`pricing::window_facts`].
type WindowFacts<'s> = Coll<'s, (ProductMinute, (i64, Option<i64>))>;

/// `product_inventory` arranged by `product_id` once, shared by the views that join it.
type ProductsArranged<'s> = crate::operators::ByKey<'s, i32, ProductInventory>;

/// Aggregates carried as differences: `explode` + `count` keeps one record per key
/// however many events fed it, so the cost of an event does not grow with history.
/// `(rows, sum)`: the number of contributing rows tells an empty group from a zero sum.
type CountSum = (isize, isize);

/// Builds the retail views from the retail inputs.
///
/// `retention` bounds the per-minute views by event time (see [`Horizon`]). The
/// operators whose output depends on history register in `checkpoints`: the horizon's
/// filters and folds, the clock's watermark, `competitor_latest`, and the taps in front
/// of the counts over streams never retracted (`late_events`, the active products).
/// Every path from an event stream passes one of them before any other operator that
/// holds state, so a restored dataflow fed only the tables' rows comes back exactly.
fn retail<'s>(inputs: RetailInputs<'s>, retention: Micros, checkpoints: Checkpoints) -> Vec<View<'s>> {
    let RetailInputs { web_clicks, competitor_prices, purchases, restocks, product_inventory, orders } = inputs;

    let horizon = Horizon {
        clock: EventClock::of(vec![
            batch_maxima(&web_clicks, |c| c.event_time),
            batch_maxima(&competitor_prices, |c| c.ts),
            batch_maxima(&purchases, |p| p.purchase_time),
            batch_maxima(&restocks, |r| r.restock_time),
        ]),
        retention,
        checkpoints,
    };
    // One arrangement of the product master, shared by every view that joins it.
    let products = product_inventory.clone().map(|p| (p.product_id, p)).arrange_by_key();

    // An event is too late once its own minute window has expired: it goes no further
    // than the count in `retail_watermark`.
    let purchase_window: fn(&PurchasedQuantity) -> Micros = |p| window_end(minute_start(p.purchase_time));
    let restock_window: fn(&Restock) -> Micros = |r| window_end(minute_start(r.restock_time));
    let click_window: fn(&Click) -> Micros = |c| window_end(minute_start(c.event_time));
    let (purchases, late_purchases) = horizon.drop_late(purchases, purchase_window, "retail.purchases.drop_late");
    let (restocks, late_restocks) = horizon.drop_late(restocks, restock_window, "retail.restocks.drop_late");
    let (web_clicks, late_clicks) = horizon.drop_late(web_clicks, click_window, "retail.web_clicks.drop_late");
    // Late events are never retracted: the tap keeps their count across checkpoints.
    let late = late_purchases.concat(late_restocks).concat(late_clicks);
    let late_events = accumulated(late, horizon.checkpoints.slot("retail.late_events")).count_total();
    let watermark = watermark::retail_watermark(&horizon, late_events);

    let (minute_flows, active_products) = stock::minute_join(purchases, restocks, &horizon);
    let running_net = stock::running_inventory(minute_flows.clone(), &horizon);
    let stock_statuses = stock::product_stock_status(running_net.clone(), active_products, &products);
    let (clicks_per_minute, clicks_in_range) = clicks::web_clicks_minutely(web_clicks, &horizon);
    let facts = pricing::window_facts(running_net, clicks_per_minute.clone(), clicks_in_range);
    let latest_prices =
        pricing::competitor_latest(competitor_prices, retention, horizon.checkpoints.slot("retail.competitor_latest"));
    let comp_min = pricing::competitor_minimum(latest_prices.clone());
    let priced = pricing::dynamic_pricing_enriched(facts.clone(), stock_statuses.clone(), &products);
    let sales = sales::sales_profit(orders, facts, comp_min.clone(), product_inventory, &products, &horizon);

    vec![
        View::new(minute_flows, |((product_id, window_start), total_purchased, total_restocked)| MinuteJoin {
            product_id,
            window_start,
            total_purchased,
            total_restocked,
        }),
        View::of_records(stock_statuses),
        View::new(clicks_per_minute, |((product_id, window_start), clicks)| WebClicksMinutely {
            product_id,
            window_start,
            clicks: clicks as i64,
        }),
        View::new(latest_prices, |((product_id, competitor), (ts, competitor_price))| CompetitorLatest {
            product_id,
            competitor,
            competitor_price,
            ts,
        }),
        View::new(comp_min, |(product_id, min_competitor_price)| CompetitorMinimum {
            product_id,
            min_competitor_price,
        }),
        View::of_records(priced),
        View::of_records(sales),
        View::of_records(watermark),
    ]
}

/// How far back the per-minute views reach.
///
/// The watermark is the newest event time of the four retail streams, this batch
/// included; the horizon is the watermark minus `retention`. A minute window has
/// expired once its end is at or behind the horizon: its rows leave `minute_join`,
/// `product_stock_status`, `web_clicks_minutely` and `dynamic_pricing_enriched`, and
/// events that arrive for it later are too late and are dropped. Everything else is
/// the spec's SQL over the events that were kept: the running inventory still counts
/// every expired minute (a base per product), `clicks_15m` of a kept window still
/// sees the 15 minutes before it, and an order keeps the window its ASOF join found.
/// So memory follows the retention window, not history.
///
/// Each filter and fold on the horizon depends on history (which events were late,
/// what expired into a base), so each registers in `checkpoints` under its own id.
pub struct Horizon<'s> {
    pub clock: EventClock<'s>,
    pub retention: Micros,
    pub checkpoints: Checkpoints,
}

impl<'s> Horizon<'s> {
    /// Drops what arrives with its `expires_at` at or behind the horizon, and
    /// returns a `()` for each record it dropped beside what it kept.
    fn drop_late<D: ExchangeData + Hash>(
        &self,
        collection: Coll<'s, D>,
        expires_at: fn(&D) -> Micros,
        id: &'static str,
    ) -> (Coll<'s, D>, Coll<'s, ()>) {
        let slot = self.checkpoints.slot(id);
        horizon_filter(collection, &self.clock, expires_at, self.retention, Expiry::DropLate, slot)
    }
    /// Keeps what `expires_at` says only while it is after the horizon.
    fn retain<D: ExchangeData + Hash, R: Abelian + ExchangeData>(
        &self,
        collection: VecCollection<'s, Time, D, R>,
        expires_at: fn(&D) -> Micros,
        id: &'static str,
    ) -> VecCollection<'s, Time, D, R> {
        let slot = self.checkpoints.slot(id);
        horizon_filter(collection, &self.clock, expires_at, self.retention, Expiry::Retract, slot).0
    }
    /// Prefix folds over minute positions forget the expired minutes.
    fn compaction(&self, id: &'static str) -> Compaction<'s> {
        Compaction {
            clock: self.clock.clone(),
            retention: self.retention,
            first_kept: |horizon| minute_position(minute_start(horizon)),
            slot: self.checkpoints.slot(id),
        }
    }
}

/// The end of the minute window that starts at `window_start`.
fn window_end(window_start: Micros) -> Micros {
    window_start + MICROS_PER_MINUTE
}

/// Start of the one-minute tumbling window holding `t`.
pub fn minute_start(t: Micros) -> Micros {
    t.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE
}

/// Prefix sums index by `usize`; minutes are shifted so times before 1970 still fit.
const MINUTE_POSITION_OFFSET: i64 = 1 << 40;
fn minute_position(window_start: Micros) -> usize {
    (window_start.div_euclid(MICROS_PER_MINUTE) + MINUTE_POSITION_OFFSET) as usize
}
fn position_minute(position: usize) -> Micros {
    (position as i64 - MINUTE_POSITION_OFFSET) * MICROS_PER_MINUTE
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rust_decimal::Decimal;

    use super::*;
    use crate::checkpoint::testing::{PipelineUnderTest, assert_pipeline_restores_exactly};
    use crate::datum::{MICROS_PER_SECOND, Row};

    /// A change to an input relation: `(input, row, diff)`, inputs in [`input_specs`] order.
    type Change = (usize, Row, isize);
    const RETENTION: Micros = 5 * MICROS_PER_MINUTE;

    /// A history of `batches` batches from `seed`: the four streams with events out of
    /// order, late ones (behind the horizon) and gaps past the retention, and the
    /// tables' rows inserted, updated and deleted, orders behind the horizon included.
    fn history(seed: u64, batches: usize) -> Vec<Vec<Change>> {
        let mut state = seed;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let mut clock: Micros = 1_700_000_000 * MICROS_PER_SECOND;
        let mut products: BTreeMap<i32, Row> = BTreeMap::new();
        let mut orders: BTreeMap<i32, Row> = BTreeMap::new();
        let money = |cents: u64| Decimal::new(cents as i64, 2);
        (0..batches)
            .map(|k| {
                let mut batch: Vec<Change> = Vec::new();
                // Product 4 never has an event: it keeps its NULL-window rows.
                for product_id in 1..=4 {
                    if k == 0 || next(6) == 0 {
                        let row = ProductInventory {
                            product_id,
                            product_name: Some(format!("product {product_id}")),
                            stock_level: (next(5) > 0).then(|| 10 + next(50) as i32),
                            reorder_threshold: Some(15),
                            supplier: None,
                            base_price: Some(money(9_000 + next(2_000))),
                        };
                        upsert(&mut batch, (4, &mut products), product_id, Some(row.to_row()));
                    }
                }
                clock += [0, 20, 45, 70, 10 * 60][next(5) as usize] * MICROS_PER_SECOND;
                for _ in 0..next(7) {
                    let product_id = 1 + next(3) as i32;
                    let at = clock - next(8 * 60) as Micros * MICROS_PER_SECOND;
                    match next(5) {
                        0 | 1 => {
                            for _ in 0..1 + next(12) {
                                let click = WebClick { event_time: at, product_id, event_type: "view".into() };
                                batch.push((0, click.to_row(), 1));
                            }
                        }
                        2 => {
                            let competitor = ["a", "b"][next(2) as usize].to_string();
                            let price = money(8_500 + next(3_000));
                            let row = CompetitorPrice { ts: at, product_id, competitor, competitor_price: price };
                            batch.push((1, row.to_row(), 1));
                        }
                        3 => {
                            let quantity_purchased = 1 + next(5) as i32;
                            let row =
                                Purchase { purchase_time: at, product_id, quantity_purchased, customer_id: "c".into() };
                            batch.push((2, row.to_row(), 1));
                        }
                        _ => {
                            let row = Restock { restock_time: at, product_id, quantity_restocked: 5 + next(25) as i32 };
                            batch.push((3, row.to_row(), 1));
                        }
                    }
                }
                for _ in 0..next(3) {
                    let order_id = next(12) as i32;
                    // Now and then far behind the horizon, or deleted.
                    let behind = [0, 3, 20][next(3) as usize] * MICROS_PER_MINUTE;
                    let row = (next(5) > 0).then(|| {
                        Order {
                            order_id,
                            order_time: Some(clock - behind - next(60) as Micros * MICROS_PER_SECOND),
                            product_id: (next(8) > 0).then(|| 1 + next(4) as i32),
                            quantity: (next(8) > 0).then(|| 1 + next(4) as i32),
                            customer_id: None,
                        }
                        .to_row()
                    });
                    upsert(&mut batch, (5, &mut orders), order_id, row);
                }
                batch
            })
            .collect()
    }

    /// Replaces the row of `key` in `table` (input `input`) by `row`, or deletes it.
    fn upsert(batch: &mut Vec<Change>, (input, table): (usize, &mut BTreeMap<i32, Row>), key: i32, row: Option<Row>) {
        if let Some(old) = table.remove(&key) {
            batch.push((input, old, -1));
        }
        if let Some(row) = row {
            table.insert(key, row.clone());
            batch.push((input, row, 1));
        }
    }

    /// Panics at the first time whose contents differ, with the rows that differ.
    /// Every retail view restored from a checkpoint equals its straight run, after
    /// every batch from the checkpoint on, for 1 → 1, 2 → 2, 1 → 2 and 2 → 1 workers.
    #[test]
    fn every_view_restores_exactly() {
        let config = PipelineConfig { retention: RETENTION, ..PipelineConfig::default() };
        let pipeline = PipelineUnderTest { input_specs: input_specs(), build, config };
        for seed in [1, 2] {
            let batches = history(seed, 24);
            for cut in [0, 1, 7, 12, 23, 24] {
                assert_pipeline_restores_exactly(&pipeline, &batches, cut);
            }
        }
    }
}
