//! Kafka sinks: a relation's changes written to a topic as JSON.
//!
//! A sink is a declaration ([`KafkaSink`]: relation, topic, format); one thread
//! runs them all from the store's change feed. At start a sink writes the
//! relation's current rows (as inserts), then every change in order. Writes are
//! idempotent and retried without a time limit, so a broker outage delays
//! messages but neither loses nor repeats them within a run; a restarted server
//! writes its relations again from the start.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use diffmart_dataflows::datum::{Datum, RelationKind, RelationSpec, Row};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;

use crate::compute::RelationId;
use crate::engine::{ChangeBatch, Engine};
use crate::json::{datum_to_json, row_to_object};

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
    /// Messages handed to the producer.
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Every change before this logical time has been handed to the producer.
    pub written_upper: AtomicU64,
}

struct SinkContext {
    counters: Arc<SinkCounters>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, message)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(topic = rdkafka::Message::topic(message), "a sink message was not delivered: {e}");
            }
        }
    }
}

/// The running sinks. Dropping it flushes what is pending (for a few seconds) and stops.
pub struct KafkaSinks {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<SinkCounters>,
}

impl KafkaSinks {
    pub fn start(
        engine: &Engine,
        brokers: &str,
        properties: &[(String, String)],
        sinks: Vec<KafkaSink>,
    ) -> anyhow::Result<KafkaSinks> {
        let mut by_relation: HashMap<RelationId, Vec<KafkaSink>> = HashMap::new();
        for sink in sinks {
            let Some((id, spec)) = engine.catalog().lookup(&sink.relation) else {
                bail!("--kafka-sink: no relation named {}", sink.relation);
            };
            if sink.key_column.is_some_and(|c| c >= spec.columns.len()) {
                bail!("sink of {}: key column out of range", sink.relation);
            }
            by_relation.entry(id).or_default().push(sink);
        }
        let counters = Arc::new(SinkCounters::default());
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", "diffmart-sink")
            // No duplicates or reordering on retries, and retries never give up.
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .set("reconnect.backoff.max.ms", "2000");
        for (key, value) in properties {
            config.set(key, value);
        }
        let producer: BaseProducer<SinkContext> = config
            .create_with_context(SinkContext { counters: counters.clone() })
            .context("creating the Kafka sink producer")?;
        let (snapshot, feed) = engine.store().subscribe();
        let catalog_specs: HashMap<RelationId, &'static RelationSpec> =
            by_relation.keys().map(|&id| (id, engine.catalog().spec(id))).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writer = SinkWriter { producer, by_relation, specs: catalog_specs, counters: counters.clone() };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("diffmart-kafka-sink".into())
                .spawn(move || {
                    // The relations as they are now, then every change after.
                    let ids: Vec<RelationId> = writer.by_relation.keys().copied().collect();
                    for id in ids {
                        let rows: Vec<Row> = snapshot.rows(id);
                        for row in rows {
                            writer.write(id, &row, 1, &stop);
                        }
                    }
                    writer.counters.written_upper.store(snapshot.upper, Ordering::Release);
                    drop(snapshot);
                    writer.follow(feed, &stop);
                })
                .context("spawning the Kafka sink thread")?
        };
        Ok(KafkaSinks { stop, thread: Some(thread), counters })
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

impl Drop for KafkaSinks {
    fn drop(&mut self) {
        self.shut_down();
    }
}

struct SinkWriter {
    producer: BaseProducer<SinkContext>,
    by_relation: HashMap<RelationId, Vec<KafkaSink>>,
    specs: HashMap<RelationId, &'static RelationSpec>,
    counters: Arc<SinkCounters>,
}

/// How long stopping waits for pending messages.
const FLUSH_ON_STOP: Duration = Duration::from_secs(5);

impl SinkWriter {
    fn follow(&mut self, mut feed: tokio::sync::mpsc::UnboundedReceiver<Arc<ChangeBatch>>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match feed.try_recv() {
                Ok(batch) => {
                    for (relation, row, diff) in &batch.changes {
                        if self.by_relation.contains_key(relation) {
                            self.write(*relation, row, *diff, stop);
                        }
                    }
                    self.counters.written_upper.store(batch.upper.unwrap_or(u64::MAX), Ordering::Release);
                    self.producer.poll(Duration::ZERO);
                }
                // Waiting for changes is also when delivery reports are served.
                Err(TryRecvError::Empty) => {
                    self.producer.poll(Duration::from_millis(50));
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        if let Err(e) = self.producer.flush(FLUSH_ON_STOP) {
            tracing::warn!("Kafka sink: messages still pending at shutdown: {e}");
        }
    }

    /// Writes one change of a relation to each of its sinks.
    fn write(&mut self, relation: RelationId, row: &Row, diff: isize, stop: &AtomicBool) {
        let spec = self.specs[&relation];
        for sink in &self.by_relation[&relation] {
            let messages: Vec<Value> = match sink.format {
                SinkFormat::Changes => {
                    let mut object = row_to_object(spec, row);
                    object.insert("op".into(), Value::from(if diff > 0 { "insert" } else { "delete" }));
                    object.insert("diff".into(), Value::from(diff as i64));
                    vec![Value::Object(object)]
                }
                SinkFormat::Inserts(encode) if diff > 0 => vec![encode(spec, row); diff as usize],
                SinkFormat::Inserts(_) => Vec::new(),
            };
            let key = sink.key_column.map(|c| key_text(&row[c]));
            for message in messages {
                let payload = message.to_string();
                loop {
                    let mut record = BaseRecord::to(&sink.topic).payload(&payload);
                    if let Some(key) = &key {
                        record = record.key(key);
                    }
                    match self.producer.send(record) {
                        Ok(()) => {
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The local queue is full (broker slow or down): wait for room.
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                            if !stop.load(Ordering::Relaxed) =>
                        {
                            self.producer.poll(Duration::from_millis(100));
                        }
                        Err((e, _)) => {
                            self.counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(topic = %sink.topic, "cannot write a sink message: {e}");
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// A message key: text as is, anything else as its JSON.
fn key_text(datum: &Datum) -> String {
    match datum {
        Datum::Text(s) => s.clone(),
        other => datum_to_json(other).to_string(),
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
