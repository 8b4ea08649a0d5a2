//! The one write path: writers that meet on the same keys leave every table with
//! one row per key, and every view that reads the table agrees with PostgreSQL
//! running the spec's SQL over the tables diffmart serves.
//!
//! - SQL clients insert the `orders` and `user_events` ids the embedded generator is
//!   about to emit: the clients' rows stay, the generator skips those ids;
//! - one `user_events` upsert key arrives on two Kafka partitions, read by two
//!   readers: the table keeps one row for it, the last one handed over.
//!
//! Run: `cargo test --release --test write_path`.

#[path = "support/ecommerce_sql.rs"]
mod ecommerce_sql;
#[path = "support/retail_sql.rs"]
mod retail_sql;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use diffmart::compute::ComputeConfig;
use diffmart::engine::Engine;
use diffmart::json::row_to_object;
use diffmart::pipelines::ecommerce;
use diffmart::pipelines::every_pipeline;
use diffmart::sources::kafka::{KafkaConfig, KafkaSources};
use diffmart::sources::{GeneratorConfig, spawn_generator};
use diffmart_dataflows::datum::{Datum, Micros, Record, Row};
use diffmart_dataflows::ecommerce::UserEvent;
use diffmart_dataflows::retail::Order;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::oracle::OracleViews;
use support::postgres::TestPostgres;
use support::wire::values_tuple;

/// 2025-06-01 12:00:00 UTC.
const START: Micros = 1_748_779_200_000_000;
const SEED: u64 = 11;
/// Events the generator emits: a few minutes of every pipeline's simulated time.
const EVENTS: u64 = 8000;
/// How many of the generator's upcoming ids a SQL client takes first, per table.
const TAKEN: usize = 6;

/// PostgreSQL with the retail and e-commerce inputs as tables and their views as VIEWs.
async fn oracle() -> (TestPostgres, tokio_postgres::Client) {
    let pg = tokio::task::spawn_blocking(TestPostgres::start).await.expect("starting PostgreSQL");
    let client = pg.connect().await;
    let schema =
        format!("SET TimeZone = 'UTC';\n{}{}{}", retail_sql::SCHEMA, ecommerce_sql::TABLES, ecommerce_sql::VIEWS);
    client.batch_execute(&schema).await.unwrap_or_else(|e| panic!("creating the oracle schema: {e:?}"));
    (pg, client)
}

/// Copies what diffmart serves of `tables` into the oracle, then compares `views`.
async fn assert_views_match(
    engine: &Engine,
    client: &tokio_postgres::Client,
    tables: &[&str],
    views: &[&'static str],
    key_columns: fn(&str) -> usize,
) {
    let snapshot = engine.snapshot();
    client.batch_execute(&format!("TRUNCATE {};", tables.join(", "))).await.unwrap();
    for table in tables {
        let rows = snapshot.rows(engine.catalog().id(table).unwrap());
        for chunk in rows.chunks(500) {
            let sql = format!(
                "INSERT INTO {table} VALUES {}",
                chunk.iter().map(|r| values_tuple(r)).collect::<Vec<_>>().join(", ")
            );
            client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("copying {table} to PostgreSQL: {e:?}"));
        }
    }
    let failures = OracleViews::new(engine, views, key_columns).compare(client, &snapshot).await;
    assert!(failures.is_empty(), "views differ from PostgreSQL over the served tables:\n{}", failures.join("\n"));
}

fn rows(engine: &Engine, name: &str) -> Vec<Row> {
    engine.snapshot().rows(engine.catalog().id(name).unwrap())
}

/// The first `TAKEN` rows of `relation` among the generator's first `EVENTS` events.
fn upcoming(relation: &str) -> Vec<Row> {
    let simulation = every_pipeline(SEED, START);
    let rows: Vec<Row> =
        simulation.events.take(EVENTS as usize).filter(|e| e.relation == relation).map(|e| e.row).take(TAKEN).collect();
    assert_eq!(rows.len(), TAKEN, "the generator's first {EVENTS} events have too few {relation}");
    rows
}

async fn sql_inserts_of_the_generators_ids_stay(workers: usize) {
    let (_pg, oracle) = oracle().await;
    let engine = Engine::start(&ComputeConfig { workers, ..Default::default() }).expect("starting diffmart");
    let client = support::in_process_client(&engine).await;

    // A client takes the ids the generator is about to emit, with rows of its own.
    let mut orders = upcoming(Order::spec().name);
    for order in &mut orders {
        order[3] = Datum::Int32(99); // quantity
        order[4] = Datum::text("sql-client"); // customer_id
    }
    let mut events = upcoming(UserEvent::spec().name);
    for event in &mut events {
        event[2] = Datum::text("sql-session"); // session_id
    }
    for (table, rows) in [("orders", &orders), ("user_events", &events)] {
        let sql = format!(
            "INSERT INTO {table} VALUES {}",
            rows.iter().map(|r| values_tuple(r)).collect::<Vec<_>>().join(", ")
        );
        client.simple_query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let config = GeneratorConfig { seed: SEED, start: START, rate: Some(100_000.0), events: Some(EVENTS) };

    let simulations = diffmart::pipelines::simulations(&config, &diffmart::sources::nothing_held);

    let generator = spawn_generator(engine.clone(), config, simulations).unwrap();
    tokio::task::block_in_place(|| generator.join().unwrap());
    // Everything the generator handed over is visible once a later write is.
    engine.apply(Vec::new()).await.unwrap();

    for (table, mine) in [("orders", &orders), ("user_events", &events)] {
        let served = rows(&engine, table);
        let keys: BTreeSet<&Datum> = served.iter().map(|r| &r[0]).collect();
        assert_eq!(keys.len(), served.len(), "{table}: two rows for one key");
        for row in mine.iter() {
            assert!(served.contains(row), "{table}: the client's row {row:?} was replaced");
        }
        assert!(served.len() > TAKEN, "{table}: the generator wrote none of its own");
    }
    let mut tables: Vec<&str> = retail_sql::INPUT_TABLES.to_vec();
    tables.extend(ecommerce_sql::INPUT_TABLES);
    let views: Vec<&'static str> = retail_sql::VIEWS.iter().chain(ecommerce_sql::VIEW_NAMES.iter()).copied().collect();
    let key_columns = |view: &str| {
        if retail_sql::VIEWS.contains(&view) { retail_sql::key_columns(view) } else { ecommerce_sql::key_columns(view) }
    };
    assert_views_match(&engine, &oracle, &tables, &views, key_columns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_inserts_of_the_generators_ids_stay_with_1_worker() {
    sql_inserts_of_the_generators_ids_stay(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_inserts_of_the_generators_ids_stay_with_2_workers() {
    sql_inserts_of_the_generators_ids_stay(2).await;
}

/// One upsert key on two partitions, each read by its own reader: whatever order
/// the readers hand the messages over in, the table holds one row per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_key_on_two_partitions_keeps_one_row() {
    let (_pg, oracle) = oracle().await;
    let mock = MockCluster::new(1).expect("mock cluster starts");
    mock.create_topic("user_events", 2, 1).expect("topic created");
    let brokers = mock.bootstrap_servers();
    let engine = Engine::start(&ComputeConfig { workers: 2, ..Default::default() }).expect("starting diffmart");
    let shop = ecommerce::generator::simulation(SEED, START);
    let catalog: Vec<_> = shop
        .bootstrap
        .iter()
        .map(|e| diffmart::engine::Update::insert(engine.catalog().id(e.relation).unwrap(), e.row.clone()))
        .collect();
    engine.apply(catalog).await.unwrap();
    let events: Vec<Row> =
        shop.events.filter(|e| e.relation == UserEvent::spec().name).map(|e| e.row).take(400).collect();

    let sources = KafkaSources::start(
        &engine,
        KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) },
        ecommerce::topics::topics(),
    )
    .unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "1").create().expect("producer");
    let mut sent = 0;
    for (i, row) in events.iter().enumerate() {
        // Every event goes to both partitions, the second time with other contents.
        for partition in [0, 1] {
            let mut row = row.clone();
            if partition == (i % 2) as i32 {
                row[7] = Datum::text(format!("device-{partition}")); // device_type
            }
            let json = serde_json::Value::Object(row_to_object(UserEvent::spec(), &row)).to_string();
            let Datum::Text(key) = &row[0] else { panic!("event_id is text") };
            loop {
                let record = BaseRecord::<str, str>::to("user_events").partition(partition).key(key).payload(&json);
                match producer.send(record) {
                    Ok(()) => break,
                    Err(_) => {
                        producer.poll(Duration::from_millis(50));
                    }
                }
            }
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(60)).expect("messages delivered");

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = engine.catalog().id("diffmart_sources").unwrap();
    loop {
        let read: i64 = engine
            .snapshot()
            .rows(status)
            .iter()
            .filter(|r| r[2] != Datum::Int32(-1))
            .map(|r| match r[9] {
                Datum::Int64(n) => n,
                _ => 0,
            })
            .sum();
        if read == sent {
            break;
        }
        assert!(Instant::now() < deadline, "read {read} of {sent} messages");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.apply(Vec::new()).await.unwrap();

    let served = rows(&engine, "user_events");
    assert_eq!(served.len(), events.len(), "one row per event_id");
    for row in &served {
        let original = events.iter().find(|e| e[0] == row[0]).expect("a row of an event sent");
        let device = row[7].clone();
        assert!(
            device == Datum::text("device-0") || device == Datum::text("device-1") || device == original[7],
            "{row:?} is neither version sent"
        );
    }
    sources.stop();
    assert_views_match(
        &engine,
        &oracle,
        &ecommerce_sql::INPUT_TABLES,
        &ecommerce_sql::VIEW_NAMES,
        ecommerce_sql::key_columns,
    )
    .await;
}
