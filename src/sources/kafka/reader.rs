//! One reader: a thread with its own consumer and its share of the partitions.
//!
//! The loop: find partitions (metadata), read what is there, hand rows, bad
//! messages and status changes to ingest as one batch, repeat. Partition `p` of
//! the `t`-th declared topic belongs to reader `(t + p) % readers`, a rule that
//! spreads single-partition topics too and never moves a partition when a topic grows.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Micros, RelationKind, validate_row};
use diffmart_dataflows::system::{SourceError, SourceStatus};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde_json::Value;

use super::{KafkaConfig, KafkaMessage, SOURCE_KIND, StartFrom, Topic};
use crate::engine::{Ingest, SourcePosition, SourcePositions, Update};
use crate::sources::now_micros;
use crate::sources::status::{StatusBoard, StatusRelations, StreamErrors, payload_preview};

/// How long a poll waits for the first message of a batch.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a batch keeps collecting messages that are already there.
const BATCH_TIME: Duration = Duration::from_millis(50);
const MAX_BATCH_MESSAGES: usize = 20_000;
/// Batches handed to ingest but not yet visible: past this the reader waits, so a
/// long backlog never piles up in memory ahead of compute.
const MAX_IN_FLIGHT: usize = 4;
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Metadata refresh while some topic is missing or the brokers are unreachable.
const DISCOVER_RETRY: Duration = Duration::from_secs(1);
/// Metadata refresh once every topic has been found (to see new partitions).
const DISCOVER_EVERY: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// The reader that owns partition `partition` of the `topic`-th declared topic.
fn owner(topic: usize, partition: i32, readers: usize) -> usize {
    (topic + partition.max(0) as usize) % readers
}

/// What librdkafka last reported about brokers and partitions.
#[derive(Default)]
struct Link {
    /// Broker id → whether diffmart's connection to it is up.
    brokers_up: HashMap<i32, bool>,
    /// (topic, partition) → what the latest statistics say of it.
    partitions: HashMap<(String, i32), PartitionStats>,
    /// The latest error librdkafka reported.
    last_error: Option<String>,
    /// When an error was last logged as a warning, and how many were not since.
    last_warned: Option<Instant>,
    unlogged: u64,
}

/// An outage makes librdkafka report an error every retry: warn at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
struct PartitionStats {
    leader: i32,
    high_watermark: Option<i64>,
    low_watermark: Option<i64>,
}

/// Receives librdkafka's callbacks (statistics, errors, logs) for one reader.
struct ReaderContext {
    index: usize,
    link: Mutex<Link>,
}

impl ClientContext for ReaderContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<Value>(statistics) else { return };
        let (brokers_up, partitions) = parse_statistics(&stats);
        let mut link = self.link.lock().unwrap();
        link.brokers_up = brokers_up;
        link.partitions = partitions;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = if reason.is_empty() { error.to_string() } else { reason.to_string() };
        let mut link = self.link.lock().unwrap();
        if link.last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            let unlogged = std::mem::take(&mut link.unlogged);
            let more =
                if unlogged > 0 { format!(" ({unlogged} more errors since the last warning)") } else { String::new() };
            tracing::warn!(reader = self.index, "Kafka: {text}{more}");
            link.last_warned = Some(Instant::now());
        } else {
            tracing::debug!(reader = self.index, "Kafka: {text}");
            link.unlogged += 1;
        }
        link.last_error = Some(text);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // Connection failures also arrive through `error` and show in
        // `diffmart_sources`; repeating every retry here would flood the log.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(reader = self.index, "librdkafka {facility}: {message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning if facility != "FAIL" => {
                tracing::warn!(reader = self.index, "librdkafka {facility}: {message}")
            }
            _ => tracing::debug!(reader = self.index, "librdkafka {facility}: {message}"),
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Broker states and per-partition watermarks from librdkafka's statistics JSON.
fn parse_statistics(stats: &Value) -> (HashMap<i32, bool>, HashMap<(String, i32), PartitionStats>) {
    let mut brokers_up = HashMap::new();
    for broker in stats["brokers"].as_object().into_iter().flat_map(|b| b.values()) {
        if let (Some(id), Some(state)) = (broker["nodeid"].as_i64(), broker["state"].as_str()) {
            let up = brokers_up.entry(id as i32).or_insert(false);
            *up |= state == "UP";
        }
    }
    let mut partitions = HashMap::new();
    for (topic, t) in stats["topics"].as_object().into_iter().flatten() {
        for p in t["partitions"].as_object().into_iter().flat_map(|p| p.values()) {
            let Some(id) = p["partition"].as_i64().filter(|id| *id >= 0) else { continue };
            let offset = |field: &str| p[field].as_i64().filter(|o| *o >= 0);
            partitions.insert(
                (topic.clone(), id as i32),
                PartitionStats {
                    leader: p["leader"].as_i64().unwrap_or(-1) as i32,
                    high_watermark: offset("hi_offset"),
                    low_watermark: offset("lo_offset"),
                },
            );
        }
    }
    (brokers_up, partitions)
}

/// diffmart's own bookkeeping of one partition.
struct PartitionState {
    /// The next offset to read: every message before it has been handed to ingest.
    /// `None` before the first message, when reading starts at the beginning.
    next: Option<i64>,
    /// Whether `next` moved since the last batch went to ingest: it is logged with the next one.
    moved: bool,
    messages: i64,
    errors: StreamErrors,
}

/// The key of a partition's next offset in the input log's source positions; its
/// message and error counts (what `diffmart_sources` shows) follow it under
/// `<key>/messages` and `<key>/errors`, so they go on counting after a restart.
fn position_key(topic: &str, partition: i32) -> String {
    format!("kafka/{topic}/{partition}")
}

/// Why a topic has no partitions yet, for its placeholder row (partition -1).
struct Missing {
    status: &'static str,
    error: String,
}

pub(super) struct Reader {
    index: usize,
    config: Arc<KafkaConfig>,
    topics: Arc<Vec<Topic>>,
    topic_by_name: HashMap<String, usize>,
    ingest: Ingest,
    board: StatusBoard,
    consumer: BaseConsumer<ReaderContext>,
    partitions: BTreeMap<(usize, i32), PartitionState>,
    /// Topics without known partitions (this reader reports those it owns partition 0 of).
    missing: HashMap<usize, Missing>,
    /// The partitions in the first metadata answer: with `--kafka-start latest` those
    /// start at their high watermark; partitions that appear later are read whole.
    history: Option<HashSet<(usize, i32)>>,
    /// Where each partition's reading had got before a restart (the input log's
    /// positions): reading resumes there, whatever `--kafka-start` says.
    resume: Arc<SourcePositions>,
    in_flight: VecDeque<Time>,
}

impl Reader {
    pub(super) fn new(
        index: usize,
        config: Arc<KafkaConfig>,
        topics: Arc<Vec<Topic>>,
        ingest: Ingest,
        status: StatusRelations,
        resume: Arc<SourcePositions>,
    ) -> anyhow::Result<Reader> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("client.id", format!("diffmart-reader-{index}"))
            // diffmart keeps its own offsets (see the module documentation).
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            .set("reconnect.backoff.max.ms", "2000");
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let consumer: BaseConsumer<ReaderContext> =
            client.create_with_context(ReaderContext { index, link: Mutex::new(Link::default()) })?;
        let missing = (0..topics.len())
            .map(|t| (t, Missing { status: "connecting", error: "looking up the topic".into() }))
            .collect();
        Ok(Reader {
            index,
            topic_by_name: topics.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect(),
            config,
            topics,
            ingest,
            board: StatusBoard::new(status),
            consumer,
            partitions: BTreeMap::new(),
            missing,
            history: None,
            resume,
            in_flight: VecDeque::new(),
        })
    }

    pub(super) fn run(mut self, stop: &AtomicBool) {
        let mut next_discovery = Instant::now();
        let mut next_status = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_discovery {
                let complete = self.discover();
                next_discovery = Instant::now() + if complete { DISCOVER_EVERY } else { DISCOVER_RETRY };
            }
            let mut updates = Vec::new();
            self.read_batch(&mut updates);
            let relations = self.board.relations();
            for state in self.partitions.values_mut() {
                state.errors.write(relations, &mut updates);
            }
            if Instant::now() >= next_status {
                self.report_status(&mut updates);
                next_status = Instant::now() + STATUS_EVERY;
            }
            if !updates.is_empty() && !self.hand_over(updates) {
                return;
            }
        }
    }

    /// Sends a batch to ingest, with the next offsets of the partitions it read
    /// (logged in the same record: a restart resumes exactly after it); waits while
    /// too many are not yet visible. False when the engine is shutting down.
    fn hand_over(&mut self, updates: Vec<Update>) -> bool {
        let mut positions: Vec<SourcePosition> = Vec::new();
        for (&(t, p), state) in self.partitions.iter_mut().filter(|(_, state)| state.moved) {
            state.moved = false;
            if let Some(next) = state.next {
                let key = position_key(&self.topics[t].name, p);
                positions.push((format!("{key}/messages"), state.messages));
                positions.push((format!("{key}/errors"), state.errors.counted()));
                positions.push((key, next));
            }
        }
        let time = match self.ingest.send_stamped_from(updates, positions) {
            Ok(time) => time,
            Err(e) if e.sqlstate == "57P01" => return false,
            // Nothing a reader sends can be refused (events, upserts, error rows):
            // a refusal is a bug, and the reader stops rather than skip messages.
            Err(e) => {
                tracing::error!(reader = self.index, "Kafka: the engine refused a batch, reader stopped: {e}");
                return false;
            }
        };
        self.in_flight.push_back(time);
        while self.in_flight.len() > MAX_IN_FLIGHT {
            let oldest = self.in_flight.pop_front().expect("non-empty");
            if !self.ingest.wait_visible_blocking(oldest) {
                return false;
            }
        }
        true
    }

    /// Looks up the topics' partitions and takes on the new ones this reader owns.
    /// True when every topic was found.
    fn discover(&mut self) -> bool {
        let metadata = match self.consumer.fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(metadata) => metadata,
            Err(e) => {
                let error = format!("cannot reach the brokers ({}): {e}", self.config.brokers);
                for missing in self.missing.values_mut() {
                    *missing = Missing { status: "disconnected", error: error.clone() };
                }
                return false;
            }
        };
        let found: Vec<Vec<i32>> = self
            .topics
            .iter()
            .map(|topic| {
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic.name && t.error().is_none())
                    .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let history = self.history.get_or_insert_with(|| {
            found.iter().enumerate().flat_map(|(t, ids)| ids.iter().map(move |&p| (t, p))).collect()
        });
        let mut complete = true;
        let mut added = false;
        for (t, ids) in found.iter().enumerate() {
            let topic = &self.topics[t];
            if ids.is_empty() {
                complete = false;
                self.missing.insert(
                    t,
                    Missing { status: "waiting", error: format!("topic {} does not exist (yet)", topic.name) },
                );
                continue;
            }
            self.missing.remove(&t);
            for &p in ids {
                if owner(t, p, self.config.readers) != self.index || self.partitions.contains_key(&(t, p)) {
                    continue;
                }
                let key = position_key(&topic.name, p);
                let resumed = self.resume.get(&key).copied();
                let count = |what: &str| self.resume.get(&format!("{key}/{what}")).copied().unwrap_or(0);
                let (messages, errors) = (count("messages"), count("errors"));
                let next = if resumed.is_some() {
                    resumed
                } else if self.config.start == StartFrom::Latest && history.contains(&(t, p)) {
                    match self.consumer.fetch_watermarks(&topic.name, p, METADATA_TIMEOUT) {
                        Ok((_, high)) => Some(high),
                        Err(e) => {
                            tracing::warn!(topic = %topic.name, partition = p, "cannot find the end of the partition: {e}");
                            complete = false;
                            continue;
                        }
                    }
                } else {
                    None
                };
                match resumed {
                    Some(next) => tracing::info!(
                        reader = self.index,
                        topic = %topic.name,
                        partition = p,
                        offset = next,
                        "reading partition from where it stopped"
                    ),
                    None => {
                        tracing::info!(reader = self.index, topic = %topic.name, partition = p, "reading partition")
                    }
                }
                let errors = StreamErrors::resumed(errors);
                self.partitions.insert((t, p), PartitionState { next, moved: false, messages, errors });
                added = true;
            }
        }
        if added {
            self.assign();
        }
        complete
    }

    /// Assigns every owned partition at diffmart's own next offset.
    fn assign(&mut self) {
        let mut assignment = TopicPartitionList::new();
        for (&(t, p), state) in &self.partitions {
            let offset = state.next.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = assignment.add_partition_offset(&self.topics[t].name, p, offset) {
                tracing::error!("cannot assign {} partition {p}: {e}", self.topics[t].name);
            }
        }
        if let Err(e) = self.consumer.assign(&assignment) {
            tracing::error!(reader = self.index, "assigning partitions failed: {e}");
        }
    }

    /// Reads the messages that are there (waiting briefly for a first one).
    fn read_batch(&mut self, updates: &mut Vec<Update>) {
        let started = Instant::now();
        let mut wait = POLL_WAIT;
        let mut read = 0;
        while read < MAX_BATCH_MESSAGES && started.elapsed() < BATCH_TIME {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    read += 1;
                    take_message(
                        &message,
                        &self.topics,
                        &self.topic_by_name,
                        &mut self.partitions,
                        self.config.max_event_skew,
                        updates,
                    );
                }
                Some(Err(e)) => self.consumer.context().error(e, ""),
            }
            wait = Duration::ZERO;
        }
    }

    /// Rewrites the `diffmart_sources` rows this reader owns that changed.
    fn report_status(&mut self, updates: &mut Vec<Update>) {
        let now = now_micros();
        let link = self.consumer.context().link.lock().unwrap();
        for (&(t, p), state) in &self.partitions {
            let topic = &self.topics[t];
            let stats = link.partitions.get(&(topic.name.clone(), p));
            let up = stats.and_then(|s| link.brokers_up.get(&s.leader).copied());
            let status = match (stats, up) {
                (_, Some(true)) => "connected",
                // Not in the statistics yet: just assigned.
                (None, _) => "connecting",
                _ => "disconnected",
            };
            // Before the first message, reading starts at the low watermark.
            let position = state.next.or(stats.and_then(|s| s.low_watermark));
            let high_watermark = match (stats.and_then(|s| s.high_watermark), position) {
                (Some(high), Some(position)) => Some(high.max(position)),
                (high, _) => high,
            };
            let lag = high_watermark.zip(position).map(|(high, position)| high - position);
            let status = SourceStatus {
                kind: SOURCE_KIND.into(),
                name: topic.name.clone(),
                partition: p,
                relation: Some(topic.spec.name.into()),
                reader: Some(self.index as i32),
                status: status.into(),
                position,
                high_watermark,
                lag,
                messages: state.messages,
                errors: state.errors.counted(),
                last_error: if status == "connected" { None } else { link.last_error.clone() },
                updated_at: now,
            };
            let before = self.board.get(SOURCE_KIND, &topic.name, p).map(|s| s.status.clone());
            match (before.as_deref(), status.status.as_str()) {
                (Some("disconnected"), "connected") => {
                    tracing::info!(topic = %topic.name, partition = p, "Kafka partition connected again")
                }
                (Some(was), "disconnected") if was != "disconnected" => {
                    tracing::warn!(topic = %topic.name, partition = p, "Kafka partition disconnected")
                }
                _ => {}
            }
            self.board.set(status, updates);
        }
        for (t, topic) in self.topics.iter().enumerate() {
            if owner(t, 0, self.config.readers) != self.index {
                continue;
            }
            match self.missing.get(&t) {
                Some(missing) => self.board.set(
                    SourceStatus {
                        kind: SOURCE_KIND.into(),
                        name: topic.name.clone(),
                        partition: -1,
                        relation: Some(topic.spec.name.into()),
                        reader: Some(self.index as i32),
                        status: missing.status.into(),
                        position: None,
                        high_watermark: None,
                        lag: None,
                        messages: 0,
                        errors: 0,
                        last_error: Some(missing.error.clone()),
                        updated_at: now,
                    },
                    updates,
                ),
                None => self.board.remove(SOURCE_KIND, &topic.name, -1, updates),
            }
        }
    }
}

/// Applies one message: its rows, or a `diffmart_source_errors` row. A message
/// below the partition's next offset was read before and is skipped.
fn take_message(
    message: &BorrowedMessage<'_>,
    topics: &[Topic],
    topic_by_name: &HashMap<String, usize>,
    partitions: &mut BTreeMap<(usize, i32), PartitionState>,
    max_event_skew: Micros,
    updates: &mut Vec<Update>,
) {
    let Some(&t) = topic_by_name.get(message.topic()) else { return };
    let (partition, offset) = (message.partition(), message.offset());
    let Some(state) = partitions.get_mut(&(t, partition)) else { return };
    if state.next.is_some_and(|next| offset < next) {
        tracing::debug!(topic = message.topic(), partition, offset, "skipping a message read before");
        return;
    }
    state.next = Some(offset + 1);
    state.moved = true;
    state.messages += 1;
    let topic = &topics[t];
    let payload = message.payload().unwrap_or_default();
    let decoded = if message.payload().is_none() {
        Err("empty message (no payload)".to_string())
    } else {
        let view = KafkaMessage {
            topic: &topic.name,
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            payload,
        };
        (topic.decode)(topic.spec, &view).and_then(|rows| {
            for row in &rows {
                validate_row(topic.spec, row).map_err(|e| e.to_string())?;
            }
            topic.newest_event.admit(topic.spec, &rows, max_event_skew)?;
            Ok(rows)
        })
    };
    match decoded {
        // Messages into a table are upserts by its primary key, resolved by the
        // engine's write path in the order readers hand them over.
        Ok(rows) if matches!(topic.spec.kind, RelationKind::Table { .. }) => {
            updates.extend(rows.into_iter().map(|row| Update::upsert(topic.relation, row)))
        }
        Ok(rows) => updates.extend(rows.into_iter().map(|row| Update::insert(topic.relation, row))),
        Err(error) => {
            if state.errors.counted() == 0 {
                tracing::warn!(topic = %topic.name, partition, offset, "bad message (see diffmart_source_errors): {error}");
            }
            state.errors.push(SourceError {
                kind: SOURCE_KIND.into(),
                name: topic.name.clone(),
                partition,
                error_number: 0,
                position: offset,
                relation: Some(topic.spec.name.into()),
                error,
                payload: Some(payload_preview(payload)),
                error_time: now_micros(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_readers() {
        // Four single-partition topics over two readers: two each.
        let per_reader = |readers: usize| {
            let mut counts = vec![0; readers];
            for t in 0..4 {
                counts[owner(t, 0, readers)] += 1;
            }
            counts
        };
        assert_eq!(per_reader(2), vec![2, 2]);
        assert_eq!(per_reader(4), vec![1, 1, 1, 1]);
        // A growing topic keeps its partitions where they were.
        assert_eq!(owner(1, 3, 2), owner(1, 3, 2));
        assert_eq!((0..6).filter(|&p| owner(0, p, 3) == 0).count(), 2);
    }

    #[test]
    fn statistics_give_broker_states_and_watermarks() {
        let stats: Value = serde_json::from_str(
            r#"{"brokers": {"b:1/1": {"nodeid": 1, "state": "UP"}, "b:2/2": {"nodeid": 2, "state": "CONNECT"},
                            "b:1/bootstrap": {"nodeid": -1, "state": "INIT"}},
                "topics": {"t": {"partitions": {"0": {"partition": 0, "leader": 1, "hi_offset": 12, "lo_offset": 3},
                                                "-1": {"partition": -1, "leader": -1, "hi_offset": -1001}}}}}"#,
        )
        .unwrap();
        let (brokers, partitions) = parse_statistics(&stats);
        assert_eq!(brokers.get(&1), Some(&true));
        assert_eq!(brokers.get(&2), Some(&false));
        let p = partitions[&("t".to_string(), 0)];
        assert_eq!((p.leader, p.high_watermark, p.low_watermark), (1, Some(12), Some(3)));
        assert_eq!(partitions.len(), 1);
    }
}
