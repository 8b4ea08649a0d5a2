//! Kafka sources, sinks and `diffmart produce` against librdkafka's mock cluster:
//! real brokers speaking the Kafka protocol on loopback, started by each test.
//!
//! The views computed from Kafka are compared with the same events applied
//! directly to another engine (`tests/retail_oracle.rs` checks direct ingestion
//! against PostgreSQL), relation by relation, row for row.
//!
//! Run: `cargo test --release --test kafka`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart::json::row_to_object;
use diffmart::pipelines::Pipeline;
use diffmart::pipelines::casino::{self as casino_pipeline, Casino};
use diffmart::pipelines::ecommerce::{self as ecommerce_pipeline, Ecommerce};
use diffmart::pipelines::retail::Retail;
use diffmart::pipelines::retail::generator::RetailGenerator;
use diffmart::pipelines::{every_pipeline, kafka_sources};
use diffmart::produce::{ProduceOptions, encode_event};
use diffmart::sinks::kafka::{KafkaSink, KafkaSinks, SinkFormat};
use diffmart::sources::GeneratedEvent;
use diffmart::sources::kafka::{KafkaConfig, KafkaSources};
use diffmart_dataflows::datum::{Datum, MICROS_PER_SECOND, Record, Row};
use diffmart_dataflows::ecommerce::UserEvent;
use diffmart_dataflows::retail::{self, ProductInventory, Purchase};
use diffmart_dataflows::system::{SourceError, SourceStatus};
use diffmart_dataflows::{casino, ecommerce};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// 2025-06-01 12:00:00 UTC.
const START: i64 = 1_748_779_200_000_000;

fn generated(seed: u64, n: usize) -> Vec<GeneratedEvent> {
    RetailGenerator::new(seed, START).take(n).collect()
}

/// The inventory sources' last column, `arrival`: the generator's sequence, which
/// Kafka offsets replace.
fn has_arrival(relation: &str) -> bool {
    relation == "product_updates" || relation == "order_events"
}

fn without_arrival(mut row: Row) -> Row {
    row.pop();
    row
}

/// What a Kafka round trip keeps of an event: the retail and casino producers
/// write whole seconds (the e-commerce events keep microseconds), and the
/// inventory's arrival order is the topic's.
fn as_read_back(event: &GeneratedEvent) -> Row {
    let mut row = event.row.clone();
    if has_arrival(event.relation) {
        row = without_arrival(row);
    }
    let seconds_column = match event.relation {
        "web_clicks" | "purchases" | "restocks" | "competitor_prices" => Some(0),
        "gaming_transactions" => Some(6),
        _ => None,
    };
    if let Some(column) = seconds_column
        && let Datum::Timestamp(t) = row[column]
    {
        row[column] = Datum::Timestamp(t - t.rem_euclid(MICROS_PER_SECOND));
    }
    row
}

fn mock_cluster(topics: &[(&str, i32)]) -> Mock {
    let mock = MockCluster::new(1).expect("mock cluster starts");
    for (topic, partitions) in topics {
        mock.create_topic(topic, *partitions, 1).expect("topic created");
    }
    mock
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "1").create().expect("producer")
}

/// A producer that writes every message as its own batch: the mock broker
/// returns one batch per partition and fetch, so reading them back is slow.
fn one_by_one_producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Queues a message (to `partition` if given), waiting for room in the queue.
fn send(producer: &BaseProducer, topic: &str, partition: Option<i32>, key: Option<&str>, payload: Option<&[u8]>) {
    loop {
        let mut record = BaseRecord::<str, [u8]>::to(topic);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        match producer.send(record) {
            Ok(()) => return,
            Err((e, _)) => {
                assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(_)), "{e}");
                producer.poll(Duration::from_millis(50));
            }
        }
    }
}

/// Writes the events that go to Kafka as `diffmart produce` does; returns the
/// orders (tables, not topics) and how many messages were written.
fn produce(producer: &BaseProducer, events: &[GeneratedEvent], flush: bool) -> (Vec<GeneratedEvent>, usize) {
    let mut orders = Vec::new();
    let mut messages = 0;
    for event in events {
        match encode_event(event).unwrap() {
            Some((topic, key, json)) => {
                send(producer, topic, None, Some(&key), Some(json.as_bytes()));
                messages += 1;
            }
            None => orders.push(event.clone()),
        }
    }
    if flush {
        producer.flush(Duration::from_secs(60)).expect("messages delivered");
    }
    (orders, messages)
}

fn start_engine(workers: usize) -> Arc<Engine> {
    Engine::start(&ComputeConfig { workers, ..Default::default() }).expect("engine starts")
}

fn load_catalog(engine: &Engine) {
    let id = engine.catalog().id(ProductInventory::spec().name).unwrap();
    engine.apply_blocking(RetailGenerator::catalog().iter().map(|p| Update::insert(id, p.to_row())).collect()).unwrap();
}

/// Applies events directly, as Kafka would deliver them.
fn apply_directly(engine: &Engine, events: &[GeneratedEvent]) {
    for chunk in events.chunks(500) {
        let updates =
            chunk.iter().map(|e| Update::insert(engine.catalog().id(e.relation).unwrap(), as_read_back(e))).collect();
        engine.apply_blocking(updates).unwrap();
    }
}

fn rows(engine: &Engine, name: &str) -> Vec<Row> {
    let mut rows = engine.snapshot().rows(engine.catalog().id(name).unwrap_or_else(|| panic!("no relation {name}")));
    rows.sort();
    rows
}

fn statuses(engine: &Engine) -> Vec<SourceStatus> {
    rows(engine, SourceStatus::spec().name).iter().map(|r| SourceStatus::from_row(r).unwrap()).collect()
}

fn source_errors(engine: &Engine) -> Vec<SourceError> {
    let mut errors: Vec<SourceError> =
        rows(engine, SourceError::spec().name).iter().map(|r| SourceError::from_row(r).unwrap()).collect();
    errors.sort_by_key(|e| (e.name.clone(), e.partition, e.position));
    errors
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages read over every partition, as `diffmart_sources` reports them.
fn messages_read(engine: &Engine) -> i64 {
    statuses(engine).iter().filter(|s| s.partition >= 0).map(|s| s.messages).sum()
}

/// Waits until `diffmart_sources` shows `messages` read, every partition connected and caught up.
fn wait_caught_up(engine: &Engine, messages: usize) {
    wait_for(&format!("{messages} messages read, no lag"), Duration::from_secs(90), || {
        let partitions: Vec<SourceStatus> = statuses(engine).into_iter().filter(|s| s.partition >= 0).collect();
        partitions.iter().map(|s| s.messages).sum::<i64>() == messages as i64
            && partitions.iter().all(|s| s.status == "connected" && s.lag == Some(0))
    });
}

/// Every retail relation holds the same rows in both engines.
fn assert_same_retail_relations(from_kafka: &Engine, direct: &Engine) {
    for spec in retail::input_specs().into_iter().chain(retail::view_specs()) {
        let (got, want) = (rows(from_kafka, spec.name), rows(direct, spec.name));
        assert!(!want.is_empty(), "{}: the workload leaves it empty", spec.name);
        assert_eq!(got.len(), want.len(), "{}: row counts differ", spec.name);
        assert!(got == want, "{}: rows differ", spec.name);
    }
}

#[test]
fn retail_views_from_kafka_equal_direct_ingest_over_two_workers() {
    let mock = mock_cluster(&[("web_clicks", 4), ("purchases", 3), ("competitor_prices", 2), ("restocks", 1)]);
    let brokers = mock.bootstrap_servers();
    let events = generated(3, 6000);
    let producer = producer(&brokers);
    // Half the history is there before diffmart starts, half streams in after.
    let (mut orders, mut messages) = produce(&producer, &events[..3000], true);

    let engine = start_engine(2);
    load_catalog(&engine);
    let sources =
        KafkaSources::start(&engine, KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) }, Retail.topics())
            .unwrap();
    let (more_orders, more_messages) = produce(&producer, &events[3000..], true);
    orders.extend(more_orders);
    messages += more_messages;
    // Orders are a table (CDC or SQL writes), not a topic.
    apply_directly(&engine, &orders);
    wait_caught_up(&engine, messages);

    let statuses = statuses(&engine);
    assert_eq!(statuses.len(), 4 + 3 + 2 + 1, "one row per partition: {statuses:#?}");
    for reader in 0..2 {
        let read: i64 = statuses.iter().filter(|s| s.reader == Some(reader)).map(|s| s.messages).sum();
        assert!(read > 0, "reader {reader} read nothing: {statuses:#?}");
    }
    assert!(statuses.iter().all(|s| s.errors == 0 && s.position == s.high_watermark), "{statuses:#?}");
    assert!(source_errors(&engine).is_empty());

    let direct = start_engine(1);
    load_catalog(&direct);
    apply_directly(&direct, &events);
    assert_same_retail_relations(&engine, &direct);

    // The same over SQL.
    let by_sql = support::query(&engine, "SELECT count(*), sum(clicks) FROM web_clicks_minutely");
    let minutely = rows(&direct, "web_clicks_minutely");
    let clicks: i64 = minutely.iter().map(|r| if let Datum::Int64(c) = r[2] { c } else { 0 }).sum();
    assert_eq!(by_sql, vec![vec![Some(minutely.len().to_string()), Some(clicks.to_string())]]);
    let by_sql = support::query(
        &engine,
        "SELECT name, sum(messages), sum(lag), min(status) FROM diffmart_sources WHERE kind = 'kafka' GROUP BY name ORDER BY name",
    );
    assert_eq!(by_sql.len(), 4);
    assert_eq!(
        by_sql.iter().map(|r| r[1].clone().unwrap().parse::<usize>().unwrap()).sum::<usize>(),
        messages,
        "{by_sql:?}"
    );
    assert!(by_sql.iter().all(|r| r[2].as_deref() == Some("0") && r[3].as_deref() == Some("connected")));
    sources.stop();
}

#[test]
fn bad_messages_are_counted_and_kept_and_never_stop_a_source() {
    let mock = mock_cluster(&[("purchases", 2)]);
    let brokers = mock.bootstrap_servers();
    let producer = producer(&brokers);
    let good = |minute: i64| {
        format!(
            r#"{{"purchase_time": "2025-06-01 12:{minute:02}:00Z", "product_id": 3, "quantity_purchased": 2, "customer_id": "c{minute}"}}"#
        )
    };
    let long_garbage = "x".repeat(1000);
    // (partition, payload, the error it must get)
    let messages: Vec<(i32, Option<String>, Option<&str>)> = vec![
        (0, Some(good(0)), None),
        (0, Some("{\"purchase_time\": ".into()), Some("invalid JSON")),
        (0, Some(good(1)), None),
        (
            0,
            Some(r#"{"purchase_time": "2025-06-01 12:00:00Z", "product_id": 3, "quantity_purchased": 2}"#.into()),
            Some("missing field \"customer_id\""),
        ),
        (
            0,
            Some(r#"{"purchase_time": "2025-06-01 12:00:00Z", "product_id": "3", "quantity_purchased": 2, "customer_id": "c"}"#.into()),
            Some("field \"product_id\": expected an integer"),
        ),
        (0, Some(good(2)), None),
        (0, Some(long_garbage.clone()), Some("invalid JSON")),
        (1, None, Some("empty message")),
        (1, Some("[1, 2]".into()), Some("expected a JSON object")),
        (1, Some(good(3)), None),
        (
            1,
            Some(r#"{"purchase_time": "2025-06-01 12:00:00Z", "product_id": 3, "quantity_purchased": 3000000000, "customer_id": "c"}"#.into()),
            Some("out of range for type integer"),
        ),
        (
            1,
            Some(r#"{"purchase_time": "noon", "product_id": 3, "quantity_purchased": 1, "customer_id": "c"}"#.into()),
            Some("invalid timestamp"),
        ),
        (1, Some(good(4)), None),
    ];
    for (partition, payload, _) in &messages {
        send(&producer, "purchases", Some(*partition), None, payload.as_deref().map(str::as_bytes));
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let engine = start_engine(2);
    let sources =
        KafkaSources::start(&engine, KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) }, Retail.topics())
            .unwrap();
    wait_caught_up(&engine, messages.len());

    // Every good message arrived, in spite of the bad ones between them.
    let customers: Vec<String> =
        rows(&engine, "purchases").iter().map(|r| Purchase::from_row(r).unwrap().customer_id).collect();
    assert_eq!(customers, vec!["c0", "c1", "c2", "c3", "c4"]);

    // Every bad one is kept with its partition, offset, error and the start of its payload.
    let errors = source_errors(&engine);
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut expected = Vec::new();
    for (partition, payload, error) in &messages {
        let offset = offsets.entry(*partition).or_default();
        if let Some(error) = error {
            expected.push((*partition, *offset, payload.clone(), *error));
        }
        *offset += 1;
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, (partition, offset, payload, error)) in errors.iter().zip(&expected) {
        assert_eq!((got.name.as_str(), got.partition, got.position), ("purchases", *partition, *offset));
        assert!(got.error.contains(error), "offset {offset}: {:?} should say {error:?}", got.error);
        let preview: Option<String> = payload.as_ref().map(|p| p.chars().take(256).collect());
        assert_eq!(got.payload, Some(preview.unwrap_or_default()));
        assert_eq!(got.relation.as_deref(), Some("purchases"));
    }

    // Counted per partition; topics that do not exist yet wait, as a whole.
    let reported = statuses(&engine);
    let partition = |p: i32| reported.iter().find(|s| s.name == "purchases" && s.partition == p).unwrap();
    assert_eq!((partition(0).messages, partition(0).errors), (7, 4));
    assert_eq!((partition(1).messages, partition(1).errors), (6, 4));
    for topic in ["web_clicks", "competitor_prices", "restocks"] {
        let waiting = reported.iter().find(|s| s.name == topic).unwrap_or_else(|| panic!("no row for {topic}"));
        assert_eq!((waiting.partition, waiting.status.as_str()), (-1, "waiting"), "{waiting:?}");
    }

    // Queryable over SQL.
    let by_sql = support::query(
        &engine,
        "SELECT partition, position, error FROM diffmart_source_errors WHERE name = 'purchases' ORDER BY partition, position",
    );
    assert_eq!(by_sql.len(), 8);
    assert_eq!(by_sql[0][..2], [Some("0".to_string()), Some("1".to_string())]);
    let by_sql = support::query(&engine, "SELECT sum(errors) FROM diffmart_sources WHERE name = 'purchases'");
    assert_eq!(by_sql, vec![vec![Some("8".to_string())]]);

    // A topic created later is found and read from its start.
    mock.create_topic("restocks", 1, 1).unwrap();
    send(
        &producer,
        "restocks",
        None,
        None,
        Some(br#"{"restock_time": "2025-06-01 12:05:00Z", "product_id": 3, "quantity_restocked": 50}"#),
    );
    producer.flush(Duration::from_secs(30)).unwrap();
    wait_for("the new topic's message", Duration::from_secs(30), || rows(&engine, "restocks").len() == 1);
    wait_for("the placeholder row to go", Duration::from_secs(10), || {
        statuses(&engine).iter().all(|s| !(s.name == "restocks" && s.partition == -1))
    });
    sources.stop();
}

#[test]
fn a_broker_outage_at_start_and_mid_stream_loses_and_duplicates_nothing() {
    let mock = mock_cluster(&[("web_clicks", 2), ("purchases", 2), ("competitor_prices", 1), ("restocks", 1)]);
    let brokers = mock.bootstrap_servers();
    let events = generated(8, 4000);

    // Down before diffmart starts: it serves reads and says so in diffmart_sources.
    mock.broker_down(-1).unwrap();
    let engine = start_engine(2);
    load_catalog(&engine);
    let config = KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) };
    let sources = KafkaSources::start(&engine, config, Retail.topics()).unwrap();
    wait_for("the topics to show as disconnected", Duration::from_secs(30), || {
        let statuses = statuses(&engine);
        statuses.len() == 4 && statuses.iter().all(|s| s.partition == -1 && s.status == "disconnected")
    });
    assert!(statuses(&engine)[0].last_error.as_deref().unwrap_or_default().contains("cannot reach the brokers"));
    assert_eq!(support::query(&engine, "SELECT count(*) FROM product_inventory"), vec![vec![Some("20".to_string())]]);

    mock.broker_up(-1).unwrap();
    let producer = producer(&brokers);
    let (mut orders, mut messages) = produce(&producer, &events[..1000], true);
    wait_caught_up(&engine, messages);

    // Mid-stream: a backlog is being read, slowly, when the broker goes away.
    let (more_orders, more_messages) = produce(&one_by_one_producer(&brokers), &events[1000..3000], true);
    mock.broker_round_trip_time(-1, Duration::from_millis(20)).unwrap();
    orders.extend(more_orders);
    messages += more_messages;
    wait_for("reading to be under way", Duration::from_secs(60), || messages_read(&engine) > 1000 + 100);
    mock.broker_down(-1).unwrap();
    let read_when_cut = messages_read(&engine);
    wait_for("every partition to show as disconnected", Duration::from_secs(30), || {
        let statuses = statuses(&engine);
        statuses.len() == 6 && statuses.iter().all(|s| s.status == "disconnected")
    });
    assert!(read_when_cut < messages as i64, "the outage came after everything was read; the test proves nothing");
    // Events keep coming while the broker is away (the producer holds them).
    let (more_orders, more_messages) = produce(&producer, &events[3000..], false);
    orders.extend(more_orders);
    messages += more_messages;
    assert_eq!(support::query(&engine, "SELECT count(*) FROM product_inventory"), vec![vec![Some("20".to_string())]]);

    mock.broker_round_trip_time(-1, Duration::ZERO).unwrap();
    mock.broker_up(-1).unwrap();
    producer.flush(Duration::from_secs(60)).expect("messages delivered after the outage");
    apply_directly(&engine, &orders);
    wait_caught_up(&engine, messages);

    let direct = start_engine(1);
    load_catalog(&direct);
    apply_directly(&direct, &events);
    assert_same_retail_relations(&engine, &direct);
    sources.stop();
}

/// Reads every message of `topics` until `count` have arrived.
fn read_topics(brokers: &str, topics: &[(&str, i32)], count: u64) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sink-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (messages.len() as u64) < count {
        assert!(Instant::now() < deadline, "read {} of {count} sink messages", messages.len());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            messages.push((message.topic().to_string(), value));
        }
    }
    messages
}

/// A relation's rows as JSON objects, counted.
fn as_json_multiset(engine: &Engine, name: &str) -> BTreeMap<String, i64> {
    let spec = engine.catalog().lookup(name).unwrap().1;
    let mut counts = BTreeMap::new();
    for row in rows(engine, name) {
        *counts.entry(Value::Object(row_to_object(spec, &row)).to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn sinks_write_every_change_and_survive_an_outage() {
    let topics = [("stock_out", 3), ("clicks_out", 2), ("purchases_out", 1)];
    let mock = mock_cluster(&topics);
    let brokers = mock.bootstrap_servers();
    let engine = start_engine(2);
    load_catalog(&engine);
    let spec = |name: &str| engine.catalog().lookup(name).unwrap().1;
    let sinks = vec![
        KafkaSink::changes(spec("product_stock_status"), "stock_out"),
        KafkaSink::changes(spec("web_clicks_minutely"), "clicks_out"),
        KafkaSink {
            relation: "purchases".into(),
            topic: "purchases_out".into(),
            format: SinkFormat::Inserts(|spec, row| Value::Object(row_to_object(spec, row))),
            key_column: Some(1),
        },
    ];
    let running = KafkaSinks::start(&engine, &brokers, &[], sinks).unwrap();
    let events = generated(21, 3000);
    for (i, chunk) in events.chunks(300).enumerate() {
        if i == 4 {
            mock.broker_down(-1).unwrap();
        }
        apply_directly(&engine, chunk);
        if i == 6 {
            mock.broker_up(-1).unwrap();
        }
    }
    let counters = running.counters.clone();
    let upper = engine.snapshot().upper;
    wait_for("every change written and delivered", Duration::from_secs(60), || {
        let sent = counters.sent.load(std::sync::atomic::Ordering::Acquire);
        counters.written_upper.load(std::sync::atomic::Ordering::Acquire) >= upper
            && counters.delivered.load(std::sync::atomic::Ordering::Acquire) == sent
    });
    assert_eq!(counters.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    let sent = counters.sent.load(std::sync::atomic::Ordering::Relaxed);
    let messages = read_topics(&brokers, &topics, sent);
    assert_eq!(messages.len() as u64, sent);

    // Folding the changes gives the views; the append-only sink gives every purchase once.
    let mut folded: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for (topic, mut value) in messages {
        let (name, diff) = match topic.as_str() {
            "stock_out" | "clicks_out" => {
                let object = value.as_object_mut().unwrap();
                let diff = object.remove("diff").unwrap().as_i64().unwrap();
                let op = object.remove("op").unwrap();
                assert_eq!(op, Value::from(if diff > 0 { "insert" } else { "delete" }));
                (if topic == "stock_out" { "product_stock_status" } else { "web_clicks_minutely" }, diff)
            }
            _ => ("purchases", 1),
        };
        *folded.entry(name).or_default().entry(value.to_string()).or_default() += diff;
    }
    for (name, mut counts) in folded {
        counts.retain(|_, c| *c != 0);
        let expected = as_json_multiset(&engine, name);
        let missing: Vec<_> = expected.iter().filter(|(row, c)| counts.get(*row) != Some(c)).take(5).collect();
        let extra: Vec<_> = counts.iter().filter(|(row, c)| expected.get(*row) != Some(c)).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: the sink's messages do not add up to it ({} vs {} rows)\n  expected: {missing:?}\n  got: {extra:?}",
            expected.len(),
            counts.len()
        );
    }
    running.stop();
}

#[test]
fn produce_writes_the_topics_and_postgres_and_diffmart_reads_them_back() {
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    let postgres = support::postgres::TestPostgres::start();
    // What `diffmart produce --seed 9 --events 3000` writes: every pipeline's catalogs that
    // go to topics, then the first 3000 events.
    let simulation = every_pipeline(9, START);
    let catalogs = simulation.bootstrap;
    let events: Vec<GeneratedEvent> = simulation.events.take(3000).collect();
    // The mock cluster does not implement CreateTopics: produce falls back on existing topics.
    let sources = kafka_sources();
    for source in &sources {
        mock.create_topic(&format!("demo.{}", source.topic), 2, 1).unwrap();
    }
    diffmart::produce::run(ProduceOptions {
        kafka_brokers: brokers.clone(),
        kafka_topic_prefix: "demo.".into(),
        rate: Some(20_000.0),
        events: Some(events.len() as u64),
        seed: 9,
        start: Some(START),
        cdc_url: Some(postgres.url()),
        partitions: 2,
        kafka_properties: Vec::new(),
        help: None,
    })
    .expect("diffmart produce runs");

    // Orders and the catalog are in PostgreSQL.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (products, orders): (i64, i64) = runtime.block_on(async {
        let client = postgres.connect().await;
        let count = |table: &'static str| {
            let client = &client;
            async move { client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0) }
        };
        (count("public.product_inventory").await, count("public.orders").await)
    });
    assert_eq!(products, 20);
    assert_eq!(orders, events.iter().filter(|e| e.relation == "orders").count() as i64);

    // The topics hold the other events; diffmart reads them back as they were generated.
    let engine = start_engine(1);
    let config = KafkaConfig { topic_prefix: "demo.".into(), ..KafkaConfig::new(&brokers) };
    let kafka = KafkaSources::start(&engine, config, sources.clone()).unwrap();
    let on_kafka: Vec<&GeneratedEvent> =
        catalogs.iter().chain(&events).filter(|e| encode_event(e).unwrap().is_some()).collect();
    wait_caught_up(&engine, on_kafka.len());
    let statuses = statuses(&engine);
    assert_eq!(statuses.len(), 2 * sources.len(), "every topic, two partitions each: {statuses:#?}");
    for source in &sources {
        let relation = source.relation.name;
        let mut expected: Vec<Row> =
            on_kafka.iter().filter(|e| e.relation == relation).map(|e| as_read_back(e)).collect();
        expected.sort();
        assert!(!expected.is_empty(), "{relation}: the producer wrote nothing to {}", source.topic);
        let mut got = rows(&engine, relation);
        if has_arrival(relation) {
            got = got.into_iter().map(without_arrival).collect();
            got.sort();
        }
        assert_eq!(got, expected, "{relation}");
    }
    assert_eq!(rows(&engine, "inventory_current").len(), 200, "the generated catalog went to product-updates");
    kafka.stop();
}

/// `gaming-transactions` feeds the casino's source and `user_events` the e-commerce table, as
/// upserts by `event_id`: the views equal those of the same events applied directly.
#[test]
fn casino_and_ecommerce_topics_feed_their_pipelines_and_table_topics_upsert() {
    let mock = mock_cluster(&[("gaming-transactions", 3), ("user_events", 2)]);
    let brokers = mock.bootstrap_servers();
    let casino = casino_pipeline::generator::CasinoGenerator::simulation(4, START);
    let shop = ecommerce_pipeline::generator::simulation(4, START);
    let bets: Vec<GeneratedEvent> = casino.events.take(3000).collect();
    let shop_events: Vec<GeneratedEvent> =
        shop.events.filter(|e| e.relation == UserEvent::spec().name).take(1500).collect();
    let catalog = shop.bootstrap;

    let engine = start_engine(2);
    let direct = start_engine(1);
    apply_directly(&engine, &catalog);
    apply_directly(&direct, &catalog);
    let sources = KafkaSources::start(&engine, KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) }, {
        [Casino.topics(), Ecommerce.topics()].concat()
    })
    .unwrap();
    let producer = producer(&brokers);
    let (_, mut messages) = produce(&producer, &bets, false);
    messages += produce(&producer, &shop_events, true).1;
    wait_caught_up(&engine, messages);

    // Redelivered events change nothing; an event sent again with other contents replaces it.
    let (redelivered, _) = produce(&producer, &shop_events[..100], true);
    assert!(redelivered.is_empty());
    let mut corrected = UserEvent::from_row(&shop_events[200].row).unwrap();
    corrected.device_type = Some("smart-tv".into());
    let json = Value::Object(row_to_object(UserEvent::spec(), &corrected.to_row())).to_string();
    send(&producer, "user_events", None, Some(&corrected.event_id), Some(json.as_bytes()));
    producer.flush(Duration::from_secs(60)).unwrap();
    wait_caught_up(&engine, messages + 101);

    apply_directly(&direct, &bets);
    apply_directly(&direct, &shop_events);
    let id = direct.catalog().id(UserEvent::spec().name).unwrap();
    direct
        .apply_blocking(vec![Update::delete(id, shop_events[200].row.clone()), Update::insert(id, corrected.to_row())])
        .unwrap();
    for spec in casino::input_specs().into_iter().chain(ecommerce::input_specs()) {
        if !["redeemed_offers", "casino_settings"].contains(&spec.name) {
            assert!(!rows(&direct, spec.name).is_empty(), "{}: the workload leaves it empty", spec.name);
        }
    }
    // Which transactions are late depends on arrival order, which partitions read by two
    // readers do not keep: the window-close views are compared by `casino_oracle`.
    let arrival_ordered = ["member_window_closed", "casino_watermark"];
    let relations = casino::input_specs().into_iter().chain(casino::view_specs());
    for spec in relations.chain(ecommerce::input_specs()).chain(ecommerce::view_specs()) {
        if arrival_ordered.contains(&spec.name) {
            continue;
        }
        let (got, want) = (rows(&engine, spec.name), rows(&direct, spec.name));
        assert!(got == want, "{}: rows differ ({} from Kafka, {} direct)", spec.name, got.len(), want.len());
    }
    assert_eq!(rows(&engine, "user_events").len(), shop_events.len(), "one row per event_id");
    assert!(source_errors(&engine).is_empty(), "{:?}", source_errors(&engine));
    sources.stop();
}
