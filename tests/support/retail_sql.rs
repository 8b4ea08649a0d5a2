//! The retail pipeline (`shared/spec/PIPELINES.md` §A) as plain PostgreSQL: its
//! inputs as tables and its views as ordinary VIEWs, the SQL under which each
//! view's Rust sits in `dataflows/src/retail/`.

#![allow(dead_code)]

/// The seed's inputs as PostgreSQL tables and its six materialized views as plain views.
///
/// Rewritten from RisingWave's dialect, everything else verbatim:
/// - `TUMBLE(t, col, INTERVAL '1 MINUTE')` + `window_start` → `date_trunc('minute', col)`
///   (session time zone UTC, so that is the floor to the minute);
/// - `competitor_latest` breaks ties on `ts` by the higher price, as diffmart does
///   (`ORDER BY ts DESC, competitor_price DESC`);
/// - `ASOF LEFT JOIN dp ON o.product_id = dp.product_id AND o.order_time >= dp.inventory_window`
///   → `LEFT JOIN LATERAL (... ORDER BY inventory_window DESC LIMIT 1) ON true`.
pub const SCHEMA: &str = r#"
CREATE TABLE web_clicks (
  event_time timestamptz NOT NULL,
  product_id int NOT NULL,
  event_type varchar NOT NULL
);
CREATE TABLE competitor_prices (
  ts timestamptz NOT NULL,
  product_id int NOT NULL,
  competitor varchar NOT NULL,
  competitor_price numeric NOT NULL
);
CREATE TABLE purchases (
  purchase_time timestamptz NOT NULL,
  product_id int NOT NULL,
  quantity_purchased int NOT NULL,
  customer_id varchar NOT NULL
);
CREATE TABLE restocks (
  restock_time timestamptz NOT NULL,
  product_id int NOT NULL,
  quantity_restocked int NOT NULL
);
CREATE TABLE product_inventory (
  product_id int PRIMARY KEY,
  product_name varchar,
  stock_level int,
  reorder_threshold int,
  supplier varchar,
  base_price NUMERIC(10,2)
);
CREATE TABLE orders (
  order_id int PRIMARY KEY,
  order_time timestamptz,
  product_id int,
  quantity int,
  customer_id varchar
);

CREATE VIEW minute_join AS
SELECT
  COALESCE(p.product_id, r.product_id)      AS product_id,
  COALESCE(p.window_start, r.window_start)  AS window_start,
  COALESCE(p.total_purchased, 0)            AS total_purchased,
  COALESCE(r.total_restocked, 0)            AS total_restocked
FROM (
  SELECT product_id, date_trunc('minute', purchase_time) AS window_start, SUM(quantity_purchased) AS total_purchased
  FROM purchases
  GROUP BY product_id, window_start
) p
FULL JOIN (
  SELECT product_id, date_trunc('minute', restock_time) AS window_start, SUM(quantity_restocked) AS total_restocked
  FROM restocks
  GROUP BY product_id, window_start
) r
ON p.product_id = r.product_id AND p.window_start = r.window_start;

CREATE VIEW product_stock_status AS
WITH inventory_updates AS (
  SELECT
    b.product_id,
    b.product_name,
    b.base_price,
    b.reorder_threshold,
    mj.window_start,
    -- cumulative restocks − purchases + base stock
    SUM(COALESCE(mj.total_restocked, 0))
      OVER (PARTITION BY b.product_id ORDER BY mj.window_start)
  - SUM(COALESCE(mj.total_purchased, 0))
      OVER (PARTITION BY b.product_id ORDER BY mj.window_start)
  + b.stock_level AS current_inventory
  FROM product_inventory b
  LEFT JOIN minute_join mj
    ON b.product_id = mj.product_id
)
SELECT
  product_id,
  product_name,
  window_start AS inventory_window,
  current_inventory,
  base_price,
  reorder_threshold,
  CASE
    WHEN current_inventory < 20 THEN 'Low'
    WHEN current_inventory BETWEEN 20 AND 50 THEN 'Medium'
    ELSE 'High'
  END AS stock_level_category
FROM inventory_updates;

CREATE VIEW web_clicks_minutely AS
SELECT
  product_id,
  date_trunc('minute', event_time) AS window_start,
  COUNT(*) AS clicks
FROM web_clicks
GROUP BY product_id, window_start;

CREATE VIEW competitor_latest AS
SELECT product_id, competitor, competitor_price, ts
FROM (
  SELECT
    product_id,
    competitor,
    competitor_price,
    ts,
    ROW_NUMBER() OVER (
      PARTITION BY product_id, competitor
      ORDER BY ts DESC, competitor_price DESC
    ) AS rn
  FROM competitor_prices
) t
WHERE rn = 1;

-- The spec's comp_min CTE, which diffmart also serves as a view.
CREATE VIEW competitor_minimum AS
SELECT product_id, MIN(competitor_price) AS min_competitor_price
FROM competitor_latest
GROUP BY product_id;

CREATE VIEW dynamic_pricing_enriched AS
WITH demand AS (
  SELECT
    product_id,
    window_start,
    SUM(clicks) OVER (
      PARTITION BY product_id
      ORDER BY window_start
      RANGE BETWEEN INTERVAL '15 MINUTE' PRECEDING AND CURRENT ROW
    ) AS clicks_15m
  FROM web_clicks_minutely
),
comp_min AS (
  SELECT product_id, MIN(competitor_price) AS min_competitor_price
  FROM competitor_latest
  GROUP BY product_id
)
SELECT
  s.product_id,
  s.product_name,
  s.inventory_window,
  s.current_inventory,
  s.stock_level_category,
  s.base_price,
  d.clicks_15m,
  c.min_competitor_price,
  -- Base stock rule
  CASE
    WHEN s.stock_level_category = 'Low'    THEN ROUND(s.base_price * 1.20, 2)
    WHEN s.stock_level_category = 'Medium' THEN s.base_price
    WHEN s.stock_level_category = 'High'   THEN ROUND(s.base_price * 0.90, 2)
  END AS stock_rule_price,
  -- Final price: tweak by demand & competitor undercut, clamp at 0.5x base
  GREATEST(
    ROUND(
      CASE
        WHEN c.min_competitor_price IS NOT NULL
             AND s.base_price <= c.min_competitor_price
             AND COALESCE(d.clicks_15m, 0) > 30
          THEN
            (CASE
               WHEN s.stock_level_category = 'Low'    THEN s.base_price * 1.20
               WHEN s.stock_level_category = 'Medium' THEN s.base_price
               ELSE                                     s.base_price * 0.90
             END) * 1.02
        WHEN c.min_competitor_price IS NOT NULL
             AND
             (CASE
               WHEN s.stock_level_category = 'Low'    THEN s.base_price * 1.20
               WHEN s.stock_level_category = 'Medium' THEN s.base_price
               ELSE                                     s.base_price * 0.90
             END) > c.min_competitor_price
          THEN
            (CASE
               WHEN s.stock_level_category = 'Low'    THEN s.base_price * 1.20
               WHEN s.stock_level_category = 'Medium' THEN s.base_price
               ELSE                                     s.base_price * 0.90
             END) * 0.99
        ELSE
          (CASE
             WHEN s.stock_level_category = 'Low'    THEN s.base_price * 1.20
             WHEN s.stock_level_category = 'Medium' THEN s.base_price
             ELSE                                     s.base_price * 0.90
           END)
      END, 2),
    ROUND(0.5 * s.base_price, 2)
  ) AS final_price
FROM product_stock_status s
LEFT JOIN demand   d ON d.product_id  = s.product_id AND d.window_start = s.inventory_window
LEFT JOIN comp_min c ON c.product_id  = s.product_id;

CREATE VIEW sales_profit AS
SELECT
  o.product_id,
  MAX(pi.product_name) AS product_name,
  SUM(o.quantity)      AS total_orders,
  CAST(SUM(dp.final_price * o.quantity) AS DECIMAL) AS revenue_estimate
FROM orders o
LEFT JOIN LATERAL (
  SELECT final_price
  FROM dynamic_pricing_enriched dp
  WHERE dp.product_id = o.product_id
    AND dp.inventory_window <= o.order_time
  ORDER BY dp.inventory_window DESC
  LIMIT 1
) dp ON true
LEFT JOIN product_inventory pi
  ON pi.product_id = o.product_id
GROUP BY o.product_id;
"#;

pub const INPUT_TABLES: [&str; 6] =
    ["web_clicks", "competitor_prices", "purchases", "restocks", "product_inventory", "orders"];
pub const VIEWS: [&str; 7] = [
    "minute_join",
    "product_stock_status",
    "web_clicks_minutely",
    "competitor_latest",
    "competitor_minimum",
    "dynamic_pricing_enriched",
    "sales_profit",
];

/// Leading columns that identify a row of each view, for side-by-side diffs.
pub fn key_columns(view: &str) -> usize {
    match view {
        "product_stock_status" | "dynamic_pricing_enriched" => 3,
        "sales_profit" | "competitor_minimum" => 1,
        _ => 2,
    }
}
