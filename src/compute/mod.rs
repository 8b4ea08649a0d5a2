//! Compute: the timely workers that host the dataflows.
//!
//! Input batches arrive already stamped with a logical time (the engine's
//! ingest assigns it). Every view leaves the dataflow through one exchange to
//! worker 0, where a sink hands each completed stretch of time to the engine
//! as one [`OutputBatch`]: that is what makes every published snapshot consistent
//! across views. Inputs do not make that trip: ingest already holds them, and
//! hands the store its own copy of each batch (see `engine::run_ingest`).

pub mod profile;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use anyhow::{Context, anyhow};
use diffmart_dataflows::boundary::{Inputs, View};
use diffmart_dataflows::checkpoint::{Checkpoint, Checkpoints, SavedState};
use diffmart_dataflows::datum::Row;
use diffmart_dataflows::{PipelineConfig, Time};
use timely::WorkerConfig;
use timely::dataflow::Scope;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use self::profile::{OperatorProfile, PipelineBoundaries};

/// Which relation (an index into the catalog) a row belongs to.
pub type RelationId = usize;

/// Input updates, all at one logical time. `RelationId`s here index the inputs.
#[derive(Debug, Default)]
pub struct InputBatch {
    pub time: Time,
    pub updates: Vec<(RelationId, Row, isize)>,
}

/// What ingest sends each worker: a batch, or a request to save the state of the
/// history-dependent operators once every time up to `through` is computed.
enum ToWorker {
    Batch(InputBatch),
    Checkpoint { through: Time, saved: Sender<(usize, BTreeMap<String, SavedState>)> },
}

/// Every change to every view at the times before `upper`. `upper == None` means
/// the dataflow has shut down.
#[derive(Debug)]
pub struct OutputBatch {
    pub upper: Option<Time>,
    pub changes: Vec<(RelationId, Row, isize)>,
}

/// How to lay out timely: worker threads per process, and for a cluster of
/// processes this process's index and the hostfile (timely's `-n`, `-p`, `-h`).
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    pub hostfile: Option<String>,
    /// Launch options of the pipelines themselves (windows, thresholds, retention).
    pub pipelines: PipelineConfig,
    /// Sum each operator's scheduled time here (the benchmarks' `--operator-profile`).
    pub operator_profile: Option<Arc<OperatorProfile>>,
    /// Restore the history-dependent operators from this checkpoint (a single process only).
    pub restore: Option<Arc<Checkpoint>>,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
            pipelines: PipelineConfig::default(),
            operator_profile: None,
            restore: None,
        }
    }
}

impl ComputeConfig {
    fn timely_config(&self) -> anyhow::Result<timely::Config> {
        let mut args = vec!["-w".to_string(), self.workers.to_string()];
        if self.processes > 1 {
            args.extend(["-n".to_string(), self.processes.to_string(), "-p".to_string(), self.process.to_string()]);
            if let Some(hostfile) = &self.hostfile {
                args.extend(["-h".to_string(), hostfile.clone()]);
            }
        }
        let config = timely::Config::from_args(args.into_iter()).map_err(|e| anyhow!("bad cluster layout: {e}"))?;
        Ok(timely::Config { communication: config.communication, worker: WorkerConfig::default() })
    }
}

/// The running workers. Dropping it closes the inputs and joins the workers.
pub struct Compute {
    /// One channel per worker of this process; empty on processes other than 0.
    to_workers: Vec<Sender<ToWorker>>,
    /// The upper of what the sink has published (`None` once the dataflow shut down).
    computed: tokio::sync::watch::Receiver<Option<Time>>,
    worker_threads: Vec<Thread>,
    processes: usize,
    guards: Option<timely::communication::initialize::WorkerGuards<()>>,
}

impl Compute {
    /// Starts the workers. On process 0 the sink sends [`OutputBatch`]es to `outputs`.
    pub fn start(config: &ComputeConfig, outputs: Sender<OutputBatch>) -> anyhow::Result<Compute> {
        let timely_config = config.timely_config()?;
        let feeds_inputs = config.process == 0;
        let (to_workers, receivers): (Vec<_>, Vec<_>) = if feeds_inputs {
            (0..config.workers).map(|_| std::sync::mpsc::channel::<ToWorker>()).unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        let receivers: Arc<Mutex<Vec<Option<Receiver<ToWorker>>>>> =
            Arc::new(Mutex::new(receivers.into_iter().map(Some).collect()));
        let (computed_tx, computed) = tokio::sync::watch::channel(Some(0));
        let outputs = Arc::new(Mutex::new(Some(Publisher { outputs, computed: computed_tx })));
        let (thread_tx, thread_rx) = std::sync::mpsc::channel::<(usize, Thread)>();
        let thread_tx = Mutex::new(thread_tx);
        let workers_per_process = config.workers;
        let pipelines = config.pipelines.clone();
        let operator_profile = config.operator_profile.clone();
        let restore = config.restore.clone();
        if restore.is_some() && config.processes > 1 {
            anyhow::bail!("checkpoints are taken and restored by a single process, not a cluster");
        }
        let computed_upper = computed.clone();

        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let checkpoints = match restore.as_deref() {
                Some(checkpoint) => Checkpoints::restoring(checkpoint.for_worker(index, worker.peers())),
                None => Checkpoints::new(),
            };
            let computed = computed_upper.clone();
            let publish = if index == 0 { outputs.lock().unwrap().take() } else { None };
            let boundaries: Rc<RefCell<PipelineBoundaries>> = Rc::default();
            if let Some(profile) = &operator_profile {
                profile.attach(worker, boundaries.clone());
            }
            let mut sessions = worker.dataflow::<Time, _, _>(|scope| {
                let mut inputs =
                    Inputs::with_checkpoints(scope, diffmart_dataflows::input_specs(), checkpoints.clone());
                let mut starting =
                    |pipeline| boundaries.borrow_mut().push((scope.worker().peek_identifier(), pipeline));
                let views = diffmart_dataflows::build_views_announcing(&pipelines, &mut inputs, &mut starting);
                boundaries.borrow_mut().push((scope.worker().peek_identifier(), "compute"));
                publish_to_engine(scope, view_ids(&views), views, publish);
                inputs.into_sessions()
            });
            if index == 0 {
                tracing::debug!(operators = worker.peek_identifier(), "dataflow built");
            }
            // Local receiver, if this worker is on the process that feeds inputs.
            let receiver = (index < workers_per_process)
                .then(|| receivers.lock().unwrap().get_mut(index).and_then(Option::take))
                .flatten();
            let Some(receiver) = receiver else {
                // Not an input worker: closing our inputs lets the frontier follow the others.
                sessions.clear();
                while worker.step_or_park(None) {}
                return;
            };
            thread_tx.lock().unwrap().send((index, std::thread::current())).ok();
            loop {
                match receiver.try_recv() {
                    Ok(ToWorker::Checkpoint { through, saved }) => {
                        // Every time up to `through` computed (the sink's upper is past
                        // it) and nothing after it sent: the operators' state is theirs
                        // at `through`.
                        while computed.borrow().is_some_and(|upper| upper <= through) {
                            worker.step_or_park(Some(Duration::from_millis(1)));
                        }
                        let _ = saved.send((index, checkpoints.save(through)));
                    }
                    Ok(ToWorker::Batch(batch)) => {
                        for session in sessions.iter_mut() {
                            session.advance_to(batch.time);
                        }
                        for (input, row, diff) in batch.updates {
                            sessions[input].update(row, diff);
                        }
                        for session in sessions.iter_mut() {
                            session.advance_to(batch.time + 1);
                            session.flush();
                        }
                    }
                    Err(TryRecvError::Empty) => {
                        worker.step_or_park(Some(Duration::from_millis(20)));
                    }
                    Err(TryRecvError::Disconnected) => {
                        sessions.clear();
                        while worker.step_or_park(None) {}
                        return;
                    }
                }
            }
        })
        .map_err(|e| anyhow!("starting timely workers: {e}"))?;

        let mut worker_threads = vec![None; to_workers.len()];
        for _ in 0..to_workers.len() {
            let (index, thread) = thread_rx.recv().context("a worker died during start-up")?;
            worker_threads[index] = Some(thread);
        }
        Ok(Compute {
            to_workers,
            computed,
            worker_threads: worker_threads.into_iter().flatten().collect(),
            processes: config.processes,
            guards: Some(guards),
        })
    }

    /// Follows the upper of the times whose changes compute has handed over (before
    /// the store has applied them; `None` once the dataflow has shut down).
    pub fn computed_upper(&self) -> tokio::sync::watch::Receiver<Option<Time>> {
        self.computed.clone()
    }

    /// Whether this process feeds inputs (process 0 of a cluster).
    pub fn feeds_inputs(&self) -> bool {
        !self.to_workers.is_empty()
    }

    /// Hands a batch to the workers, spread evenly; every worker learns the new time.
    pub fn send(&self, batch: InputBatch) {
        let peers = self.to_workers.len();
        let shares = if peers == 1 {
            vec![batch] // as it is: splitting would copy every update
        } else {
            let mut shares: Vec<InputBatch> =
                (0..peers).map(|_| InputBatch { time: batch.time, updates: Vec::new() }).collect();
            for (i, update) in batch.updates.into_iter().enumerate() {
                shares[i % peers].updates.push(update);
            }
            shares
        };
        for ((sender, share), thread) in self.to_workers.iter().zip(shares).zip(&self.worker_threads) {
            // A closed channel means the workers are shutting down; nothing to do.
            let _ = sender.send(ToWorker::Batch(share));
            thread.unpark();
        }
    }

    /// The state of every history-dependent operator once every time up to `through`
    /// is computed. Ingest must have sent `through` and nothing after it. A single
    /// process only (see [`ComputeConfig::restore`]).
    pub fn checkpoint(&self, through: Time) -> anyhow::Result<Checkpoint> {
        if self.processes > 1 {
            anyhow::bail!("checkpoints are taken by a single process, not a cluster");
        }
        let (saved_tx, saved_rx) = std::sync::mpsc::channel();
        for (sender, thread) in self.to_workers.iter().zip(&self.worker_threads) {
            sender
                .send(ToWorker::Checkpoint { through, saved: saved_tx.clone() })
                .map_err(|_| anyhow!("compute has shut down"))?;
            thread.unpark();
        }
        drop(saved_tx);
        let mut workers = vec![BTreeMap::new(); self.to_workers.len()];
        for _ in 0..self.to_workers.len() {
            let (index, saved) = saved_rx.recv().map_err(|_| anyhow!("compute shut down during a checkpoint"))?;
            workers[index] = saved;
        }
        Ok(Checkpoint::merge(through, workers))
    }

    /// Blocks until the workers finish (for processes other than 0).
    pub fn join(mut self) {
        self.to_workers.clear();
        if let Some(guards) = self.guards.take() {
            guards.join();
        }
    }
}

impl Drop for Compute {
    fn drop(&mut self) {
        self.to_workers.clear();
        for thread in &self.worker_threads {
            thread.unpark();
        }
        if let Some(guards) = self.guards.take() {
            drop(guards);
        }
    }
}

/// Where worker 0's sink hands its output: the batches, and how far they reach.
struct Publisher {
    outputs: Sender<OutputBatch>,
    computed: tokio::sync::watch::Sender<Option<Time>>,
}

/// The ids of the history-dependent operators a dataflow built with `config` registers:
/// what a checkpoint restored into it must hold, no more and no less.
pub fn checkpointed_operators(config: &PipelineConfig) -> Vec<&'static str> {
    let config = config.clone();
    timely::execute_directly(move |worker| {
        let checkpoints = Checkpoints::new();
        worker.dataflow::<Time, _, _>(|scope| {
            let mut inputs = Inputs::with_checkpoints(scope, diffmart_dataflows::input_specs(), checkpoints.clone());
            drop(diffmart_dataflows::build_views(&config, &mut inputs));
            inputs.into_sessions()
        });
        checkpoints.ids()
    })
}

/// The catalog's id of each view, found by its name: views are numbered after the
/// inputs, in `view_specs` order (`engine::Catalog::all_pipelines`), whatever order
/// the pipelines built them in.
fn view_ids(views: &[View<'_>]) -> Vec<RelationId> {
    let first_view = diffmart_dataflows::input_specs().len();
    let ids: HashMap<&str, RelationId> =
        diffmart_dataflows::view_specs().iter().enumerate().map(|(i, spec)| (spec.name, first_view + i)).collect();
    views
        .iter()
        .map(|view| {
            *ids.get(view.spec().name).unwrap_or_else(|| panic!("view {} is in no view_specs", view.spec().name))
        })
        .collect()
}

/// The sink on worker 0: gathers every view's changes and, each time the frontier
/// moves, publishes all changes at times now complete. It reads each view on an
/// input of its own (`ids[i]` is the relation of input `i`), rather than tagging and
/// concatenating the views first, and writes each change as a row as it reads it
/// (see `diffmart_dataflows::boundary`): one operator instead of two per view, and
/// timely's progress tracking scales with the operator count.
fn publish_to_engine<'s>(
    scope: Scope<'s, Time>,
    ids: Vec<RelationId>,
    views: Vec<View<'s>>,
    publish: Option<Publisher>,
) {
    if views.is_empty() {
        return;
    }
    let mut builder = OperatorBuilder::new("PublishToServing".to_string(), scope);
    let mut readers: Vec<_> = views.into_iter().map(|view| view.connect(&mut builder)).collect();
    let mut pending: BTreeMap<Time, Vec<(RelationId, Row, isize)>> = BTreeMap::new();
    let mut published_upper: Option<Option<Time>> = None;
    builder.build(move |_capabilities| {
        move |frontiers| {
            for (&id, read) in ids.iter().zip(readers.iter_mut()) {
                read(&mut |row, time, diff| pending.entry(time).or_default().push((id, row, diff)));
            }
            let Some(publish) = &publish else { return };
            // Times are totally ordered: the views' joint frontier is their least element.
            let upper = frontiers.iter().filter_map(|f| f.frontier().first().copied()).min();
            if published_upper == Some(upper) {
                return;
            }
            let mut changes = Vec::new();
            while let Some(entry) = pending.first_entry() {
                if upper.is_some_and(|u| *entry.key() >= u) {
                    break;
                }
                changes.extend(entry.remove());
            }
            published_upper = Some(upper);
            // The engine going away means shutdown; the dataflow just drains.
            let _ = publish.outputs.send(OutputBatch { upper, changes });
            publish.computed.send_replace(upper);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Catalog;

    #[test]
    fn views_get_the_catalog_ids_of_their_names_in_any_order() {
        timely::execute_directly(|worker| {
            worker.dataflow::<Time, _, _>(|scope| {
                let mut inputs = Inputs::new(scope, diffmart_dataflows::input_specs());
                let mut views = diffmart_dataflows::build_views(&PipelineConfig::default(), &mut inputs);
                views.reverse();
                let catalog = Catalog::all_pipelines();
                for (view, id) in views.iter().zip(view_ids(&views)) {
                    assert_eq!(catalog.spec(id).name, view.spec().name);
                    assert!(!catalog.is_input(id));
                }
                inputs.into_sessions()
            });
        });
    }
}
