//! Sales view: per product, the orders and their revenue at the price of the
//! window each order falls in (`sales_profit`).

use differential_dataflow::operators::CountTotal;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::inputs::{Order, ProductInventory};
use super::price_rules::{StockCategory, final_price, high_demand};
use super::{Coll, CountSum, Horizon, MONEY, ProductsArranged, WindowFacts, minute_position, minute_start};
use crate::datum::{ColumnType, Micros};
use crate::money::MoneySum;
use crate::operators::{left_join_unique, prefix_fold_at};
use crate::relation::relation;
use ColumnType::{Int32, Int64, Text};

relation! {
    /// A row of `sales_profit`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct SalesProfit: view "sales_profit" {
        pub product_id: Option<i32> = Int32,
        pub product_name: Option<String> = Text,
        pub total_orders: Option<i64> = Int64,
        pub revenue_estimate: Option<Decimal> = MONEY,
    }
}

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
/// The scan runs over [`window_facts`](super::pricing::window_facts), not over priced rows: a window's price also
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
pub(super) fn sales_profit<'s>(
    orders: Coll<'s, Order>,
    facts: WindowFacts<'s>,
    comp_min: Coll<'s, (i32, Decimal)>,
    product_inventory: Coll<'s, ProductInventory>,
    products: &ProductsArranged<'s>,
    horizon: &Horizon<'s>,
) -> Coll<'s, SalesProfit> {
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
        Some(horizon.compaction("retail.sales_profit.asof")),
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
    let named = sales.clone().flat_map(|(product_id, totals)| product_id.map(|id| (id, totals))).join_core(
        products.clone(),
        |&id, &(total_orders, revenue_estimate), p| {
            Some(SalesProfit {
                product_id: Some(id),
                product_name: p.product_name.clone(),
                total_orders,
                revenue_estimate,
            })
        },
    );
    let unnamed = sales.antijoin(product_inventory.map(|p| Some(p.product_id))).map(
        |(product_id, (total_orders, revenue_estimate))| SalesProfit {
            product_id,
            product_name: None,
            total_orders,
            revenue_estimate,
        },
    );
    named.concat(unnamed)
}

/// Matched orders of one product with one price: `(category, high demand, base
/// price, order minutes, quantity)`.
type PriceGroup = (StockCategory, bool, Option<Decimal>, isize, i64);
