//! `diffmart produce`: the demos' data producers, as one command.
//!
//! Writes the embedded generator's events to the Kafka topics diffmart reads
//! (every declared source, see `sources::kafka::declared_sources`). The retail
//! topics get the JSON the original Python producers wrote (same field order,
//! `", "` and `": "` separators, timestamps as `"YYYY-MM-DD HH:MM:SSZ"`), keyed by
//! product id; `gaming-transactions` the casino generator's JSON, keyed by member;
//! `user_events` the table's columns, keyed by `event_id`; `product-events` the
//! pricing demo's `{"event_type", "product_id", "user_id", "timestamp": epoch ms,
//! "price"}`, keyed by product. With
//! `--cdc-url` it also does what the original `pg_seed.py` did: creates
//! `public.product_inventory` (seeded with the 20 products) and `public.orders`
//! in PostgreSQL, and inserts the orders there, for diffmart's CDC to mirror.
//!
//! The inventory demo's topics get the original's JSON: the generated 200-product
//! catalog to `product-updates` first (one product per message, keyed by productId),
//! then restocks and price changes there and order lines to `order-events`. A product message's Kafka timestamp is its
//! update time, which diffmart reads back as `update_time`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use diffmart_dataflows::casino::GamingTransaction;
use diffmart_dataflows::datum::{Micros, Record};
use diffmart_dataflows::ecommerce::UserEvent;
use diffmart_dataflows::pricing::ProductEvent;
use diffmart_dataflows::retail::{CompetitorPrice, Order, Purchase, Restock, WebClick};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cli::parse_key_value;
use crate::sinks::row_to_object;
use crate::sources::every_pipeline;
use crate::sources::generator::GeneratedEvent;
use crate::sources::inventory_json::{order_json, product_json};
use crate::sources::kafka::declared_sources;
use crate::sources::now_micros;
use crate::sources::timestamps::parse_timestamp;
use diffmart_dataflows::inventory::{OrderEvent, ProductUpdate};

/// Options of `diffmart produce`.
#[derive(Debug, Args)]
pub struct ProduceOptions {
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT[,…]")]
    pub kafka_brokers: String,

    /// Prefix of every topic name.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,

    /// Events per second [default: the demos' natural pace, with event time
    /// following the wall clock].
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// Stop after N events (orders included); 0 only creates the topics and tables.
    #[arg(long, value_name = "N")]
    pub events: Option<u64>,

    /// Seed of the generator: same seed, start and count, same events.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,

    /// Event time of the first events [default: now].
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp)]
    pub start: Option<Micros>,

    /// PostgreSQL to create and seed product_inventory and orders in, and to write
    /// orders to (without it, orders are not written anywhere).
    #[arg(long, value_name = "URL")]
    pub cdc_url: Option<String>,

    /// Partitions of topics this command creates (existing topics are left alone).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Extra librdkafka producer property (repeatable), e.g. security.protocol=SSL.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_properties: Vec<(String, String)>,

    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// A generated event as the original producers wrote it: its topic, key and JSON.
/// `None` for rows no topic carries: orders (which go to PostgreSQL) and the
/// rows of tables written over SQL.
pub fn encode_event(event: &GeneratedEvent) -> anyhow::Result<Option<(&'static str, String, String)>> {
    let time = |micros: Micros| -> anyhow::Result<String> {
        let t = chrono::DateTime::from_timestamp_micros(micros).context("event time out of range")?;
        Ok(t.format("%Y-%m-%d %H:%M:%SZ").to_string())
    };
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let encoded = match event.relation {
        "web_clicks" => {
            let click = WebClick::from_row(&event.row)?;
            let json = format!(
                r#"{{"event_time": "{}", "product_id": {}, "event_type": {}}}"#,
                time(click.event_time)?,
                click.product_id,
                text(&click.event_type)
            );
            ("web_clicks", click.product_id.to_string(), json)
        }
        "purchases" => {
            let purchase = Purchase::from_row(&event.row)?;
            let json = format!(
                r#"{{"purchase_time": "{}", "product_id": {}, "quantity_purchased": {}, "customer_id": {}}}"#,
                time(purchase.purchase_time)?,
                purchase.product_id,
                purchase.quantity_purchased,
                text(&purchase.customer_id)
            );
            ("purchases", purchase.product_id.to_string(), json)
        }
        "restocks" => {
            let restock = Restock::from_row(&event.row)?;
            let json = format!(
                r#"{{"restock_time": "{}", "product_id": {}, "quantity_restocked": {}}}"#,
                time(restock.restock_time)?,
                restock.product_id,
                restock.quantity_restocked
            );
            ("restocks", restock.product_id.to_string(), json)
        }
        "competitor_prices" => {
            let quote = CompetitorPrice::from_row(&event.row)?;
            let json = format!(
                r#"{{"ts": "{}", "product_id": {}, "competitor": {}, "competitor_price": {}}}"#,
                time(quote.ts)?,
                quote.product_id,
                text(&quote.competitor),
                python_float(quote.competitor_price)
            );
            ("competitor_prices", quote.product_id.to_string(), json)
        }
        "product_events" => {
            let event = ProductEvent::from_row(&event.row)?;
            let json = serde_json::json!({
                "event_type": event.event_type,
                "product_id": event.product_id,
                "user_id": event.user_id,
                "timestamp": event.timestamp.div_euclid(1000),
                "price": event.price.get(),
            });
            ("product-events", event.product_id, json.to_string())
        }
        "gaming_transactions" => {
            let bet = GamingTransaction::from_row(&event.row)?;
            let t = chrono::DateTime::from_timestamp_micros(bet.transaction_time).context("event time out of range")?;
            let json = format!(
                r#"{{"transaction_id": {}, "member_id": {}, "member_name": {}, "transaction_type": {}, "amount": {}, "game_type": {}, "transaction_time": "{}"}}"#,
                bet.transaction_id,
                bet.member_id,
                bet.member_name.as_deref().map_or("null".to_string(), text),
                text(&bet.transaction_type),
                python_float(bet.amount),
                text(&bet.game_type),
                t.format("%Y-%m-%d %H:%M:%S")
            );
            return Ok(Some(("gaming-transactions", bet.member_id.to_string(), json)));
        }
        "user_events" => {
            let key = UserEvent::from_row(&event.row)?.event_id;
            let json = serde_json::Value::Object(row_to_object(UserEvent::spec(), &event.row)).to_string();
            return Ok(Some(("user_events", key, json)));
        }
        "product_updates" => {
            let product = ProductUpdate::from_row(&event.row)?;
            let key = product.product_id.clone().unwrap_or_default();
            return Ok(Some(("product-updates", key, product_json(&product).to_string())));
        }
        "order_events" => {
            let order = OrderEvent::from_row(&event.row)?;
            let key = order.product_id.clone().unwrap_or_default();
            return Ok(Some(("order-events", key, order_json(&order).to_string())));
        }
        _ => return Ok(None),
    };
    let (topic, key, json) = encoded;
    Ok(Some((topic, key, json)))
}

/// How Python's `json.dumps` prints a float rounded to cents: `19.9`, `20.0`.
fn python_float(value: Decimal) -> String {
    let text = value.normalize().to_string();
    if text.contains('.') { text } else { format!("{text}.0") }
}

/// The original `pg_seed.py` tables (REPLICA IDENTITY FULL for CDC) and its 20 products.
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

/// Creates and seeds the tables; returns the connected client.
async fn prepare_postgres(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("PostgreSQL connection: {e}");
        }
    });
    client.batch_execute(CREATE_TABLES).await.context("creating product_inventory and orders")?;
    let insert = client
        .prepare(
            "INSERT INTO public.product_inventory
               (product_id, product_name, stock_level, reorder_threshold, supplier, base_price)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_id) DO NOTHING",
        )
        .await?;
    for p in crate::sources::generator::RetailGenerator::catalog() {
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
    Ok(client)
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

/// Creates the topics that are missing, waiting up to a minute for the brokers.
/// Brokers that answer but cannot create topics are left to create them on first write.
async fn create_topics(config: &ClientConfig, names: &[String], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.create().context("creating a Kafka admin client")?;
    let reachable = || admin.inner().fetch_metadata(None, Duration::from_secs(5)).is_ok();
    let topics: Vec<NewTopic> =
        names.iter().map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match admin.create_topics(&topics, &options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(name) => eprintln!("created topic {name} ({partitions} partitions)"),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        // The broker may still create it on first write.
                        Err((name, code)) => tracing::warn!("cannot create topic {name}: {code}"),
                    }
                }
                return Ok(());
            }
            Err(e) if reachable() => {
                tracing::warn!("cannot create topics ({e}); writing to them as they are");
                return Ok(());
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!("waiting for Kafka: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => bail!("cannot reach Kafka to create topics: {e}"),
        }
    }
}

#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct ProduceContext {
    deliveries: Arc<Deliveries>,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.deliveries.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if self.deliveries.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!("a message was not delivered: {e}");
                }
                0
            }
        };
    }
}

/// Counts per topic (and orders), for the progress line.
struct Progress {
    counts: BTreeMap<&'static str, u64>,
    started: Instant,
    last_shown: Instant,
    terminal: bool,
}

impl Progress {
    fn line(&self, total: u64, event_time: Micros, orders: &str) -> String {
        let per_topic: Vec<String> =
            self.counts.iter().filter(|(t, _)| **t != "orders").map(|(t, n)| format!("{t} {n}")).collect();
        let rate = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let time = chrono::DateTime::from_timestamp_micros(event_time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        format!(
            "produced {total} events ({}, orders {} {orders}), {rate:.1}/s, event time {time}",
            per_topic.join(", "),
            self.counts.get("orders").copied().unwrap_or(0)
        )
    }

    fn show(&mut self, total: u64, event_time: Micros, orders: &str, last: bool) {
        let every = if self.terminal { Duration::from_secs(1) } else { Duration::from_secs(10) };
        if !last && self.last_shown.elapsed() < every {
            return;
        }
        self.last_shown = Instant::now();
        let line = self.line(total, event_time, orders);
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
            if last {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Runs `diffmart produce`.
pub fn run(options: ProduceOptions) -> anyhow::Result<()> {
    if let Some(rate) = options.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number, got {rate}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.kafka_brokers).set("client.id", "diffmart-produce");
    for (key, value) in &options.kafka_properties {
        config.set(key, value);
    }
    let names: Vec<String> =
        declared_sources().iter().map(|source| format!("{}{}", options.kafka_topic_prefix, source.topic)).collect();
    runtime.block_on(create_topics(&config, &names, options.partitions))?;
    let postgres = match &options.cdc_url {
        Some(url) => Some(runtime.block_on(prepare_postgres(url))?),
        None => None,
    };
    let orders_to = if postgres.is_some() { "into PostgreSQL" } else { "skipped: no --cdc-url" };

    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<ProduceContext> = config
        .clone()
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create_with_context(ProduceContext { deliveries: deliveries.clone() })
        .context("creating the Kafka producer")?;

    let start = options.start.unwrap_or_else(now_micros);
    let simulation = every_pipeline(options.seed, start);
    let mut progress = Progress {
        counts: BTreeMap::new(),
        started: Instant::now(),
        last_shown: Instant::now(),
        terminal: std::io::stderr().is_terminal(),
    };
    // The catalogs first, as the demos' bootstrap; only those a topic carries
    // (the inventory demo's products) are sent, the tables are the server's.
    for event in &simulation.bootstrap {
        if let Some((topic, key, json)) = encode_event(event)? {
            let topic_name = format!("{}{topic}", options.kafka_topic_prefix);
            send(&producer, &topic_name, &key, &json, message_time(event))?;
            *progress.counts.entry(topic).or_default() += 1;
        }
    }
    let mut events = simulation.events.peekable();
    let limit = options.events.unwrap_or(u64::MAX);
    let mut produced: u64 = 0;
    let mut event_time = start;
    let wall_start = Instant::now();
    while produced < limit {
        // Which events are due: by rate, or by the simulated clock following the wall clock.
        let elapsed = wall_start.elapsed();
        let due = match options.rate {
            Some(rate) => ((elapsed.as_secs_f64() * rate) as u64).saturating_sub(produced),
            None => u64::MAX,
        };
        let simulated_now = start + elapsed.as_micros() as Micros;
        let mut orders = Vec::new();
        let mut sent_now = 0u64;
        while sent_now < due.min(limit - produced).min(10_000) {
            let next = events.peek().expect("the generator never ends");
            if options.rate.is_none() && next.event_time > simulated_now {
                break;
            }
            let event = events.next().expect("peeked");
            event_time = event.event_time;
            sent_now += 1;
            match encode_event(&event)? {
                Some((topic, key, json)) => {
                    let topic_name = format!("{}{topic}", options.kafka_topic_prefix);
                    send(&producer, &topic_name, &key, &json, message_time(&event))?;
                    *progress.counts.entry(topic).or_default() += 1;
                }
                None if event.relation == Order::spec().name => {
                    *progress.counts.entry("orders").or_default() += 1;
                    if postgres.is_some() {
                        orders.push(Order::from_row(&event.row)?);
                    }
                }
                None => {}
            }
        }
        produced += sent_now;
        if let Some(client) = &postgres {
            runtime.block_on(insert_orders(client, &orders))?;
        }
        producer.poll(Duration::ZERO);
        progress.show(produced, event_time, orders_to, false);
        if sent_now == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    producer.flush(Duration::from_secs(60)).context("waiting for Kafka to take the last messages")?;
    progress.show(produced, event_time, orders_to, true);
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} messages could not be delivered");
    }
    Ok(())
}

/// The Kafka timestamp of an event's message: product updates carry their update
/// time (the inventory pipeline's clock reads it); others get the producer's.
fn message_time(event: &GeneratedEvent) -> Option<Micros> {
    (event.relation == ProductUpdate::spec().name).then_some(event.event_time)
}

/// Queues one message, waiting while the producer's queue is full.
fn send(
    producer: &BaseProducer<ProduceContext>,
    topic: &str,
    key: &str,
    json: &str,
    time: Option<Micros>,
) -> anyhow::Result<()> {
    loop {
        let mut record = BaseRecord::to(topic).key(key).payload(json);
        if let Some(micros) = time {
            record = record.timestamp(micros.div_euclid(1000));
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(100));
            }
            Err((e, _)) => bail!("cannot write to {topic}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_look_like_the_original_producers() {
        let start = 1_735_787_045_250_000; // 2025-01-02 03:04:05.25 UTC
        let mut seen = BTreeMap::new();
        let simulation = every_pipeline(5, start);
        for event in simulation.bootstrap.into_iter().chain(simulation.events.take(20_000)) {
            if let Some((topic, key, json)) = encode_event(&event).unwrap() {
                seen.entry(topic).or_insert((key, json));
            }
        }
        let (key, click) = &seen["web_clicks"];
        assert!(click.starts_with(r#"{"event_time": "2025-01-02 03:04:05Z", "product_id": "#), "{click}");
        assert!(click.contains(&format!(r#""product_id": {key}, "event_type": ""#)), "{click}");
        let (_, quote) = &seen["competitor_prices"];
        let value: serde_json::Value = serde_json::from_str(quote).unwrap();
        assert!(value["competitor_price"].is_f64(), "{quote}");
        let (_, bet) = &seen["gaming-transactions"];
        let value: serde_json::Value = serde_json::from_str(bet).unwrap();
        assert!(value["transaction_time"].as_str().is_some_and(|t| t.len() == 19), "{bet}");
        let (key, user_event) = &seen["user_events"];
        let value: serde_json::Value = serde_json::from_str(user_event).unwrap();
        assert_eq!(value["event_id"].as_str(), Some(key.as_str()));
        let topics: Vec<&str> = declared_sources().iter().map(|s| s.topic).collect();
        for topic in seen.keys() {
            assert!(topics.contains(topic), "{topic} is not a topic diffmart reads");
        }
        assert_eq!(seen.len(), topics.len(), "every topic gets events: {:?}", seen.keys());
        assert_eq!(python_float(Decimal::new(2000, 2)), "20.0");
        assert_eq!(python_float(Decimal::new(1990, 2)), "19.9");
    }
}
