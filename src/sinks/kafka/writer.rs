//! The sink thread: the store's change batches as messages, in transactions.
//!
//! A transaction holds whole change batches (and, for a sink that starts afresh, the
//! snapshot it starts from), about [`COMMIT_EVERY`] of them, and ends with a progress
//! record saying the logical time they reach. A batch is written only once its times
//! are on disk in the input log, so a lost machine cannot leave Kafka ahead of what a
//! restart replays. A transaction the brokers abort (a message that timed out) is
//! written again from what it held; one the producer cannot finish (fenced by another
//! producer with our transactional id) stops the sinks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, RelationSpec, Row};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use serde_json::Value;

use super::progress::Progress;
use super::{KafkaSink, SinkCounters, SinkFormat};
use crate::compute::RelationId;
use crate::engine::store::DEFAULT_MAX_PENDING_CHANGES;
use crate::engine::{Engine, FeedEnd, Lagged, Snapshot, Step, Subscription};
use crate::json::{datum_to_json, row_to_object};

/// How long a transaction gathers changes before it is committed, at most.
const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// How long one commit or abort waits for the brokers before it is tried again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopping waits for the open transaction to commit.
const COMMIT_ON_STOP: Duration = Duration::from_secs(5);
/// The header each message carries: the logical time its store step reaches (every
/// change before it is in that step, or an earlier one). Messages with the same value
/// are one consistent step of their relation.
pub const UPPER_HEADER: &str = "diffmart-upper";
/// How long the thread waits for changes (or for them to be on disk) at a time.
const IDLE: Duration = Duration::from_millis(10);
/// Chunks taken from the feed and not written yet (waiting for the disk), at most:
/// past it the rest wait in the store's bounded feed, which drops the sinks if they
/// fall further behind (see [`SinkWriter::run`]).
const MAX_WAITING_CHUNKS: usize = 64;

pub(super) struct SinkContext {
    pub counters: Arc<SinkCounters>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            // An aborted transaction's messages: written again in the next one.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight), _)) => {
            }
            Err((e, message)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(topic = message.topic(), "a sink message was not delivered: {e}");
            }
        }
    }
}

/// Something the sinks write in a transaction, in order.
#[derive(Clone)]
pub(super) enum Chunk {
    /// The rows of a snapshot, as inserts, for the sinks (indexes) that start from it.
    Snapshot {
        snapshot: Arc<Snapshot>,
        sinks: Vec<usize>,
    },
    Changes(Step),
}

impl Chunk {
    /// Every change before it is written with the chunk (`None`: compute shut down).
    fn upper(&self) -> Option<Time> {
        match self {
            Chunk::Snapshot { snapshot, .. } => Some(snapshot.upper),
            Chunk::Changes(batch) => batch.upper,
        }
    }
}

/// The open transaction: what it holds, to write it again if it is aborted.
struct Transaction {
    began: Instant,
    chunks: Vec<Chunk>,
    /// Every change before it is in the transaction.
    upper: Time,
}

/// Why the sink thread stops early.
pub(super) enum Halt {
    /// Asked to stop while the brokers did not take what was pending.
    Stopped,
    Failed(String),
}

/// Where progress records go.
pub(super) struct ProgressTarget {
    pub topic: String,
    /// The transactional id.
    pub key: String,
    /// The sinks' names ([`super::progress::sink_name`]).
    pub sinks: Vec<String>,
}

pub(super) struct SinkWriter {
    producer: BaseProducer<SinkContext>,
    /// Each sink with its relation.
    sinks: Vec<(RelationId, KafkaSink)>,
    /// Per relation, the sinks (indexes into `sinks`) that write it.
    by_relation: HashMap<RelationId, Vec<usize>>,
    specs: HashMap<RelationId, &'static RelationSpec>,
    counters: Arc<SinkCounters>,
    /// `None` without a data directory: nothing to resume from.
    progress: Option<ProgressTarget>,
    /// Every change before it is in a committed transaction.
    committed: Arc<AtomicU64>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
    open: Option<Transaction>,
}

/// Whether a chunk's changes may be written: every time before its upper is on disk
/// (always, without a data directory; never, with one, for the last batch of a
/// compute that shut down, whose upper is unknown: a restart writes it).
fn deliverable(upper: Option<Time>, durable: Option<Time>) -> bool {
    match (upper, durable) {
        (_, None) => true,
        (Some(upper), Some(durable)) => upper <= durable,
        (None, Some(_)) => false,
    }
}

fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(e) => e.is_retriable() && !e.is_fatal(),
        // Commit flushes first; the brokers did not take everything in time.
        KafkaError::Flush(_) => true,
        _ => false,
    }
}

impl SinkWriter {
    /// A writer of `sinks` whose counters are `counters` and whose committed upper
    /// goes to `committed`, stopped by `stop`.
    pub fn new(
        producer: BaseProducer<SinkContext>,
        sinks: Vec<(RelationId, KafkaSink)>,
        counters: Arc<SinkCounters>,
        progress: Option<ProgressTarget>,
        committed: Arc<AtomicU64>,
        engine: Arc<Engine>,
        stop: Arc<AtomicBool>,
    ) -> SinkWriter {
        let mut by_relation: HashMap<RelationId, Vec<usize>> = HashMap::new();
        for (index, (relation, _)) in sinks.iter().enumerate() {
            by_relation.entry(*relation).or_default().push(index);
        }
        let specs = by_relation.keys().map(|&id| (id, engine.catalog().spec(id))).collect();
        SinkWriter { producer, sinks, by_relation, specs, counters, progress, committed, engine, stop, open: None }
    }

    /// Writes `first`, then every batch of `feed`, until stopped or the feed ends;
    /// commits what is open before returning.
    ///
    /// The sinks never buffer without bound: they take batches from the feed only while
    /// few wait to be written, and the store drops a feed that falls
    /// [`crate::engine::store::DEFAULT_MAX_PENDING_CHANGES`] behind. Then the sinks
    /// write what the feed still holds, subscribe again, and write the difference
    /// between the store after the last batch they had and the new subscription's
    /// snapshot as one step: nothing is lost or written twice, and what catching up
    /// costs is a pass over the sinks' relations, not memory ([`SinkWriter::catch_up`]).
    pub fn run(&mut self, first: Option<Chunk>, mut feed: Subscription) -> Result<(), Halt> {
        let mut pending: VecDeque<Chunk> = first.into_iter().collect();
        let mut ended = false;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            while !ended && pending.len() < MAX_WAITING_CHUNKS {
                match feed.try_recv() {
                    Ok(Some(step)) => pending.push_back(Chunk::Changes(step)),
                    Ok(None) => break,
                    Err(FeedEnd::Closed) => ended = true,
                    Err(FeedEnd::Lagged(lagged)) => {
                        let (caught_up, new_feed) = self.catch_up(&lagged);
                        pending.push_back(caught_up);
                        feed = new_feed;
                    }
                }
            }
            let durable = self.engine.durable_upper();
            let mut wrote = false;
            while pending.front().is_some_and(|chunk| deliverable(chunk.upper(), durable)) {
                let chunk = pending.pop_front().expect("checked");
                self.write_in_transaction(chunk)?;
                wrote = true;
            }
            let finishing = stopping || ended;
            if self.open.as_ref().is_some_and(|open| finishing || open.began.elapsed() >= COMMIT_EVERY) {
                self.commit(finishing.then(|| Instant::now() + COMMIT_ON_STOP))?;
            }
            if finishing {
                return Ok(());
            }
            // Serves delivery reports; waits a little when there was nothing to write.
            self.producer.poll(if wrote { Duration::ZERO } else { IDLE });
        }
    }

    /// After the store dropped the sinks' feed (every batch it held is taken): a new
    /// feed, and the changes of the sinks' relations from where the old one stopped to
    /// where the new one starts, as one chunk.
    fn catch_up(&self, lagged: &Lagged) -> (Chunk, Subscription) {
        self.counters.lagged.fetch_add(1, Ordering::Relaxed);
        let store = self.engine.store();
        let relations: Vec<RelationId> = self.by_relation.keys().copied().collect();
        let catalog = self.engine.catalog();
        let wants_maintained = relations.iter().any(|&id| catalog.read_time_lookup(id).is_some());
        let (snapshot, feed) = store.subscribe_with(DEFAULT_MAX_PENDING_CHANGES, wants_maintained);
        let feed = Subscription::from_feed(catalog, &relations, snapshot.clone(), feed);
        let batch = store.changes_between(&lagged.last, &snapshot, &relations);
        tracing::warn!(
            behind = lagged.pending,
            from = lagged.last.upper,
            to = snapshot.upper,
            changes = batch.changes.len(),
            "the Kafka sinks fell behind the store ({lagged}); catching up from the store's snapshot"
        );
        (Chunk::Changes(Step { upper: batch.upper, changes: batch.changes, snapshot }), feed)
    }

    fn write_in_transaction(&mut self, chunk: Chunk) -> Result<(), Halt> {
        if self.open.is_none() {
            self.producer.begin_transaction().map_err(|e| Halt::Failed(format!("cannot begin a transaction: {e}")))?;
            self.open = Some(Transaction { began: Instant::now(), chunks: Vec::new(), upper: 0 });
        }
        self.write_chunk(&chunk)?;
        let upper = chunk.upper().unwrap_or(Time::MAX);
        let open = self.open.as_mut().expect("opened above");
        open.upper = upper;
        open.chunks.push(chunk);
        self.counters.written_upper.store(upper, Ordering::Release);
        Ok(())
    }

    fn write_chunk(&self, chunk: &Chunk) -> Result<(), Halt> {
        let upper = chunk.upper().unwrap_or(Time::MAX).to_string();
        let headers = OwnedHeaders::new().insert(Header { key: UPPER_HEADER, value: Some(&upper) });
        match chunk {
            Chunk::Snapshot { snapshot, sinks } => {
                for &sink in sinks {
                    let relation = self.sinks[sink].0;
                    for row in snapshot.rows(relation) {
                        self.write_change(sink, relation, &row, 1, &headers)?;
                    }
                }
            }
            Chunk::Changes(step) => {
                for (relation, row, diff) in &step.changes {
                    for &sink in self.by_relation.get(relation).into_iter().flatten() {
                        self.write_change(sink, *relation, row, *diff, &headers)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes one change of a relation to one of its sinks.
    fn write_change(
        &self,
        sink: usize,
        relation: RelationId,
        row: &Row,
        diff: isize,
        headers: &OwnedHeaders,
    ) -> Result<(), Halt> {
        let spec = self.specs[&relation];
        let sink = &self.sinks[sink].1;
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
            self.send(&sink.topic, key.as_deref(), &message.to_string(), Some(headers))?;
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Queues a message, waiting for room while the brokers are slow or down. A
    /// message the producer refuses outright (too large) is logged and counted as
    /// failed: waiting would not help.
    fn send(&self, topic: &str, key: Option<&str>, payload: &str, headers: Option<&OwnedHeaders>) -> Result<(), Halt> {
        let mut stopping_since: Option<Instant> = None;
        loop {
            let mut record = BaseRecord::to(topic).payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(headers) = headers {
                record = record.headers(headers.clone());
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if self.stop.load(Ordering::Relaxed)
                        && stopping_since.get_or_insert_with(Instant::now).elapsed() > COMMIT_ON_STOP
                    {
                        return Err(Halt::Stopped);
                    }
                    self.producer.poll(Duration::from_millis(100));
                }
                Err((e, _)) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(topic, "cannot write a sink message: {e}");
                    return Ok(());
                }
            }
        }
    }

    /// Commits the open transaction with its progress record. If the brokers abort it,
    /// writes it again and commits that; gives up at `deadline` (stopping), leaving
    /// it to be written again after a restart.
    fn commit(&mut self, deadline: Option<Instant>) -> Result<(), Halt> {
        let upper = self.open.as_ref().expect("a transaction is open").upper;
        loop {
            if let Some(progress) = &self.progress {
                // After the changes are acknowledged: a reader that ignores transactions
                // never sees a progress record ahead of the changes it covers.
                self.flush(deadline)?;
                let record = Progress { upper, sinks: progress.sinks.clone() }.encode();
                self.send(&progress.topic, Some(&progress.key), &record, None)?;
            }
            match self.try_commit(deadline)? {
                true => break,
                false => self.write_again()?,
            }
        }
        self.open = None;
        self.committed.store(upper, Ordering::Release);
        self.counters.committed_upper.store(upper, Ordering::Release);
        Ok(())
    }

    /// Commits; false if the transaction had to be aborted.
    fn try_commit(&self, deadline: Option<Instant>) -> Result<bool, Halt> {
        loop {
            let timeout = deadline.map_or(COMMIT_TIMEOUT, |d| d.saturating_duration_since(Instant::now()));
            match self.producer.commit_transaction(timeout) {
                Ok(()) => return Ok(true),
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                    tracing::warn!("a sink transaction was aborted ({e}); writing it again");
                    self.abort()?;
                    return Ok(false);
                }
                Err(e) if retriable(&e) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Halt::Stopped);
                    }
                    tracing::warn!("a sink transaction is not committed yet ({e}); trying again");
                }
                Err(e) => return Err(Halt::Failed(format!("cannot commit a sink transaction: {e}"))),
            }
        }
    }

    fn flush(&self, deadline: Option<Instant>) -> Result<(), Halt> {
        loop {
            let timeout = deadline.map_or(COMMIT_TIMEOUT, |d| d.saturating_duration_since(Instant::now()));
            match self.producer.flush(timeout) {
                Ok(()) => return Ok(()),
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => return Err(Halt::Stopped),
                Err(e) => tracing::warn!("sink messages are not acknowledged yet ({e}); waiting"),
            }
        }
    }

    fn abort(&self) -> Result<(), Halt> {
        loop {
            match self.producer.abort_transaction(COMMIT_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(e) if retriable(&e) => tracing::warn!("aborting a sink transaction: {e}; trying again"),
                Err(e) => return Err(Halt::Failed(format!("cannot abort a sink transaction: {e}"))),
            }
        }
    }

    /// Writes what the aborted transaction held in a new one.
    fn write_again(&mut self) -> Result<(), Halt> {
        let open = self.open.take().expect("a transaction is open");
        self.producer.begin_transaction().map_err(|e| Halt::Failed(format!("cannot begin a transaction: {e}")))?;
        for chunk in &open.chunks {
            self.write_chunk(chunk)?;
        }
        self.open = Some(open);
        Ok(())
    }
}

/// A message key: text as is, anything else as its JSON.
fn key_text(datum: &Datum) -> String {
    match datum {
        Datum::Text(s) => s.clone(),
        other => datum_to_json(other).to_string(),
    }
}
