//! Pricing views: each competitor's latest price (`competitor_latest`), the lowest
//! of them per product (`competitor_minimum`), and the priced windows
//! (`dynamic_pricing_enriched`), whose competitor-dependent columns are filled in
//! when a snapshot is read.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::inputs::CompetitorPrice;
use super::price_rules::{StockCategory, final_price, high_demand};
use super::stock::{ProductStockStatus, stock_status};
use super::{Coll, MONEY, MinuteCounts, ProductsArranged, WHOLE, WindowFacts};
use crate::checkpoint::Slot;
use crate::datum::{ColumnType, Datum, MICROS_PER_MINUTE, Micros, ReadTimeLookup, Record, Row};
use crate::operators::max_per_key::Forget;
use crate::operators::{left_join_unique, max_per_key, range_sum_at};
use crate::relation::relation;
use ColumnType::{Int32, Text, TimestampTz};

relation! {
    /// A row of `competitor_latest`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CompetitorLatest: view "competitor_latest" {
        pub product_id: i32 = Int32,
        pub competitor: String = Text,
        pub competitor_price: Decimal = MONEY,
        pub ts: Micros = TimestampTz,
    }
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
/// prices within `retention` of its latest one; the latest may be older than any
/// event retention keeps, so the kept prices are saved at checkpoints in `slot`.
pub(super) fn competitor_latest<'s>(
    competitor_prices: Coll<'s, CompetitorPrice>,
    retention: Micros,
    slot: Slot,
) -> Coll<'s, ((i32, String), (Micros, Decimal))> {
    let event_time: fn(&(Micros, Decimal)) -> Micros = |(ts, _)| *ts;
    max_per_key(
        competitor_prices.map(|c| ((c.product_id, c.competitor), (c.ts, c.competitor_price))),
        Some(Forget { event_time, retention, slot }),
    )
}

relation! {
    /// A row of `competitor_minimum`: the lowest latest competitor price of one product.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CompetitorMinimum: view "competitor_minimum" {
        pub product_id: i32 = Int32,
        pub min_competitor_price: Decimal = MONEY,
    }
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

relation! {
    /// A row of `dynamic_pricing_enriched`. The dataflow keeps `min_competitor_price`
    /// and `final_price` NULL, filled in when a snapshot is read ([`dynamic_pricing_enriched`]).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct DynamicPricingEnriched: view "dynamic_pricing_enriched" {
        pub product_id: i32 = Int32,
        pub product_name: Option<String> = Text,
        pub inventory_window: Option<Micros> = TimestampTz,
        pub current_inventory: Option<Decimal> = WHOLE,
        pub stock_level_category: StockCategory = Text,
        pub base_price: Option<Decimal> = MONEY,
        pub clicks_15m: Option<Decimal> = WHOLE,
        pub min_competitor_price: Option<Decimal> = MONEY,
        pub stock_rule_price: Option<Decimal> = MONEY,
        pub final_price: Option<Decimal> = MONEY,
    }
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
    stock_statuses: Coll<'s, ProductStockStatus>,
    products: &ProductsArranged<'s>,
) -> Coll<'s, DynamicPricingEnriched> {
    let windowed = facts.map(|((product_id, window), facts)| (product_id, (window, facts))).join_core(
        products.clone(),
        |_id, &(window, (net, clicks)), p| {
            let status = stock_status(p, Some(window), p.stock_level.map(|s| s as i64 + net));
            Some(priced_without_competitor(status, clicks))
        },
    );
    let unwindowed =
        stock_statuses.filter(|s| s.inventory_window.is_none()).map(|s| priced_without_competitor(s, None));
    windowed.concat(unwindowed)
}

/// A `dynamic_pricing_enriched` row as the dataflow keeps it: everything but the
/// two columns that depend on `comp_min`, which are NULL.
fn priced_without_competitor(s: ProductStockStatus, clicks_15m: Option<i64>) -> DynamicPricingEnriched {
    let category = s.stock_level_category;
    DynamicPricingEnriched {
        product_id: s.product_id,
        product_name: s.product_name,
        inventory_window: s.inventory_window,
        current_inventory: s.current_inventory,
        stock_level_category: category,
        base_price: s.base_price,
        clicks_15m: clicks_15m.map(Decimal::from),
        min_competitor_price: None,
        stock_rule_price: s.base_price.map(|b| category.stock_rule_price(b)),
        final_price: None,
    }
}

/// `dynamic_pricing_enriched`'s `LEFT JOIN comp_min`, done when a snapshot is read.
pub fn read_time_lookups() -> Vec<ReadTimeLookup> {
    let view = DynamicPricingEnriched::spec();
    vec![ReadTimeLookup {
        view: view.name,
        lookup: CompetitorMinimum::spec().name,
        key_column: view.column_index("product_id").expect("dynamic_pricing_enriched has a product_id"),
        complete: with_competitor_minimum,
    }]
}

/// Fills in `min_competitor_price` and `final_price` of a row kept by
/// [`dynamic_pricing_enriched`] from its product's `competitor_minimum` row, if any.
pub fn with_competitor_minimum(row: &[Datum], comp_min: Option<&[Datum]>) -> Row {
    let mut priced = DynamicPricingEnriched::from_row(row).expect("a dynamic_pricing_enriched row");
    let min = comp_min.map(|m| CompetitorMinimum::from_row(m).expect("a competitor_minimum row").min_competitor_price);
    let clicks = priced.clicks_15m.map(|c| i64::try_from(c).expect("clicks_15m is a whole number"));
    priced.min_competitor_price = min;
    priced.final_price =
        priced.base_price.map(|b| final_price(priced.stock_level_category, b, high_demand(clicks), min));
    priced.into_row()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_snapshot_fills_in_only_the_competitor_columns() {
        let kept = DynamicPricingEnriched {
            product_id: 7,
            product_name: Some("Widget".into()),
            inventory_window: Some(60 * MICROS_PER_MINUTE),
            current_inventory: Some(Decimal::from(12)),
            stock_level_category: StockCategory::Low,
            base_price: Some(dec("100.00")),
            clicks_15m: Some(Decimal::from(30)),
            min_competitor_price: None,
            stock_rule_price: Some(dec("120.00")),
            final_price: None,
        };
        let row = kept.to_row();
        let column = |name| DynamicPricingEnriched::spec().column_index(name).unwrap();
        assert_eq!(row[column("stock_level_category")], Datum::Text("Low".into()));
        let with = |min: Option<&str>, final_price: &str| {
            let mut row = row.clone();
            row[column("min_competitor_price")] = min.map(dec).into();
            row[column("final_price")] = dec(final_price).into();
            row
        };

        let comp_min = CompetitorMinimum { product_id: 7, min_competitor_price: dec("110.00") }.to_row();
        assert_eq!(with_competitor_minimum(&row, Some(&comp_min)), with(Some("110.00"), "118.80"));
        assert_eq!(with_competitor_minimum(&row, None), with(None, "120.00"));
    }
}
