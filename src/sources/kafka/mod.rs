//! Kafka sources: topics whose JSON messages become rows of input relations.
//!
//! A source is a declaration ([`KafkaSource`]: topic, relation, decoder), made by
//! the pipeline whose topic it is; one consumer loop ([`reader`]) serves them all.
//! There are as many readers as timely workers, each a thread with its own consumer
//! and its own share of the partitions, so no reader handles everything.
//!
//! Exactly once: partitions are assigned manually at offsets diffmart tracks itself
//! (the next offset to read, per partition). A message below that offset is a
//! redelivery and is skipped; after a broker outage, a re-assignment or a new
//! consumer, reading resumes exactly there. Each batch goes to ingest with the next
//! offsets of the partitions it read, and the input log keeps them in the same
//! record as the batch's changes: after a restart on a data directory, a partition
//! resumes at the offset logged last (`--kafka-start` only decides where partitions
//! never read before start), so no message is applied twice or skipped, also when
//! the process died between reading and applying. Offsets are never committed to
//! the brokers: the log is the one record of what went in.
//!
//! A topic may feed a table (`user_events`): then a message is an upsert by the
//! table's primary key (a row with a key already there replaces it, the same row
//! again changes nothing), resolved by the engine's write path. Producers key such
//! messages by the primary key, so one key stays in one partition and its upserts
//! apply in offset order; a key that arrives on two partitions anyway is resolved
//! in the order the readers hand the messages over (the table holds one row for it).

mod reader;
pub mod topic;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use diffmart_dataflows::datum::{Micros, RelationSpec};

pub use self::topic::{Decoder, Encoder, KafkaMessage, KafkaSource, json_columns};
use crate::engine::{Engine, RelationRows};
use crate::sources::clock::NewestEvent;
use crate::sources::status::StatusRelations;

/// `kind` of Kafka rows in `diffmart_sources` and `diffmart_source_errors`.
pub const SOURCE_KIND: &str = "kafka";

/// `--max-event-skew`'s default: an hour.
pub const DEFAULT_MAX_EVENT_SKEW: Micros = 3_600_000_000;

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
    /// A message with an event more than this ahead of the newest event its relation
    /// has taken is refused (`--max-event-skew`).
    pub max_event_skew: Micros,
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
            max_event_skew: DEFAULT_MAX_EVENT_SKEW,
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
    /// The newest event the relation has taken, shared by every reader of the topic.
    newest_event: NewestEvent,
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
            let newest_event = match engine.snapshot().relation(relation) {
                RelationRows::Events { events } => NewestEvent::new(events.newest()),
                _ => NewestEvent::new(None),
            };
            topics.push(Topic { name, relation, spec, decode: source.decode, newest_event });
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
        let resume = Arc::new(engine.recovered_positions());
        let mut threads = Vec::new();
        for index in 0..config.readers {
            let reader =
                reader::Reader::new(index, config.clone(), topics.clone(), engine.ingest(), status, resume.clone())
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
