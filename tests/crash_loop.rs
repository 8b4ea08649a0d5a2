//! The crash loop: the real binary on a data directory, fed by every kind of input at
//! once and killed with SIGKILL at random moments, many times. After each restart:
//!
//! - every write a client saw acknowledged is there, and the one in flight at the kill
//!   is whole or absent: SQL statements of one to three rows on `products` and `users`,
//!   HTTP price overrides (`POST`/`DELETE /override`);
//! - every Kafka message produced is applied exactly once: each topic's positions add up
//!   to the messages produced, and so do the messages counted in `diffmart_sources`;
//! - every view equals PostgreSQL's over exactly the inputs sent, row for row.
//!
//! The inputs, chosen so the oracle sees exactly what diffmart was sent:
//!
//! - **Kafka** (librdkafka's mock cluster): the retail generator's clicks, purchases,
//!   competitor prices and restocks, and the e-commerce generator's `user_events`. Each
//!   message goes to the oracle's table of the same name once it is delivered, so the
//!   oracle holds each message once.
//! - **CDC** (a throwaway PostgreSQL): the retail `orders` (the generator's) and
//!   `product_inventory`, changed by transactions (inserts, stock and price updates,
//!   order updates and deletes). The oracle's views read these very tables: the CDC
//!   upstream is the oracle's database.
//! - **SQL**: `products` and `users`, written by two clients; after each restart their
//!   rows are resolved against what was acknowledged and copied into the oracle.
//! - **HTTP**: overrides of pricing products (the catalog written once over SQL).
//!
//! The oracle's views are the spec's SQL (`support/retail_sql.rs`,
//! `support/ecommerce_sql.rs`) plus `retail_watermark`. Compared exactly after every
//! restart: every retail and e-commerce view, their input relations and
//! `retail_watermark` (nothing expires: `--retention 30d` is longer than the history, so
//! no event is late and the views are functions of the inputs alone, whatever the
//! order they arrived in), and `product_prices` (no `product_events`, so each
//! product's price is its override or its base price). Not compared: `price_history`,
//! `price_updates` and `price_override_removals`, whose times are the server's wall
//! clock at each override write; the overrides' `set_time`, likewise.
//!
//! Checkpoints: the server runs with `--checkpoint-every-mib 0`, so it takes one as
//! soon as the log since the last has grown by the last one's size (the floor the
//! option keeps whatever its value) and once right after each start: several are
//! written during the loop. Three early rounds wait for a checkpoint file to be
//! written (`ckpt-*.tmp` appears) and kill the server then; the other rounds kill at
//! a random moment. The test counts the kills that left a checkpoint half written
//! and needs at least one; at the end, once the last server has written a checkpoint,
//! the data directory holds that one alone (no older one, no half-written file).
//!
//! The choices (events, writes, kill delays) come from a seed the test prints;
//! `CRASH_LOOP_SEED=<seed>` repeats them (the timing of a kill cannot be repeated).
//!
//! Run: `cargo test --release --test crash_loop` (needs PostgreSQL's server binaries).

#[path = "support/ecommerce_sql.rs"]
mod ecommerce_sql;
#[path = "support/retail_sql.rs"]
mod retail_sql;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use diffmart::engine::Catalog;
use diffmart::pipelines::ecommerce::generator::EcommerceGenerator;
use diffmart::pipelines::retail::generator::RetailGenerator;
use diffmart::sources::GeneratedEvent;
use diffmart_dataflows::datum::{ColumnType, Datum, F64, MICROS_PER_SECOND, Micros, Record, RelationSpec, Row};
use diffmart_dataflows::ecommerce::{Product, User};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::overrides::{OverrideWriter, Overrides, price_overrides};
use support::postgres::TestPostgres;
use support::server::DiffmartProcess;
use support::wire::{diffmart_canonical_rows, values_tuple};
use support::{canonical_rows, multiset_diff, pg_canonical_rows};
use tokio_postgres::Client;

/// Crash-and-restart rounds: each ends with a SIGKILL.
const ROUNDS: usize = 12;
/// Rounds that kill while a checkpoint is being written: early ones, while the state is
/// small, since the log must grow by the last checkpoint's size before the next is due.
const CHECKPOINT_KILL_ROUNDS: [usize; 3] = [1, 3, 5];
/// How long a round waits for a checkpoint to be written before killing anyway.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);
/// Start-up (checkpoint load and log replay), and catching up with the inputs.
const READY: Duration = Duration::from_secs(60);
/// How long writers may take to notice the server is gone.
const EXIT: Duration = Duration::from_secs(10);
/// 2025-06-01 12:00:00 UTC: where both generators' event time starts.
const START: Micros = 1_748_779_200_000_000;
/// Retention longer than the generated history: nothing expires, nothing is late.
const RETENTION: &str = "30d";
const ADMIN_KEY: &str = "crash-loop-key";
/// The upstream database: CDC's source, and the oracle.
const DATABASE: &str = "shop";

/// The Kafka topics fed, with their partition counts.
const TOPICS: [(&str, i32); 5] =
    [("web_clicks", 2), ("purchases", 2), ("competitor_prices", 1), ("restocks", 1), ("user_events", 2)];
/// Generator events per feeding step (orders among the retail ones go to CDC).
const RETAIL_EVENTS_PER_STEP: usize = 80;
const ECOMMERCE_EVENTS_PER_STEP: usize = 20;
/// Pause between feeding steps.
const STEP_PAUSE: Duration = Duration::from_millis(30);

/// Pricing products the HTTP writer overrides, and their base price.
const PRICING_PRODUCTS: [&str; 8] = ["CLA", "CLB", "CLC", "CLD", "CLE", "CLF", "CLG", "CLH"];
const BASE_PRICE: f64 = 10.0;

/// Retail relations the spec's SQL also has, and the extra view compared with
/// [`RETAIL_WATERMARK_SQL`].
const RETAIL_INPUTS: [&str; 6] = retail_sql::INPUT_TABLES;
const ECOMMERCE_INPUTS: [&str; 3] = ecommerce_sql::INPUT_TABLES;

/// `retail_watermark` over the oracle's tables: the newest event time of the four
/// streams, that minus the retention, and no late events (nothing is behind 30 days).
const RETAIL_WATERMARK_SQL: &str = r#"
CREATE VIEW retail_watermark AS
SELECT max(t) AS watermark, max(t) - INTERVAL '30 days' AS horizon, 0::bigint AS late_events
FROM (SELECT event_time AS t FROM web_clicks UNION ALL SELECT ts FROM competitor_prices
      UNION ALL SELECT purchase_time FROM purchases UNION ALL SELECT restock_time FROM restocks) e
HAVING count(*) > 0;
"#;

// ------------------------------------------------------------------------------------------
// Seed and the server
// ------------------------------------------------------------------------------------------

/// `CRASH_LOOP_SEED`, or the clock's; printed so a failure can be repeated.
fn seed() -> u64 {
    let seed = match std::env::var("CRASH_LOOP_SEED") {
        Ok(seed) => seed.parse().expect("CRASH_LOOP_SEED is a number"),
        Err(_) => SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("crash loop: seed {seed} (CRASH_LOOP_SEED={seed} repeats its choices)");
    seed
}

fn server_options(brokers: &str, cdc_url: &str) -> Vec<String> {
    [
        "--no-generator",
        "--workers",
        "2",
        "--retention",
        RETENTION,
        "--checkpoint-every-mib",
        "0",
        "--admin-api-key",
        ADMIN_KEY,
        "--kafka-brokers",
        brokers,
        "--cdc-url",
        cdc_url,
    ]
    .map(String::from)
    .to_vec()
}

fn spec(name: &str) -> &'static RelationSpec {
    Catalog::all_pipelines().lookup(name).unwrap_or_else(|| panic!("diffmart has no relation {name}")).1
}

// ------------------------------------------------------------------------------------------
// Kafka and CDC: the inputs fed from outside, and the oracle that gets the same
// ------------------------------------------------------------------------------------------

/// The generators, the producer, and what went out so far.
struct Feeds {
    retail: RetailGenerator,
    ecommerce: EcommerceGenerator,
    producer: BaseProducer,
    /// Messages produced (and delivered) per topic.
    produced: BTreeMap<&'static str, i64>,
    rng: StdRng,
    /// Upstream order ids, for updates and deletes.
    orders: Vec<i32>,
    /// Upstream transactions committed.
    transactions: u64,
}

/// Retail events as Kafka carries them: the producers write whole seconds.
fn whole_seconds(relation: &str, mut row: Row) -> Row {
    if matches!(relation, "web_clicks" | "purchases" | "restocks" | "competitor_prices")
        && let Datum::Timestamp(t) = row[0]
    {
        row[0] = Datum::Timestamp(t - t.rem_euclid(MICROS_PER_SECOND));
    }
    row
}

impl Feeds {
    fn new(seed: u64, brokers: &str) -> Feeds {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "0")
            .create()
            .expect("a producer");
        Feeds {
            retail: RetailGenerator::new(seed, START),
            ecommerce: EcommerceGenerator::new(seed.wrapping_add(1), START),
            producer,
            produced: TOPICS.iter().map(|(topic, _)| (*topic, 0)).collect(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(2)),
            orders: Vec::new(),
            transactions: 0,
        }
    }

    /// One step: the generators' next events to Kafka (and, once delivered, to the
    /// oracle's tables), their orders and a random change or two upstream, in one
    /// transaction CDC carries over.
    async fn step(&mut self, db: &Client) {
        let events: Vec<GeneratedEvent> = self
            .retail
            .by_ref()
            .take(RETAIL_EVENTS_PER_STEP)
            .chain(self.ecommerce.by_ref().take(ECOMMERCE_EVENTS_PER_STEP))
            .collect();
        let mut sent: BTreeMap<&'static str, Vec<Row>> = BTreeMap::new();
        let mut orders = Vec::new();
        for event in events {
            if event.relation == "orders" {
                orders.push(event.row);
                continue;
            }
            let event = GeneratedEvent { row: whole_seconds(event.relation, event.row), ..event };
            let (topic, key, json) = diffmart::produce::encode_event(&event)
                .expect("the event encodes")
                .unwrap_or_else(|| panic!("{} has no topic", event.relation));
            while self.producer.send(BaseRecord::to(topic).key(&key).payload(&json)).is_err() {
                self.producer.poll(Duration::from_millis(10));
            }
            *self.produced.get_mut(topic).unwrap_or_else(|| panic!("{topic} is not created")) += 1;
            sent.entry(event.relation).or_default().push(event.row);
        }
        self.producer.flush(Duration::from_secs(30)).expect("the messages are delivered");
        let mut oracle = String::from("BEGIN;");
        for (relation, rows) in &sent {
            let values: Vec<String> = rows.iter().map(|r| values_tuple(r)).collect();
            oracle += &format!("INSERT INTO {relation} VALUES {};", values.join(", "));
        }
        oracle += "COMMIT;";
        db.batch_execute(&oracle).await.unwrap_or_else(|e| panic!("the oracle refused the events: {e:?}"));

        let mut upstream = String::new();
        if !orders.is_empty() {
            let values: Vec<String> = orders.iter().map(|r| values_tuple(r)).collect();
            upstream += &format!("INSERT INTO orders VALUES {};", values.join(", "));
            self.orders.extend(orders.iter().map(|row| match row[0] {
                Datum::Int32(id) => id,
                ref other => panic!("an order id {other:?}"),
            }));
        }
        match self.rng.random_range(0..10) {
            0..=2 => {
                let product = self.rng.random_range(1..=RetailGenerator::catalog().len());
                upstream += &format!(
                    "UPDATE product_inventory SET stock_level = stock_level + {}, base_price = round(base_price * {}, 2) \
                     WHERE product_id = {product};",
                    self.rng.random_range(-30..=60),
                    ["0.97", "1.00", "1.05"].choose(&mut self.rng).unwrap()
                );
            }
            3 | 4 if !self.orders.is_empty() => {
                let id = *self.orders.choose(&mut self.rng).unwrap();
                upstream += &format!("UPDATE orders SET quantity = quantity + 1 WHERE order_id = {id};");
            }
            5 if !self.orders.is_empty() => {
                let id = self.orders.swap_remove(self.rng.random_range(0..self.orders.len()));
                upstream += &format!("DELETE FROM orders WHERE order_id = {id};");
            }
            _ => {}
        }
        if !upstream.is_empty() {
            db.batch_execute(&format!("BEGIN;{upstream}COMMIT;"))
                .await
                .unwrap_or_else(|e| panic!("upstream refused {upstream}: {e:?}"));
            self.transactions += 1;
        }
    }

    /// Steps until `stop` is set.
    async fn run(mut self, db: Arc<Client>, stop: Arc<AtomicBool>) -> Feeds {
        while !stop.load(Ordering::Relaxed) {
            self.step(&db).await;
            tokio::time::sleep(STEP_PAUSE).await;
        }
        self
    }

    fn messages(&self) -> i64 {
        self.produced.values().sum()
    }
}

/// PostgreSQL with the retail and e-commerce inputs as tables and the views as VIEWs, in
/// the database CDC mirrors `product_inventory` and `orders` from (with the retail
/// catalog in `product_inventory`).
async fn oracle() -> (TestPostgres, Arc<Client>) {
    let pg = tokio::task::spawn_blocking(TestPostgres::start).await.expect("starting PostgreSQL");
    let db = pg.create_database(DATABASE).await;
    let schema = format!(
        "SET TimeZone = 'UTC';\n{}{}{}{RETAIL_WATERMARK_SQL}",
        retail_sql::SCHEMA,
        ecommerce_sql::TABLES,
        ecommerce_sql::VIEWS
    );
    db.batch_execute(&schema).await.unwrap_or_else(|e| panic!("creating the oracle schema: {e:?}"));
    let catalog: Vec<String> = RetailGenerator::catalog().iter().map(|p| values_tuple(&p.to_row())).collect();
    db.batch_execute(&format!("INSERT INTO product_inventory VALUES {}", catalog.join(", "))).await.unwrap();
    (pg, Arc::new(db))
}

// ------------------------------------------------------------------------------------------
// Caught up, then compared
// ------------------------------------------------------------------------------------------

/// Per topic: the sum of its partitions' next offsets in `diffmart_sources`, and of the
/// messages counted.
async fn kafka_progress(client: &Client) -> BTreeMap<String, (i64, i64)> {
    let sql = "SELECT name, position, messages FROM diffmart_sources WHERE kind = 'kafka' AND partition >= 0";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut progress: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in rows {
        let entry = progress.entry(row.get(0)).or_default();
        entry.0 += row.get::<_, Option<i64>>(1).unwrap_or(0);
        entry.1 += row.get::<_, i64>(2);
    }
    progress
}

/// Waits until diffmart has read every message produced (never more), and its mirror
/// of the CDC tables equals upstream (the upstream is idle by then: equal is caught up).
async fn wait_caught_up(client: &Client, db: &Client, feeds: &Feeds, round: usize) {
    let deadline = Instant::now() + READY;
    loop {
        let progress = kafka_progress(client).await;
        let read: BTreeMap<&str, i64> =
            feeds.produced.keys().map(|topic| (*topic, progress.get(*topic).map_or(0, |p| p.0))).collect();
        for (topic, n) in &read {
            assert!(
                *n <= feeds.produced[topic],
                "round {round}: {n} messages of {topic} read, {} produced: some twice",
                feeds.produced[topic]
            );
        }
        if read == feeds.produced {
            let counted: BTreeMap<&str, i64> =
                feeds.produced.keys().map(|topic| (*topic, progress.get(*topic).map_or(0, |p| p.1))).collect();
            assert_eq!(counted, feeds.produced, "round {round}: messages diffmart_sources counts, per topic");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: Kafka not caught up after {READY:?}: read {read:?}, produced {:?}",
            feeds.produced
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for table in ["product_inventory", "orders"] {
        let spec = spec(table);
        let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
        loop {
            let expected = pg_canonical_rows(db, spec).await;
            let found = diffmart_canonical_rows(client, spec).await;
            let Some(diff) = multiset_diff(&columns, 1, &expected, &found, "upstream", "diffmart", 10) else { break };
            assert!(Instant::now() < deadline, "round {round}: the CDC mirror of {table} still differs:\n{diff}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every relation compared with the oracle, and how many leading columns identify a
/// row (for the report).
fn compared_relations() -> Vec<(&'static str, usize)> {
    let inputs = RETAIL_INPUTS.iter().chain(&ECOMMERCE_INPUTS).map(|name| (*name, 1));
    let retail = retail_sql::VIEWS.iter().map(|name| (*name, retail_sql::key_columns(name)));
    let ecommerce = ecommerce_sql::VIEW_NAMES.iter().map(|name| (*name, ecommerce_sql::key_columns(name)));
    inputs.chain(retail).chain([("retail_watermark", 0)]).chain(ecommerce).collect()
}

/// Every compared relation of diffmart against the oracle's; returns the rows compared.
async fn assert_matches_oracle(client: &Client, db: &Client, round: usize, seed: u64) -> usize {
    let mut failures = Vec::new();
    let mut compared = 0;
    for (name, keys) in compared_relations() {
        let spec = spec(name);
        let expected = pg_canonical_rows(db, spec).await;
        let found = diffmart_canonical_rows(client, spec).await;
        let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
        match multiset_diff(&columns, keys.max(1), &expected, &found, "postgres", "diffmart", 10) {
            Some(diff) => failures.push(format!("{name}: {diff}")),
            None => compared += found.len(),
        }
    }
    assert!(
        failures.is_empty(),
        "round {round} (CRASH_LOOP_SEED={seed}): {} relations differ from the oracle:\n{}",
        failures.len(),
        failures.join("\n")
    );
    compared
}

// ------------------------------------------------------------------------------------------
// SQL writes: products and users
// ------------------------------------------------------------------------------------------

type Keyed = BTreeMap<String, Row>;

/// One statement, what it reports, and the writer's rows once it is applied.
struct Statement {
    sql: String,
    rows_affected: u64,
    after: Keyed,
}

/// A client writing one table (keyed by its first, text, column) over all rounds: the
/// rows it knows are there, and its random choices.
struct TableWriter {
    spec: &'static RelationSpec,
    /// Keys of the generator's catalog, which events refer to: inserted again after a delete.
    catalog: Vec<String>,
    fresh_prefix: &'static str,
    next_fresh: usize,
    rows: Keyed,
    rng: StdRng,
    acknowledged: u64,
}

fn key_of(row: &Row) -> String {
    match &row[0] {
        Datum::Text(key) => key.to_string(),
        other => panic!("a text key, not {other:?}"),
    }
}

impl TableWriter {
    fn new(spec: &'static RelationSpec, catalog: Vec<Row>, fresh_prefix: &'static str, seed: u64) -> TableWriter {
        let rows: Keyed = catalog.into_iter().map(|row| (key_of(&row), row)).collect();
        TableWriter {
            spec,
            catalog: rows.keys().cloned().collect(),
            fresh_prefix,
            next_fresh: 0,
            rows,
            rng: StdRng::seed_from_u64(seed),
            acknowledged: 0,
        }
    }

    /// The first statement: the catalog, in one INSERT.
    fn catalog_insert(&self) -> String {
        let values: Vec<String> = self.rows.values().map(|r| values_tuple(r)).collect();
        format!("INSERT INTO {} VALUES {}", self.spec.name, values.join(", "))
    }

    /// A row of random values (some NULL where allowed) under `key`.
    fn random_row(&mut self, key: &str, tag: &str) -> Row {
        let mut row = vec![Datum::text(key)];
        for column in &self.spec.columns[1..] {
            if column.nullable && self.rng.random_bool(0.05) {
                row.push(Datum::Null);
                continue;
            }
            row.push(match column.ty {
                ColumnType::Text => Datum::text(format!("{tag}-{}", self.rng.random_range(0..4))),
                ColumnType::Float64 => Datum::Float64(F64::new(self.rng.random_range(100..100_000) as f64 / 100.0)),
                ColumnType::Int32 => Datum::Int32(self.rng.random_range(0..1000)),
                ColumnType::Bool => Datum::Bool(self.rng.random_bool(0.8)),
                ColumnType::Timestamp | ColumnType::TimestampTz => {
                    Datum::Timestamp(START - self.rng.random_range(0..30 * 86_400 * MICROS_PER_SECOND))
                }
                other => panic!("{}.{}: no random {other:?}", self.spec.name, column.name),
            });
        }
        row
    }

    /// A key not in the table: a catalog key deleted before, or a fresh one.
    fn absent_key(&mut self, taken: &Keyed) -> String {
        let deleted: Vec<&String> = self.catalog.iter().filter(|k| !taken.contains_key(*k)).collect();
        if !deleted.is_empty() && self.rng.random_bool(0.5) {
            return deleted.choose(&mut self.rng).unwrap().to_string();
        }
        self.next_fresh += 1;
        format!("{}{}", self.fresh_prefix, self.next_fresh)
    }

    /// A random statement: an INSERT of one to three rows, an UPDATE of one to three
    /// rows (all columns but the key), or a DELETE of one or two.
    fn next_statement(&mut self, tag: &str) -> Statement {
        let table = self.spec.name;
        let key_column = self.spec.columns[0].name;
        let mut after = self.rows.clone();
        let choice = if self.rows.len() < 4 { 0 } else { self.rng.random_range(0..10) };
        let (sql, affected) = match choice {
            0..=3 => {
                let mut values = Vec::new();
                for _ in 0..self.rng.random_range(1..=3) {
                    let key = self.absent_key(&after);
                    let row = self.random_row(&key, tag);
                    values.push(values_tuple(&row));
                    after.insert(key, row);
                }
                (format!("INSERT INTO {table} VALUES {}", values.join(", ")), values.len())
            }
            4..=7 => {
                let keys: Vec<String> = self.rows.keys().cloned().collect();
                let n = self.rng.random_range(1..=3);
                let chosen: Vec<String> = keys.choose_multiple(&mut self.rng, n).cloned().collect();
                let values = self.random_row("", tag);
                let set: Vec<String> = self.spec.columns[1..]
                    .iter()
                    .zip(&values[1..])
                    .map(|(c, v)| format!("{} = {}", c.name, support::wire::sql_literal(v)))
                    .collect();
                for key in &chosen {
                    let row = after.get_mut(key).unwrap();
                    row[1..].clone_from_slice(&values[1..]);
                }
                let list: Vec<String> = chosen.iter().map(|k| support::canonical_text(k)).collect();
                let sql = format!("UPDATE {table} SET {} WHERE {key_column} IN ({})", set.join(", "), list.join(", "));
                (sql, chosen.len())
            }
            _ => {
                let keys: Vec<String> = self.rows.keys().cloned().collect();
                let n = self.rng.random_range(1..=2);
                let chosen: Vec<String> = keys.choose_multiple(&mut self.rng, n).cloned().collect();
                for key in &chosen {
                    after.remove(key);
                }
                let list: Vec<String> = chosen.iter().map(|k| support::canonical_text(k)).collect();
                (format!("DELETE FROM {table} WHERE {key_column} IN ({})", list.join(", ")), chosen.len())
            }
        };
        Statement { sql, rows_affected: affected as u64, after }
    }

    /// Writes until the server goes away. Returns the writer, its rows those of every
    /// acknowledged statement, and the rows had the statement in flight been applied.
    async fn write_until_killed(mut self, client: Client, round: usize) -> (TableWriter, Option<Keyed>) {
        for step in 0.. {
            let tag = format!("r{round}s{step}");
            let statement = self.next_statement(&tag);
            match client.execute(statement.sql.as_str(), &[]).await {
                Ok(rows) => {
                    assert_eq!(rows, statement.rows_affected, "{}", statement.sql);
                    self.rows = statement.after;
                    self.acknowledged += 1;
                }
                Err(e) if e.code().is_some() => panic!("diffmart refused {}: {e}", statement.sql),
                Err(_) => return (self, Some(statement.after)),
            }
        }
        unreachable!("a writer writes until the server goes away")
    }

    /// After a restart: the table holds every acknowledged statement's rows, and the
    /// one in flight whole or not at all; the writer goes on from what is there.
    async fn resolve(&mut self, client: &Client, in_flight: Option<&Keyed>, round: usize) {
        let found = diffmart_canonical_rows(client, self.spec).await;
        let canonical = |rows: &Keyed| canonical_rows(&rows.values().cloned().collect::<Vec<_>>());
        if found == canonical(&self.rows) {
            return;
        }
        if let Some(in_flight) = in_flight
            && found == canonical(in_flight)
        {
            self.rows = in_flight.clone();
            return;
        }
        let columns: Vec<&str> = self.spec.columns.iter().map(|c| c.name).collect();
        let diff = |rows: &Keyed, name| {
            multiset_diff(&columns, 1, &canonical(rows), &found, name, "diffmart", 10).unwrap_or_default()
        };
        let mut report = format!(
            "round {round}: {} holds neither the acknowledged statements nor those and the one in flight, whole.\n{}",
            self.spec.name,
            diff(&self.rows, "acknowledged")
        );
        if let Some(in_flight) = in_flight {
            report += &diff(in_flight, "with the one in flight");
        }
        panic!("{report}");
    }

    /// The oracle's copy of the table becomes the writer's rows.
    async fn copy_to(&self, db: &Client) {
        let mut sql = format!("BEGIN; DELETE FROM {};", self.spec.name);
        if !self.rows.is_empty() {
            let values: Vec<String> = self.rows.values().map(|r| values_tuple(r)).collect();
            sql += &format!("INSERT INTO {} VALUES {};", self.spec.name, values.join(", "));
        }
        sql += "COMMIT;";
        db.batch_execute(&sql).await.unwrap_or_else(|e| panic!("copying {} to the oracle: {e:?}", self.spec.name));
    }
}

// ------------------------------------------------------------------------------------------
// HTTP writes: price overrides
// ------------------------------------------------------------------------------------------

/// After a restart: `price_overrides` holds every acknowledged request of `writer`, and
/// the one in flight or not; `product_prices` shows each product's override, or its base
/// price without one.
async fn resolve_overrides(writer: &mut OverrideWriter, client: &Client, in_flight: Option<&Overrides>, round: usize) {
    let found = price_overrides(client).await;
    if found != writer.overrides {
        assert!(
            in_flight == Some(&found),
            "round {round}: price_overrides holds neither the acknowledged overrides nor those and the \
             request in flight.\nacknowledged: {:?}\nwith the one in flight: {in_flight:?}\nfound: {found:?}",
            writer.overrides
        );
        writer.overrides = found;
    }
    let sql = "SELECT product_id, price, demand, price_source FROM product_prices";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let prices: BTreeMap<String, (f64, i64, String)> =
        rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3)))).collect();
    let expected: BTreeMap<String, (f64, i64, String)> = PRICING_PRODUCTS
        .iter()
        .map(|p| {
            let price = match writer.overrides.get(*p) {
                Some(o) => (o.price, 0, "override".to_string()),
                None => (BASE_PRICE, 0, "base".to_string()),
            };
            (p.to_string(), price)
        })
        .collect();
    assert_eq!(prices, expected, "round {round}: product_prices");
}

// ------------------------------------------------------------------------------------------
// Killing the server
// ------------------------------------------------------------------------------------------

/// Checkpoint files being written in `data_dir` (`ckpt-*.tmp`), with their modification
/// times: a file left by an earlier kill keeps its time.
fn checkpoints_being_written(data_dir: &Path) -> BTreeSet<(PathBuf, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("checkpoints")) else { return BTreeSet::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| (e.path(), e.metadata().ok().and_then(|m| m.modified().ok())))
        .collect()
}

/// Sends SIGKILL to `pid`.
fn sigkill(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes any pid and signal; `pid` is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Polls `data_dir` until a checkpoint file is being written that was not before,
/// then kills `pid` `into_the_write` later (so kills land at different points of the
/// write); kills anyway after `within`. Returns the file, if one appeared.
fn kill_during_a_checkpoint_write(
    pid: u32,
    data_dir: &Path,
    into_the_write: Duration,
    within: Duration,
) -> Option<PathBuf> {
    let before = checkpoints_being_written(data_dir);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let now = checkpoints_being_written(data_dir);
        if let Some((path, _)) = now.difference(&before).next() {
            std::thread::sleep(into_the_write);
            sigkill(pid);
            return Some(path.clone());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sigkill(pid);
    None
}

/// Once the server has written a checkpoint since it started, the data directory holds
/// that one, and at most the one before it, which a checkpoint keeps while the Kafka
/// sinks (always on with Kafka) have not delivered past the newest: the older ones and
/// the files of those a kill cut short are gone.
async fn assert_old_checkpoints_are_deleted(server: &DiffmartProcess, data_dir: &Path) {
    let deadline = Instant::now() + READY;
    while !server.stderr().contains("wrote checkpoint") {
        assert!(Instant::now() < deadline, "no checkpoint was written within {READY:?} of the last start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = data_dir.join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        (1..=2).contains(&names.len()) && names.iter().all(|name| name.ends_with(".bin")),
        "{} holds {names:?}",
        dir.display()
    );
}

/// A writer's task, once it has noticed the kill.
async fn stopped<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(EXIT, task).await.expect("a writer notices the kill").expect("a writer's checks pass")
}

/// What the loop saw, for the summary and the final checks.
#[derive(Default)]
struct Tally {
    checkpoints_written: usize,
    kills_during_checkpoint_write: usize,
    rows_compared: usize,
}

// ------------------------------------------------------------------------------------------
// The loop
// ------------------------------------------------------------------------------------------

/// See the module documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_survives_kill_9_exactly_once_and_the_views_match_postgres() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (pg, db) = oracle().await;
    let mock = MockCluster::new(1).expect("the mock cluster starts");
    for (topic, partitions) in TOPICS {
        mock.create_topic(topic, partitions, 1).expect("topic created");
    }
    let brokers = mock.bootstrap_servers();
    let cdc_url = format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", pg.port());
    let options = server_options(&brokers, &cdc_url);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("data");

    let mut feeds = Feeds::new(seed, &brokers);
    let catalog = EcommerceGenerator::catalog(START);
    let of = |relation: &str| -> Vec<Row> {
        catalog.iter().filter(|e| e.relation == relation).map(|e| e.row.clone()).collect()
    };
    let mut products = TableWriter::new(Product::spec(), of(Product::spec().name), "CL-P", seed.wrapping_add(3));
    let mut users = TableWriter::new(User::spec(), of(User::spec().name), "CL-U", seed.wrapping_add(4));
    let mut http = OverrideWriter::new(
        "",
        PRICING_PRODUCTS.iter().map(|p| p.to_string()).collect(),
        ADMIN_KEY,
        seed.wrapping_add(5),
    );
    let (mut products_cut, mut users_cut, mut http_cut) = (None, None, None);
    let mut tally = Tally::default();
    // Events before the first start: the first start reads a backlog.
    feeds.step(&db).await;

    for round in 0..=ROUNDS {
        let mut server = DiffmartProcess::start_on(&dir, &options);
        server.wait_ready(READY).await;
        let client = server.connect().await;
        if round == 0 {
            for sql in [products.catalog_insert(), users.catalog_insert()] {
                client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("the catalogs: {e}"));
            }
            let values: Vec<String> = PRICING_PRODUCTS.iter().map(|p| format!("('{p}', {BASE_PRICE:?})")).collect();
            let sql = format!("INSERT INTO pricing_products (product_id, base_price) VALUES {}", values.join(", "));
            client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        wait_caught_up(&client, &db, &feeds, round).await;
        products.resolve(&client, products_cut.as_ref(), round).await;
        users.resolve(&client, users_cut.as_ref(), round).await;
        resolve_overrides(&mut http, &client, http_cut.as_ref(), round).await;
        products.copy_to(&db).await;
        users.copy_to(&db).await;
        tally.rows_compared += assert_matches_oracle(&client, &db, round, seed).await;
        if round == ROUNDS {
            assert_old_checkpoints_are_deleted(&server, &dir).await;
            break;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let feeding = tokio::spawn(feeds.run(db.clone(), stop.clone()));
        let writing_products = tokio::spawn(products.write_until_killed(server.connect().await, round));
        let writing_users = tokio::spawn(users.write_until_killed(server.connect().await, round));
        let writing_http = tokio::spawn(http.write_until_killed(server.http_port, round));
        let during_checkpoint = CHECKPOINT_KILL_ROUNDS.contains(&round);
        let tmp_before = checkpoints_being_written(&dir);
        if during_checkpoint {
            let (pid, data_dir) = (server.pid(), dir.clone());
            let into_the_write = Duration::from_micros(rng.random_range(0..=2000));
            let seen = tokio::task::spawn_blocking(move || {
                kill_during_a_checkpoint_write(pid, &data_dir, into_the_write, CHECKPOINT_WAIT)
            })
            .await
            .unwrap();
            if seen.is_none() {
                println!("round {round}: no checkpoint was written within {CHECKPOINT_WAIT:?}; killed anyway");
            }
        } else {
            // Not a wait for something: the moment of the crash.
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..=1500))).await;
        }
        server.kill9();
        let left = checkpoints_being_written(&dir).difference(&tmp_before).count();
        tally.kills_during_checkpoint_write += usize::from(left > 0);
        let written = server.stderr().matches("wrote checkpoint").count();
        tally.checkpoints_written += written;

        stop.store(true, Ordering::Relaxed);
        feeds = feeding.await.expect("feeding");
        (products, products_cut) = stopped(writing_products).await;
        (users, users_cut) = stopped(writing_users).await;
        (http, http_cut) = stopped(writing_http).await;
        println!(
            "round {round}: killed{}; {written} checkpoints written{}; {} messages, {} upstream transactions, \
             {} SQL statements and {} HTTP requests acknowledged so far",
            if during_checkpoint { " watching for a checkpoint" } else { "" },
            if left > 0 { ", one left half written" } else { "" },
            feeds.messages(),
            feeds.transactions,
            products.acknowledged + users.acknowledged,
            http.acknowledged
        );
        // Produced and committed while the server is down: read as a backlog.
        feeds.step(&db).await;
    }

    println!(
        "{ROUNDS} kills; {} messages, {} upstream transactions, {} SQL statements and {} HTTP requests \
         acknowledged; {} checkpoints written, {} kills during a checkpoint write; {} rows compared",
        feeds.messages(),
        feeds.transactions,
        products.acknowledged + users.acknowledged,
        http.acknowledged,
        tally.checkpoints_written,
        tally.kills_during_checkpoint_write,
        tally.rows_compared
    );
    assert!(products.acknowledged + users.acknowledged >= ROUNDS as u64, "too few SQL writes to test anything");
    assert!(http.acknowledged >= ROUNDS as u64, "too few HTTP writes to test anything");
    assert!(tally.checkpoints_written >= 3, "only {} checkpoints were written", tally.checkpoints_written);
    assert!(tally.kills_during_checkpoint_write >= 1, "no kill fell during a checkpoint write");
}
