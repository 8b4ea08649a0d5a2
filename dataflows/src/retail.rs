//! A. Retail: live inventory and dynamic pricing (`shared/spec/PIPELINES.md` §A, seed 000).
//!
//! Six views over four event streams and two tables. Each view below sits under
//! the SQL that defines it; the Rust computes exactly that, incrementally.

use std::sync::LazyLock;

use differential_dataflow::VecCollection;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::datum::{
    ColumnType, Datum, MICROS_PER_MINUTE, Micros, Record, RelationKind, RelationSpec, Row, RowError, RowReader, col,
    col_not_null,
};
use crate::money::MoneySum;
use crate::operators::{max_per_key, prefix_fold_at};
use crate::{PipelineConfig, Time, typed};

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
    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        let r = RowReader::new(Self::spec(), row)?;
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
    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        let r = RowReader::new(Self::spec(), row)?;
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
    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        let r = RowReader::new(Self::spec(), row)?;
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
    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        let r = RowReader::new(Self::spec(), row)?;
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
    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        let r = RowReader::new(Self::spec(), row)?;
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
    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        let r = RowReader::new(Self::spec(), row)?;
        Ok(Order {
            order_id: r.i32(0)?,
            order_time: r.opt_timestamp(1)?,
            product_id: r.opt_i32(2)?,
            quantity: r.opt_i32(3)?,
            customer_id: r.opt_text(4)?,
        })
    }
}

/// The retail inputs as typed collections.
pub struct RetailInputs<'s> {
    pub web_clicks: Coll<'s, WebClick>,
    pub competitor_prices: Coll<'s, CompetitorPrice>,
    pub purchases: Coll<'s, Purchase>,
    pub restocks: Coll<'s, Restock>,
    pub product_inventory: Coll<'s, ProductInventory>,
    pub orders: Coll<'s, Order>,
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

/// The six views, in the order [`retail`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        &MINUTE_JOIN,
        &PRODUCT_STOCK_STATUS,
        &WEB_CLICKS_MINUTELY,
        &COMPETITOR_LATEST,
        &DYNAMIC_PRICING_ENRICHED,
        &SALES_PROFIT,
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

/// `final_price` of `dynamic_pricing_enriched` for a non-NULL base price.
pub fn final_price(
    category: StockCategory,
    base: Decimal,
    clicks_15m: Option<i64>,
    min_competitor_price: Option<Decimal>,
) -> Decimal {
    let rule = category.unrounded_price(base);
    let adjusted = match min_competitor_price {
        Some(min) if base <= min && clicks_15m.unwrap_or(0) > 30 => rule * Decimal::new(102, 2),
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

/// One row of `dynamic_pricing_enriched`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PricedWindow {
    pub status: StockStatus,
    pub clicks_15m: Option<i64>,
    pub min_competitor_price: Option<Decimal>,
    pub stock_rule_price: Option<Decimal>,
    pub final_price: Option<Decimal>,
}

/// Builds the views from input relations given as rows, in `input_specs()` order.
/// Rows were validated against their specs on the way in.
pub fn build_from_rows<'s>(config: &PipelineConfig, inputs: &[Coll<'s, Row>]) -> Vec<Coll<'s, Row>> {
    let [web_clicks, competitor_prices, purchases, restocks, product_inventory, orders] = inputs else {
        panic!("retail takes {} inputs, got {}", input_specs().len(), inputs.len());
    };
    let inputs = RetailInputs {
        web_clicks: typed(web_clicks),
        competitor_prices: typed(competitor_prices),
        purchases: typed(purchases),
        restocks: typed(restocks),
        product_inventory: typed(product_inventory),
        orders: typed(orders),
    };
    retail(inputs, config.retention).into_iter().map(|(_, view)| view).collect()
}

/// Aggregates carried as differences: `explode` + `count` keeps one record per key
/// however many events fed it, so the cost of an event does not grow with history.
/// `(rows, sum)`: the number of contributing rows tells an empty group from a zero sum.
type CountSum = (isize, isize);

/// Builds the six retail views from the retail inputs, in `view_specs()` order.
/// `retention`: how much event time per-event state keeps (see `competitor_latest`).
pub fn retail<'s>(inputs: RetailInputs<'s>, retention: Micros) -> Vec<(&'static RelationSpec, Coll<'s, Row>)> {
    let RetailInputs { web_clicks, competitor_prices, purchases, restocks, product_inventory, orders } = inputs;

    // One arrangement of the product master, shared by both views that join it.
    let products = product_inventory.clone().map(|p| (p.product_id, p)).arrange_by_key();

    let minute_flows = minute_join(purchases, restocks);
    let stock_statuses = product_stock_status(minute_flows.clone(), product_inventory.clone(), &products);
    let clicks_per_minute = web_clicks_minutely(web_clicks.clone());
    let latest_prices = competitor_latest(competitor_prices, retention);
    let priced = dynamic_pricing_enriched(stock_statuses.clone(), clicks_per_minute.clone(), latest_prices.clone());
    let sales = sales_profit(orders, priced.clone(), product_inventory, &products);

    let views = vec![
        minute_flows.map(|((product_id, window_start), purchased, restocked)| {
            vec![product_id.into(), Datum::Timestamp(window_start), purchased.into(), restocked.into()]
        }),
        stock_statuses.map(|s| {
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
        clicks_per_minute.map(|((product_id, window_start), clicks)| {
            vec![product_id.into(), Datum::Timestamp(window_start), (clicks as i64).into()]
        }),
        latest_prices.map(|((product_id, competitor), (ts, price))| {
            vec![product_id.into(), competitor.into(), price.into(), Datum::Timestamp(ts)]
        }),
        priced.map(|p| {
            let s = &p.status;
            vec![
                s.product_id.into(),
                s.product_name.clone().into(),
                timestamp_or_null(s.inventory_window),
                s.current_inventory.map(Decimal::from).into(),
                s.category.name().into(),
                s.base_price.into(),
                p.clicks_15m.map(Decimal::from).into(),
                p.min_competitor_price.into(),
                p.stock_rule_price.into(),
                p.final_price.into(),
            ]
        }),
        sales.map(|(product_id, name, total, revenue)| {
            vec![product_id.into(), name.into(), total.into(), revenue.into()]
        }),
    ];
    view_specs().into_iter().zip(views).collect()
}

fn timestamp_or_null(t: Option<Micros>) -> Datum {
    t.map_or(Datum::Null, Datum::Timestamp)
}

type ProductsArranged<'s> = differential_dataflow::operators::arrange::Arranged<
    's,
    differential_dataflow::operators::arrange::TraceAgent<
        differential_dataflow::trace::implementations::ValSpine<i32, ProductInventory, Time, isize>,
    >,
>;

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
/// Returns `((product_id, window_start), total_purchased, total_restocked)`.
///
/// Both sides become one collection of `(rows, sum)` differences, purchases in the
/// first pair and restocks in the second; a side without rows is the FULL JOIN's
/// missing side, which COALESCE turns into 0.
fn minute_join<'s>(purchases: Coll<'s, Purchase>, restocks: Coll<'s, Restock>) -> Coll<'s, ((i32, Micros), i64, i64)> {
    purchases
        .explode(|p| {
            let key = (p.product_id, minute_start(p.purchase_time));
            Some((key, ((1isize, p.quantity_purchased as isize), (0isize, 0isize))))
        })
        .concat(restocks.explode(|r| {
            let key = (r.product_id, minute_start(r.restock_time));
            Some((key, ((0isize, 0isize), (1isize, r.quantity_restocked as isize))))
        }))
        .count()
        .map(|(product_window, flows)| {
            let ((_, purchased), (_, restocked)): (CountSum, CountSum) = flows;
            (product_window, purchased as i64, restocked as i64)
        })
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
/// The running sum is a prefix fold per product over minute positions
/// ([`prefix_fold_at`]): a change refolds only the minutes from its own on, so an
/// in-order event costs O(log minutes), not O(minutes). The fold covers positions
/// strictly before the query, so each minute asks at `minute + 1`.
fn product_stock_status<'s>(
    minute_flows: Coll<'s, ((i32, Micros), i64, i64)>,
    product_inventory: Coll<'s, ProductInventory>,
    products: &ProductsArranged<'s>,
) -> Coll<'s, StockStatus> {
    let net_flow = minute_flows.map(|((product_id, window), purchased, restocked)| {
        ((minute_position(window), product_id), restocked - purchased)
    });
    let queries = net_flow.clone().map(|((position, product_id), _)| (position + 1, product_id));
    let running_net = prefix_fold_at(net_flow, queries, 0i64, |_product, a, b| a + b)
        .map(|((position, product_id), net)| (product_id, (position_minute(position - 1), net)));
    let with_windows = running_net.clone().join_core(products.clone(), |_id, &(window, net), p| {
        Some(stock_status(p, Some(window), p.stock_level.map(|s| s as i64 + net)))
    });
    // LEFT JOIN: a product without any minute keeps one row with a NULL window.
    let active = running_net.map(|(product_id, _)| product_id).distinct();
    let without_windows = product_inventory
        .map(|p| (p.product_id, p))
        .antijoin(active)
        .map(|(_, p)| stock_status(&p, None, p.stock_level.map(i64::from)));
    with_windows.concat(without_windows)
}

/// ```sql
/// CREATE MATERIALIZED VIEW web_clicks_minutely AS
/// SELECT product_id, window_start, COUNT(*) AS clicks
/// FROM TUMBLE(web_clicks, event_time, INTERVAL '1 MINUTE')
/// GROUP BY product_id, window_start;
/// ```
fn web_clicks_minutely<'s>(web_clicks: Coll<'s, WebClick>) -> Coll<'s, ((i32, Micros), isize)> {
    web_clicks.map(|c| (c.product_id, minute_start(c.event_time))).count()
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
/// The RANGE frame is [w - 15 min, w]: each minute's click count counts toward its
/// own minute and the 15 after it, 16 constant-size updates per changed minute
/// whatever the history. Only minutes with clicks of their own are rows of `demand`.
fn dynamic_pricing_enriched<'s>(
    stock_statuses: Coll<'s, StockStatus>,
    clicks_per_minute: Coll<'s, ((i32, Micros), isize)>,
    latest_prices: Coll<'s, ((i32, String), (Micros, Decimal))>,
) -> Coll<'s, PricedWindow> {
    // A minute's count reaches its own minute and the 15 after it. Counting per minute
    // first means a batch costs 16 updates per minute whose count changed, however
    // many clicks it took.
    let clicks_in_range = clicks_per_minute
        .clone()
        .explode(|((product_id, minute), clicks)| {
            (0..16).map(move |k| ((product_id, minute + k * MICROS_PER_MINUTE), clicks))
        })
        .count();
    let demand = clicks_in_range
        .semijoin(clicks_per_minute.map(|(product_window, _)| product_window))
        .map(|(product_window, clicks)| (product_window, clicks as i64));
    // At most one row per competitor: this reduce never scans much.
    let comp_min = latest_prices
        .map(|((product_id, _competitor), (_ts, price))| (product_id, price))
        .reduce(|_product, prices, output| output.push((*prices[0].0, 1isize)));

    let windowed = stock_statuses.clone().flat_map(|s| s.inventory_window.map(|w| ((s.product_id, w), s)));
    let with_demand = windowed.clone().join_map(demand.clone(), |_, s, &clicks| (s.clone(), Some(clicks)));
    let without_demand = windowed
        .antijoin(demand.map(|(product_window, _)| product_window))
        .map(|(_, s)| (s, None))
        .concat(stock_statuses.filter(|s| s.inventory_window.is_none()).map(|s| (s, None)));
    let by_product = with_demand.concat(without_demand).map(|(s, clicks)| (s.product_id, (s, clicks)));
    let with_competitor =
        by_product.clone().join_map(comp_min.clone(), |_, (s, clicks), &min| price(s, *clicks, Some(min)));
    let without_competitor =
        by_product.antijoin(comp_min.map(|(product_id, _)| product_id)).map(|(_, (s, clicks))| price(&s, clicks, None));
    with_competitor.concat(without_competitor)
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
/// Windows are whole minutes, so an order's ASOF match is the latest priced window
/// at or before the order's minute. Orders are summed per (product, minute); "the
/// latest window so far" is a prefix scan with the monoid "keep the later non-empty
/// value", asked at each order minute. Totals are `(rows, sum)` differences, so
/// an order costs O(log minutes) and state stays one record per product and minute.
fn sales_profit<'s>(
    orders: Coll<'s, Order>,
    priced: Coll<'s, PricedWindow>,
    product_inventory: Coll<'s, ProductInventory>,
    products: &ProductsArranged<'s>,
) -> Coll<'s, SalesRow> {
    // SUM(o.quantity) per product, NULL when every quantity is NULL.
    let order_totals = orders
        .clone()
        .explode(|o| {
            let (rows, sum) = o.quantity.map_or((0, 0), |q| (1isize, q as isize));
            Some((o.product_id, (1isize, rows, sum)))
        })
        .count()
        .map(|(product_id, (_, rows, sum))| (product_id, (rows > 0).then_some(sum as i64)));
    // Orders that can meet a price: product, time and quantity all present.
    let order_minutes = orders
        .explode(|o| match (o.product_id, o.order_time, o.quantity) {
            (Some(product_id), Some(t), Some(q)) => Some(((product_id, minute_start(t)), (1isize, q as isize))),
            _ => None,
        })
        .count()
        .map(|((product_id, minute), (_, quantity)): ((i32, Micros), CountSum)| {
            ((minute_position(minute), product_id), quantity as i64)
        });
    let window_prices = priced.flat_map(|p| {
        let product_id = p.status.product_id;
        p.status.inventory_window.map(|w| ((minute_position(w), product_id), Some((w, p.final_price))))
    });
    let queries = order_minutes.clone().map(|((position, product_id), _)| (position + 1, product_id));
    let asof_prices = prefix_fold_at(window_prices, queries, None, |_product, earlier, later| later.or(*earlier))
        .map(|((position, product_id), latest)| ((position - 1, product_id), latest));
    let revenue = order_minutes
        .join_map(asof_prices, |&(_position, product_id), &quantity, latest| {
            let price = latest.as_ref().and_then(|(_window, price)| *price);
            (product_id, price.map(|p| p * Decimal::from(quantity)))
        })
        .explode(|(product_id, term)| term.map(|t| (Some(product_id), MoneySum::new(t))))
        .count();
    let with_revenue =
        order_totals.clone().join_map(revenue.clone(), |product_id, &total, sum| (*product_id, (total, sum.total())));
    let without_revenue = order_totals
        .antijoin(revenue.map(|(product_id, _)| product_id))
        .map(|(product_id, total)| (product_id, (total, None)));
    let sales = with_revenue.concat(without_revenue);
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

fn price(s: &StockStatus, clicks_15m: Option<i64>, min_competitor_price: Option<Decimal>) -> PricedWindow {
    PricedWindow {
        status: s.clone(),
        clicks_15m,
        min_competitor_price,
        stock_rule_price: s.base_price.map(|b| s.category.stock_rule_price(b)),
        final_price: s.base_price.map(|b| final_price(s.category, b, clicks_15m, min_competitor_price)),
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
        assert_eq!(final_price(StockCategory::Low, base, None, None), dec("120.00"));
        // Demand branch: base at or under the competitor and more than 30 clicks: ×1.02.
        assert_eq!(final_price(StockCategory::Medium, base, Some(31), Some(dec("100.00"))), dec("102.00"));
        assert_eq!(final_price(StockCategory::Medium, base, Some(30), Some(dec("100.00"))), dec("100.00"));
        // Undercut branch: stock rule above the competitor: ×0.99.
        assert_eq!(final_price(StockCategory::Low, base, None, Some(dec("110.00"))), dec("118.80"));
        // High is ×0.90, rounded; the floor is half the base price.
        assert_eq!(final_price(StockCategory::High, dec("19.99"), None, None), dec("17.99"));
        assert_eq!(final_price(StockCategory::High, dec("0.01"), None, None), dec("0.01"));
        assert_eq!(StockCategory::High.stock_rule_price(dec("19.99")), dec("17.99"));
        assert_eq!(StockCategory::Medium.stock_rule_price(dec("19.99")), dec("19.99"));
    }
}
