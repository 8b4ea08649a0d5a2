//! Kafka sources: topics whose JSON messages become rows of input relations.
//!
//! A source is a declaration ([`KafkaSource`]: topic, relation, decoder); one
//! consumer loop ([`reader`]) serves them all. There are as many readers as
//! timely workers, each a thread with its own consumer and its own share of the
//! partitions, so no reader handles everything.
//!
//! Exactly once within a run: partitions are assigned manually at offsets diffmart
//! tracks itself (the next offset to read, per partition). A message below that
//! offset is a redelivery and is skipped; after a broker outage, a re-assignment or
//! a new consumer, reading resumes exactly there. Messages are applied in the
//! order they are read; offsets are not committed back as a start point, because
//! the views live in memory: every start reads from `--kafka-start` again.
//!
//! A topic may feed a table (`user_events`): then a message is an upsert by the
//! table's primary key (a row with a key already there replaces it, the same row
//! again changes nothing), resolved by the engine's write path. Producers key such
//! messages by the primary key, so one key stays in one partition and its upserts
//! apply in offset order; a key that arrives on two partitions anyway is resolved
//! in the order the readers hand the messages over (the table holds one row for it).

pub mod decode;
mod reader;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use diffmart_dataflows::casino::GamingTransaction;
use diffmart_dataflows::datum::{Record, RelationSpec, Row};
use diffmart_dataflows::ecommerce::UserEvent;
use diffmart_dataflows::pricing::ProductEvent;
use diffmart_dataflows::retail::{CompetitorPrice, Purchase, Restock, WebClick};

use crate::serving::Engine;
use crate::sources::status::StatusRelations;

/// `kind` of Kafka rows in `diffmart_sources` and `diffmart_source_errors`.
pub const SOURCE_KIND: &str = "kafka";

/// One message, as a decoder sees it.
pub struct KafkaMessage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The message's timestamp (producer or broker time), milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Turns a message into rows of the source's relation, or says why it cannot.
/// The rows are checked against the relation's types before they are applied;
/// a message is applied whole or not at all.
pub type Decoder = fn(&RelationSpec, &KafkaMessage<'_>) -> Result<Vec<Row>, String>;

/// A topic feeding an input relation.
#[derive(Clone)]
pub struct KafkaSource {
    /// The topic's name, before `--kafka-topic-prefix`.
    pub topic: &'static str,
    /// The input relation its rows go to.
    pub relation: &'static RelationSpec,
    pub decode: Decoder,
}

impl KafkaSource {
    /// One JSON object per message, fields named like the relation's columns
    /// (see [`decode`] for the accepted JSON of each column type).
    pub fn json(topic: &'static str, relation: &'static RelationSpec) -> KafkaSource {
        KafkaSource { topic, relation, decode: json_columns }
    }

    /// A source with its own decoder (other field names, several rows per message…).
    pub fn custom(topic: &'static str, relation: &'static RelationSpec, decode: Decoder) -> KafkaSource {
        KafkaSource { topic, relation, decode }
    }
}

fn json_columns(spec: &RelationSpec, message: &KafkaMessage<'_>) -> Result<Vec<Row>, String> {
    let object = decode::parse_object(message.payload)?;
    Ok(vec![decode::row_from_object(spec, &object)?])
}

/// The retail demo's four topics (`shared/spec/PIPELINES.md` §A), written by its
/// producers (and by `diffmart produce`) as JSON objects named like the columns.
pub fn retail_sources() -> Vec<KafkaSource> {
    vec![
        KafkaSource::json("web_clicks", WebClick::spec()),
        KafkaSource::json("competitor_prices", CompetitorPrice::spec()),
        KafkaSource::json("purchases", Purchase::spec()),
        KafkaSource::json("restocks", Restock::spec()),
    ]
}

/// The e-commerce events (§B), as JSON objects named like `user_events`' columns
/// (`event_data` any JSON value); an upsert by `event_id`.
pub fn ecommerce_sources() -> Vec<KafkaSource> {
    vec![KafkaSource::json("user_events", UserEvent::spec())]
}

/// The casino's transactions (§C), as its original generator writes them
/// (`transaction_time` as `"YYYY-MM-DD HH:MM:SS"`, UTC).
pub fn casino_sources() -> Vec<KafkaSource> {
    vec![KafkaSource::json("gaming-transactions", GamingTransaction::spec())]
}

/// Every topic diffmart reads with `--kafka-brokers`. Other pipelines add theirs
/// here: a `KafkaSource::json(topic, Record::spec())` line when the JSON fields are
/// the column names, `KafkaSource::custom` otherwise.
pub fn declared_sources() -> Vec<KafkaSource> {
    [retail_sources(), ecommerce_sources(), casino_sources(), inventory_sources(), pricing_sources()].concat()
}

/// The inventory demo's topics (`shared/spec/PIPELINES.md` §D), in the original's JSON.
pub fn inventory_sources() -> Vec<KafkaSource> {
    use crate::sources::inventory_json::{decode_order_events, decode_product_updates};
    use diffmart_dataflows::inventory::{OrderEvent, ProductUpdate};
    vec![
        KafkaSource::custom("product-updates", ProductUpdate::spec(), decode_product_updates),
        KafkaSource::custom("order-events", OrderEvent::spec(), decode_order_events),
    ]
}

/// Pricing (§E): `{"event_type", "product_id", "user_id", "timestamp": epoch ms, "price"}`;
/// invalid events fail `product_events`' CHECK and are counted as bad messages.
pub fn pricing_sources() -> Vec<KafkaSource> {
    vec![KafkaSource::json("product-events", ProductEvent::spec())]
}

/// Where to start reading partitions at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StartFrom {
    /// Everything the topics hold.
    Earliest,
    /// Only messages written after start-up (partitions created later are read whole).
    Latest,
}

/// How to reach Kafka and read it.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Prepended to every declared topic name.
    pub topic_prefix: String,
    pub start: StartFrom,
    /// Consumer group id: identifies diffmart's consumers to the brokers. Partitions
    /// are assigned by diffmart, not by the group, and offsets are not committed.
    pub group_id: String,
    /// Reader threads (the number of timely workers).
    pub readers: usize,
    /// Extra librdkafka properties (`security.protocol`, …); they override diffmart's.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            topic_prefix: String::new(),
            start: StartFrom::Earliest,
            group_id: "diffmart".into(),
            readers: 1,
            properties: Vec::new(),
        }
    }
}

/// A topic to read, resolved against the catalog.
struct Topic {
    /// The full topic name (prefix included).
    name: String,
    relation: usize,
    spec: &'static RelationSpec,
    decode: Decoder,
}

/// The running readers. Dropping it stops them.
pub struct KafkaSources {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl KafkaSources {
    /// Starts the readers. Returns at once: brokers that are down, or topics that do
    /// not exist yet, are waited for in the background (see `diffmart_sources`).
    pub fn start(engine: &Engine, config: KafkaConfig, sources: Vec<KafkaSource>) -> anyhow::Result<KafkaSources> {
        if config.readers == 0 {
            bail!("Kafka sources need at least one reader");
        }
        let catalog = engine.catalog();
        let mut names = HashSet::new();
        let mut topics = Vec::new();
        for source in sources {
            let name = format!("{}{}", config.topic_prefix, source.topic);
            if !names.insert(name.clone()) {
                bail!("topic {name} is declared twice");
            }
            let (relation, spec) = catalog
                .lookup(source.relation.name)
                .with_context(|| format!("topic {name}: no relation {}", source.relation.name))?;
            if !catalog.is_input(relation) {
                bail!("topic {name}: {} is a view, not an input relation", spec.name);
            }
            topics.push(Topic { name, relation, spec, decode: source.decode });
        }
        // Each topic's relation is the topic's alone: the generator leaves it be.
        for topic in &topics {
            let owner = format!("Kafka topic {}", topic.name);
            engine
                .claim_relations(&[topic.relation], &owner, "produce to the topic instead")
                .map_err(anyhow::Error::msg)?;
        }
        let status = StatusRelations::of(catalog)?;
        let config = Arc::new(config);
        let topics = Arc::new(topics);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for index in 0..config.readers {
            let reader = reader::Reader::new(index, config.clone(), topics.clone(), engine.ingest(), status)
                .with_context(|| format!("creating Kafka reader {index}"))?;
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("diffmart-kafka-{index}"))
                    .spawn(move || reader.run(&stop))
                    .context("spawning a Kafka reader")?,
            );
        }
        tracing::info!(
            brokers = %config.brokers,
            readers = config.readers,
            topics = %topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","),
            "reading Kafka"
        );
        Ok(KafkaSources { stop, threads })
    }

    /// Stops the readers and waits for them.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for KafkaSources {
    fn drop(&mut self) {
        self.shut_down();
    }
}
