//! `diffmart produce`: the demos' data producers, as one command.
//!
//! Writes the embedded generator's events (every pipeline's simulation, catalogs
//! first) to the Kafka topics diffmart reads: each event to the topic that feeds its
//! relation (`pipelines::kafka_sources`), in the JSON and with the key that
//! topic's declaration gives, which is what the demo's original producers wrote.
//! With `--cdc-url` it also writes the rows of relations a demo keeps in PostgreSQL
//! (`Pipeline::postgres_tables`: the retail demo's orders, as the original
//! `pg_seed.py` did), after creating and seeding those tables, for diffmart's CDC
//! to mirror.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use diffmart_dataflows::datum::{Micros, Row};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::arg_values::parse_key_value;
use crate::json::parse_timestamp;
use crate::pipelines::{PIPELINES, PostgresTables};
use crate::pipelines::{every_pipeline, kafka_sources};
use crate::sources::kafka::KafkaSource;
use crate::sources::{GeneratedEvent, now_micros};

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

/// The topic that carries each relation's rows, by relation name.
static TOPIC_OF: LazyLock<HashMap<&'static str, KafkaSource>> =
    LazyLock::new(|| kafka_sources().into_iter().map(|source| (source.relation.name, source)).collect());

/// A generated event as the original producers wrote it: its topic, key and JSON.
/// `None` for rows no topic carries: rows a demo keeps in PostgreSQL (orders) and
/// the rows of tables written over SQL.
pub fn encode_event(event: &GeneratedEvent) -> anyhow::Result<Option<(&'static str, String, String)>> {
    Ok(encode(event)?.map(|(source, key, json)| (source.topic, key, json)))
}

/// [`encode_event`], with the whole declaration of the event's topic.
fn encode(event: &GeneratedEvent) -> anyhow::Result<Option<(&'static KafkaSource, String, String)>> {
    let Some(source) = TOPIC_OF.get(event.relation) else { return Ok(None) };
    let (key, json) = source.encode_row(&event.row).map_err(|e| anyhow::anyhow!("{}: {e}", source.topic))?;
    Ok(Some((source, key, json)))
}

/// Connects to PostgreSQL and prepares every pipeline's tables there.
async fn prepare_postgres(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("PostgreSQL connection: {e}");
        }
    });
    for tables in postgres_tables() {
        tables.prepare(&client).await?;
    }
    Ok(client)
}

/// Every pipeline's PostgreSQL tables.
fn postgres_tables() -> Vec<&'static dyn PostgresTables> {
    PIPELINES.iter().filter_map(|pipeline| pipeline.postgres_tables()).collect()
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

/// Counts per topic and per PostgreSQL table, for the progress line.
struct Progress {
    counts: BTreeMap<&'static str, u64>,
    /// Rows written (or skipped) per PostgreSQL relation, in pipeline order.
    tables: Vec<(&'static str, u64)>,
    started: Instant,
    last_shown: Instant,
    terminal: bool,
}

impl Progress {
    /// `tables_to`: where the tables' rows go.
    fn line(&self, total: u64, event_time: Micros, tables_to: &str) -> String {
        let per_topic = self.counts.iter().map(|(t, n)| format!("{t} {n}"));
        let per_table = self.tables.iter().map(|(t, n)| format!("{t} {n} {tables_to}"));
        let rate = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let time = chrono::DateTime::from_timestamp_micros(event_time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let counts: Vec<String> = per_topic.chain(per_table).collect();
        format!("produced {total} events ({}), {rate:.1}/s, event time {time}", counts.join(", "))
    }

    fn show(&mut self, total: u64, event_time: Micros, tables_to: &str, last: bool) {
        let every = if self.terminal { Duration::from_secs(1) } else { Duration::from_secs(10) };
        if !last && self.last_shown.elapsed() < every {
            return;
        }
        self.last_shown = Instant::now();
        let line = self.line(total, event_time, tables_to);
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
        kafka_sources().iter().map(|source| format!("{}{}", options.kafka_topic_prefix, source.topic)).collect();
    runtime.block_on(create_topics(&config, &names, options.partitions))?;
    let postgres = match &options.cdc_url {
        Some(url) => Some(runtime.block_on(prepare_postgres(url))?),
        None => None,
    };
    let tables = postgres_tables();
    let tables_to = if postgres.is_some() { "into PostgreSQL" } else { "skipped: no --cdc-url" };

    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<ProduceContext> = config
        .clone()
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create_with_context(ProduceContext { deliveries: deliveries.clone() })
        .context("creating the Kafka producer")?;
    let send_event = |event: &GeneratedEvent, progress: &mut Progress| -> anyhow::Result<bool> {
        let Some((source, key, json)) = encode(event)? else { return Ok(false) };
        let topic_name = format!("{}{}", options.kafka_topic_prefix, source.topic);
        let time = source.stamps_event_time.then_some(event.event_time);
        send(&producer, &topic_name, &key, &json, time)?;
        *progress.counts.entry(source.topic).or_default() += 1;
        Ok(true)
    };

    let start = options.start.unwrap_or_else(now_micros);
    let simulation = every_pipeline(options.seed, start);
    let mut progress = Progress {
        counts: BTreeMap::new(),
        tables: tables.iter().map(|t| (t.relation().name, 0)).collect(),
        started: Instant::now(),
        last_shown: Instant::now(),
        terminal: std::io::stderr().is_terminal(),
    };
    // The catalogs first, as the demos' bootstrap; only those a topic carries
    // are sent, the tables are the server's.
    for event in &simulation.bootstrap {
        send_event(event, &mut progress)?;
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
        let mut table_rows: Vec<Vec<Row>> = vec![Vec::new(); tables.len()];
        let mut sent_now = 0u64;
        while sent_now < due.min(limit - produced).min(10_000) {
            let next = events.peek().expect("the generator never ends");
            if options.rate.is_none() && next.event_time > simulated_now {
                break;
            }
            let event = events.next().expect("peeked");
            event_time = event.event_time;
            sent_now += 1;
            if send_event(&event, &mut progress)? {
                continue;
            }
            if let Some(i) = tables.iter().position(|t| t.relation().name == event.relation) {
                progress.tables[i].1 += 1;
                if postgres.is_some() {
                    table_rows[i].push(event.row);
                }
            }
        }
        produced += sent_now;
        if let Some(client) = &postgres {
            for (table, rows) in tables.iter().zip(&table_rows) {
                runtime.block_on(table.insert(client, rows))?;
            }
        }
        producer.poll(Duration::ZERO);
        progress.show(produced, event_time, tables_to, false);
        if sent_now == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    producer.flush(Duration::from_secs(60)).context("waiting for Kafka to take the last messages")?;
    progress.show(produced, event_time, tables_to, true);
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} messages could not be delivered");
    }
    Ok(())
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
        let topics: Vec<&str> = kafka_sources().iter().map(|s| s.topic).collect();
        for topic in seen.keys() {
            assert!(topics.contains(topic), "{topic} is not a topic diffmart reads");
        }
        assert_eq!(seen.len(), topics.len(), "every topic gets events: {:?}", seen.keys());
    }
}
