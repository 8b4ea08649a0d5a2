//! A. Retail: live inventory and dynamic pricing (`shared/spec/PIPELINES.md` §A, seed 000).
//!
//! Six views over four event streams and two tables, plus the spec's `comp_min` CTE as
//! the view `competitor_minimum` and diffmart's `retail_watermark` (the retention
//! horizon and the late events). Each view below sits under
//! the SQL that defines it; the Rust computes exactly that, incrementally.

use std::sync::LazyLock;

use differential_dataflow::difference::Abelian;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::{ExchangeData, VecCollection};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::boundary::{Inputs, View};
use crate::datum::{
    ColumnType, Datum, MICROS_PER_MINUTE, Micros, ReadTimeLookup, Record, RelationKind, RelationSpec, Row, RowError,
    RowReader, col, col_not_null,
};
use crate::money::MoneySum;
use crate::operators::{
    Compaction, EventClock, Expiry, batch_maxima, horizon_filter, left_join_unique, max_per_key, prefix_fold_at,
    range_sum_at,
};
use crate::{PipelineConfig, Time};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// Money columns carry two decimal places, like the original `NUMERIC(10,2)` prices.
pub const MONEY: ColumnType = ColumnType::Numeric { scale: 2 };
/// Sums of integers, which SQL types as `numeric`.
pub const WHOLE: ColumnType = ColumnType::Numeric { scale: 0 };
use ColumnType::{Int32, Int64, Text, TimestampTz};

// ------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------

/// `web_clicks` (Kafka topic `web_clicks`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WebClick {
    pub event_time: Micros,
    pub product_id: i32,
    pub event_type: String,
}

/// `competitor_prices` (Kafka topic `competitor_prices`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CompetitorPrice {
    pub ts: Micros,
    pub product_id: i32,
    pub competitor: String,
    pub competitor_price: Decimal,
}

/// `purchases` (Kafka topic `purchases`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Purchase {
    pub purchase_time: Micros,
    pub product_id: i32,
    pub quantity_purchased: i32,
    pub customer_id: String,
}

/// A click as the views read it: no view reads `event_type`. Without its one string,
/// each further copy of a click is a memcpy (timely copies a stream's batches for
/// every reader but the last, and the clicks have three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Click {
    event_time: Micros,
    product_id: i32,
}

/// A purchase as the views read it: no view reads `customer_id` (see [`Click`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct PurchasedQuantity {
    purchase_time: Micros,
    product_id: i32,
    quantity_purchased: i32,
}

/// `restocks` (Kafka topic `restocks`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Restock {
    pub restock_time: Micros,
    pub product_id: i32,
    pub quantity_restocked: i32,
}

/// `product_inventory` (table, primary key `product_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductInventory {
    pub product_id: i32,
    pub product_name: Option<String>,
    pub stock_level: Option<i32>,
    pub reorder_threshold: Option<i32>,
    pub supplier: Option<String>,
    pub base_price: Option<Decimal>,
}

/// `orders` (table, primary key `order_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Order {
    pub order_id: i32,
    pub order_time: Option<Micros>,
    pub product_id: Option<i32>,
    pub quantity: Option<i32>,
    pub customer_id: Option<String>,
}

fn source(name: &'static str, event_time_column: usize, columns: Vec<crate::datum::Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::Source { event_time_column }, columns }
}
fn table(name: &'static str, columns: Vec<crate::datum::Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::Table { primary_key: vec![0] }, columns }
}
fn view(name: &'static str, columns: Vec<crate::datum::Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::View, columns }
}

static WEB_CLICKS: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "web_clicks",
        0,
        vec![
            col_not_null("event_time", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("event_type", Text),
        ],
    )
});
static COMPETITOR_PRICES: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "competitor_prices",
        0,
        vec![
            col_not_null("ts", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("competitor", Text),
            col_not_null("competitor_price", MONEY),
        ],
    )
});
static PURCHASES: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "purchases",
        0,
        vec![
            col_not_null("purchase_time", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("quantity_purchased", Int32),
            col_not_null("customer_id", Text),
        ],
    )
});
static RESTOCKS: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "restocks",
        0,
        vec![
            col_not_null("restock_time", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("quantity_restocked", Int32),
        ],
    )
});
static PRODUCT_INVENTORY: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "product_inventory",
        vec![
            col_not_null("product_id", Int32),
            col("product_name", Text),
            col("stock_level", Int32),
            col("reorder_threshold", Int32),
            col("supplier", Text),
            col("base_price", MONEY),
        ],
    )
});
static ORDERS: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "orders",
        vec![
            col_not_null("order_id", Int32),
            col("order_time", TimestampTz),
            col("product_id", Int32),
            col("quantity", Int32),
            col("customer_id", Text),
        ],
    )
});

impl Record for WebClick {
    fn spec() -> &'static RelationSpec {
        &WEB_CLICKS
    }
    fn to_row(&self) -> Row {
        vec![Datum::Timestamp(self.event_time), self.product_id.into(), self.event_type.as_str().into()]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(WebClick { event_time: r.timestamp(0)?, product_id: r.i32(1)?, event_type: r.text(2)? })
    }
}

impl Record for CompetitorPrice {
    fn spec() -> &'static RelationSpec {
        &COMPETITOR_PRICES
    }
    fn to_row(&self) -> Row {
        vec![
            Datum::Timestamp(self.ts),
            self.product_id.into(),
            self.competitor.as_str().into(),
            self.competitor_price.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(CompetitorPrice {
            ts: r.timestamp(0)?,
            product_id: r.i32(1)?,
            competitor: r.text(2)?,
            competitor_price: r.decimal(3)?,
        })
    }
}

impl Record for Purchase {
    fn spec() -> &'static RelationSpec {
        &PURCHASES
    }
    fn to_row(&self) -> Row {
        vec![
            Datum::Timestamp(self.purchase_time),
            self.product_id.into(),
            self.quantity_purchased.into(),
            self.customer_id.as_str().into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Purchase {
            purchase_time: r.timestamp(0)?,
            product_id: r.i32(1)?,
            quantity_purchased: r.i32(2)?,
            customer_id: r.text(3)?,
        })
    }
}

impl Record for Restock {
    fn spec() -> &'static RelationSpec {
        &RESTOCKS
    }
    fn to_row(&self) -> Row {
        vec![Datum::Timestamp(self.restock_time), self.product_id.into(), self.quantity_restocked.into()]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Restock { restock_time: r.timestamp(0)?, product_id: r.i32(1)?, quantity_restocked: r.i32(2)? })
    }
}

impl Record for ProductInventory {
    fn spec() -> &'static RelationSpec {
        &PRODUCT_INVENTORY
    }
    fn to_row(&self) -> Row {
        vec![
            self.product_id.into(),
            self.product_name.clone().into(),
            self.stock_level.into(),
            self.reorder_threshold.into(),
            self.supplier.clone().into(),
            self.base_price.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(ProductInventory {
            product_id: r.i32(0)?,
            product_name: r.opt_text(1)?,
            stock_level: r.opt_i32(2)?,
            reorder_threshold: r.opt_i32(3)?,
            supplier: r.opt_text(4)?,
            base_price: r.opt_decimal(5)?,
        })
    }
}

impl Record for Order {
    fn spec() -> &'static RelationSpec {
        &ORDERS
    }
    fn to_row(&self) -> Row {
        vec![
            self.order_id.into(),
            self.order_time.map(Datum::Timestamp).unwrap_or(Datum::Null),
            self.product_id.into(),
            self.quantity.into(),
            self.customer_id.clone().into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Order {
            order_id: r.i32(0)?,
            order_time: r.opt_timestamp(1)?,
            product_id: r.opt_i32(2)?,
            quantity: r.opt_i32(3)?,
            customer_id: r.opt_text(4)?,
        })
    }
}

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

// ------------------------------------------------------------------------------------------
// Views
// ------------------------------------------------------------------------------------------

static MINUTE_JOIN: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "minute_join",
        vec![
            col("product_id", Int32),
            col("window_start", TimestampTz),
            col("total_purchased", Int64),
            col("total_restocked", Int64),
        ],
    )
});
static PRODUCT_STOCK_STATUS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "product_stock_status",
        vec![
            col("product_id", Int32),
            col("product_name", Text),
            col("inventory_window", TimestampTz),
            col("current_inventory", WHOLE),
            col("base_price", MONEY),
            col("reorder_threshold", Int32),
            col("stock_level_category", Text),
        ],
    )
});
static WEB_CLICKS_MINUTELY: LazyLock<RelationSpec> = LazyLock::new(|| {
    view("web_clicks_minutely", vec![col("product_id", Int32), col("window_start", TimestampTz), col("clicks", Int64)])
});
static COMPETITOR_LATEST: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "competitor_latest",
        vec![col("product_id", Int32), col("competitor", Text), col("competitor_price", MONEY), col("ts", TimestampTz)],
    )
});
static COMPETITOR_MINIMUM: LazyLock<RelationSpec> =
    LazyLock::new(|| view("competitor_minimum", vec![col("product_id", Int32), col("min_competitor_price", MONEY)]));
static DYNAMIC_PRICING_ENRICHED: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "dynamic_pricing_enriched",
        vec![
            col("product_id", Int32),
            col("product_name", Text),
            col("inventory_window", TimestampTz),
            col("current_inventory", WHOLE),
            col("stock_level_category", Text),
            col("base_price", MONEY),
            col("clicks_15m", WHOLE),
            col("min_competitor_price", MONEY),
            col("stock_rule_price", MONEY),
            col("final_price", MONEY),
        ],
    )
});
static SALES_PROFIT: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "sales_profit",
        vec![
            col("product_id", Int32),
            col("product_name", Text),
            col("total_orders", Int64),
            col("revenue_estimate", MONEY),
        ],
    )
});

static RETAIL_WATERMARK: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "retail_watermark",
        vec![col("watermark", TimestampTz), col("horizon", TimestampTz), col("late_events", Int64)],
    )
});

/// The six views of the spec, the spec's `comp_min` as `competitor_minimum`, then
/// diffmart's `retail_watermark`, in the order [`retail`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        &MINUTE_JOIN,
        &PRODUCT_STOCK_STATUS,
        &WEB_CLICKS_MINUTELY,
        &COMPETITOR_LATEST,
        &COMPETITOR_MINIMUM,
        &DYNAMIC_PRICING_ENRICHED,
        &SALES_PROFIT,
        &RETAIL_WATERMARK,
    ]
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

/// `ROUND(x, 2)` on numeric: half away from zero, like PostgreSQL.
pub fn round2(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StockCategory {
    Low,
    Medium,
    High,
}

impl StockCategory {
    /// `CASE WHEN inv < 20 THEN 'Low' WHEN inv BETWEEN 20 AND 50 THEN 'Medium' ELSE 'High' END`:
    /// a NULL inventory matches neither test and lands in `High`.
    pub fn of(current_inventory: Option<i64>) -> StockCategory {
        match current_inventory {
            Some(i) if i < 20 => StockCategory::Low,
            Some(i) if i <= 50 => StockCategory::Medium,
            _ => StockCategory::High,
        }
    }
    /// The category a [`StockCategory::name`] names.
    pub fn named(name: &str) -> Option<StockCategory> {
        [StockCategory::Low, StockCategory::Medium, StockCategory::High].into_iter().find(|c| c.name() == name)
    }
    pub fn name(&self) -> &'static str {
        match self {
            StockCategory::Low => "Low",
            StockCategory::Medium => "Medium",
            StockCategory::High => "High",
        }
    }
    /// The stock rule before rounding: Low ×1.20, Medium ×1, High ×0.90.
    fn unrounded_price(&self, base: Decimal) -> Decimal {
        match self {
            StockCategory::Low => base * Decimal::new(120, 2),
            StockCategory::Medium => base,
            StockCategory::High => base * Decimal::new(90, 2),
        }
    }
    /// `stock_rule_price`: Low and High are rounded to cents, Medium is the base price itself.
    pub fn stock_rule_price(&self, base: Decimal) -> Decimal {
        match self {
            StockCategory::Medium => base,
            _ => round2(self.unrounded_price(base)),
        }
    }
}

/// `COALESCE(clicks_15m, 0) > 30`: the only way clicks reach the price.
pub fn high_demand(clicks_15m: Option<i64>) -> bool {
    clicks_15m.unwrap_or(0) > 30
}

/// `final_price` of `dynamic_pricing_enriched` for a non-NULL base price.
pub fn final_price(
    category: StockCategory,
    base: Decimal,
    high_demand: bool,
    min_competitor_price: Option<Decimal>,
) -> Decimal {
    let rule = category.unrounded_price(base);
    let adjusted = match min_competitor_price {
        Some(min) if base <= min && high_demand => rule * Decimal::new(102, 2),
        Some(min) if rule > min => rule * Decimal::new(99, 2),
        _ => rule,
    };
    round2(adjusted).max(round2(Decimal::new(5, 1) * base))
}

/// One row of `product_stock_status`, kept typed for `dynamic_pricing_enriched`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StockStatus {
    pub product_id: i32,
    pub product_name: Option<String>,
    pub inventory_window: Option<Micros>,
    pub current_inventory: Option<i64>,
    pub base_price: Option<Decimal>,
    pub reorder_threshold: Option<i32>,
    pub category: StockCategory,
}

/// Builds the retail views from its inputs, in `view_specs()` order.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
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
    retail(inputs, config.retention)
}

/// `(product_id, window_start)`: one product's one-minute window.
type ProductMinute = (i32, Micros);
/// `((product_id, window_start), total_purchased, total_restocked)`: rows of `minute_join`.
type MinuteFlows<'s> = Coll<'s, (ProductMinute, i64, i64)>;
/// A count per product and minute.
type MinuteCounts<'s> = Coll<'s, (ProductMinute, isize)>;
/// `((product_id, window_start), (running net flow, clicks_15m))`: see [`window_facts`].
type WindowFacts<'s> = Coll<'s, (ProductMinute, (i64, Option<i64>))>;

/// Aggregates carried as differences: `explode` + `count` keeps one record per key
/// however many events fed it, so the cost of an event does not grow with history.
/// `(rows, sum)`: the number of contributing rows tells an empty group from a zero sum.
type CountSum = (isize, isize);

/// Builds the retail views from the retail inputs, in `view_specs()` order.
///
/// `retention` bounds the per-minute views by event time (see [`Horizon`]).
fn retail<'s>(inputs: RetailInputs<'s>, retention: Micros) -> Vec<View<'s>> {
    let RetailInputs { web_clicks, competitor_prices, purchases, restocks, product_inventory, orders } = inputs;

    let horizon = Horizon {
        clock: EventClock::of(vec![
            batch_maxima(&web_clicks, |c| c.event_time),
            batch_maxima(&competitor_prices, |c| c.ts),
            batch_maxima(&purchases, |p| p.purchase_time),
            batch_maxima(&restocks, |r| r.restock_time),
        ]),
        retention,
    };
    // One arrangement of the product master, shared by every view that joins it.
    let products = product_inventory.clone().map(|p| (p.product_id, p)).arrange_by_key();

    // An event is too late once its own minute window has expired: it goes no further
    // than the count in `retail_watermark`.
    let purchase_window: fn(&PurchasedQuantity) -> Micros = |p| window_end(minute_start(p.purchase_time));
    let restock_window: fn(&Restock) -> Micros = |r| window_end(minute_start(r.restock_time));
    let click_window: fn(&Click) -> Micros = |c| window_end(minute_start(c.event_time));
    let (purchases, late_purchases) = horizon.drop_late(purchases, purchase_window);
    let (restocks, late_restocks) = horizon.drop_late(restocks, restock_window);
    let (web_clicks, late_clicks) = horizon.drop_late(web_clicks, click_window);
    let late_events = late_purchases.concat(late_restocks).concat(late_clicks).count_total();
    let watermark = retail_watermark(&horizon, late_events);

    let (minute_flows, active_products) = minute_join(purchases, restocks, &horizon);
    let running_net = running_inventory(minute_flows.clone(), &horizon);
    let stock_statuses = product_stock_status(running_net.clone(), active_products, &products);
    let (clicks_per_minute, clicks_in_range) = web_clicks_minutely(web_clicks, &horizon);
    let facts = window_facts(running_net, clicks_per_minute.clone(), clicks_in_range);
    let latest_prices = competitor_latest(competitor_prices, retention);
    let comp_min = competitor_minimum(latest_prices.clone());
    let priced = dynamic_pricing_enriched(facts.clone(), stock_statuses.clone(), &products);
    let sales = sales_profit(orders, facts, comp_min.clone(), product_inventory, &products, &horizon);

    vec![
        View::new(minute_flows, |((product_id, window_start), purchased, restocked)| {
            vec![product_id.into(), Datum::Timestamp(window_start), purchased.into(), restocked.into()]
        }),
        View::new(stock_statuses, |s| {
            vec![
                s.product_id.into(),
                s.product_name.clone().into(),
                timestamp_or_null(s.inventory_window),
                s.current_inventory.map(Decimal::from).into(),
                s.base_price.into(),
                s.reorder_threshold.into(),
                s.category.name().into(),
            ]
        }),
        View::new(clicks_per_minute, |((product_id, window_start), clicks)| {
            vec![product_id.into(), Datum::Timestamp(window_start), (clicks as i64).into()]
        }),
        View::new(latest_prices, |((product_id, competitor), (ts, price))| {
            vec![product_id.into(), competitor.into(), price.into(), Datum::Timestamp(ts)]
        }),
        View::new(comp_min, |(product_id, min)| vec![product_id.into(), min.into()]),
        View::of_rows(priced),
        View::new(sales, |(product_id, name, total, revenue)| {
            vec![product_id.into(), name.into(), total.into(), revenue.into()]
        }),
        View::new(watermark, |(watermark, horizon, late)| {
            vec![Datum::Timestamp(watermark), timestamp_or_null(horizon), late.into()]
        }),
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
pub struct Horizon<'s> {
    pub clock: EventClock<'s>,
    pub retention: Micros,
}

impl<'s> Horizon<'s> {
    /// Drops what arrives with its `expires_at` at or behind the horizon, and
    /// returns a `()` for each record it dropped beside what it kept.
    fn drop_late<D: ExchangeData>(
        &self,
        collection: Coll<'s, D>,
        expires_at: fn(&D) -> Micros,
    ) -> (Coll<'s, D>, Coll<'s, ()>) {
        horizon_filter(collection, &self.clock, expires_at, self.retention, Expiry::DropLate)
    }
    /// Keeps what `expires_at` says only while it is after the horizon.
    fn retain<D: ExchangeData, R: Abelian + ExchangeData>(
        &self,
        collection: VecCollection<'s, Time, D, R>,
        expires_at: fn(&D) -> Micros,
    ) -> VecCollection<'s, Time, D, R> {
        horizon_filter(collection, &self.clock, expires_at, self.retention, Expiry::Retract).0
    }
    /// Prefix folds over minute positions forget the expired minutes.
    fn compaction(&self) -> Compaction<'s> {
        Compaction {
            clock: self.clock.clone(),
            retention: self.retention,
            first_kept: |horizon| minute_position(minute_start(horizon)),
        }
    }
}

/// The end of the minute window that starts at `window_start`.
fn window_end(window_start: Micros) -> Micros {
    window_start + MICROS_PER_MINUTE
}

type ProductsArranged<'s> = crate::operators::ByKey<'s, i32, ProductInventory>;

/// ```sql
/// CREATE MATERIALIZED VIEW minute_join AS
/// SELECT COALESCE(p.product_id, r.product_id)     AS product_id,
///        COALESCE(p.window_start, r.window_start) AS window_start,
///        COALESCE(p.total_purchased, 0)           AS total_purchased,
///        COALESCE(r.total_restocked, 0)           AS total_restocked
/// FROM (SELECT product_id, window_start, SUM(quantity_purchased) AS total_purchased
///       FROM TUMBLE(purchases, purchase_time, INTERVAL '1 MINUTE')
///       GROUP BY product_id, window_start) p
/// FULL JOIN (SELECT product_id, window_start, SUM(quantity_restocked) AS total_restocked
///       FROM TUMBLE(restocks, restock_time, INTERVAL '1 MINUTE')
///       GROUP BY product_id, window_start) r
/// ON p.product_id = r.product_id AND p.window_start = r.window_start;
/// ```
/// Returns `((product_id, window_start), total_purchased, total_restocked)` for the
/// kept windows, and every product that ever had a kept purchase or restock. The
/// events come without the late ones.
///
/// Both sides become one collection of `(rows, sum)` differences, purchases in the
/// first pair and restocks in the second; a side without rows is the FULL JOIN's
/// missing side, which COALESCE turns into 0.
fn minute_join<'s>(
    purchases: Coll<'s, PurchasedQuantity>,
    restocks: Coll<'s, Restock>,
    horizon: &Horizon<'s>,
) -> (MinuteFlows<'s>, Coll<'s, i32>) {
    let flows = purchases
        .explode(|p| {
            let key = (p.product_id, minute_start(p.purchase_time));
            Some((key, ((1isize, p.quantity_purchased as isize), (0isize, 0isize))))
        })
        .concat(restocks.explode(|r| {
            let key = (r.product_id, minute_start(r.restock_time));
            Some((key, ((0isize, 0isize), (1isize, r.quantity_restocked as isize))))
        }));
    // One record per product: (rows, sum) differences never cancel to zero.
    let active_products =
        flows.clone().map(|(product_id, _)| product_id).count_total().map(|(product_id, _)| product_id);
    let minute_flows =
        horizon.retain(flows, |(_, minute)| window_end(*minute)).count_total().map(|(product_window, flows)| {
            let ((_, purchased), (_, restocked)): (CountSum, CountSum) = flows;
            (product_window, purchased as i64, restocked as i64)
        });
    (minute_flows, active_products)
}

/// The running sum of `product_stock_status`: per product and kept minute,
/// `(product_id, (window_start, restocked − purchased up to and including it))`.
///
/// A prefix fold per product over minute positions ([`prefix_fold_at`]): a change
/// refolds only the minutes from its own on, so an in-order event costs
/// O(log minutes), not O(minutes). Expired minutes fold into a base per product. The
/// fold covers positions strictly before the query, so each minute asks at `minute + 1`.
fn running_inventory<'s>(minute_flows: MinuteFlows<'s>, horizon: &Horizon<'s>) -> Coll<'s, (i32, (Micros, i64))> {
    let net_flow = minute_flows.map(|((product_id, window), purchased, restocked)| {
        ((minute_position(window), product_id), restocked - purchased)
    });
    let queries = net_flow.clone().map(|((position, product_id), _)| (position + 1, product_id));
    prefix_fold_at(net_flow, queries, 0i64, |_product, a, b| a + b, Some(horizon.compaction()))
        .map(|((position, product_id), net)| (product_id, (position_minute(position - 1), net)))
}

/// ```sql
/// CREATE MATERIALIZED VIEW product_stock_status AS
/// WITH inventory_updates AS (
///   SELECT b.product_id, b.product_name, b.base_price, b.reorder_threshold, mj.window_start,
///     SUM(COALESCE(mj.total_restocked, 0)) OVER (PARTITION BY b.product_id ORDER BY mj.window_start)
///   - SUM(COALESCE(mj.total_purchased, 0)) OVER (PARTITION BY b.product_id ORDER BY mj.window_start)
///   + b.stock_level AS current_inventory
///   FROM product_inventory b LEFT JOIN minute_join mj ON b.product_id = mj.product_id)
/// SELECT product_id, product_name, window_start AS inventory_window, current_inventory,
///        base_price, reorder_threshold,
///        CASE WHEN current_inventory < 20 THEN 'Low'
///             WHEN current_inventory BETWEEN 20 AND 50 THEN 'Medium' ELSE 'High' END
///          AS stock_level_category
/// FROM inventory_updates;
/// ```
/// The running sum is [`running_inventory`]; a product whose minutes all expired has
/// windows (just none kept), so only a product that never had one gets the NULL row.
fn product_stock_status<'s>(
    running_net: Coll<'s, (i32, (Micros, i64))>,
    active_products: Coll<'s, i32>,
    products: &ProductsArranged<'s>,
) -> Coll<'s, StockStatus> {
    let with_windows = running_net.join_core(products.clone(), |_id, &(window, net), p| {
        Some(stock_status(p, Some(window), p.stock_level.map(|s| s as i64 + net)))
    });
    // LEFT JOIN: a product without any minute keeps one row with a NULL window.
    let active_products = active_products.map(|product_id| (product_id, ())).arrange_by_key();
    let without_windows = left_join_unique(products.clone(), active_products, |_, p, active| {
        active.is_none().then(|| stock_status(p, None, p.stock_level.map(i64::from)))
    });
    with_windows.concat(without_windows)
}

/// ```sql
/// CREATE MATERIALIZED VIEW web_clicks_minutely AS
/// SELECT product_id, window_start, COUNT(*) AS clicks
/// FROM TUMBLE(web_clicks, event_time, INTERVAL '1 MINUTE')
/// GROUP BY product_id, window_start;
/// ```
/// Returns the view (kept windows) and the clicks of every minute that still counts
/// toward the 15-minute range of a kept window: a click is kept until the last
/// window it reaches, 15 minutes after its own, has expired. The clicks come without
/// the late ones (too late once their own window has expired), so the clicks behind
/// an expired window never change.
fn web_clicks_minutely<'s>(web_clicks: Coll<'s, Click>, horizon: &Horizon<'s>) -> (MinuteCounts<'s>, MinuteCounts<'s>) {
    let last_window_reached = |&(_, minute): &(i32, Micros)| window_end(minute + 15 * MICROS_PER_MINUTE);
    let clicks = web_clicks.map(|c| (c.product_id, minute_start(c.event_time)));
    let clicks_in_range = horizon.retain(clicks, last_window_reached).count_total();
    let clicks_per_minute = horizon.retain(clicks_in_range.clone(), |((_, minute), _)| window_end(*minute));
    (clicks_per_minute, clicks_in_range)
}

/// ```sql
/// CREATE MATERIALIZED VIEW competitor_latest AS
/// SELECT product_id, competitor, competitor_price, ts
/// FROM (SELECT product_id, competitor, competitor_price, ts,
///         ROW_NUMBER() OVER (PARTITION BY product_id, competitor ORDER BY ts DESC) AS rn
///       FROM competitor_prices) t
/// WHERE rn = 1;
/// ```
/// Ties on `ts` go to the higher price, so the answer never depends on arrival order.
///
/// `competitor_prices` is an append-only stream, so each key only keeps the
/// prices within `retention` of its latest one.
fn competitor_latest<'s>(
    competitor_prices: Coll<'s, CompetitorPrice>,
    retention: Micros,
) -> Coll<'s, ((i32, String), (Micros, Decimal))> {
    let event_time: fn(&(Micros, Decimal)) -> Micros = |(ts, _)| *ts;
    max_per_key(
        competitor_prices.map(|c| ((c.product_id, c.competitor), (c.ts, c.competitor_price))),
        Some((event_time, retention)),
    )
}

/// ```sql
/// comp_min AS (SELECT product_id, MIN(competitor_price) AS min_competitor_price
///              FROM competitor_latest GROUP BY product_id)
/// ```
/// At most one row per competitor: this reduce never scans much.
fn competitor_minimum<'s>(latest_prices: Coll<'s, ((i32, String), (Micros, Decimal))>) -> Coll<'s, (i32, Decimal)> {
    latest_prices
        .map(|((product_id, _competitor), (_ts, price))| (product_id, price))
        .reduce(|_product, prices, output| output.push((*prices[0].0, 1isize)))
}

/// What a kept window contributes to a price, whichever product row it ends up in:
/// `((product_id, window_start), (running net flow, clicks_15m))`.
///
/// `clicks_15m` is the `demand` CTE of `dynamic_pricing_enriched`: the RANGE frame is
/// [w - 15 min, w], so a changed minute's count re-answers the windows of it and of
/// the 15 minutes after it (`range_sum_at`), whatever the history. Only minutes with
/// clicks of their own are rows of `demand`; other windows get NULL.
fn window_facts<'s>(
    running_net: Coll<'s, (i32, (Micros, i64))>,
    clicks_per_minute: MinuteCounts<'s>,
    clicks_in_range: MinuteCounts<'s>,
) -> WindowFacts<'s> {
    let demand = range_sum_at(
        clicks_in_range.map(|(product_minute, clicks)| (product_minute, clicks as i64)),
        clicks_per_minute.map(|(product_window, _)| product_window),
        15 * MICROS_PER_MINUTE,
    );
    let windows = running_net.map(|(product_id, (window, net))| ((product_id, window), net));
    left_join_unique(windows.arrange_by_key(), demand.arrange_by_key(), |&window, &net, clicks| {
        Some((window, (net, clicks.copied())))
    })
}

/// ```sql
/// CREATE MATERIALIZED VIEW dynamic_pricing_enriched AS
/// WITH demand AS (
///   SELECT product_id, window_start,
///     SUM(clicks) OVER (PARTITION BY product_id ORDER BY window_start
///       RANGE BETWEEN INTERVAL '15 MINUTE' PRECEDING AND CURRENT ROW) AS clicks_15m
///   FROM web_clicks_minutely),
/// comp_min AS (
///   SELECT product_id, MIN(competitor_price) AS min_competitor_price
///   FROM competitor_latest GROUP BY product_id)
/// SELECT s.product_id, s.product_name, s.inventory_window, s.current_inventory,
///   s.stock_level_category, s.base_price, d.clicks_15m, c.min_competitor_price,
///   CASE WHEN s.stock_level_category = 'Low'    THEN ROUND(s.base_price * 1.20, 2)
///        WHEN s.stock_level_category = 'Medium' THEN s.base_price
///        WHEN s.stock_level_category = 'High'   THEN ROUND(s.base_price * 0.90, 2)
///   END AS stock_rule_price,
///   GREATEST(ROUND(CASE
///       WHEN c.min_competitor_price IS NOT NULL AND s.base_price <= c.min_competitor_price
///            AND COALESCE(d.clicks_15m, 0) > 30 THEN <stock rule> * 1.02
///       WHEN c.min_competitor_price IS NOT NULL AND <stock rule> > c.min_competitor_price
///            THEN <stock rule> * 0.99
///       ELSE <stock rule> END, 2),
///     ROUND(0.5 * s.base_price, 2)) AS final_price
/// FROM product_stock_status s
/// LEFT JOIN demand   d ON d.product_id = s.product_id AND d.window_start = s.inventory_window
/// LEFT JOIN comp_min c ON c.product_id = s.product_id;
/// ```
/// A windowed row is its [`window_facts`] joined with the product; the NULL-window
/// rows of `product_stock_status` have no demand.
///
/// `comp_min` is joined when a snapshot is read, not here ([`read_time_lookups`]). The
/// join is on `product_id` alone, so materialized, one competitor price would rewrite
/// every kept window row of its product: 1,440 rows with a day of retention, and a
/// cost per event that grows with the retention. The dataflow keeps the rows with
/// `min_competitor_price` and `final_price` NULL, and `competitor_minimum` beside
/// them; [`with_competitor_minimum`] fills the two in from the product's one
/// `competitor_minimum` row, in the snapshot being read.
fn dynamic_pricing_enriched<'s>(
    facts: WindowFacts<'s>,
    stock_statuses: Coll<'s, StockStatus>,
    products: &ProductsArranged<'s>,
) -> Coll<'s, Row> {
    let windowed = facts.map(|((product_id, window), facts)| (product_id, (window, facts))).join_core(
        products.clone(),
        |_id, &(window, (net, clicks)), p| {
            let status = stock_status(p, Some(window), p.stock_level.map(|s| s as i64 + net));
            Some(priced_without_competitor(&status, clicks))
        },
    );
    let unwindowed =
        stock_statuses.filter(|s| s.inventory_window.is_none()).map(|s| priced_without_competitor(&s, None));
    windowed.concat(unwindowed)
}

/// Columns of `dynamic_pricing_enriched` that [`with_competitor_minimum`] reads or fills in.
const DPE_STOCK_LEVEL_CATEGORY: usize = 4;
const DPE_BASE_PRICE: usize = 5;
const DPE_CLICKS_15M: usize = 6;
const DPE_MIN_COMPETITOR_PRICE: usize = 7;
const DPE_FINAL_PRICE: usize = 9;

/// A `dynamic_pricing_enriched` row as the dataflow keeps it: everything but the
/// two columns that depend on `comp_min`, which are NULL.
fn priced_without_competitor(s: &StockStatus, clicks_15m: Option<i64>) -> Row {
    vec![
        s.product_id.into(),
        s.product_name.clone().into(),
        timestamp_or_null(s.inventory_window),
        s.current_inventory.map(Decimal::from).into(),
        s.category.name().into(),
        s.base_price.into(),
        clicks_15m.map(Decimal::from).into(),
        Datum::Null,
        s.base_price.map(|b| s.category.stock_rule_price(b)).into(),
        Datum::Null,
    ]
}

/// `dynamic_pricing_enriched`'s `LEFT JOIN comp_min`, done when a snapshot is read.
pub fn read_time_lookups() -> Vec<ReadTimeLookup> {
    vec![ReadTimeLookup {
        view: DYNAMIC_PRICING_ENRICHED.name,
        lookup: COMPETITOR_MINIMUM.name,
        key_column: 0,
        complete: with_competitor_minimum,
    }]
}

/// Fills in `min_competitor_price` and `final_price` of a row kept by
/// [`dynamic_pricing_enriched`] from its product's `competitor_minimum` row, if any.
pub fn with_competitor_minimum(row: &[Datum], comp_min: Option<&[Datum]>) -> Row {
    let kept = RowReader::new(&DYNAMIC_PRICING_ENRICHED, row).expect("a dynamic_pricing_enriched row");
    let min = comp_min
        .map(|m| RowReader::new(&COMPETITOR_MINIMUM, m).and_then(|m| m.decimal(1)).expect("a competitor_minimum row"));
    let category = match &row[DPE_STOCK_LEVEL_CATEGORY] {
        Datum::Text(name) => StockCategory::named(name),
        _ => None,
    }
    .unwrap_or_else(|| panic!("stock_level_category {:?}", row[DPE_STOCK_LEVEL_CATEGORY]));
    let base = kept.opt_decimal(DPE_BASE_PRICE).expect("base_price is numeric");
    let clicks = kept.opt_decimal(DPE_CLICKS_15M).expect("clicks_15m is numeric");
    let demand = high_demand(clicks.map(|c| i64::try_from(c).expect("clicks_15m is a whole number")));
    let mut completed = row.to_vec();
    completed[DPE_MIN_COMPETITOR_PRICE] = min.into();
    completed[DPE_FINAL_PRICE] = base.map(|b| final_price(category, b, demand, min)).into();
    completed
}

/// `(product_id, product_name, total_orders, revenue_estimate)`.
type SalesRow = (Option<i32>, Option<String>, Option<i64>, Option<Decimal>);

/// ```sql
/// CREATE MATERIALIZED VIEW sales_profit AS
/// SELECT o.product_id, MAX(pi.product_name) AS product_name, SUM(o.quantity) AS total_orders,
///        CAST(SUM(dp.final_price * o.quantity) AS DECIMAL) AS revenue_estimate
/// FROM orders o
/// ASOF LEFT JOIN dynamic_pricing_enriched dp
///   ON o.product_id = dp.product_id AND o.order_time >= dp.inventory_window
/// LEFT JOIN product_inventory pi ON pi.product_id = o.product_id
/// GROUP BY o.product_id;
/// ```
/// Windows are whole minutes, so an order's ASOF match is the latest window at or
/// before the order's minute. Orders are summed per (product, minute); "the latest
/// window so far" is a prefix scan with the monoid "keep the later non-empty value",
/// asked at each order minute, so an order costs O(log minutes).
///
/// The scan runs over [`window_facts`], not over priced rows: a window's price also
/// depends on the product's current competitor minimum and base price, and with
/// prices in the scan one competitor price would re-answer every order of the
/// product. Instead matched quantities are summed per (product, stock category,
/// high demand, base price), at most a handful of rows per product, and priced
/// there: `final_price` is the same for every order in such a group, so the sum
/// of `final_price × quantity` is exact.
///
/// An order keeps its match when that window expires. An order written for a minute
/// before the newest expired window of its product cannot be matched any more (those
/// windows are gone): its revenue term is NULL.
fn sales_profit<'s>(
    orders: Coll<'s, Order>,
    facts: WindowFacts<'s>,
    comp_min: Coll<'s, (i32, Decimal)>,
    product_inventory: Coll<'s, ProductInventory>,
    products: &ProductsArranged<'s>,
    horizon: &Horizon<'s>,
) -> Coll<'s, SalesRow> {
    // SUM(o.quantity) per product, NULL when every quantity is NULL.
    let order_totals = orders
        .clone()
        .explode(|o| {
            let (rows, sum) = o.quantity.map_or((0, 0), |q| (1isize, q as isize));
            Some((o.product_id, (1isize, rows, sum)))
        })
        .count_total()
        .map(|(product_id, (_, rows, sum))| (product_id, (rows > 0).then_some(sum as i64)));
    // Orders that can meet a price: product, time and quantity all present.
    let order_minutes = orders
        .explode(|o| match (o.product_id, o.order_time, o.quantity) {
            (Some(product_id), Some(t), Some(q)) => Some(((product_id, minute_start(t)), (1isize, q as isize))),
            _ => None,
        })
        .count_total()
        .map(|((product_id, minute), (_, quantity)): ((i32, Micros), CountSum)| {
            ((minute_position(minute), product_id), quantity as i64)
        });
    let window_values = facts.map(|((product_id, window), (net, clicks))| {
        ((minute_position(window), product_id), Some((window, net, high_demand(clicks))))
    });
    let queries = order_minutes.clone().map(|((position, product_id), _)| (position + 1, product_id));
    let asof_windows = prefix_fold_at(
        window_values,
        queries,
        None,
        |_product, earlier, later| later.or(*earlier),
        Some(horizon.compaction()),
    )
    .map(|((position, product_id), latest)| ((position - 1, product_id), latest));
    // Matched quantities per (product, category, high demand, base price).
    let matched = order_minutes
        .join_map(asof_windows, |&(_position, product_id), &quantity, latest| {
            latest.map(|(_window, net, high_demand)| (product_id, (net, high_demand, quantity)))
        })
        .flat_map(|matched| matched);
    let groups = matched
        .join_core(products.clone(), |&product_id, &(net, high_demand, quantity), p| {
            let category = StockCategory::of(p.stock_level.map(|s| s as i64 + net));
            Some(((product_id, category, high_demand, p.base_price), quantity))
        })
        .explode(|(group, quantity)| Some((group, (1isize, quantity as isize))))
        .count_total()
        .map(|((product_id, category, high_demand, base), (rows, quantity)): (_, CountSum)| {
            (product_id, (category, high_demand, base, rows, quantity as i64))
        });
    let term = |product_id: i32, &(category, high_demand, base, rows, quantity): &PriceGroup, min: Option<Decimal>| {
        let sum = base.map(|b| final_price(category, b, high_demand, min) * Decimal::from(quantity));
        (product_id, sum.map(|s| MoneySum::of(rows as i64, s)))
    };
    let terms = left_join_unique(groups.arrange_by_key(), comp_min.arrange_by_key(), move |&product_id, group, min| {
        Some(term(product_id, group, min.copied()))
    });
    let revenue = terms.explode(|(product_id, sum)| sum.map(|s| (Some(product_id), s))).count_total();
    let sales = left_join_unique(order_totals.arrange_by_key(), revenue.arrange_by_key(), |product_id, &total, sum| {
        Some((*product_id, (total, sum.and_then(MoneySum::total))))
    });
    // LEFT JOIN product_inventory for the name.
    let named = sales
        .clone()
        .flat_map(|(product_id, totals)| product_id.map(|id| (id, totals)))
        .join_core(products.clone(), |&id, &(total, revenue), p| {
            Some((Some(id), p.product_name.clone(), total, revenue))
        });
    let unnamed = sales
        .antijoin(product_inventory.map(|p| Some(p.product_id)))
        .map(|(product_id, (total, revenue))| (product_id, None, total, revenue));
    named.concat(unnamed)
}

/// Matched orders of one product with one price: `(category, high demand, base
/// price, order minutes, quantity)`.
type PriceGroup = (StockCategory, bool, Option<Decimal>, isize, i64);

/// `retail_watermark(watermark, horizon, late_events)`: diffmart's own view, like
/// `casino_watermark`: one row once the first retail event has arrived. `watermark`
/// is the newest event time of the four retail streams, `horizon` the watermark minus
/// `--retention` (windows that end by then have expired; NULL if before year 1), and
/// `late_events` counts the clicks, purchases and restocks dropped because their
/// window had expired when they arrived.
/// ```sql
/// SELECT MAX(event_time) AS watermark, MAX(event_time) - <retention> AS horizon,
///        COUNT(*) FILTER (WHERE <its window had expired on arrival>) AS late_events
/// FROM <web_clicks, competitor_prices, purchases and restocks> HAVING COUNT(*) > 0;
/// ```
fn retail_watermark<'s>(
    horizon: &Horizon<'s>,
    late_events: Coll<'s, ((), isize)>,
) -> Coll<'s, (Micros, Option<Micros>, i64)> {
    /// 0001-01-01T00:00:00Z: earlier horizons (absurd retentions) are shown as NULL.
    const YEAR_ONE: Micros = -62_135_596_800 * crate::datum::MICROS_PER_SECOND;
    let retention = horizon.retention;
    let row = move |watermark: Micros, late: isize| {
        let shown = watermark.checked_sub(retention).filter(|h| *h >= YEAR_ONE);
        (watermark, shown, late as i64)
    };
    let watermark = horizon.clock.watermark().map(|w| ((), w));
    left_join_unique(watermark.arrange_by_key(), late_events.arrange_by_key(), move |_, &w, late| {
        Some(row(w, late.copied().unwrap_or(0)))
    })
}

fn timestamp_or_null(t: Option<Micros>) -> Datum {
    t.map_or(Datum::Null, Datum::Timestamp)
}

fn stock_status(p: &ProductInventory, window: Option<Micros>, current_inventory: Option<i64>) -> StockStatus {
    StockStatus {
        product_id: p.product_id,
        product_name: p.product_name.clone(),
        inventory_window: window,
        current_inventory,
        base_price: p.base_price,
        reorder_threshold: p.reorder_threshold,
        category: StockCategory::of(current_inventory),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn stock_categories_follow_the_case_expression() {
        assert_eq!(StockCategory::of(Some(-5)), StockCategory::Low);
        assert_eq!(StockCategory::of(Some(19)), StockCategory::Low);
        assert_eq!(StockCategory::of(Some(20)), StockCategory::Medium);
        assert_eq!(StockCategory::of(Some(50)), StockCategory::Medium);
        assert_eq!(StockCategory::of(Some(51)), StockCategory::High);
        assert_eq!(StockCategory::of(None), StockCategory::High);
    }

    #[test]
    fn round2_is_half_away_from_zero() {
        assert_eq!(round2(dec("2.345")), dec("2.35"));
        assert_eq!(round2(dec("-2.345")), dec("-2.35"));
        assert_eq!(round2(dec("2.344")), dec("2.34"));
    }

    #[test]
    fn final_price_branches() {
        let base = dec("100.00");
        // No competitor: the stock rule, Low is +20 %.
        assert_eq!(final_price(StockCategory::Low, base, false, None), dec("120.00"));
        // Demand branch: base at or under the competitor and more than 30 clicks: ×1.02.
        assert_eq!(final_price(StockCategory::Medium, base, high_demand(Some(31)), Some(dec("100.00"))), dec("102.00"));
        assert_eq!(final_price(StockCategory::Medium, base, high_demand(Some(30)), Some(dec("100.00"))), dec("100.00"));
        // Undercut branch: stock rule above the competitor: ×0.99.
        assert_eq!(final_price(StockCategory::Low, base, high_demand(None), Some(dec("110.00"))), dec("118.80"));
        // High is ×0.90, rounded; the floor is half the base price.
        assert_eq!(final_price(StockCategory::High, dec("19.99"), false, None), dec("17.99"));
        assert_eq!(final_price(StockCategory::High, dec("0.01"), false, None), dec("0.01"));
        assert_eq!(StockCategory::High.stock_rule_price(dec("19.99")), dec("17.99"));
        assert_eq!(StockCategory::Medium.stock_rule_price(dec("19.99")), dec("19.99"));
    }
}
