//! Conversion and sales views: the session funnel, revenue in hopping windows and
//! hourly purchase anomalies.

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::ToStream;

use super::float_sum::FloatSum;
use super::inputs::UserEvent;
use super::json_fields::{double_field, int_field};
use super::pg_numeric::divide_integers;
use super::preceding_rows::rows_with_preceding;
use super::traffic::WATERMARK_DELAY;
use crate::Time;
use crate::boundary::View;
use crate::datum::{ColumnType, F64, MICROS_PER_MINUTE, Micros};
use crate::operators::left_join_unique;
use crate::relation::relation;
use ColumnType::{Bool, Float64, Int64, Numeric, Timestamp};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// `avg_count` is PostgreSQL's `AVG(bigint)`: numeric with 16 to 20 decimal places
/// (20 when the average is exactly the first digit group's value, see `pg_numeric`).
pub const AVERAGE: ColumnType = Numeric { scale: 20 };

relation! {
    /// The row of `funnel_analysis`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct FunnelAnalysis: view "funnel_analysis" {
        pub total_sessions: i64 = Int64,
        pub pageview_count: Option<i64> = Int64,
        pub product_view_count: Option<i64> = Int64,
        pub add_to_cart_count: Option<i64> = Int64,
        pub checkout_count: Option<i64> = Int64,
        pub purchase_count: Option<i64> = Int64,
        pub pageview_to_product_view_rate: Option<F64> = Float64,
        pub product_view_to_cart_rate: Option<F64> = Float64,
        pub cart_to_checkout_rate: Option<F64> = Float64,
        pub checkout_to_purchase_rate: Option<F64> = Float64,
        pub overall_conversion_rate: Option<F64> = Float64,
    }
}

relation! {
    /// A row of `revenue_tracker`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct RevenueTracker: view "revenue_tracker" {
        pub window_start: Micros = Timestamp,
        pub window_end: Micros = Timestamp,
        pub purchase_count: i64 = Int64,
        pub unique_customers: i64 = Int64,
        pub total_revenue: Option<F64> = Float64,
        pub items_sold: Option<i64> = Int64,
    }
}

relation! {
    /// A row of `anomaly_detection`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct AnomalyDetection: view "anomaly_detection" {
        pub hour: Option<Micros> = Timestamp,
        pub event_count: i64 = Int64,
        pub avg_count: Option<Decimal> = AVERAGE,
        pub max_count: Option<i64> = Int64,
        pub min_count: Option<i64> = Int64,
        pub deviation_score: Option<F64> = Float64,
        pub is_anomaly: bool = Bool,
        pub z_score: Option<F64> = Float64,
    }
}

// ------------------------------------------------------------------------------------------
// funnel_analysis
// ------------------------------------------------------------------------------------------

/// The funnel's stages, in order.
const STAGES: [&str; 5] = ["pageview", "product_view", "add_to_cart", "checkout", "purchase"];

/// Sessions in total and per stage, as the difference of the view's single record:
/// `((sessions, pageview, product_view), (add_to_cart, checkout, purchase))`.
type StageCounts = ((isize, isize, isize), (isize, isize, isize));

fn one_stage(stage: usize) -> StageCounts {
    let mut counts = [0isize; 6];
    counts[stage + 1] = 1;
    ((counts[0], counts[1], counts[2]), (counts[3], counts[4], counts[5]))
}

/// ```sql
/// CREATE MATERIALIZED VIEW funnel_analysis AS
/// WITH funnel_stages AS (
///   SELECT session_id,
///          bool_or(event_type = 'pageview')     AS reached_pageview,
///          bool_or(event_type = 'product_view') AS reached_product_view,
///          bool_or(event_type = 'add_to_cart')  AS reached_add_to_cart,
///          bool_or(event_type = 'checkout')     AS reached_checkout,
///          bool_or(event_type = 'purchase')     AS reached_purchase
///   FROM user_events_watermarked
///   GROUP BY session_id)
/// SELECT COUNT(*) AS total_sessions,
///   SUM(CASE WHEN reached_pageview     THEN 1 ELSE 0 END) AS pageview_count,
///   SUM(CASE WHEN reached_product_view THEN 1 ELSE 0 END) AS product_view_count,
///   SUM(CASE WHEN reached_add_to_cart  THEN 1 ELSE 0 END) AS add_to_cart_count,
///   SUM(CASE WHEN reached_checkout     THEN 1 ELSE 0 END) AS checkout_count,
///   SUM(CASE WHEN reached_purchase     THEN 1 ELSE 0 END) AS purchase_count,
///   CAST(SUM(CASE WHEN reached_product_view THEN 1 ELSE 0 END) AS FLOAT)
///     / NULLIF(SUM(CASE WHEN reached_pageview     THEN 1 ELSE 0 END), 0) AS pageview_to_product_view_rate,
///   CAST(SUM(CASE WHEN reached_add_to_cart  THEN 1 ELSE 0 END) AS FLOAT)
///     / NULLIF(SUM(CASE WHEN reached_product_view THEN 1 ELSE 0 END), 0) AS product_view_to_cart_rate,
///   CAST(SUM(CASE WHEN reached_checkout     THEN 1 ELSE 0 END) AS FLOAT)
///     / NULLIF(SUM(CASE WHEN reached_add_to_cart  THEN 1 ELSE 0 END), 0) AS cart_to_checkout_rate,
///   CAST(SUM(CASE WHEN reached_purchase     THEN 1 ELSE 0 END) AS FLOAT)
///     / NULLIF(SUM(CASE WHEN reached_checkout     THEN 1 ELSE 0 END), 0) AS checkout_to_purchase_rate,
///   CAST(SUM(CASE WHEN reached_purchase     THEN 1 ELSE 0 END) AS FLOAT)
///     / NULLIF(SUM(CASE WHEN reached_pageview     THEN 1 ELSE 0 END), 0) AS overall_conversion_rate
/// FROM funnel_stages;
/// ```
/// A session reached a stage when it has any event of that type: the distinct
/// `(session, stage)` pairs are counted, never a session's events rescanned. A NULL
/// `session_id` is one session, as GROUP BY makes it. With no sessions at all the
/// aggregate still has its one row: `total_sessions` 0 and every SUM (and rate) NULL.
pub(super) fn funnel_analysis<'s>(events: Coll<'s, UserEvent>) -> View<'s> {
    let sessions = events
        .clone()
        .map(|e| e.session_id)
        .distinct_total()
        .explode(|_session| Some(((), ((1isize, 0isize, 0isize), (0isize, 0isize, 0isize)))));
    let stages = events
        .flat_map(|e| {
            let stage = STAGES.iter().position(|s| e.is(s));
            stage.map(|stage| (e.session_id, stage))
        })
        .distinct_total()
        .explode(|(_session, stage)| Some(((), one_stage(stage))));
    let totals = sessions.concat(stages).count_total();

    // The empty aggregate's row, present exactly when no session is.
    let scope = totals.scope();
    let unit = if scope.index() == 0 { vec![(((), ()), Time::default(), 1isize)] } else { Vec::new() };
    let always = unit.to_stream(scope).as_collection();
    View::of_records(left_join_unique(always.arrange_by_key(), totals.arrange_by_key(), |_, _, counts| {
        Some(FunnelAnalysis::of(counts.copied()))
    }))
}

impl FunnelAnalysis {
    fn of(counts: Option<StageCounts>) -> FunnelAnalysis {
        let Some(((sessions, pageview, product_view), (cart, checkout, purchase))) = counts else {
            return FunnelAnalysis {
                total_sessions: 0,
                pageview_count: None,
                product_view_count: None,
                add_to_cart_count: None,
                checkout_count: None,
                purchase_count: None,
                pageview_to_product_view_rate: None,
                product_view_to_cart_rate: None,
                cart_to_checkout_rate: None,
                checkout_to_purchase_rate: None,
                overall_conversion_rate: None,
            };
        };
        // CAST(x AS FLOAT) / NULLIF(divisor, 0)
        let rate = |x: isize, divisor: isize| (divisor != 0).then(|| F64::new(x as f64 / divisor as f64));
        FunnelAnalysis {
            total_sessions: sessions as i64,
            pageview_count: Some(pageview as i64),
            product_view_count: Some(product_view as i64),
            add_to_cart_count: Some(cart as i64),
            checkout_count: Some(checkout as i64),
            purchase_count: Some(purchase as i64),
            pageview_to_product_view_rate: rate(product_view, pageview),
            product_view_to_cart_rate: rate(cart, product_view),
            cart_to_checkout_rate: rate(checkout, cart),
            checkout_to_purchase_rate: rate(purchase, checkout),
            overall_conversion_rate: rate(purchase, pageview),
        }
    }
}

// ------------------------------------------------------------------------------------------
// revenue_tracker
// ------------------------------------------------------------------------------------------

/// HOP windows advance by this much...
pub const HOP_SLIDE: Micros = 5 * MICROS_PER_MINUTE;
/// ...and last this long, so every instant lies in `HOP_SIZE / HOP_SLIDE` = 12 windows.
pub const HOP_SIZE: Micros = 60 * MICROS_PER_MINUTE;

/// Starts of the hopping windows `[start, start + 1 h)` that contain `t`.
pub fn hop_window_starts(t: Micros) -> impl Iterator<Item = Micros> {
    let last = t.div_euclid(HOP_SLIDE) * HOP_SLIDE;
    (0..HOP_SIZE / HOP_SLIDE).map(move |k| last - k * HOP_SLIDE)
}

/// What `revenue_tracker` reads of a purchase, read once per event: each of its 12
/// windows copies this, not the whole event, and its JSON is parsed once, not once
/// a window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct PurchaseFacts {
    event_id: String,
    user_id: Option<String>,
    /// `event_data->>'total_amount'` as DOUBLE PRECISION, NULL if missing or unreadable.
    total_amount: Option<F64>,
    /// `event_data->>'item_count'` as INT, likewise.
    item_count: Option<i32>,
}

impl PurchaseFacts {
    fn of(event: UserEvent) -> PurchaseFacts {
        let data = event.event_data.as_deref();
        PurchaseFacts {
            total_amount: data.and_then(|d| double_field(d, "total_amount")).map(F64::new),
            item_count: data.and_then(|d| int_field(d, "item_count")),
            event_id: event.event_id,
            user_id: event.user_id,
        }
    }
}

/// One window's aggregates as the difference of its one record:
/// `(purchases, customers, SUM(total_amount), (item_count terms, SUM(item_count)))`.
type WindowTotals = (isize, isize, FloatSum, (isize, isize));

fn totals(purchases: isize, customers: isize, revenue: FloatSum, items: (isize, isize)) -> WindowTotals {
    (purchases, customers, revenue, items)
}

/// ```sql
/// CREATE MATERIALIZED VIEW revenue_tracker AS
/// SELECT window_start, window_end,
///        COUNT(DISTINCT event_id) AS purchase_count,
///        COUNT(DISTINCT user_id)  AS unique_customers,
///        SUM(CAST(event_data->>'total_amount' AS DOUBLE PRECISION)) AS total_revenue,
///        SUM(CAST(event_data->>'item_count' AS INT)) AS items_sold
/// FROM HOP(user_events_watermarked, event_time_watermark, INTERVAL '5 minutes', INTERVAL '1 hour')
/// WHERE event_type = 'purchase'
/// GROUP BY window_start, window_end;
/// ```
/// Each purchase contributes to its 12 windows: distinct `(window, event_id)` and
/// `(window, user_id)` pairs are counted, and the sums ride along as differences
/// (the revenue exactly, see `FloatSum`), so an event costs 12 constant-size updates.
/// Events with a NULL `event_time` are in no window. JSON fields that are missing,
/// `null` or unreadable as the SQL cast's type count as NULL (see `json_fields`).
pub(super) fn revenue_tracker<'s>(events: Coll<'s, UserEvent>) -> View<'s> {
    let purchases = events
        .filter(|e| e.is("purchase"))
        .flat_map(|e| e.event_time.map(|t| (t - WATERMARK_DELAY, PurchaseFacts::of(e))))
        .flat_map(|(watermark, p)| hop_window_starts(watermark).map(move |window| (window, p.clone())));
    let ids = purchases
        .clone()
        .map(|(window, p)| (window, p.event_id))
        .distinct_total()
        .explode(|(window, _)| Some((window, totals(1, 0, FloatSum::default(), (0, 0)))));
    let customers = purchases
        .clone()
        .flat_map(|(window, p)| p.user_id.map(|user| (window, user)))
        .distinct_total()
        .explode(|(window, _)| Some((window, totals(0, 1, FloatSum::default(), (0, 0)))));
    let sums = purchases.explode(|(window, p)| {
        let revenue = p.total_amount.map_or_else(FloatSum::default, |amount| FloatSum::of(amount.get()));
        let items = p.item_count.map_or((0, 0), |n| (1, n as isize));
        Some((window, totals(0, 0, revenue, items)))
    });
    View::new(
        ids.concat(customers).concat(sums).count_total(),
        |(window_start, (purchases, customers, revenue, (item_terms, items))): (Micros, WindowTotals)| RevenueTracker {
            window_start,
            window_end: window_start + HOP_SIZE,
            purchase_count: purchases as i64,
            unique_customers: customers as i64,
            total_revenue: revenue.total().map(F64::new),
            items_sold: (item_terms > 0).then_some(items as i64),
        },
    )
}

// ------------------------------------------------------------------------------------------
// anomaly_detection
// ------------------------------------------------------------------------------------------

/// `date_trunc('hour', event_time)`, ordered as PostgreSQL's `ORDER BY hour` orders it:
/// a NULL hour after every other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Hour {
    At(Micros),
    Null,
}

const MICROS_PER_HOUR: Micros = 60 * MICROS_PER_MINUTE;

impl Hour {
    pub fn of(event_time: Option<Micros>) -> Hour {
        event_time.map_or(Hour::Null, |t| Hour::At(t.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR))
    }
}

/// How many preceding hourly rows the statistics cover.
pub const LOOKBACK_ROWS: usize = 24;

/// ```sql
/// CREATE MATERIALIZED VIEW anomaly_detection AS
/// WITH hourly_metrics AS (
///   SELECT date_trunc('hour', event_time) AS hour, COUNT(*) AS event_count
///   FROM user_events_watermarked
///   WHERE event_type = 'purchase'
///   GROUP BY date_trunc('hour', event_time)),
/// hourly_stats AS (
///   SELECT hour, event_count,
///     AVG(event_count) OVER w AS avg_count,
///     MAX(event_count) OVER w AS max_count,
///     MIN(event_count) OVER w AS min_count,
///     STDDEV_SAMP(CAST(event_count AS DOUBLE PRECISION)) OVER w AS stddev_count
///   FROM hourly_metrics
///   WINDOW w AS (ORDER BY hour ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING))
/// SELECT hour, event_count, avg_count, max_count, min_count,
///   CAST(event_count - avg_count AS DOUBLE PRECISION)
///     / NULLIF(GREATEST(1, (max_count - min_count) / 2), 0) AS deviation_score,
///   CASE WHEN avg_count IS NULL THEN FALSE
///        WHEN event_count > avg_count * 3 THEN TRUE
///        WHEN event_count * 3 < avg_count THEN TRUE
///        ELSE FALSE END AS is_anomaly,
///   CAST(event_count - avg_count AS DOUBLE PRECISION) / NULLIF(stddev_count, 0) AS z_score
/// FROM hourly_stats;
/// ```
/// The hourly counts live in a keyed operator's ordered map (`preceding_rows`): a
/// purchase changes its hour's count, and only that row and the 24 after it are
/// recomputed. `avg_count` is PostgreSQL's numeric average digit for digit, so the
/// 3× tests agree with it exactly; `deviation_score` and `z_score` are doubles.
pub(super) fn anomaly_detection<'s>(events: Coll<'s, UserEvent>) -> View<'s> {
    let hours = events.filter(|e| e.is("purchase")).map(|e| Hour::of(e.event_time));
    View::of_records(rows_with_preceding(hours, LOOKBACK_ROWS, AnomalyDetection::of))
}

impl AnomalyDetection {
    fn of(hour: &Hour, event_count: i64, previous: &[i64]) -> AnomalyDetection {
        let hour = match hour {
            Hour::At(t) => Some(*t),
            Hour::Null => None,
        };
        let Some(stats) = HourlyStats::of(previous) else {
            // The first hour: no preceding rows, every statistic NULL.
            return AnomalyDetection {
                hour,
                event_count,
                avg_count: None,
                max_count: None,
                min_count: None,
                deviation_score: None,
                is_anomaly: false,
                z_score: None,
            };
        };
        let count = Decimal::from(event_count);
        let difference = (count - stats.average).to_f64().unwrap_or(f64::NAN);
        let spread = ((stats.max - stats.min) / 2).max(1);
        let is_anomaly = count > stats.average * Decimal::from(3) || count * Decimal::from(3) < stats.average;
        AnomalyDetection {
            hour,
            event_count,
            avg_count: Some(stats.average),
            max_count: Some(stats.max),
            min_count: Some(stats.min),
            deviation_score: Some(F64::new(difference / spread as f64)),
            is_anomaly,
            z_score: stats.standard_deviation.filter(|s| *s != 0.0).map(|s| F64::new(difference / s)),
        }
    }
}

/// Statistics of the preceding rows' counts.
struct HourlyStats {
    /// `AVG(bigint)`: PostgreSQL's numeric quotient.
    average: Decimal,
    max: i64,
    min: i64,
    /// `STDDEV_SAMP`, `None` for a single row.
    standard_deviation: Option<f64>,
}

impl HourlyStats {
    fn of(counts: &[i64]) -> Option<HourlyStats> {
        let n = counts.len() as i128;
        let sum: i128 = counts.iter().map(|c| *c as i128).sum();
        let average = divide_integers(sum, n)?;
        let sum_of_squares: i128 = counts.iter().map(|c| (*c as i128) * (*c as i128)).sum();
        // The sample variance, exactly: (n·Σx² − (Σx)²) / (n·(n − 1)); rounded once, at the square root.
        let standard_deviation =
            (n > 1).then(|| (((n * sum_of_squares - sum * sum) as f64) / ((n * (n - 1)) as f64)).sqrt());
        Some(HourlyStats { average, max: *counts.iter().max()?, min: *counts.iter().min()?, standard_deviation })
    }
}
