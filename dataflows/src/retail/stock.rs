//! Stock views: per-minute purchase and restock totals (`minute_join`) and the
//! running inventory with its stock level category (`product_stock_status`).

use differential_dataflow::operators::CountTotal;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::inputs::{ProductInventory, PurchasedQuantity, Restock};
use super::price_rules::StockCategory;
use super::{
    Coll, CountSum, Horizon, MONEY, MinuteFlows, ProductMinute, ProductsArranged, WHOLE, minute_position, minute_start,
    position_minute, window_end,
};
use crate::datum::{ColumnType, Micros};
use crate::operators::{accumulated, left_join_unique, prefix_fold_at};
use crate::relation::relation;
use ColumnType::{Int32, Int64, Text, TimestampTz};

relation! {
    /// A row of `minute_join`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct MinuteJoin: view "minute_join" {
        pub product_id: i32 = Int32,
        pub window_start: Micros = TimestampTz,
        pub total_purchased: i64 = Int64,
        pub total_restocked: i64 = Int64,
    }
}

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
pub(super) fn minute_join<'s>(
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
    // One record per product: (rows, sum) differences never cancel to zero. The kept
    // events are never retracted, so the tap keeps what the count has seen.
    let products = flows.clone().map(|(product_id, _)| product_id);
    let active_products = accumulated(products, horizon.checkpoints.slot("retail.active_products"))
        .count_total()
        .map(|(product_id, _)| product_id);
    let expires_at = |(_, minute): &ProductMinute| window_end(*minute);
    let minute_flows =
        horizon.retain(flows, expires_at, "retail.minute_join.retain").count_total().map(|(product_window, flows)| {
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
pub(super) fn running_inventory<'s>(
    minute_flows: MinuteFlows<'s>,
    horizon: &Horizon<'s>,
) -> Coll<'s, (i32, (Micros, i64))> {
    let net_flow = minute_flows.map(|((product_id, window), purchased, restocked)| {
        ((minute_position(window), product_id), restocked - purchased)
    });
    let queries = net_flow.clone().map(|((position, product_id), _)| (position + 1, product_id));
    let compaction = horizon.compaction("retail.running_inventory");
    prefix_fold_at(net_flow, queries, 0i64, |_product, a, b| a + b, Some(compaction))
        .map(|((position, product_id), net)| (product_id, (position_minute(position - 1), net)))
}

relation! {
    /// A row of `product_stock_status`, kept as the records `dynamic_pricing_enriched` reads.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductStockStatus: view "product_stock_status" {
        pub product_id: i32 = Int32,
        pub product_name: Option<String> = Text,
        pub inventory_window: Option<Micros> = TimestampTz,
        pub current_inventory: Option<Decimal> = WHOLE,
        pub base_price: Option<Decimal> = MONEY,
        pub reorder_threshold: Option<i32> = Int32,
        pub stock_level_category: StockCategory = Text,
    }
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
pub(super) fn product_stock_status<'s>(
    running_net: Coll<'s, (i32, (Micros, i64))>,
    active_products: Coll<'s, i32>,
    products: &ProductsArranged<'s>,
) -> Coll<'s, ProductStockStatus> {
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

/// The `product_stock_status` row of product `p` in `window`, at `current_inventory`.
pub(super) fn stock_status(
    p: &ProductInventory,
    window: Option<Micros>,
    current_inventory: Option<i64>,
) -> ProductStockStatus {
    ProductStockStatus {
        product_id: p.product_id,
        product_name: p.product_name.clone(),
        inventory_window: window,
        current_inventory: current_inventory.map(Decimal::from),
        base_price: p.base_price,
        reorder_threshold: p.reorder_threshold,
        stock_level_category: StockCategory::of(current_inventory),
    }
}
