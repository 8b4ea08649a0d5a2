//! Traffic views: the watermarked event stream, page views, product views and
//! per-product performance.

use std::sync::LazyLock;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};

use super::inputs::{Product, UserEvent, double_or_null, timestamp_or_null};
use super::{ProductsArranged, view};
use crate::Time;
use crate::boundary::View;
use crate::datum::{ColumnType, Datum, MICROS_PER_MINUTE, Micros, Record, RelationSpec, Row, col};
use crate::operators::{left_join_unique, max_per_key};
use ColumnType::{Float64, Int64, Json, Text, Timestamp};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// How far `event_time_watermark` trails `event_time`.
pub const WATERMARK_DELAY: Micros = 2 * MICROS_PER_MINUTE;

pub(super) static USER_EVENTS_WATERMARKED: LazyLock<RelationSpec> = LazyLock::new(|| {
    let mut columns: Vec<_> = UserEvent::spec().columns.iter().map(|c| col(c.name, c.ty)).collect();
    debug_assert_eq!(columns[9].ty, Json);
    columns.push(col("event_time_watermark", Timestamp));
    view("user_events_watermarked", columns)
});
pub(super) static PAGEVIEW_METRICS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "pageview_metrics",
        vec![
            col("page_url", Text),
            col("device_type", Text),
            col("referrer_url", Text),
            col("view_count", Int64),
            col("unique_visitors", Int64),
            col("session_count", Int64),
            col("first_view", Timestamp),
            col("last_view", Timestamp),
        ],
    )
});
pub(super) static PRODUCT_VIEW_METRICS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "product_view_metrics",
        vec![
            col("product_id", Text),
            col("name", Text),
            col("category", Text),
            col("price", Float64),
            col("view_count", Int64),
            col("unique_viewers", Int64),
            col("session_count", Int64),
        ],
    )
});
pub(super) static PRODUCT_PERFORMANCE: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "product_performance",
        vec![
            col("product_id", Text),
            col("name", Text),
            col("category", Text),
            col("price", Float64),
            col("view_count", Int64),
            col("cart_adds", Int64),
            col("purchases", Int64),
            col("view_to_cart_ratio", Float64),
            col("cart_to_purchase_ratio", Float64),
            col("estimated_revenue", Float64),
        ],
    )
});

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
    View::new(events, |e| {
        let mut row = e.to_row();
        row.push(timestamp_or_null(e.event_time.map(|t| t - WATERMARK_DELAY)));
        row
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
    let row = |(page_url, device_type, referrer_url): PageKey, (rows, users, sessions): (i64, i64, i64), times| {
        let (first, last) = match times {
            Some((first, last)) => (Datum::Timestamp(first), Datum::Timestamp(last)),
            None => (Datum::Null, Datum::Null),
        };
        vec![
            page_url.into(),
            device_type.into(),
            referrer_url.into(),
            rows.into(),
            users.into(),
            sessions.into(),
            first,
            last,
        ]
    };
    View::of_rows(left_join_unique(tallies.arrange_by_key(), extremes.arrange_by_key(), move |key, tally, times| {
        Some(row(key.clone(), *tally, times.copied()))
    }))
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
    let rows = count_rows_users_sessions(views)
        .join_core(products.clone(), |_id, &(rows, users, sessions), p: &Product| {
            Some(product_row(p, [rows.into(), users.into(), sessions.into()]))
        });
    View::of_rows(rows)
}

/// A row of a view grouped by the product's columns: `product_id, name, category,
/// price`, then the group's aggregates.
fn product_row<const N: usize>(p: &Product, aggregates: [Datum; N]) -> Row {
    let mut row = Vec::with_capacity(4 + N);
    row.extend([
        p.product_id.as_str().into(),
        p.name.clone().into(),
        p.category.clone().into(),
        double_or_null(p.price),
    ]);
    row.extend(aggregates);
    row
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
    View::of_rows(left_join_unique(products_by_id.clone(), counts.arrange_by_key(), |_id, p: &Product, counts| {
        Some(performance_row(p, counts.copied().unwrap_or((0, 0, 0))))
    }))
}

fn performance_row(p: &Product, (views, carts, purchases): (i64, i64, i64)) -> Row {
    // CASE WHEN divisor = 0 THEN 0 ELSE CAST(x AS FLOAT) / divisor END
    let ratio = |x: i64, divisor: i64| if divisor == 0 { 0.0 } else { x as f64 / divisor as f64 };
    product_row(
        p,
        [
            views.into(),
            carts.into(),
            purchases.into(),
            ratio(carts, views).into(),
            ratio(purchases, carts).into(),
            p.price.map(|price| purchases as f64 * price.get()).into(),
        ],
    )
}
