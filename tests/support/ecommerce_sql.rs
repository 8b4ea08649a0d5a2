//! The e-commerce pipeline (`shared/spec/PIPELINES.md` §B) as plain PostgreSQL: its
//! tables as the seed creates them and its seven views as ordinary VIEWs, the SQL
//! under which each view's Rust sits in `dataflows/src/ecommerce/`.
//!
//! One rewrite from RisingWave's dialect: `HOP(t, col, slide, size)` becomes a
//! lateral join with the 12 window starts of each row, `date_bin` (the floor to
//! 5 minutes) and the 11 starts before it; a NULL `event_time_watermark` is in no
//! window, as in RisingWave.

#![allow(dead_code)]

pub const TABLES: &str = r#"
CREATE TABLE products (
  product_id varchar PRIMARY KEY,
  name varchar,
  category varchar,
  price double precision,
  inventory_count int,
  created_at timestamp,
  is_active boolean
);
CREATE TABLE users (
  user_id varchar PRIMARY KEY,
  email varchar,
  country varchar,
  city varchar,
  device_type varchar,
  created_at timestamp,
  last_login timestamp
);
CREATE TABLE user_events (
  event_id varchar PRIMARY KEY,
  user_id varchar,
  session_id varchar,
  event_type varchar,
  product_id varchar,
  page_url varchar,
  referrer_url varchar,
  device_type varchar,
  event_time timestamp,
  event_data jsonb
);
"#;

pub const VIEWS: &str = r#"
CREATE VIEW user_events_watermarked AS
SELECT event_id, user_id, session_id, event_type, product_id, page_url, referrer_url,
       device_type, event_time, event_data,
       event_time - INTERVAL '2 minutes' AS event_time_watermark
FROM user_events;

CREATE VIEW pageview_metrics AS
SELECT page_url, device_type, referrer_url,
       COUNT(*)                   AS view_count,
       COUNT(DISTINCT user_id)    AS unique_visitors,
       COUNT(DISTINCT session_id) AS session_count,
       MIN(event_time)            AS first_view,
       MAX(event_time)            AS last_view
FROM user_events_watermarked
WHERE event_type = 'pageview'
GROUP BY page_url, device_type, referrer_url;

CREATE VIEW product_view_metrics AS
SELECT p.product_id, p.name, p.category, p.price,
       COUNT(*)                     AS view_count,
       COUNT(DISTINCT u.user_id)    AS unique_viewers,
       COUNT(DISTINCT u.session_id) AS session_count
FROM user_events_watermarked u
JOIN products p ON u.product_id = p.product_id
WHERE u.event_type = 'product_view'
GROUP BY p.product_id, p.name, p.category, p.price;

CREATE VIEW funnel_analysis AS
WITH funnel_stages AS (
  SELECT session_id,
         bool_or(event_type = 'pageview')     AS reached_pageview,
         bool_or(event_type = 'product_view') AS reached_product_view,
         bool_or(event_type = 'add_to_cart')  AS reached_add_to_cart,
         bool_or(event_type = 'checkout')     AS reached_checkout,
         bool_or(event_type = 'purchase')     AS reached_purchase
  FROM user_events_watermarked
  GROUP BY session_id)
SELECT COUNT(*) AS total_sessions,
  SUM(CASE WHEN reached_pageview     THEN 1 ELSE 0 END) AS pageview_count,
  SUM(CASE WHEN reached_product_view THEN 1 ELSE 0 END) AS product_view_count,
  SUM(CASE WHEN reached_add_to_cart  THEN 1 ELSE 0 END) AS add_to_cart_count,
  SUM(CASE WHEN reached_checkout     THEN 1 ELSE 0 END) AS checkout_count,
  SUM(CASE WHEN reached_purchase     THEN 1 ELSE 0 END) AS purchase_count,
  CAST(SUM(CASE WHEN reached_product_view THEN 1 ELSE 0 END) AS FLOAT)
    / NULLIF(SUM(CASE WHEN reached_pageview     THEN 1 ELSE 0 END), 0) AS pageview_to_product_view_rate,
  CAST(SUM(CASE WHEN reached_add_to_cart  THEN 1 ELSE 0 END) AS FLOAT)
    / NULLIF(SUM(CASE WHEN reached_product_view THEN 1 ELSE 0 END), 0) AS product_view_to_cart_rate,
  CAST(SUM(CASE WHEN reached_checkout     THEN 1 ELSE 0 END) AS FLOAT)
    / NULLIF(SUM(CASE WHEN reached_add_to_cart  THEN 1 ELSE 0 END), 0) AS cart_to_checkout_rate,
  CAST(SUM(CASE WHEN reached_purchase     THEN 1 ELSE 0 END) AS FLOAT)
    / NULLIF(SUM(CASE WHEN reached_checkout     THEN 1 ELSE 0 END), 0) AS checkout_to_purchase_rate,
  CAST(SUM(CASE WHEN reached_purchase     THEN 1 ELSE 0 END) AS FLOAT)
    / NULLIF(SUM(CASE WHEN reached_pageview     THEN 1 ELSE 0 END), 0) AS overall_conversion_rate
FROM funnel_stages;

CREATE VIEW revenue_tracker AS
SELECT w.window_start,
       w.window_start + INTERVAL '1 hour' AS window_end,
       COUNT(DISTINCT u.event_id) AS purchase_count,
       COUNT(DISTINCT u.user_id)  AS unique_customers,
       SUM(CAST(u.event_data->>'total_amount' AS DOUBLE PRECISION)) AS total_revenue,
       SUM(CAST(u.event_data->>'item_count' AS INT)) AS items_sold
FROM user_events_watermarked u
CROSS JOIN LATERAL (
  SELECT date_bin(INTERVAL '5 minutes', u.event_time_watermark, TIMESTAMP '1970-01-01')
         - k * INTERVAL '5 minutes' AS window_start
  FROM generate_series(0, 11) AS k
) w
WHERE u.event_type = 'purchase' AND u.event_time_watermark IS NOT NULL
GROUP BY w.window_start;

CREATE VIEW product_performance AS
SELECT p.product_id, p.name, p.category, p.price,
  COUNT(CASE WHEN u.event_type = 'product_view' THEN 1 END) AS view_count,
  COUNT(CASE WHEN u.event_type = 'add_to_cart'  THEN 1 END) AS cart_adds,
  COUNT(CASE WHEN u.event_type = 'purchase'     THEN 1 END) AS purchases,
  CASE WHEN COUNT(CASE WHEN u.event_type = 'product_view' THEN 1 END) = 0 THEN 0
       ELSE CAST(COUNT(CASE WHEN u.event_type = 'add_to_cart' THEN 1 END) AS FLOAT)
            / COUNT(CASE WHEN u.event_type = 'product_view' THEN 1 END)
  END AS view_to_cart_ratio,
  CASE WHEN COUNT(CASE WHEN u.event_type = 'add_to_cart' THEN 1 END) = 0 THEN 0
       ELSE CAST(COUNT(CASE WHEN u.event_type = 'purchase' THEN 1 END) AS FLOAT)
            / COUNT(CASE WHEN u.event_type = 'add_to_cart' THEN 1 END)
  END AS cart_to_purchase_ratio,
  COUNT(CASE WHEN u.event_type = 'purchase' THEN 1 END) * p.price AS estimated_revenue
FROM products p
LEFT JOIN user_events_watermarked u ON p.product_id = u.product_id
GROUP BY p.product_id, p.name, p.category, p.price;

CREATE VIEW anomaly_detection AS
WITH hourly_metrics AS (
  SELECT date_trunc('hour', event_time) AS hour, COUNT(*) AS event_count
  FROM user_events_watermarked
  WHERE event_type = 'purchase'
  GROUP BY date_trunc('hour', event_time)),
hourly_stats AS (
  SELECT hour, event_count,
    AVG(event_count) OVER w AS avg_count,
    MAX(event_count) OVER w AS max_count,
    MIN(event_count) OVER w AS min_count,
    STDDEV_SAMP(CAST(event_count AS DOUBLE PRECISION)) OVER w AS stddev_count
  FROM hourly_metrics
  WINDOW w AS (ORDER BY hour ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING))
SELECT hour, event_count, avg_count, max_count, min_count,
  CAST(event_count - avg_count AS DOUBLE PRECISION)
    / NULLIF(GREATEST(1, (max_count - min_count) / 2), 0) AS deviation_score,
  CASE WHEN avg_count IS NULL THEN FALSE
       WHEN event_count > avg_count * 3 THEN TRUE
       WHEN event_count * 3 < avg_count THEN TRUE
       ELSE FALSE END AS is_anomaly,
  CAST(event_count - avg_count AS DOUBLE PRECISION) / NULLIF(stddev_count, 0) AS z_score
FROM hourly_stats;
"#;

/// The input tables, in the order `diffmart_dataflows::ecommerce::input_specs` lists them.
pub const INPUT_TABLES: [&str; 3] = ["products", "users", "user_events"];

/// The views, in the order `diffmart_dataflows::ecommerce::view_specs` lists them.
pub const VIEW_NAMES: [&str; 7] = [
    "user_events_watermarked",
    "pageview_metrics",
    "product_view_metrics",
    "funnel_analysis",
    "revenue_tracker",
    "product_performance",
    "anomaly_detection",
];

/// Leading columns that identify a row of each view, for side-by-side diffs.
pub fn key_columns(view: &str) -> usize {
    match view {
        "pageview_metrics" => 3,
        "funnel_analysis" => 0,
        _ => 1,
    }
}
