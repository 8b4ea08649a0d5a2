//! Kafka sinks: a relation's changes written to a topic as JSON.
//!
//! A sink is a declaration ([`KafkaSink`]: relation, topic, format); one thread
//! runs them all from the store's change feed ([`writer`]), in transactions of a
//! producer with a stable `transactional.id`. A sink starts with its relation's rows
//! (as inserts), then writes every change in order.
//!
//! With a data directory the sinks resume exactly after a restart, a kill -9
//! included: each transaction records in a progress topic the logical time `U` its
//! changes reach ([`progress`]). At start-up, before the engine replays its log,
//! [`KafkaSinks::prepare`] fences off any earlier producer with the same id and reads
//! the newest committed `U`; the engine's replay subscribes to the store at exactly
//! `U` ([`crate::engine::SinkHold`]), and the sinks write every change after it and
//! nothing before. Checkpoints keep what a restart from `U` needs. Consumers that
//! read with `isolation.level=read_committed` so see every change exactly once.

pub mod progress;
mod writer;

pub use self::writer::UPPER_HEADER;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use diffmart_dataflows::datum::{RelationKind, RelationSpec, Row};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use serde_json::Value;

use self::progress::{Progress, sink_name};
use self::writer::{Chunk, Halt, ProgressTarget, SinkContext, SinkWriter};
use crate::compute::RelationId;
use crate::engine::store::DEFAULT_MAX_PENDING_CHANGES;
use crate::engine::{Catalog, Engine, ResumedFeed, SinkHold, Subscription};

/// Turns an inserted row of an append-only relation into a message body.
pub type RowEncoder = fn(&RelationSpec, &Row) -> Value;

/// What a sink writes for each change.
#[derive(Clone, Copy)]
pub enum SinkFormat {
    /// Every change: the row's columns, plus `"op"` (`"insert"` or `"delete"`) and
    /// `"diff"` (how many copies of the row appear or disappear).
    Changes,
    /// Append-only: one message per inserted row copy, built by the encoder;
    /// deletions (retention dropping old rows) are not sent.
    Inserts(RowEncoder),
}

/// A relation written to a topic.
#[derive(Clone)]
pub struct KafkaSink {
    pub relation: String,
    pub topic: String,
    pub format: SinkFormat,
    /// The column whose value keys the messages (so a key's changes stay in one
    /// partition, in order); `None` leaves partitioning to the producer.
    pub key_column: Option<usize>,
}

impl KafkaSink {
    /// `--kafka-sink RELATION=TOPIC`: every change, keyed by the primary key's first
    /// column for tables and by the first column otherwise.
    pub fn changes(spec: &RelationSpec, topic: impl Into<String>) -> KafkaSink {
        let key_column = match &spec.kind {
            RelationKind::Table { primary_key } => primary_key.first().copied(),
            _ => Some(0),
        };
        KafkaSink { relation: spec.name.into(), topic: topic.into(), format: SinkFormat::Changes, key_column }
    }
}

/// Parses `RELATION=TOPIC`.
pub fn parse_sink_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((relation, topic)) if !relation.trim().is_empty() && !topic.trim().is_empty() => {
            Ok((relation.trim().to_string(), topic.trim().to_string()))
        }
        _ => Err(format!("expected RELATION=TOPIC, got {text:?}")),
    }
}

/// Counts of what the sinks wrote, for logs and tests.
#[derive(Default, Debug)]
pub struct SinkCounters {
    /// Messages handed to the producer (again, for a transaction written twice).
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Every change before this logical time has been handed to the producer.
    pub written_upper: AtomicU64,
    /// Every change before this logical time is in a committed transaction.
    pub committed_upper: AtomicU64,
    /// Times the sinks fell too far behind the store and caught up from a snapshot.
    pub lagged: AtomicU64,
}

/// How the sinks' producer identifies, and where it records its progress.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// The producer's `transactional.id`: one per server; a new producer with the
    /// same id fences off the old one.
    pub transactional_id: String,
    /// Where each transaction records what it delivered, to resume from after a
    /// restart (`None`: no resuming, without a data directory).
    pub progress_topic: Option<String>,
}

impl Default for SinkSettings {
    fn default() -> SinkSettings {
        SinkSettings { transactional_id: "diffmart-sink".into(), progress_topic: None }
    }
}

/// How long start-up waits for the brokers to fence off an earlier producer.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sinks connected to Kafka, with what they delivered before, waiting for the
/// engine ([`PreparedSinks::hold`], then [`PreparedSinks::run`]).
pub struct PreparedSinks {
    producer: BaseProducer<SinkContext>,
    sinks: Vec<(RelationId, KafkaSink)>,
    counters: Arc<SinkCounters>,
    settings: SinkSettings,
    /// The newest committed progress record, if there is one.
    resumed: Option<Progress>,
    /// Every change before it is delivered.
    committed: Arc<AtomicU64>,
    /// Whether a sink follows a view completed at read time.
    wants_maintained: bool,
}

/// The running sinks. Dropping it commits what is written (waiting a few seconds
/// at most) and stops.
pub struct KafkaSinks {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<SinkCounters>,
    failed: tokio::sync::watch::Receiver<Option<String>>,
}

impl KafkaSinks {
    /// Starts sinks that do not resume on a running engine: each writes its relation's
    /// current rows, then every change.
    pub fn start(
        engine: &Arc<Engine>,
        brokers: &str,
        properties: &[(String, String)],
        sinks: Vec<KafkaSink>,
    ) -> anyhow::Result<KafkaSinks> {
        KafkaSinks::prepare(engine.catalog(), brokers, properties, sinks, SinkSettings::default())?.run(engine, None)
    }

    /// Connects the sinks' producer, fencing off any earlier one with the same
    /// transactional id (its open transaction is aborted), and reads where the sinks
    /// got to. Before the engine starts: it starts from there.
    pub fn prepare(
        catalog: &Catalog,
        brokers: &str,
        properties: &[(String, String)],
        sinks: Vec<KafkaSink>,
        settings: SinkSettings,
    ) -> anyhow::Result<PreparedSinks> {
        let mut resolved = Vec::new();
        for sink in sinks {
            let Some((id, spec)) = catalog.lookup(&sink.relation) else {
                bail!("--kafka-sink: no relation named {}", sink.relation);
            };
            if sink.key_column.is_some_and(|c| c >= spec.columns.len()) {
                bail!("sink of {}: key column out of range", sink.relation);
            }
            resolved.push((id, sink));
        }
        let counters = Arc::new(SinkCounters::default());
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", "diffmart-sink")
            .set("transactional.id", &settings.transactional_id)
            .set("linger.ms", "5")
            .set("reconnect.backoff.max.ms", "2000");
        for (key, value) in properties {
            config.set(key, value);
        }
        let producer: BaseProducer<SinkContext> = config
            .create_with_context(SinkContext { counters: counters.clone() })
            .context("creating the Kafka sink producer")?;
        producer.init_transactions(INIT_TIMEOUT).with_context(|| {
            format!("starting the Kafka sinks' transactions (transactional.id {})", settings.transactional_id)
        })?;
        let resumed = match &settings.progress_topic {
            Some(topic) => progress::read_newest(brokers, properties, topic, &settings.transactional_id)
                .with_context(|| format!("reading where the Kafka sinks got to, in {topic}"))?,
            None => None,
        };
        match &resumed {
            Some(progress) => tracing::info!(
                upper = progress.upper,
                "the Kafka sinks delivered every change before time {}; they resume there",
                progress.upper
            ),
            None => tracing::info!("the Kafka sinks start from their relations' current rows"),
        }
        let upper = resumed.as_ref().map_or(0, |p| p.upper);
        counters.committed_upper.store(upper, Ordering::Release);
        let wants_maintained = resolved.iter().any(|(id, _)| catalog.read_time_lookup(*id).is_some());
        Ok(PreparedSinks {
            wants_maintained,
            producer,
            sinks: resolved,
            counters,
            settings,
            resumed,
            committed: Arc::new(AtomicU64::new(upper)),
        })
    }

    /// Waits until the sinks stop for good (fenced off, a transaction that cannot
    /// be finished); says why.
    pub async fn failure(&self) -> String {
        let mut failed = self.failed.clone();
        match failed.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl PreparedSinks {
    /// What the engine's start owes the sinks: the replay's cut where they resume, and
    /// checkpoints kept for the next resume.
    pub fn hold(&self) -> SinkHold {
        SinkHold {
            resume_at: self.resumed.as_ref().map(|p| p.upper),
            delivered: self.committed.clone(),
            wants_maintained: self.wants_maintained,
        }
    }

    /// Runs the sinks on the started engine. `subscription` is the one the engine took
    /// at the resume point (its snapshot is delivered already, except to sinks the
    /// progress record does not name, which start from it); without one the sinks
    /// start from the store as it is now.
    pub fn run(self, engine: &Arc<Engine>, subscription: Option<ResumedFeed>) -> anyhow::Result<KafkaSinks> {
        let names: Vec<String> = self.sinks.iter().map(|(_, sink)| sink_name(&sink.relation, &sink.topic)).collect();
        let (snapshot, feed, fresh) = match (&self.resumed, subscription) {
            (Some(progress), Some((snapshot, feed))) => {
                if snapshot.upper != progress.upper {
                    bail!(
                        "the Kafka sinks resume at time {}, the engine's cut is at {}",
                        progress.upper,
                        snapshot.upper
                    );
                }
                let fresh: Vec<usize> = (0..names.len()).filter(|&i| !progress.sinks.contains(&names[i])).collect();
                for &i in &fresh {
                    tracing::info!("the Kafka sink {} is new: it starts from its relation's rows", names[i]);
                }
                (snapshot, feed, fresh)
            }
            (Some(progress), None) => {
                bail!(
                    "the Kafka sinks resume at time {}, and the engine was not started to resume them",
                    progress.upper
                )
            }
            (None, Some(_)) => bail!("the engine resumed Kafka sinks that have delivered nothing"),
            (None, None) => {
                let (snapshot, feed) =
                    engine.store().subscribe_with(DEFAULT_MAX_PENDING_CHANGES, self.wants_maintained);
                (snapshot, feed, (0..names.len()).collect())
            }
        };
        self.counters.written_upper.store(snapshot.upper, Ordering::Release);
        let relations: Vec<RelationId> = self.sinks.iter().map(|(id, _)| *id).collect();
        let feed = Subscription::from_feed(engine.catalog(), &relations, snapshot.clone(), feed);
        let first = (!fresh.is_empty()).then_some(Chunk::Snapshot { snapshot, sinks: fresh });
        let progress = self.settings.progress_topic.clone().map(|topic| ProgressTarget {
            topic,
            key: self.settings.transactional_id.clone(),
            sinks: names,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let mut writer = SinkWriter::new(
            self.producer,
            self.sinks,
            self.counters.clone(),
            progress,
            self.committed,
            engine.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("diffmart-kafka-sink".into())
            .spawn(move || match writer.run(first, feed) {
                Ok(()) => {}
                Err(Halt::Stopped) => {
                    tracing::warn!("Kafka sinks stopped with changes not committed: they are written after a restart")
                }
                Err(Halt::Failed(why)) => {
                    tracing::error!("the Kafka sinks stopped: {why}");
                    failed_tx.send_replace(Some(format!("the Kafka sinks stopped: {why}")));
                }
            })
            .context("spawning the Kafka sink thread")?;
        Ok(KafkaSinks { stop, thread: Some(thread), counters: self.counters, failed })
    }
}

impl Drop for KafkaSinks {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_options_parse() {
        assert_eq!(parse_sink_option("sales_profit=kpis"), Ok(("sales_profit".into(), "kpis".into())));
        assert!(parse_sink_option("sales_profit").is_err());
        assert!(parse_sink_option("=t").is_err());
    }
}
