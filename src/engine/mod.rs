//! The engine: ties sources, compute and readers together.
//!
//! - [`Ingest`] stamps incoming updates with logical times and resolves them through
//!   the one write path ([`writes`]: keys checked, upserts resolved, in arrival
//!   order), then hands the resulting row changes to compute;
//! - the [`Store`] keeps the published contents of every relation as snapshots;
//! - [`Engine::apply`] and [`Engine::write`] wait until a write is visible (and, with
//!   a data directory, on disk: [`log`], [`recovery`]) before acknowledging it; [`TableWriter`] serialises SQL statements that read a table
//!   before writing it;
//! - tables a source owns (CDC mirrors) refuse SQL writes: the source is their one writer.

pub mod arrow;
pub mod catalog;
mod changes;
pub mod checkpoint;
pub mod data_dir;
mod events;
pub mod log;
mod packed_row;
pub mod panics;
pub mod recovery;
pub mod store;
pub mod subscription;
pub mod writes;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use anyhow::Context;
use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{RelationKind, Row, validate_row};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

pub use self::catalog::Catalog;
use self::changes::PackedInputs;
use self::checkpoint::{CheckpointSettings, Checkpointer};
pub use self::data_dir::DataDir;
use self::log::{Durability, LogWriter};
pub use self::recovery::SourcePositions;
pub use self::store::{ChangeBatch, ChangeFeed, FeedEnd, Lagged, RelationRows, Snapshot, Store};
pub use self::subscription::{Step, Subscription};
use self::writes::{KeyedWrites, RowChange, SettledTables};
pub use self::writes::{Op, Update};
use crate::compute::{Compute, ComputeConfig, InputBatch, RelationId};

/// An error a client should see with its SQLSTATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    pub sqlstate: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> SqlError {
        SqlError { sqlstate, message: message.into() }
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for SqlError {}

/// What a source has read up to with a request's updates: its key and position (see
/// [`SourcePositions`]). Logged with the batch the updates go out in.
pub type SourcePosition = (String, i64);

enum IngestMessage {
    Request(IngestRequest),
    /// Send out what was gathered, close the log and stop (a clean shutdown).
    Close,
    /// Take a checkpoint after what was gathered; say its time once it is on disk.
    Checkpoint(std::sync::mpsc::SyncSender<Result<Time, String>>),
}

struct IngestRequest {
    updates: Vec<Update>,
    positions: Vec<SourcePosition>,
    /// Whether the tables' rules apply (rows a delete implies): writes of clients.
    table_rules: bool,
    /// Where to say the logical time the updates got, or why they were refused.
    stamped: Option<std::sync::mpsc::SyncSender<Result<Time, SqlError>>>,
}

/// How often a source paced by a clock (the generator at a fixed rate, the
/// benchmark's driver) hands ingest what has come due, at most. Handing over each
/// event as it comes due meant a request, and a wake-up of ingest, every few
/// microseconds at high rates: at 300,000 events/s the two threads' handshakes took
/// a third of the machine's two cores, in the kernel's scheduler (docs/benchmarks.md,
/// #handshakes-and-turn-taking). A millisecond adds half of one to an event's wait on average.
pub const SOURCE_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// Updates queued for ingest, at most: a source that runs ahead of compute (the
/// generator at a fixed rate, a Kafka topic's backlog) waits for room instead of
/// queueing without bound, so memory stays flat under overload.
const MAX_QUEUED_UPDATES: usize = 500_000;

/// How many updates wait in ingest's queue; senders wait on the condvar for room.
#[derive(Default)]
struct QueueRoom {
    queued: Mutex<usize>,
    freed: Condvar,
}

impl QueueRoom {
    /// Waits until `n` more updates fit (a request always fits an empty queue).
    fn take(&self, n: usize) {
        let mut queued = self.queued.lock().unwrap();
        while *queued > 0 && *queued + n > MAX_QUEUED_UPDATES {
            queued = self.freed.wait(queued).unwrap();
        }
        *queued += n;
    }

    fn give_back(&self, n: usize) {
        *self.queued.lock().unwrap() -= n;
        self.freed.notify_all();
    }
}

/// A handle for sources: sends updates to compute. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    requests: UnboundedSender<IngestMessage>,
    room: Arc<QueueRoom>,
    /// The upper of what readers see (the store's visible upper).
    visible: tokio::sync::watch::Receiver<Option<Time>>,
}

impl Ingest {
    /// Queues updates; they get the next logical time. Blocks while the queue is full.
    /// For updates that cannot be refused (events, upserts, deletes by key, inserts
    /// if absent): a refused request is logged as an error and dropped.
    pub fn send(&self, updates: Vec<Update>) {
        self.send_from(updates, Vec::new());
    }

    /// [`Ingest::send`], for a source that has read up to `positions` with these
    /// updates: the positions are logged with them, to resume from after a restart.
    pub fn send_from(&self, updates: Vec<Update>, positions: Vec<SourcePosition>) {
        self.room.take(updates.len());
        let request = IngestRequest { updates, positions, table_rules: false, stamped: None };
        let _ = self.requests.send(IngestMessage::Request(request));
    }

    /// Queues updates and returns the logical time they were given, or why the
    /// write path refused them (then none of them is applied).
    pub fn send_stamped(&self, updates: Vec<Update>) -> Result<Time, SqlError> {
        self.request(updates, Vec::new(), false)
    }

    /// [`Ingest::send_stamped`] with positions, as [`Ingest::send_from`].
    pub fn send_stamped_from(&self, updates: Vec<Update>, positions: Vec<SourcePosition>) -> Result<Time, SqlError> {
        self.request(updates, positions, false)
    }

    fn request(
        &self,
        updates: Vec<Update>,
        positions: Vec<SourcePosition>,
        table_rules: bool,
    ) -> Result<Time, SqlError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.room.take(updates.len());
        let request = IngestRequest { updates, positions, table_rules, stamped: Some(tx) };
        self.requests.send(IngestMessage::Request(request)).map_err(|_| shutting_down())?;
        rx.recv().map_err(|_| shutting_down())?
    }

    /// Waits until readers see every change at `time`; false if compute shut down first.
    /// A source that must not run far ahead of what is visible waits with it.
    pub fn wait_visible_blocking(&self, time: Time) -> bool {
        let mut visible = self.visible.clone();
        let reached = futures::executor::block_on(visible.wait_for(|&upper| store::is_past(upper, time)));
        matches!(reached.as_deref(), Ok(Some(_)))
    }
}

/// The tables as the store's latest snapshot shows them, taken when first asked
/// for: a request of events alone never takes one.
struct StoreTables<'a> {
    store: &'a Store,
    snapshot: Option<Arc<Snapshot>>,
}

impl StoreTables<'_> {
    fn snapshot(&mut self) -> &Snapshot {
        self.snapshot.get_or_insert_with(|| self.store.snapshot())
    }
}

impl SettledTables for StoreTables<'_> {
    fn upper(&mut self) -> Time {
        self.snapshot().upper
    }
    fn get(&mut self, relation: RelationId, key: &[diffmart_dataflows::datum::Datum]) -> Option<Row> {
        self.snapshot().relation(relation).get_by_key(key)
    }
    fn keys(&mut self, relation: RelationId) -> Vec<Row> {
        let rows = self.snapshot().relation(relation);
        rows.rows().filter_map(|row| rows.primary_key_of(&row)).collect()
    }
}

/// Logical times ingest lets compute work on at once. Each time has a fixed cost (every
/// operator of every pipeline is scheduled for it); while compute is busy, requests
/// queue up and then share the next time, so that cost is spread over more events as
/// load grows. When idle the previous times are long complete and nothing waits.
///
/// One: a second time sent while the worker is busy with the first is taken up in
/// the same scheduling round, and the two complete together, so a second one in
/// flight only made each event wait longer. (While compute's room waited for the
/// store as well, two kept the worker busy while the store applied a time; it no
/// longer waits, see `TIMES_AHEAD_OF_STORE`. docs/benchmarks.md, #handshakes-and-turn-taking.)
const TIMES_IN_FLIGHT: Time = 1;

/// Logical times compute may be ahead of what the store has made visible. Compute's
/// room counts from what it has handed over, not from what is visible: were it to wait
/// for the store too, the worker and the store would take turns, each idle while the
/// other works. The store applies whatever has queued up in one go, so letting it fall
/// a few times behind costs it less per time; this bounds how far.
const TIMES_AHEAD_OF_STORE: Time = 6;

/// Stamps requests with times. Whatever arrives while compute is busy goes out
/// together: batches grow with load, latency stays low when idle.
///
/// A request is stamped as soon as it arrives, with the time of the batch being
/// gathered; the batch goes out when compute has room for it. A source that waits
/// for its stamp before reading on (the Kafka reader, the benchmark's driver) so
/// gets its next events into the same batch, rather than into the one after it: a
/// request held unstamped until the batch went out would make each event wait for
/// compute twice.
///
/// Each request is resolved by the write path ([`KeyedWrites`]) as it is stamped, in
/// the order requests arrive: that order is the order of every write.
///
/// The store gets its own copy of every batch (`to_store`), sent before compute sees
/// it, so it is already there when compute reports the time complete.
///
/// With a data directory each batch is appended to the input log, with the positions
/// its sources reached, before compute or the store sees it: nothing is visible that
/// a restart would not replay. The append only writes; clients wait for the sync
/// (`Engine::wait_durable`), sources do not. If the log fails, nothing more goes
/// out: `failed` says why, and the server stops.
fn run_ingest(mut ingest: IngestLoop, mut requests: UnboundedReceiver<IngestMessage>) {
    let mut visible = ingest.store.visible_upper();
    let mut computed = ingest.compute.computed_upper();
    futures::executor::block_on(async move {
        let mut time: Time = ingest.first_time;
        let mut gathered: Vec<RowChange> = Vec::new();
        let mut positions: BTreeMap<String, i64> = BTreeMap::new();
        let mut record = Vec::new();
        // Updates taken from the queue's room for the batch being gathered.
        let mut requested = 0;
        // Whether a request was stamped with `time`: an empty one (the engine's first
        // time, a write that changes nothing) still needs its time to complete.
        let mut stamped_any = false;
        let mut open = true;
        // A checkpoint asked for, taken once the batch being gathered is out.
        let mut checkpoint_asked = None;
        while open || stamped_any {
            // Compute has room for `time` once it has handed over the time
            // TIMES_IN_FLIGHT before it, and the store has made the time
            // TIMES_AHEAD_OF_STORE before it visible (or compute has shut down, and the
            // batch goes nowhere).
            let has_room = (time < ingest.first_time + TIMES_IN_FLIGHT
                || store::is_past(*computed.borrow(), time - TIMES_IN_FLIGHT))
                && (time < ingest.first_time + TIMES_AHEAD_OF_STORE
                    || store::is_past(*visible.borrow(), time - TIMES_AHEAD_OF_STORE));
            if has_room && stamped_any {
                stamped_any = false;
                let updates = std::mem::take(&mut gathered);
                let packed = ingest.store.pack_inputs(time, &updates);
                if let Some(log) = &mut ingest.log {
                    record.clear();
                    let positions: Vec<SourcePosition> = std::mem::take(&mut positions).into_iter().collect();
                    recovery::encode_record(&positions, &packed.changes, &mut record);
                    if let Some(checkpointer) = &mut ingest.checkpointer {
                        checkpointer.logged(&positions, packed.changes.len());
                    }
                    if let Err(e) = log.append(time, &record) {
                        let why = format!("the input log failed, so diffmart takes no more writes: {e}");
                        tracing::error!("{why}");
                        ingest.failed.send_replace(Some(why));
                        return;
                    }
                }
                let _ = ingest.to_store.send(packed);
                ingest.compute.send(InputBatch { time, updates });
                ingest.accepted.store(time + 1, Ordering::Release);
                ingest.room.give_back(std::mem::take(&mut requested));
                if let (Some(checkpointer), Some(log)) = (&mut ingest.checkpointer, &mut ingest.log)
                    && (checkpoint_asked.is_some() || checkpointer.due(log.appended_bytes()))
                {
                    checkpointer.take(time, &ingest.compute, &ingest.store, log, checkpoint_asked.take()).await;
                }
                time += 1;
                continue;
            }
            tokio::select! {
                biased;
                message = requests.recv(), if open => match message {
                    Some(IngestMessage::Request(request)) => {
                        let count = request.updates.len();
                        let mut settled = StoreTables { store: &ingest.store, snapshot: None };
                        let rules = request.table_rules.then(wall_clock_micros);
                        let resolved =
                            ingest.writes.resolve(request.updates, time, rules, &mut settled, &mut gathered);
                        match resolved {
                            Ok(()) => {
                                stamped_any = true;
                                requested += count;
                                positions.extend(request.positions);
                            }
                            Err(_) => ingest.room.give_back(count),
                        }
                        match request.stamped {
                            Some(stamped) => {
                                let _ = stamped.send(resolved.map(|()| time));
                            }
                            None => {
                                if let Err(e) = resolved {
                                    tracing::error!(sqlstate = e.sqlstate, "a source's write was refused: {e}");
                                }
                            }
                        }
                    }
                    Some(IngestMessage::Checkpoint(done)) => {
                        if ingest.checkpointer.is_some() {
                            // Out with the batch being gathered (an empty one if need be).
                            checkpoint_asked = Some(done);
                            stamped_any = true;
                        } else {
                            let _ = done.send(Err("checkpoints need a data directory".into()));
                        }
                    }
                    // Every sender is gone, or the engine closes: what was gathered
                    // still goes out.
                    Some(IngestMessage::Close) | None => open = false,
                },
                changed = visible.changed(), if !has_room => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = computed.changed(), if !has_room => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
        // A clean stop leaves a checkpoint of everything taken, so the next start
        // replays nothing; dropping the checkpointer waits until it is on disk.
        if let (Some(checkpointer), Some(log)) = (&mut ingest.checkpointer, &mut ingest.log)
            && checkpointer.due_at_stop()
            && time > ingest.first_time
        {
            tracing::info!(through = time - 1, "taking a checkpoint before stopping");
            checkpointer.take(time - 1, &ingest.compute, &ingest.store, log, None).await;
        }
    });
}

/// What the ingest thread works with.
struct IngestLoop {
    room: Arc<QueueRoom>,
    compute: Compute,
    to_store: Sender<PackedInputs>,
    store: Arc<Store>,
    writes: KeyedWrites,
    /// The first time to stamp: after what the log replayed.
    first_time: Time,
    /// The input log, with a data directory.
    log: Option<LogWriter>,
    /// Takes checkpoints of what the log holds, with a data directory.
    checkpointer: Option<Checkpointer>,
    failed: tokio::sync::watch::Sender<Option<String>>,
    /// One past the last time handed to compute ([`Engine::accepted_upper`]).
    accepted: Arc<AtomicU64>,
}

/// Everything the server runs, minus the network front ends.
pub struct Engine {
    catalog: Catalog,
    store: Arc<Store>,
    ingest: Ingest,
    writes: Arc<AsyncMutex<()>>,
    /// Tables a source owns, with a description of the owner for error messages.
    owners: RwLock<HashMap<RelationId, RelationOwner>>,
    /// With a data directory: when each time is on disk, and what start-up recovered.
    durable: Option<Durable>,
    /// Why ingest stopped taking writes, if it did.
    failed: tokio::sync::watch::Receiver<Option<String>>,
    ingest_thread: Mutex<Option<JoinHandle<()>>>,
    _store_thread: JoinHandle<()>,
    /// Client writes handed to ingest and not yet answered.
    in_flight: tokio::sync::watch::Sender<usize>,
    /// One past the last logical time ingest has handed to compute.
    accepted: Arc<AtomicU64>,
}

/// What Kafka sinks that resume ask of a durable start (`crate::sinks::kafka`).
pub struct SinkHold {
    /// Every change before this time has been delivered: the replay subscribes to the
    /// store once it has handed over exactly the times before it, and goes on
    /// (`None`: nothing delivered yet, no subscription).
    pub resume_at: Option<Time>,
    /// Every change before it is delivered, as the sinks advance it: a checkpoint
    /// replaces older ones, and deletes the log they cover, only once it is past the
    /// checkpoint's time, so a restart can always resume them.
    pub delivered: Arc<AtomicU64>,
    /// Whether a sink follows a view completed at read time: the feed then carries
    /// maintained changes ([`Store::subscribe_with`]).
    pub wants_maintained: bool,
}

/// A subscription to the store ([`Store::subscribe`]): a snapshot, then every change after it.
pub type ResumedFeed = (Arc<Snapshot>, ChangeFeed);

/// What a durable engine keeps beside the rest.
struct Durable {
    /// Holds the directory's lock while the engine lives.
    data_dir: DataDir,
    durability: Arc<Durability>,
    positions: SourcePositions,
}

impl Engine {
    /// Starts compute, the store and ingest, keeping nothing on disk; source relations
    /// keep `config.pipelines.retention` of event time. Only meaningful on process 0 of a cluster.
    pub fn start(config: &ComputeConfig) -> anyhow::Result<Arc<Engine>> {
        Engine::start_with(config, None)
    }

    /// [`Engine::start`], durable with a data directory: replays its input log into
    /// compute and the store first, then logs every batch ingest stamps, and
    /// acknowledges client writes once they are on disk.
    pub fn start_with(config: &ComputeConfig, data_dir: Option<DataDir>) -> anyhow::Result<Arc<Engine>> {
        Engine::start_holding(config, data_dir, None).map(|(engine, _)| engine)
    }

    /// [`Engine::start_with`] for Kafka sinks that resume ([`SinkHold`]): starts from the
    /// newest checkpoint before their resume point, subscribes to the store at that
    /// point of the replay (returned), and keeps the checkpoint and log they would need
    /// to resume again.
    pub fn start_holding(
        config: &ComputeConfig,
        data_dir: Option<DataDir>,
        sinks: Option<SinkHold>,
    ) -> anyhow::Result<(Arc<Engine>, Option<ResumedFeed>)> {
        let resume_at = sinks.as_ref().and_then(|sinks| sinks.resume_at);
        let cut = sinks
            .as_ref()
            .and_then(|sinks| sinks.resume_at.map(|at| recovery::Cut { at, wants_maintained: sinks.wants_maintained }));
        if data_dir.is_none() && resume_at.is_some() {
            anyhow::bail!("Kafka sinks resume from a data directory's log; there is none");
        }
        let catalog = Catalog::all_pipelines();
        let store = Store::new(&catalog, config.pipelines.retention);
        let (outputs_tx, outputs_rx) = std::sync::mpsc::channel();
        let loading = std::time::Instant::now();
        let restored = match &data_dir {
            Some(dir) => checkpoint::load_newest(
                &dir.checkpoint_dir(),
                &catalog,
                &config.pipelines,
                || crate::compute::checkpointed_operators(&config.pipelines),
                resume_at,
            )?,
            None => None,
        };
        if let Some(loaded) = &restored {
            store.load_checkpoint_rows(&loaded.inputs);
        }
        let mut config = config.clone();
        config.restore = restored.as_ref().map(|loaded| loaded.compute.clone());
        let compute = Compute::start(&config, outputs_tx)?;
        let (requests_tx, requests_rx) = tokio::sync::mpsc::unbounded_channel();
        let (inputs_tx, inputs_rx) = std::sync::mpsc::channel();
        let room = Arc::new(QueueRoom::default());
        let store_thread = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("diffmart-store".into())
                .spawn(move || store.apply_outputs(outputs_rx, inputs_rx))
                .context("spawning the store thread")?
        };
        let (durable, log, checkpointer, first_time, subscription) = match data_dir {
            None => (None, None, None, 0, None),
            Some(data_dir) => {
                let started = std::time::Instant::now();
                let inputs: Vec<RelationId> =
                    catalog.iter().filter(|(id, _)| catalog.is_input(*id)).map(|(id, _)| id).collect();
                let tables: Vec<bool> =
                    inputs.iter().map(|id| matches!(catalog.spec(*id).kind, RelationKind::Table { .. })).collect();
                let log_dir = data_dir.log_dir();
                if let Some(loaded) = &restored {
                    tracing::info!(
                        through = loaded.through,
                        read_seconds = loading.elapsed().as_secs_f64(),
                        "restoring checkpoint {}",
                        loaded.path.display()
                    );
                }
                let recovered = recovery::replay(&log_dir, restored, &tables, &compute, &inputs_tx, &store, cut)
                    .with_context(|| format!("replaying the input log in {}", log_dir.display()))?;
                let log = LogWriter::open(&log_dir, &recovered.log)
                    .with_context(|| format!("opening the input log in {}", log_dir.display()))?;
                tracing::info!(
                    records = recovered.records,
                    changes = recovered.changes,
                    seconds = started.elapsed().as_secs_f64(),
                    "replayed the input log in {}",
                    log_dir.display()
                );
                let first_time = recovered.log.next_time;
                let durability = log.durability();
                let settings = CheckpointSettings {
                    dir: data_dir.checkpoint_dir(),
                    log_dir,
                    every_bytes: data_dir.checkpoint_every_bytes(),
                    at_stop: data_dir.checkpoint_at_stop(),
                    inputs,
                    pipelines: config.pipelines.clone(),
                    sinks_delivered: sinks.map(|sinks| sinks.delivered),
                };
                let checkpointer = Checkpointer::start(settings, recovered.positions.clone(), recovered.records > 0)?;
                let durable = Durable { data_dir, durability, positions: recovered.positions };
                (Some(durable), Some(log), Some(checkpointer), first_time, recovered.subscription)
            }
        };
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let accepted = Arc::new(AtomicU64::new(first_time));
        let ingest_thread = {
            let ingest = IngestLoop {
                room: room.clone(),
                compute,
                to_store: inputs_tx,
                store: store.clone(),
                writes: KeyedWrites::new(
                    catalog.iter().filter(|(id, _)| catalog.is_input(*id)).map(|(_, spec)| spec).collect(),
                ),
                first_time,
                log,
                checkpointer,
                failed: failed_tx,
                accepted: accepted.clone(),
            };
            std::thread::Builder::new()
                .name("diffmart-ingest".into())
                .spawn(move || run_ingest(ingest, requests_rx))
                .context("spawning the ingest thread")?
        };
        let visible = store.visible_upper();
        let engine = Arc::new(Engine {
            catalog,
            store,
            ingest: Ingest { requests: requests_tx, room, visible },
            writes: Arc::new(AsyncMutex::new(())),
            owners: RwLock::new(HashMap::new()),
            durable,
            failed,
            ingest_thread: Mutex::new(Some(ingest_thread)),
            _store_thread: store_thread,
            in_flight: tokio::sync::watch::Sender::new(0),
            accepted,
        });
        // The system relations describe diffmart's sources: only they write them.
        let system: Vec<RelationId> =
            diffmart_dataflows::system::input_specs().iter().filter_map(|spec| engine.catalog.id(spec.name)).collect();
        engine
            .claim_relations(&system, "diffmart", "it reports on diffmart's own sources")
            .map_err(anyhow::Error::msg)?;
        // Complete the first logical time with no updates, so that views which are not
        // empty over empty inputs (an aggregate's single row) are visible from the start
        // (and, after a replay, once what was replayed is).
        engine.apply_blocking(Vec::new()).map_err(|e| anyhow::anyhow!("publishing the initial state: {e}"))?;
        Ok((engine, subscription))
    }

    /// One past the last logical time on disk, with a data directory: what Kafka sinks
    /// may deliver, so that a lost machine never leaves them ahead of the log.
    pub fn durable_upper(&self) -> Option<Time> {
        self.durable.as_ref().map(|durable| durable.durability.durable_upper())
    }

    /// One past the last logical time ingest has handed to compute: once the store's
    /// visible upper reaches it, the views reflect every input accepted so far.
    pub fn accepted_upper(&self) -> Time {
        self.accepted.load(Ordering::Acquire)
    }

    /// Where each source had got before this start, as the data directory's log
    /// says (empty without one, or on a new one).
    pub fn recovered_positions(&self) -> SourcePositions {
        self.durable.as_ref().map(|d| d.positions.clone()).unwrap_or_default()
    }

    /// The data directory, if the engine is durable.
    pub fn data_dir(&self) -> Option<&DataDir> {
        self.durable.as_ref().map(|d| &d.data_dir)
    }

    /// Waits until ingest stops taking writes because the input log failed; says why.
    pub async fn failure(&self) -> String {
        let mut failed = self.failed.clone();
        match failed.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // Ingest ended without failing (a shutdown): nothing to report, ever.
            Err(_) => std::future::pending().await,
        }
    }

    /// Takes a checkpoint after every write taken so far, and waits until it is on
    /// disk and the log it covers is deleted; returns its time.
    pub fn checkpoint_now(&self) -> Result<Time, String> {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.ingest
            .requests
            .send(IngestMessage::Checkpoint(done))
            .map_err(|_| "the engine has shut down".to_string())?;
        result.recv().map_err(|_| "the engine shut down during the checkpoint".to_string())?
    }

    /// Stops ingest after what it has already taken (those writes go out, and are on
    /// disk with a data directory), and waits for it. Writes after this are refused.
    pub fn shut_down(&self) {
        let _ = self.ingest.requests.send(IngestMessage::Close);
        if let Some(thread) = self.ingest_thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }

    /// Waits until the write at `time` is visible and, with a data directory, on disk:
    /// the moment to acknowledge it.
    async fn acknowledge(&self, time: Time) -> Result<Time, SqlError> {
        let visible = self.store.wait_visible(time).await;
        match &self.durable {
            // On disk is what counts: if compute shuts down first, a restart shows it.
            Some(durable) => durable.durability.wait_async(time).await.map(|()| time).map_err(|e| {
                SqlError::new("58030", format!("the write was not made durable, so it is not acknowledged: {e}"))
            }),
            None if visible => Ok(time),
            None => Err(shutting_down()),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.snapshot()
    }

    /// A handle for sources to push updates with.
    pub fn ingest(&self) -> Ingest {
        self.ingest.clone()
    }

    /// Checks updates against their relations' types, so nothing malformed reaches compute.
    pub fn validate(&self, updates: &[Update]) -> Result<(), SqlError> {
        for update in updates {
            if !self.catalog.is_input(update.relation) {
                let name = self.catalog.spec(update.relation).name;
                return Err(SqlError::new("42809", format!("\"{name}\" is a view and cannot be written")));
            }
            let Some(row) = update.row() else { continue };
            validate_row(self.catalog.spec(update.relation), row)
                .map_err(|e| SqlError::new(e.sqlstate(), e.to_string()))?;
        }
        Ok(())
    }

    /// Applies updates to input relations as one step and waits until they are
    /// visible; all or none. Keyed updates (upserts, deletes by key…) apply in their
    /// order; plain inserts and deletes of table rows are a set of changes at one
    /// time, netted out and applied deletes first, whatever their order.
    pub async fn apply(&self, updates: Vec<Update>) -> Result<Time, SqlError> {
        self.submit(updates, Vec::new(), false).await
    }

    /// Blocking twin of [`Engine::apply`].
    pub fn apply_blocking(&self, updates: Vec<Update>) -> Result<Time, SqlError> {
        self.apply_blocking_from(updates, Vec::new())
    }

    /// [`Engine::apply_blocking`] for a source that has got to `positions` with these
    /// updates (a loaded file, the generator's catalogs): logged in the same record,
    /// so after a restart [`Engine::recovered_positions`] says whether they went in.
    pub fn apply_blocking_from(&self, updates: Vec<Update>, positions: Vec<SourcePosition>) -> Result<Time, SqlError> {
        futures::executor::block_on(self.submit(updates, positions, false))
    }

    /// Hands a write to ingest and waits until it can be acknowledged (counted
    /// meanwhile, for [`Engine::writes_answered`]).
    async fn submit(
        &self,
        updates: Vec<Update>,
        positions: Vec<SourcePosition>,
        table_rules: bool,
    ) -> Result<Time, SqlError> {
        self.in_flight.send_modify(|n| *n += 1);
        let _done = scopeguard::guard((), |()| self.in_flight.send_modify(|n| *n -= 1));
        self.validate(&updates)?;
        let time = self.ingest.request(writes::as_one_step(&self.catalog, updates), positions, table_rules)?;
        self.acknowledge(time).await
    }

    /// Waits until no write is between its hand-over to ingest and its answer (after
    /// [`Engine::shut_down`], none starts again).
    pub async fn writes_answered(&self) {
        let _ = self.in_flight.subscribe().wait_for(|&n| n == 0).await;
    }

    /// Makes `owner` (a source, e.g. "the CDC source of postgres://host/db") the only
    /// writer of these input relations: SQL writes to them are refused from now on, and
    /// the generator leaves them alone. `advice` ends the refusal's message (what to do
    /// instead). Fails if one is a view or already owned.
    pub fn claim_relations(&self, relations: &[RelationId], owner: &str, advice: &str) -> Result<(), String> {
        let mut owners = self.owners.write().unwrap();
        for &id in relations {
            let spec = self.catalog.spec(id);
            if matches!(spec.kind, RelationKind::View) {
                return Err(format!("\"{}\" is a view, so {owner} cannot feed it", spec.name));
            }
            if let Some(other) = owners.get(&id) {
                return Err(format!("\"{}\" is already fed by {}", spec.name, other.owner));
            }
        }
        let claim = RelationOwner { owner: owner.to_string(), advice: advice.to_string() };
        owners.extend(relations.iter().map(|&id| (id, claim.clone())));
        Ok(())
    }

    /// The source that owns this input relation, if any.
    pub fn owner_of(&self, relation: RelationId) -> Option<String> {
        self.owners.read().unwrap().get(&relation).map(|o| o.owner.clone())
    }

    /// Refuses SQL writes to a relation a source owns (SQLSTATE 42501).
    pub fn check_sql_writable(&self, relation: RelationId) -> Result<(), SqlError> {
        match self.owners.read().unwrap().get(&relation) {
            None => Ok(()),
            Some(RelationOwner { owner, advice }) => Err(SqlError::new(
                "42501",
                format!("cannot modify \"{}\": {owner} is its only writer; {advice}", self.catalog.spec(relation).name),
            )),
        }
    }

    /// Takes the table write lock: writes are checked and applied one at a time.
    pub async fn table_writer(self: &Arc<Self>) -> TableWriter {
        TableWriter { engine: self.clone(), _guard: self.writes.clone().lock_owned().await }
    }
}

/// Who feeds an input relation, and what a client who tried to write it should do instead.
#[derive(Clone, Debug)]
struct RelationOwner {
    owner: String,
    advice: String,
}

fn shutting_down() -> SqlError {
    SqlError::new("57P01", "the server is shutting down")
}

/// Exclusive access to the tables. While it is held no other SQL write runs, so
/// the snapshot it reads is the tables' current content.
pub struct TableWriter {
    engine: Arc<Engine>,
    _guard: OwnedMutexGuard<()>,
}

impl TableWriter {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.engine.snapshot()
    }

    /// Replaces `delete` (rows the statement read from [`TableWriter::snapshot`]) by
    /// `insert` in one step, and returns once the change is visible to every reader.
    /// The write path enforces the primary key, and refuses the whole statement if
    /// another writer changed a row it deletes meanwhile (40001).
    ///
    /// Inserted rows get their DEFAULTs first; rows the delete implies in other tables
    /// (`diffmart_dataflows::rows_implied_by_delete`) are upserted in the same step.
    pub async fn replace(&self, table: RelationId, delete: Vec<Row>, mut insert: Vec<Row>) -> Result<Time, SqlError> {
        let spec = self.engine.catalog.spec(table);
        let now = wall_clock_micros();
        for row in &mut insert {
            diffmart_dataflows::fill_defaults(spec, row, now);
        }
        let updates: Vec<Update> = delete
            .into_iter()
            .map(|row| Update::delete(table, row))
            .chain(insert.into_iter().map(|row| Update::insert(table, row)))
            .collect();
        self.engine.write(table, updates).await
    }
}

impl Engine {
    /// Applies a client's updates to `table` (SQL, HTTP) as [`Engine::apply`] does,
    /// with the tables' rules: only tables can be written this way, only those no
    /// source owns, and a row deleted for good adds the rows it implies
    /// (`diffmart_dataflows::rows_implied_by_delete`).
    pub async fn write(&self, table: RelationId, updates: Vec<Update>) -> Result<Time, SqlError> {
        let spec = self.catalog.spec(table);
        if !matches!(spec.kind, RelationKind::Table { .. }) {
            let what = if spec.kind == RelationKind::View { "a materialized view" } else { "a source" };
            return Err(SqlError::new("42809", format!("cannot modify \"{}\": it is {what}", spec.name)));
        }
        self.check_sql_writable(table)?;
        self.submit(updates, Vec::new(), true).await
    }
}

/// Now, for DEFAULT values (microseconds since the epoch).
fn wall_clock_micros() -> diffmart_dataflows::datum::Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as diffmart_dataflows::datum::Micros)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_full_ingest_queue_makes_senders_wait_for_room() {
        let room = Arc::new(QueueRoom::default());
        room.take(MAX_QUEUED_UPDATES);
        let (sent, waiting) = std::sync::mpsc::channel();
        let sender = {
            let room = room.clone();
            std::thread::spawn(move || {
                room.take(1);
                sent.send(()).unwrap();
            })
        };
        assert!(waiting.recv_timeout(Duration::from_millis(200)).is_err(), "a sender got past a full queue");
        room.give_back(MAX_QUEUED_UPDATES);
        waiting.recv_timeout(Duration::from_secs(10)).expect("the sender still waits after room was freed");
        sender.join().unwrap();
    }

    #[test]
    fn a_request_larger_than_the_queue_fits_an_empty_one() {
        let room = QueueRoom::default();
        room.take(MAX_QUEUED_UPDATES * 2);
        room.give_back(MAX_QUEUED_UPDATES * 2);
        assert_eq!(*room.queued.lock().unwrap(), 0);
    }
}
