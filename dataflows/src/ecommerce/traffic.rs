//! Traffic views: the watermarked event stream, page views, product views and
//! per-product performance.

use differential_dataflow::VecCollection;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use serde::{Deserialize, Serialize};

use super::ProductsArranged;
use super::inputs::{Product, UserEvent};
use crate::Time;
use crate::boundary::View;
use crate::datum::{ColumnType, F64, MICROS_PER_MINUTE, Micros};
use crate::operators::{left_join_unique, max_per_key};
use crate::relation::relation;
use ColumnType::{Float64, Int64, Text, Timestamp};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// How far `event_time_watermark` trails `event_time`.
pub const WATERMARK_DELAY: Micros = 2 * MICROS_PER_MINUTE;

relation! {
    /// A row of `user_events_watermarked`: an event, and its watermark.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct UserEventWatermarked: view "user_events_watermarked" {
        pub event: UserEvent,
        pub event_time_watermark: Option<Micros> = Timestamp,
    }
}

relation! {
    /// A row of `pageview_metrics`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct PageviewMetrics: view "pageview_metrics" {
        pub page_url: Option<String> = Text,
        pub device_type: Option<String> = Text,
        pub referrer_url: Option<String> = Text,
        pub view_count: i64 = Int64,
        pub unique_visitors: i64 = Int64,
        pub session_count: i64 = Int64,
        pub first_view: Option<Micros> = Timestamp,
        pub last_view: Option<Micros> = Timestamp,
    }
}

relation! {
    /// The columns a view grouped by the product's columns starts with.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductColumns {
        pub product_id: String = Text,
        pub name: Option<String> = Text,
        pub category: Option<String> = Text,
        pub price: Option<F64> = Float64,
    }
}

impl ProductColumns {
    fn of(p: &Product) -> ProductColumns {
        ProductColumns {
            product_id: p.product_id.clone(),
            name: p.name.clone(),
            category: p.category.clone(),
            price: p.price,
        }
    }
}

relation! {
    /// A row of `product_view_metrics`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductViewMetrics: view "product_view_metrics" {
        pub product: ProductColumns,
        pub view_count: i64 = Int64,
        pub unique_viewers: i64 = Int64,
        pub session_count: i64 = Int64,
    }
}

relation! {
    /// A row of `product_performance`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductPerformance: view "product_performance" {
        pub product: ProductColumns,
        pub view_count: i64 = Int64,
        pub cart_adds: i64 = Int64,
        pub purchases: i64 = Int64,
        pub view_to_cart_ratio: F64 = Float64,
        pub cart_to_purchase_ratio: F64 = Float64,
        pub estimated_revenue: Option<F64> = Float64,
    }
}

/// `(rows, distinct non-NULL users, distinct non-NULL sessions)` of a group, carried as
/// the difference of one record per group: distinct pairs are counted, never rescanned.
type Tally = (isize, isize, isize);

/// Who an event is from: `(user_id, session_id)`, either may be NULL.
type Visitor = (Option<String>, Option<String>);

/// `COUNT(*), COUNT(DISTINCT user_id), COUNT(DISTINCT session_id)` per key, for
/// events given as `(key, (user_id, session_id))`. The distinct pairs are kept by
/// `distinct` (one record per pair), so an event costs O(log n) whatever the history.
fn count_rows_users_sessions<'s, K>(keyed: Coll<'s, (K, Visitor)>) -> Coll<'s, (K, (i64, i64, i64))>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash,
{
    let rows = keyed.clone().explode(|(key, _)| Some((key, (1isize, 0isize, 0isize))));
    let users = keyed
        .clone()
        .flat_map(|(key, (user, _))| user.map(|u| (key, u)))
        .distinct_total()
        .explode(|(key, _)| Some((key, (0isize, 1isize, 0isize))));
    let sessions = keyed
        .flat_map(|(key, (_, session))| session.map(|s| (key, s)))
        .distinct_total()
        .explode(|(key, _)| Some((key, (0isize, 0isize, 1isize))));
    rows.concat(users)
        .concat(sessions)
        .count_total()
        .map(|(key, (rows, users, sessions)): (K, Tally)| (key, (rows as i64, users as i64, sessions as i64)))
}

/// ```sql
/// CREATE MATERIALIZED VIEW user_events_watermarked AS
/// SELECT event_id, user_id, session_id, event_type, product_id, page_url, referrer_url,
///        device_type, event_time, event_data,
///        event_time - INTERVAL '2 minutes' AS event_time_watermark
/// FROM user_events;
/// ```
pub(super) fn user_events_watermarked<'s>(events: Coll<'s, UserEvent>) -> View<'s> {
    View::new(events, |event| UserEventWatermarked {
        event_time_watermark: event.event_time.map(|t| t - WATERMARK_DELAY),
        event,
    })
}

/// The group of `pageview_metrics`: NULL is a group of its own in each column.
type PageKey = (Option<String>, Option<String>, Option<String>);

/// ```sql
/// CREATE MATERIALIZED VIEW pageview_metrics AS
/// SELECT page_url, device_type, referrer_url,
///        COUNT(*)                   AS view_count,
///        COUNT(DISTINCT user_id)    AS unique_visitors,
///        COUNT(DISTINCT session_id) AS session_count,
///        MIN(event_time)            AS first_view,
///        MAX(event_time)            AS last_view
/// FROM user_events_watermarked
/// WHERE event_type = 'pageview'
/// GROUP BY page_url, device_type, referrer_url;
/// ```
/// MIN and MAX keep every live time of a group in an ordered map (`max_per_key`,
/// the minimum as the maximum of the bitwise complement), so a retraction costs
/// O(log n); a group whose times are all NULL has NULL first and last views.
pub(super) fn pageview_metrics<'s>(events: Coll<'s, UserEvent>) -> View<'s> {
    let pageviews = events.filter(|e| e.is("pageview")).map(|e| {
        let key: PageKey = (e.page_url, e.device_type, e.referrer_url);
        (key, (e.user_id, e.session_id), e.event_time)
    });
    let tallies = count_rows_users_sessions(pageviews.clone().map(|(key, who, _)| (key, who)));
    let times = pageviews.flat_map(|(key, _, time)| time.map(|t| (key, t)));
    let last = max_per_key(times.clone(), None);
    let first = max_per_key(times.map(|(key, t)| (key, !t)), None).map(|(key, t)| (key, !t));
    let extremes = first.join_map(last, |key, first, last| (key.clone(), (*first, *last)));
    let metrics = left_join_unique(tallies.arrange_by_key(), extremes.arrange_by_key(), |key, tally, times| {
        let (page_url, device_type, referrer_url) = key.clone();
        let &(view_count, unique_visitors, session_count) = tally;
        Some(PageviewMetrics {
            page_url,
            device_type,
            referrer_url,
            view_count,
            unique_visitors,
            session_count,
            first_view: times.map(|(first, _)| *first),
            last_view: times.map(|(_, last)| *last),
        })
    });
    View::of_records(metrics)
}

/// ```sql
/// CREATE MATERIALIZED VIEW product_view_metrics AS
/// SELECT p.product_id, p.name, p.category, p.price,
///        COUNT(*)                     AS view_count,
///        COUNT(DISTINCT u.user_id)    AS unique_viewers,
///        COUNT(DISTINCT u.session_id) AS session_count
/// FROM user_events_watermarked u
/// JOIN products p ON u.product_id = p.product_id
/// WHERE u.event_type = 'product_view'
/// GROUP BY p.product_id, p.name, p.category, p.price;
/// ```
/// `product_id` is the primary key of `products`, so grouping by the product's
/// columns is grouping by the event's `product_id`: counted per id, then joined.
pub(super) fn product_view_metrics<'s>(events: Coll<'s, UserEvent>, products: &ProductsArranged<'s>) -> View<'s> {
    let views =
        events.filter(|e| e.is("product_view")).flat_map(|e| e.product_id.map(|id| (id, (e.user_id, e.session_id))));
    let metrics = count_rows_users_sessions(views).join_core(
        products.clone(),
        |_id, &(view_count, unique_viewers, session_count), p: &Product| {
            Some(ProductViewMetrics { product: ProductColumns::of(p), view_count, unique_viewers, session_count })
        },
    );
    View::of_records(metrics)
}

/// `(product views, cart adds, purchases)` of one product.
type FunnelCounts = (isize, isize, isize);

/// ```sql
/// CREATE MATERIALIZED VIEW product_performance AS
/// SELECT p.product_id, p.name, p.category, p.price,
///   COUNT(CASE WHEN u.event_type = 'product_view' THEN 1 END) AS view_count,
///   COUNT(CASE WHEN u.event_type = 'add_to_cart'  THEN 1 END) AS cart_adds,
///   COUNT(CASE WHEN u.event_type = 'purchase'     THEN 1 END) AS purchases,
///   CASE WHEN COUNT(CASE WHEN u.event_type = 'product_view' THEN 1 END) = 0 THEN 0
///        ELSE CAST(COUNT(CASE WHEN u.event_type = 'add_to_cart' THEN 1 END) AS FLOAT)
///             / COUNT(CASE WHEN u.event_type = 'product_view' THEN 1 END)
///   END AS view_to_cart_ratio,
///   CASE WHEN COUNT(CASE WHEN u.event_type = 'add_to_cart' THEN 1 END) = 0 THEN 0
///        ELSE CAST(COUNT(CASE WHEN u.event_type = 'purchase' THEN 1 END) AS FLOAT)
///             / COUNT(CASE WHEN u.event_type = 'add_to_cart' THEN 1 END)
///   END AS cart_to_purchase_ratio,
///   COUNT(CASE WHEN u.event_type = 'purchase' THEN 1 END) * p.price AS estimated_revenue
/// FROM products p
/// LEFT JOIN user_events_watermarked u ON p.product_id = u.product_id
/// GROUP BY p.product_id, p.name, p.category, p.price;
/// ```
/// Products without any counted event get zeros (the LEFT JOIN's NULL row counts nothing).
pub(super) fn product_performance<'s>(events: Coll<'s, UserEvent>, products_by_id: &ProductsArranged<'s>) -> View<'s> {
    let counts = events
        .explode(|e| {
            let counts: FunnelCounts = match e.event_type.as_deref() {
                Some("product_view") => (1, 0, 0),
                Some("add_to_cart") => (0, 1, 0),
                Some("purchase") => (0, 0, 1),
                _ => return None,
            };
            Some((e.product_id?, counts))
        })
        .count_total()
        .map(|(id, (views, carts, purchases)): (String, FunnelCounts)| {
            (id, (views as i64, carts as i64, purchases as i64))
        });
    View::of_records(left_join_unique(products_by_id.clone(), counts.arrange_by_key(), |_id, p: &Product, counts| {
        Some(ProductPerformance::of(p, counts.copied().unwrap_or((0, 0, 0))))
    }))
}

impl ProductPerformance {
    fn of(p: &Product, (view_count, cart_adds, purchases): (i64, i64, i64)) -> ProductPerformance {
        // CASE WHEN divisor = 0 THEN 0 ELSE CAST(x AS FLOAT) / divisor END
        let ratio = |x: i64, divisor: i64| F64::new(if divisor == 0 { 0.0 } else { x as f64 / divisor as f64 });
        ProductPerformance {
            product: ProductColumns::of(p),
            view_count,
            cart_adds,
            purchases,
            view_to_cart_ratio: ratio(cart_adds, view_count),
            cart_to_purchase_ratio: ratio(purchases, cart_adds),
            estimated_revenue: p.price.map(|price| F64::new(purchases as f64 * price.get())),
        }
    }
}
