//! The retail demo's PostgreSQL side, as the original `pg_seed.py` made it:
//! `public.product_inventory` (seeded with the 20 products) and `public.orders`,
//! REPLICA IDENTITY FULL for CDC. `diffmart produce --cdc-url` creates them and
//! inserts the generated orders there, for diffmart's CDC to mirror.

use anyhow::Context;
use diffmart_dataflows::datum::{Record, RelationSpec, Row};
use diffmart_dataflows::retail::Order;
use futures::future::BoxFuture;

use super::generator::RetailGenerator;
use crate::pipelines::PostgresTables;

/// `product_inventory` and `orders`.
pub struct DemoTables;

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS public.product_inventory (
  product_id        SERIAL PRIMARY KEY,
  product_name      VARCHAR(200) NOT NULL,
  stock_level       INT NOT NULL CHECK (stock_level >= 0),
  reorder_threshold INT NOT NULL CHECK (reorder_threshold >= 0),
  supplier          VARCHAR(200) NOT NULL,
  base_price        NUMERIC(10,2) NOT NULL CHECK (base_price > 0)
);
ALTER TABLE public.product_inventory REPLICA IDENTITY FULL;
CREATE TABLE IF NOT EXISTS public.orders (
  order_id      SERIAL PRIMARY KEY,
  order_time    timestamptz      NOT NULL,
  product_id    int              NOT NULL,
  quantity      int              NOT NULL,
  customer_id   varchar(64)      NOT NULL
);
ALTER TABLE public.orders REPLICA IDENTITY FULL;
";

impl PostgresTables for DemoTables {
    fn relation(&self) -> &'static RelationSpec {
        Order::spec()
    }

    fn prepare<'a>(&'a self, client: &'a tokio_postgres::Client) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(prepare(client))
    }

    fn insert<'a>(&'a self, client: &'a tokio_postgres::Client, rows: &'a [Row]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let orders = rows.iter().map(|row| Order::from_row(row)).collect::<Result<Vec<Order>, _>>()?;
            insert_orders(client, &orders).await
        })
    }
}

/// Creates and seeds the tables.
async fn prepare(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    client.batch_execute(CREATE_TABLES).await.context("creating product_inventory and orders")?;
    let insert = client
        .prepare(
            "INSERT INTO public.product_inventory
               (product_id, product_name, stock_level, reorder_threshold, supplier, base_price)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_id) DO NOTHING",
        )
        .await?;
    for p in RetailGenerator::catalog() {
        client
            .execute(
                &insert,
                &[&p.product_id, &p.product_name, &p.stock_level, &p.reorder_threshold, &p.supplier, &p.base_price],
            )
            .await
            .context("seeding product_inventory")?;
    }
    // Keep the serial past the seeded ids, as inserting explicit ids does not advance it.
    client
        .batch_execute(
            "SELECT setval(pg_get_serial_sequence('public.product_inventory', 'product_id'),
                           (SELECT max(product_id) FROM public.product_inventory))",
        )
        .await?;
    Ok(())
}

/// Inserts orders (the database numbers them, as in the original producer).
async fn insert_orders(client: &tokio_postgres::Client, orders: &[Order]) -> anyhow::Result<()> {
    if orders.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("INSERT INTO public.orders (order_time, product_id, quantity, customer_id) VALUES ");
    let mut times = Vec::with_capacity(orders.len());
    for order in orders {
        let micros = order.order_time.context("an order without a time")?;
        let t = chrono::DateTime::from_timestamp_micros(micros).context("order time out of range")?;
        times.push(t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string());
    }
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    for (i, (order, time)) in orders.iter().zip(&times).enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let n = params.len();
        sql.push_str(&format!("(${}::text::timestamptz, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
        params.extend([
            time as &(dyn tokio_postgres::types::ToSql + Sync),
            &order.product_id,
            &order.quantity,
            &order.customer_id,
        ]);
    }
    client.execute(sql.as_str(), &params).await.context("inserting orders")?;
    Ok(())
}
