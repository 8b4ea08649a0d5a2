//! Sources fed what they cannot use, against the real binary:
//!
//! - a million malformed Kafka messages: none stops the source, every one is counted in
//!   `diffmart_sources` and `/metrics`, `diffmart_source_errors` keeps only the newest
//!   of them, and the good messages around them arrive;
//! - CDC values diffmart has no value for (numeric `NaN`, timestamp `infinity`), in the
//!   snapshot and in the stream: each row is left out (an update's old row removed) and
//!   reported, later transactions arrive and the slot's LSN is confirmed;
//! - a far-future event: refused and reported, so the watermark stays and later events
//!   are not late;
//! - a panicking engine thread (with `--features failpoints`, as `scripts/test` builds):
//!   the process exits with code 70 and one log line naming the thread.
//!
//! Run: `scripts/test --test hostile_sources`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::postgres::TestPostgres;
use support::server::{DiffmartProcess, admin_request};
use support::wire::{parse_wire_timestamp, text_rows};
use tokio_postgres::Client;

/// Start-up of an ephemeral server.
const READY: Duration = Duration::from_secs(60);
/// How long the sources may take to get through what they were given.
const CATCH_UP: Duration = Duration::from_secs(180);
/// How many `diffmart_source_errors` rows a stream keeps (`system::SOURCE_ERRORS_KEPT`).
const KEPT: i64 = diffmart_dataflows::system::SOURCE_ERRORS_KEPT;
/// 2025-06-01 12:00:00 UTC, in seconds.
const START_SECONDS: i64 = 1_748_779_200;

/// Polls `sql` until its rows are `expected`; panics with the last answer after `timeout`.
async fn wait_rows(client: &Client, sql: &str, expected: &[&[&str]], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = text_rows(client, sql).await;
        if rows.iter().map(|r| r.iter().map(String::as_str).collect::<Vec<_>>()).eq(expected.iter().map(|r| r.to_vec()))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: expected {expected:?} within {timeout:?}, last {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `/metrics` line of a stream's errors.
async fn errors_metric(server: &DiffmartProcess, kind: &str, name: &str, partition: i32) -> Option<String> {
    let (status, body) = admin_request("", server.http_port, "GET", "/metrics", "").await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    let prefix = format!("diffmart_source_errors_total{{kind=\"{kind}\",name=\"{name}\",partition=\"{partition}\"}} ");
    body.lines().find_map(|line| line.strip_prefix(&prefix)).map(str::to_string)
}

/// A producer that batches, for a mock cluster.
fn producer(brokers: &str) -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer")
}

fn send(producer: &BaseProducer, topic: &str, payload: &[u8]) {
    while let Err((e, _)) = producer.send(BaseRecord::<(), [u8]>::to(topic).payload(payload)) {
        assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
        producer.poll(Duration::from_millis(5));
    }
}

/// A web click as the retail producers write it, `seconds` after the start.
fn click(seconds: i64, product: i32) -> String {
    let time = chrono::DateTime::from_timestamp(START_SECONDS + seconds, 0).expect("a valid time");
    format!(
        r#"{{"event_time": "{}", "product_id": {product}, "event_type": "view"}}"#,
        time.format("%Y-%m-%d %H:%M:%SZ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_malformed_kafka_messages_are_counted_and_never_stop_the_source() {
    const BAD: usize = 1_000_000;
    const GOOD: usize = 10;
    const CHUNK: usize = 50_000;
    let mock = MockCluster::new(1).expect("the mock cluster starts");
    mock.create_topic("web_clicks", 1, 1).expect("topic created");
    let brokers = mock.bootstrap_servers();
    let mut server = DiffmartProcess::start(&["--no-generator", "--retention", "30d", "--kafka-brokers", &brokers]);
    server.wait_ready(READY).await;

    let client = server.connect().await;
    let producer = Arc::new(producer(&brokers));
    let mut produced = 0;
    for chunk in 0..BAD / CHUNK {
        let batch = producer.clone();
        produced += tokio::task::spawn_blocking(move || {
            let mut sent = 0;
            for i in chunk * CHUNK..(chunk + 1) * CHUNK {
                // Good messages among the bad ones, from the first to the last.
                if i % (BAD / (GOOD - 1)) == 0 {
                    send(&batch, "web_clicks", click(i as i64 / 1000, 1).as_bytes());
                    sent += 1;
                }
                let bad = match i % 4 {
                    0 => format!("{{oops {i}"),
                    1 => r#"{"event_time": "2025-06-01 12:00:00Z", "product_id": "one", "event_type": "view"}"#.into(),
                    2 => r#"{"product_id": 1}"#.into(),
                    _ => format!("[{i}]"),
                };
                send(&batch, "web_clicks", bad.as_bytes());
                sent += 1;
            }
            batch.flush(Duration::from_secs(120)).expect("the messages are delivered");
            sent
        })
        .await
        .expect("producing");
        // The mock cluster keeps only the newest messages of a partition (about 100,000
        // of these): diffmart reads each chunk before the next is produced.
        wait_rows(
            &client,
            &format!(
                "SELECT position >= {produced} FROM diffmart_sources \
                 WHERE kind = 'kafka' AND name = 'web_clicks' AND partition = 0"
            ),
            &[&["t"]],
            CATCH_UP,
        )
        .await;
    }

    let expected_messages = (BAD + GOOD).to_string();
    wait_rows(
        &client,
        "SELECT messages, errors, status FROM diffmart_sources WHERE kind = 'kafka' AND name = 'web_clicks' AND partition = 0",
        &[&[&expected_messages, &BAD.to_string(), "connected"]],
        CATCH_UP,
    )
    .await;
    assert!(server.is_running(), "diffmart exited; stderr:\n{}", server.stderr());
    // Bounded: the newest errors only, numbered up to the count.
    let kept = text_rows(
        &client,
        "SELECT count(*), min(error_number), max(error_number) FROM diffmart_source_errors \
         WHERE kind = 'kafka' AND name = 'web_clicks' AND partition = 0",
    )
    .await;
    assert_eq!(kept, [[KEPT.to_string(), (BAD as i64 - KEPT + 1).to_string(), BAD.to_string()]]);
    let newest = text_rows(
        &client,
        &format!("SELECT position, error, payload FROM diffmart_source_errors WHERE error_number = {BAD}"),
    )
    .await;
    assert_eq!(newest.len(), 1, "{newest:?}");
    assert_eq!(newest[0][2], format!("[{}]", BAD - 1), "the last bad message is kept with its payload");
    assert_eq!(errors_metric(&server, "kafka", "web_clicks", 0).await, Some(BAD.to_string()));
    // The good messages all arrived, and the views have them.
    assert_eq!(text_rows(&client, "SELECT count(*) FROM web_clicks").await, [[GOOD.to_string()]]);
    assert_eq!(text_rows(&client, "SELECT sum(clicks) FROM web_clicks_minutely").await, [[GOOD.to_string()]]);
}

/// The upstream tables CDC mirrors, as the original demo creates them.
const UPSTREAM_TABLES: &str = r#"
CREATE TABLE product_inventory (
  product_id int PRIMARY KEY, product_name varchar, stock_level int, reorder_threshold int,
  supplier varchar, base_price NUMERIC(10,2)
);
CREATE TABLE orders (
  order_id int PRIMARY KEY, order_time timestamptz, product_id int, quantity int, customer_id varchar
);
ALTER TABLE product_inventory REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
"#;

/// Whether the slot has confirmed a position past `lsn`.
async fn confirmed_past(db: &Client, lsn: &str) -> bool {
    let sql = format!(
        "SELECT coalesce(confirmed_flush_lsn > '{lsn}'::pg_lsn, false) FROM pg_replication_slots \
         WHERE slot_name = 'diffmart_cdc'"
    );
    text_rows(db, &sql).await == [["t"]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_rows_diffmart_cannot_read_are_reported_and_cdc_goes_on() {
    let pg = tokio::task::spawn_blocking(TestPostgres::start).await.expect("starting PostgreSQL");
    let db = pg.create_database("shop").await;
    db.batch_execute(UPSTREAM_TABLES).await.expect("creating the upstream tables");
    // The snapshot copies a price diffmart has no value for.
    db.batch_execute(
        "INSERT INTO product_inventory VALUES (1, 'Lamp', 40, 10, 'Acme', 12.50), (2, 'Desk', 5, 2, 'Acme', 'NaN')",
    )
    .await
    .unwrap();
    let cdc_url = format!("postgres://postgres@127.0.0.1:{}/shop", pg.port());
    let mut server = DiffmartProcess::start(&["--no-generator", "--cdc-url", &cdc_url]);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    let inventory = "SELECT product_id, base_price FROM product_inventory ORDER BY product_id";
    wait_rows(&client, inventory, &[&["1", "12.50"]], CATCH_UP).await;

    // One transaction with a good row, an infinite order time and an update to NaN
    // (the old row must go), then a good one.
    db.batch_execute(
        "BEGIN;
         INSERT INTO orders VALUES (1, 'infinity', 1, 1, 'c1'), (2, '2025-06-01 12:00:00+00', 1, 2, 'c2');
         UPDATE product_inventory SET base_price = 'NaN' WHERE product_id = 1;
         INSERT INTO product_inventory VALUES (3, 'Chair', 30, 5, 'Acme', 5.00);
         COMMIT;",
    )
    .await
    .unwrap();
    let before_last = text_rows(&db, "SELECT pg_current_wal_lsn()::text").await[0][0].clone();
    db.batch_execute("INSERT INTO orders VALUES (3, '2025-06-01 12:05:00+00', 3, 1, 'c3')").await.unwrap();

    wait_rows(&client, "SELECT order_id FROM orders ORDER BY order_id", &[&["2"], &["3"]], CATCH_UP).await;
    wait_rows(&client, inventory, &[&["3", "5.00"]], CATCH_UP).await;
    wait_rows(
        &client,
        "SELECT status, messages, errors FROM diffmart_sources WHERE kind = 'postgres-cdc'",
        // Row changes: two snapshot rows, four in the first transaction, one in the last.
        &[&["streaming", "7", "3"]],
        CATCH_UP,
    )
    .await;
    let errors = text_rows(
        &client,
        "SELECT error_number, name, relation, position > 0, error, payload FROM diffmart_source_errors \
         WHERE kind = 'postgres-cdc' ORDER BY error_number",
    )
    .await;
    let summary: Vec<(&str, &str, bool, bool)> = errors
        .iter()
        .map(|r| (r[0].as_str(), r[2].as_str(), r[3] == "t", r[4].contains("NaN") || r[4].contains("infinity")))
        .collect();
    assert_eq!(
        summary,
        [("1", "product_inventory", true, true), ("2", "orders", true, true), ("3", "product_inventory", true, true)],
        "{errors:#?}"
    );
    assert!(errors[1][5].contains("infinity") && errors[1][5].contains("c1"), "the raw values: {errors:#?}");
    assert_eq!(errors_metric(&server, "postgres-cdc", "diffmart_cdc", 0).await, Some("3".into()));
    // The slot is confirmed past the transaction after the bad rows: upstream frees its WAL.
    let deadline = Instant::now() + CATCH_UP;
    while !confirmed_past(&db, &before_last).await {
        assert!(Instant::now() < deadline, "the slot is not confirmed past {before_last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The views are those of the rows diffmart could read.
    assert_eq!(
        text_rows(&client, "SELECT product_id, base_price FROM product_stock_status ORDER BY product_id").await,
        [["3", "5.00"]]
    );
    assert!(server.is_running(), "diffmart exited; stderr:\n{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_event_is_refused_and_later_events_are_not_late() {
    let mock = MockCluster::new(1).expect("the mock cluster starts");
    mock.create_topic("web_clicks", 1, 1).expect("topic created");
    let brokers = mock.bootstrap_servers();
    let mut server = DiffmartProcess::start(&[
        "--no-generator",
        "--retention",
        "1h",
        "--max-event-skew",
        "1h",
        "--kafka-brokers",
        &brokers,
    ]);
    server.wait_ready(READY).await;
    let producer = producer(&brokers);
    for minute in 0..10 {
        send(&producer, "web_clicks", click(minute * 60, 1).as_bytes());
    }
    // A year ahead: refused. Then the stream goes on where it was.
    send(&producer, "web_clicks", click(365 * 86_400, 1).as_bytes());
    for minute in 10..15 {
        send(&producer, "web_clicks", click(minute * 60, 1).as_bytes());
    }
    producer.flush(Duration::from_secs(30)).expect("the messages are delivered");

    let client = server.connect().await;
    wait_rows(
        &client,
        "SELECT messages, errors FROM diffmart_sources WHERE kind = 'kafka' AND name = 'web_clicks' AND partition = 0",
        &[&["16", "1"]],
        CATCH_UP,
    )
    .await;
    let refused = text_rows(&client, "SELECT position, error FROM diffmart_source_errors").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0][0], "10", "the far-future message's offset");
    assert!(refused[0][1].contains("max-event-skew"), "{refused:?}");
    assert_eq!(text_rows(&client, "SELECT count(*) FROM web_clicks").await, [["15"]]);
    // The watermark is the newest event taken (minute 14), and nothing was late.
    let minute_14 = (START_SECONDS + 14 * 60) * 1_000_000;
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let rows = text_rows(&client, "SELECT watermark, late_events FROM retail_watermark").await;
        if let [row] = &rows[..]
            && parse_wire_timestamp(&row[0]) == minute_14
        {
            assert_eq!(row[1], "0", "no event was late");
            break;
        }
        assert!(Instant::now() < deadline, "retail_watermark is {rows:?}, not minute 14");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text_rows(&client, "SELECT sum(clicks) FROM web_clicks_minutely").await, [["15"]]);
    assert!(server.is_running(), "diffmart exited; stderr:\n{}", server.stderr());
}

/// Needs the `generator-batch` failpoint, which only `--features failpoints` compiles in.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_engine_thread_ends_the_process() {
    // The generator's thread panics at its 200th hand-over, once the server is serving.
    let failpoints = [("FAILPOINTS", "generator-batch=200*off->panic(injected fault)")];
    let mut server = DiffmartProcess::start_with_env(&failpoints, &["--generator-rate", "20"]);
    server.wait_ready(READY).await;
    let status = server.wait_exit(Duration::from_secs(120)).expect("diffmart exits after the panic");
    assert_eq!(status.code(), Some(diffmart::engine::panics::ENGINE_PANIC_EXIT_CODE), "{status}");
    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(lines.len(), 1, "one line about the panic: {stderr}");
    assert!(lines[0].contains("engine thread diffmart-generator panicked: injected fault"), "{stderr}");
}
