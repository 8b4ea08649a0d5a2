//! Pricing views: each competitor's latest price (`competitor_latest`), the lowest
//! of them per product (`competitor_minimum`), and the priced windows
//! (`dynamic_pricing_enriched`), whose competitor-dependent columns are filled in
//! when a snapshot is read.

use std::sync::LazyLock;

use rust_decimal::Decimal;

use super::inputs::CompetitorPrice;
use super::price_rules::{StockCategory, final_price, high_demand};
use super::stock::{StockStatus, stock_status};
use super::{Coll, MONEY, MinuteCounts, ProductsArranged, WHOLE, WindowFacts, timestamp_or_null, view};
use crate::datum::{ColumnType, Datum, MICROS_PER_MINUTE, Micros, ReadTimeLookup, RelationSpec, Row, RowReader, col};
use crate::operators::{left_join_unique, max_per_key, range_sum_at};
use ColumnType::{Int32, Text, TimestampTz};

pub(super) static COMPETITOR_LATEST: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "competitor_latest",
        vec![col("product_id", Int32), col("competitor", Text), col("competitor_price", MONEY), col("ts", TimestampTz)],
    )
});
pub(super) static COMPETITOR_MINIMUM: LazyLock<RelationSpec> =
    LazyLock::new(|| view("competitor_minimum", vec![col("product_id", Int32), col("min_competitor_price", MONEY)]));
pub(super) static DYNAMIC_PRICING_ENRICHED: LazyLock<RelationSpec> = LazyLock::new(|| {
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
pub(super) fn competitor_latest<'s>(
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
pub(super) fn competitor_minimum<'s>(
    latest_prices: Coll<'s, ((i32, String), (Micros, Decimal))>,
) -> Coll<'s, (i32, Decimal)> {
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
pub(super) fn window_facts<'s>(
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
pub(super) fn dynamic_pricing_enriched<'s>(
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
