//! Kafka sinks resume exactly after a restart, kill -9 included: the real binary on a
//! data directory, with sinks, killed with SIGKILL at random moments while its inputs
//! flow (Kafka sources reading a backlog, the generator), and restarted. Read with
//! `isolation.level=read_committed`, each sink topic then holds every change of its
//! relation once: folded, it equals the relation as diffmart serves it over pgwire,
//! and no row is inserted twice without a delete between, or deleted when absent.
//!
//! Runs against librdkafka's mock cluster, whose brokers take transactions (fencing
//! included) but do not hide what they did not commit: a `read_committed` consumer
//! sees every message, those of a transaction cut short by the kill too. So the test
//! reads as a broker would let it: each message carries the logical time its store
//! step reaches (`diffmart-upper`), each transaction ends with a progress record, and
//! of each run's messages (its offsets lie between the ends of the partitions after
//! the kill before it and after its own) those up to the run's newest progress record
//! are its committed ones.
//!
//! Run: `cargo test --release --test sink_resume`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diffmart::engine::Catalog;
use diffmart::json::{parse_object, row_from_object};
use diffmart::sinks::kafka::UPPER_HEADER;
use diffmart::sinks::kafka::progress::Progress;
use diffmart_dataflows::datum::RelationSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use support::server::DiffmartProcess;
use support::{CanonicalRow, canonical_datum, pg_canonical_rows};

const READY: Duration = Duration::from_secs(90);

const RETAIL_TOPICS: [(&str, i32); 4] =
    [("web_clicks", 2), ("purchases", 2), ("competitor_prices", 1), ("restocks", 1)];

/// The sinks under test: relation, topic, partitions. Their rows are sets (each at
/// most once), so a sink's changes alternate insert, delete per row. Enough partitions
/// that none outgrows the 5 MB a mock partition keeps.
const SINKS: [(&str, &str, i32); 3] = [
    ("product_stock_status", "stock_out", 2),
    ("web_clicks_minutely", "clicks_out", 2),
    ("sales_profit", "profit_out", 10),
];

const PROGRESS_TOPIC: &str = "diffmart-sink-progress";

/// Where each partition (topic, partition) ended at one moment.
type PartitionEnds = BTreeMap<(String, i32), i64>;

/// Which run wrote the message at `offset` of `topic`/`partition`, given where each
/// killed run's messages end (the run after the last kill is `run_ends.len()`).
fn run_of(run_ends: &[PartitionEnds], topic: &str, partition: i32, offset: i64) -> usize {
    let key = (topic.to_string(), partition);
    run_ends.iter().position(|ends| offset < ends[&key]).unwrap_or(run_ends.len())
}

/// The seed of the test's random choices: `SINK_RESUME_SEED`, or the clock's. Printed,
/// so a failure can be repeated.
fn seed() -> u64 {
    let seed = match std::env::var("SINK_RESUME_SEED") {
        Ok(seed) => seed.parse().expect("SINK_RESUME_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("seed {seed} (SINK_RESUME_SEED={seed} repeats its choices)");
    seed
}

/// Writes the retail generator's events to their topics, one message per broker batch
/// (so reading them back takes a while); returns how many.
fn produce_backlog(brokers: &str, seed: u64, events: usize) -> i64 {
    use diffmart::pipelines::retail::generator::RetailGenerator;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .expect("a producer");
    let mut messages = 0;
    for event in RetailGenerator::new(seed, 1_748_779_200_000_000).take(events) {
        let Some((topic, key, json)) = diffmart::produce::encode_event(&event).unwrap() else { continue };
        while producer.send(BaseRecord::to(topic).key(&key).payload(&json)).is_err() {
            producer.poll(Duration::from_millis(20));
        }
        messages += 1;
    }
    producer.flush(Duration::from_secs(60)).expect("messages delivered");
    messages
}

/// One message of a sink topic: its offset, key, the row (as JSON, without op and
/// diff), the diff, and the upper of its store step.
struct Change {
    offset: i64,
    key: String,
    row: String,
    diff: i64,
    upper: u64,
}

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sink-resume-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer")
}

/// Every message of `topic`/`partition`, in order.
fn read_partition<T>(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    mut read: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let (low, _) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
    assert_eq!(low, 0, "{topic}/{partition}: the mock broker dropped the oldest messages (it keeps 5 MB)");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "{topic}/{partition}: no end in sight after {} messages", messages.len());
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => messages.push(read(&message)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("reading {topic}/{partition}: {e}"),
            None => {}
        }
    }
    messages
}

fn sink_changes(consumer: &BaseConsumer, topic: &str, partition: i32) -> Vec<Change> {
    read_partition(consumer, topic, partition, |message| {
        let key = String::from_utf8(message.key().expect("a keyed message").to_vec()).unwrap();
        let mut object: serde_json::Map<String, Value> =
            serde_json::from_slice(message.payload().expect("a payload")).unwrap();
        let diff = object.remove("diff").and_then(|d| d.as_i64()).expect("a diff");
        let op = object.remove("op").expect("an op");
        assert_eq!(op, Value::from(if diff > 0 { "insert" } else { "delete" }), "{topic}: {object:?}");
        let headers = message.headers().expect("headers");
        let upper = headers.iter().find(|h| h.key == UPPER_HEADER).and_then(|h| h.value).expect("an upper header");
        let upper = std::str::from_utf8(upper).unwrap().parse().unwrap();
        Change { offset: message.offset(), key, row: Value::Object(object).to_string(), diff, upper }
    })
}

/// The progress records of the sinks, with their offsets.
fn progress_records(consumer: &BaseConsumer) -> Vec<(i64, Progress)> {
    read_partition(consumer, PROGRESS_TOPIC, 0, |message| {
        (message.offset(), Progress::decode(message.payload().expect("a payload")).unwrap())
    })
}

/// The end of every partition the sinks write (sink topics and the progress topic).
fn partition_ends(brokers: &str) -> PartitionEnds {
    let consumer = consumer(brokers);
    let mut ends = BTreeMap::new();
    let topics = SINKS.iter().map(|(_, topic, partitions)| (*topic, *partitions)).chain([(PROGRESS_TOPIC, 1)]);
    for (topic, partitions) in topics {
        for partition in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
            ends.insert((topic.to_string(), partition), high);
        }
    }
    ends
}

/// The committed changes of a sink topic, partition by partition: of each run's
/// messages (`run_ends`: where each killed run's messages end), those up to the upper
/// of the run's newest progress record. Also counts the messages left out.
fn committed_changes(
    brokers: &str,
    topic: &str,
    partitions: i32,
    run_ends: &[PartitionEnds],
) -> (Vec<Vec<Change>>, usize) {
    let consumer = consumer(brokers);
    let progress = progress_records(&consumer);
    let mut committed_upper = vec![None; run_ends.len() + 1];
    for (offset, record) in &progress {
        let run = run_of(run_ends, PROGRESS_TOPIC, 0, *offset);
        committed_upper[run] = Some(record.upper);
    }
    let mut left_out = 0;
    let mut committed = Vec::new();
    for partition in 0..partitions {
        let mut kept = Vec::new();
        for change in sink_changes(&consumer, topic, partition) {
            let run = run_of(run_ends, topic, partition, change.offset);
            if committed_upper[run].is_some_and(|upper| change.upper <= upper) {
                kept.push(change);
            } else {
                left_out += 1;
            }
        }
        committed.push(kept);
    }
    (committed, left_out)
}

/// Every message of the key a fold error names, and the progress records: what the
/// sinks wrote around a failure.
fn history(brokers: &str, topic: &str, partitions: i32, run_ends: &[PartitionEnds], error: &str) -> String {
    let key = error.split("of key ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    let consumer = consumer(brokers);
    let mut out = format!("run ends: {run_ends:?}\nprogress:");
    for (offset, record) in progress_records(&consumer) {
        out += &format!(" {offset}:{}", record.upper);
    }
    for partition in 0..partitions {
        for change in sink_changes(&consumer, topic, partition) {
            if change.key == key {
                out += &format!(
                    "\n{topic}/{partition}@{} upper {} diff {} {}",
                    change.offset, change.upper, change.diff, change.row
                );
            }
        }
    }
    out
}

/// Checks that no change appears twice and none is missing in between: per row, the
/// copies never go below zero nor above one (a relation of sets). Returns the rows the
/// changes add up to, in canonical form, sorted.
fn fold(spec: &RelationSpec, partitions: &[Vec<Change>]) -> Result<Vec<CanonicalRow>, String> {
    let mut copies: BTreeMap<&str, i64> = BTreeMap::new();
    for changes in partitions {
        for (at, change) in changes.iter().enumerate() {
            let count = copies.entry(&change.row).or_default();
            *count += change.diff;
            if !(0..=1).contains(count) {
                return Err(format!(
                    "{}: message {at} of key {} leaves {count} copies of {} (a change delivered twice, or one missing)",
                    spec.name, change.key, change.row
                ));
            }
        }
    }
    let mut rows: Vec<CanonicalRow> = copies
        .into_iter()
        .filter(|(_, count)| *count == 1)
        .map(|(row, _)| {
            let object = parse_object(row.as_bytes()).unwrap();
            let row = row_from_object(spec, &object).unwrap_or_else(|e| panic!("{}: {row}: {e}", spec.name));
            row.iter().map(canonical_datum).collect()
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Waits until every sink topic, folded, equals its relation over pgwire (the inputs
/// have stopped, so both settle); panics on a change delivered twice or skipped.
async fn assert_sinks_equal_relations(brokers: &str, client: &tokio_postgres::Client, run_ends: &[PartitionEnds]) {
    let catalog = Catalog::all_pipelines();
    for (relation, topic, partitions) in SINKS {
        let spec = catalog.lookup(relation).unwrap().1;
        let deadline = Instant::now() + READY;
        loop {
            let want = pg_canonical_rows(client, spec).await;
            let (committed, left_out) = committed_changes(brokers, topic, partitions, run_ends);
            let got = fold(spec, &committed)
                .unwrap_or_else(|e| panic!("{e}\n{}", history(brokers, topic, partitions, run_ends, &e)));
            if got == want {
                assert!(!want.is_empty(), "{relation} is empty: the test proves nothing of it");
                let messages: usize = committed.iter().map(Vec::len).sum();
                println!(
                    "{relation}: {} rows, as its sink's {messages} committed changes add up to ({left_out} uncommitted left out)",
                    want.len()
                );
                break;
            }
            if Instant::now() > deadline {
                let diff = support::multiset_diff(
                    &spec.columns.iter().map(|c| c.name).collect::<Vec<_>>(),
                    1,
                    &want,
                    &got,
                    "pgwire",
                    "sink",
                    10,
                );
                panic!("{relation}: the sink's changes do not add up to it:\n{}", diff.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Kafka messages read over every partition, as `diffmart_sources` reports them.
async fn kafka_read(client: &tokio_postgres::Client) -> (i64, bool) {
    let sql = "SELECT position, lag FROM diffmart_sources WHERE kind = 'kafka' AND partition >= 0";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let read = rows.iter().filter_map(|r| r.get::<_, Option<i64>>(0)).sum();
    let partitions: usize = RETAIL_TOPICS.iter().map(|(_, p)| *p as usize).sum();
    (read, rows.len() >= partitions && rows.iter().all(|r| r.get::<_, Option<i64>>(1) == Some(0)))
}

async fn generator_finished(client: &tokio_postgres::Client) -> bool {
    let sql = "SELECT status FROM diffmart_sources WHERE kind = 'generator'";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.first().is_some_and(|r| r.get::<_, String>(0) == "finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_resume_exactly_after_kill_9() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mock = MockCluster::new(1).expect("the mock cluster starts");
    for (topic, partitions) in RETAIL_TOPICS {
        mock.create_topic(topic, partitions, 1).expect("topic created");
    }
    for (_, topic, partitions) in SINKS {
        mock.create_topic(topic, partitions, 1).expect("topic created");
    }
    mock.create_topic(PROGRESS_TOPIC, 1, 1).expect("topic created");
    let brokers = mock.bootstrap_servers();
    let messages = produce_backlog(&brokers, seed, 8000);
    // Reading the backlog takes several rounds.
    mock.broker_round_trip_time(-1, Duration::from_millis(5)).unwrap();

    let sinks: Vec<String> = SINKS.iter().map(|(relation, topic, _)| format!("{relation}={topic}")).collect();
    let mut options = vec![
        "--workers",
        "2",
        "--kafka-brokers",
        &brokers,
        "--checkpoint-every-mib",
        "1",
        "--generator-rate",
        "4000",
        "--generator-events",
        "80000",
        "--generator-start",
        "2025-06-01 12:00:00",
        "--generator-seed",
        "7",
    ];
    for sink in &sinks {
        options.extend(["--kafka-sink", sink]);
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("data");
    let mut stderr = String::new();
    let mut run_ends = Vec::new();
    for round in 1..=4 {
        let mut server = DiffmartProcess::start_on(&dir, &options);
        server.wait_ready(READY).await;
        // Not a wait for something: the moment of the crash.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..=4000))).await;
        let (read, _) = kafka_read(&server.connect().await).await;
        server.kill9();
        stderr += &server.stderr();
        run_ends.push(partition_ends(&brokers));
        println!("round {round}: killed after {read} of {messages} Kafka messages");
    }
    mock.broker_round_trip_time(-1, Duration::ZERO).unwrap();
    let mut server = DiffmartProcess::start_on(&dir, &options);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    let deadline = Instant::now() + READY;
    loop {
        let (read, caught_up) = kafka_read(&client).await;
        if read == messages && caught_up && generator_finished(&client).await {
            break;
        }
        assert!(read <= messages, "{read} Kafka messages read of {messages}");
        assert!(Instant::now() < deadline, "the inputs did not finish: {read} of {messages} Kafka messages");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_sinks_equal_relations(&brokers, &client, &run_ends).await;
    stderr += &server.stderr();
    assert!(stderr.contains("wrote checkpoint"), "no checkpoint was written: the test proves less than it says");
    assert!(stderr.contains("they resume there"), "the sinks never resumed");
}
