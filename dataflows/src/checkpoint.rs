//! Checkpoints of the operators whose output depends on history.
//!
//! Most operators compute a function of what has accumulated at their inputs, and a
//! restart rebuilds them from their inputs. A few depend on more: on arrival order, on
//! the clock at arrival, or on events retention has since dropped (a late count, an
//! all-time total, a running inventory's base, a state machine). Those are the
//! *history-dependent* operators, and each saves its state here at a checkpoint and
//! takes it back at a restore, so the input log before the checkpoint can be deleted.
//!
//! The protocol, for an operator registered under a stable id (`"retail.late"`, never a
//! timely operator index, which changes with the dataflow's shape):
//!
//! - **Save**, at a logical time `through` once every time up to it is processed and none
//!   after it has arrived: the operator's saver returns its state on this worker as a
//!   [`SavedState`]. State every worker holds alike (a clock) is *shared*; the rest is
//!   *keyed*, each entry with the route (the exchange hash) of the key it belongs to.
//! - **Restore**, when the dataflow is built again: each worker gets the shared state
//!   and the keyed entries whose route lands on it (`route % peers`, as timely's
//!   exchange does), so a checkpoint taken with any number of workers restores on any
//!   other. The operator loads them, **ignores its inputs at times up to `through`**
//!   (its state already holds their effect), and emits at `through` its accumulated
//!   output, the changes that make downstream operators see what they saw before.
//!
//! A restored dataflow is fed at `through` only the tables' current rows (for the
//! operators that are a function of them) and no source events: every path from a
//! source passes a history-dependent operator or an accumulation tap
//! ([`crate::operators::accumulated`]) before any other operator that holds state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Time;

/// The format of every saved state. Bump it whenever an operator's saved state changes
/// shape, so an older checkpoint is refused rather than misread.
pub const STATE_FORMAT: u32 = 1;

/// What one operator saved on one worker, or, merged, on every worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// State every worker holds alike (a clock): kept from one worker, given to all.
    #[serde(with = "serde_bytes")]
    pub shared: Option<Vec<u8>>,
    /// Keyed state: each entry with the route of its key, restored on worker `route % peers`.
    #[serde(with = "keyed_bytes")]
    pub keyed: Vec<(u64, Vec<u8>)>,
}

/// Keyed entries (de)serialized with their bytes as byte strings, which is the same
/// encoding as a sequence of `u8` in bincode, read in one copy instead of byte by byte.
mod keyed_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(keyed: &[(u64, Vec<u8>)], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(keyed.iter().map(|(route, bytes)| (route, Bytes::new(bytes))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(u64, Vec<u8>)>, D::Error> {
        let entries: Vec<(u64, ByteBuf)> = Vec::deserialize(deserializer)?;
        Ok(entries.into_iter().map(|(route, bytes)| (route, bytes.into_vec())).collect())
    }
}

impl SavedState {
    /// Sets the shared state to `value`.
    pub fn set_shared<T: Serialize>(&mut self, value: &T) {
        self.shared = Some(encode(value));
    }

    /// Adds `value` as a keyed entry on `route`.
    pub fn push_keyed<T: Serialize>(&mut self, route: u64, value: &T) {
        self.keyed.push((route, encode(value)));
    }

    /// The shared state, if one was saved.
    pub fn shared<T: DeserializeOwned>(&self) -> Option<T> {
        self.shared.as_deref().map(decode)
    }

    /// The keyed entries, decoded.
    pub fn keyed<T: DeserializeOwned>(&self) -> impl Iterator<Item = T> + '_ {
        self.keyed.iter().map(|(_, bytes)| decode(bytes))
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("operator state serializes")
}

/// Saved state is CRC-checked on disk and refused when [`STATE_FORMAT`] differs, so an
/// entry that does not read as its operator's state is a bug.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> T {
    bincode::deserialize(bytes)
        .unwrap_or_else(|e| panic!("a checkpoint entry does not read as its operator's state: {e}"))
}

/// Every registered operator's state on every worker, at one logical time: what a
/// checkpoint holds of compute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every logical time up to and including this one is in the states.
    pub through: Time,
    pub states: BTreeMap<String, SavedState>,
}

impl Checkpoint {
    /// Merges what each worker saved at `through`: the shared state from the first
    /// worker that has one, the keyed entries of all.
    pub fn merge(through: Time, workers: Vec<BTreeMap<String, SavedState>>) -> Checkpoint {
        let mut states: BTreeMap<String, SavedState> = BTreeMap::new();
        for worker in workers {
            for (id, saved) in worker {
                let merged = states.entry(id).or_default();
                if merged.shared.is_none() {
                    merged.shared = saved.shared;
                }
                merged.keyed.extend(saved.keyed);
            }
        }
        Checkpoint { through, states }
    }

    /// What worker `index` of `peers` restores: the shared states, and the keyed entries
    /// routed to it.
    pub fn for_worker(&self, index: usize, peers: usize) -> Restore {
        let mine = |route: u64| (route % peers as u64) as usize == index;
        let states = self
            .states
            .iter()
            .map(|(id, saved)| {
                let keyed = saved.keyed.iter().filter(|(route, _)| mine(*route)).cloned().collect();
                (id.clone(), SavedState { shared: saved.shared.clone(), keyed })
            })
            .collect();
        Restore { through: self.through, states }
    }
}

/// One worker's share of a [`Checkpoint`], handed out to the operators as they register.
pub struct Restore {
    through: Time,
    states: BTreeMap<String, SavedState>,
}

/// How an operator saves its state: called with the checkpoint's time.
type Saver = Box<dyn Fn(Time) -> SavedState>;

#[derive(Default)]
struct Registry {
    restore: Option<Restore>,
    /// Every registered id, with its saver once the operator has set it.
    savers: BTreeMap<&'static str, Option<Saver>>,
}

/// A worker's registry of history-dependent operators. Cloning it shares it.
#[derive(Clone, Default)]
pub struct Checkpoints {
    registry: Rc<RefCell<Registry>>,
}

impl Checkpoints {
    /// A registry for a dataflow that starts from nothing.
    pub fn new() -> Checkpoints {
        Checkpoints::default()
    }

    /// A registry for a dataflow restored from `restore`.
    pub fn restoring(restore: Restore) -> Checkpoints {
        let registry = Registry { restore: Some(restore), savers: BTreeMap::new() };
        Checkpoints { registry: Rc::new(RefCell::new(registry)) }
    }

    /// Registers the operator `id`: the slot says what to restore, and takes its saver.
    /// Ids are stable names, one per operator; registering one twice panics.
    pub fn slot(&self, id: &'static str) -> Slot {
        let mut registry = self.registry.borrow_mut();
        assert!(registry.savers.insert(id, None).is_none(), "checkpoint id {id} registered twice");
        let restored = registry
            .restore
            .as_mut()
            .map(|restore| Restored { through: restore.through, state: restore.states.remove(id).unwrap_or_default() });
        Slot { id, restored, checkpoints: self.clone() }
    }

    /// Every registered id.
    pub fn ids(&self) -> Vec<&'static str> {
        self.registry.borrow().savers.keys().copied().collect()
    }

    /// After the dataflow is built: refuses a restore whose checkpoint holds state of an
    /// operator that did not register (a checkpoint of another dataflow).
    pub fn check_restored(&self) -> Result<(), String> {
        let registry = self.registry.borrow();
        let Some(restore) = &registry.restore else { return Ok(()) };
        let unknown: Vec<&str> = restore.states.keys().map(String::as_str).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("the checkpoint holds state of operators this dataflow does not have: {unknown:?}"))
        }
    }

    /// Every operator's state on this worker, by id, at `through` (every time up to it
    /// processed, none after it arrived).
    pub fn save(&self, through: Time) -> BTreeMap<String, SavedState> {
        let registry = self.registry.borrow();
        registry
            .savers
            .iter()
            .map(|(id, saver)| {
                let saver = saver.as_ref().unwrap_or_else(|| panic!("operator {id} registered but set no saver"));
                (id.to_string(), saver(through))
            })
            .collect()
    }
}

/// State restored for one operator on this worker.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint's time: the operator ignores its inputs up to it, and emits its
    /// accumulated output at it.
    pub through: Time,
    /// This worker's share (empty when the operator held nothing here).
    pub state: SavedState,
}

/// One operator's place in the registry.
pub struct Slot {
    id: &'static str,
    restored: Option<Restored>,
    checkpoints: Checkpoints,
}

impl Slot {
    /// The operator's id.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// What to restore, when the dataflow is restored (once).
    pub fn take_restored(&mut self) -> Option<Restored> {
        self.restored.take()
    }

    /// How the operator saves its state at a checkpoint. `saver` usually holds an `Rc`
    /// of the state the operator's closure mutates.
    pub fn on_save(self, saver: impl Fn(Time) -> SavedState + 'static) {
        let mut registry = self.checkpoints.registry.borrow_mut();
        *registry.savers.get_mut(self.id).expect("registered") = Some(Box::new(saver));
    }
}

/// The check every checkpointed operator passes: its output restored from a checkpoint
/// equals its output run straight through, after every batch.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::Cell;
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use differential_dataflow::{ExchangeData, VecCollection};
    use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
    use timely::dataflow::operators::probe::Handle;
    use timely::dataflow::operators::{Inspect, Probe};

    use super::*;
    use crate::boundary::Inputs;
    use crate::datum::{RelationKind, RelationSpec, Row};
    use crate::{BuildViews, PipelineConfig};

    /// Builds the operator under test over one input, registering in `checkpoints`.
    pub type Build<I, O> = for<'s> fn(VecCollection<'s, Time, I>, &Checkpoints) -> VecCollection<'s, Time, O>;

    /// Accumulated output after each logical time, consolidated.
    pub type Accumulated<O> = Vec<Vec<(O, isize)>>;

    /// Runs `build` over `batches` (batch `k` at logical time `k + 1`, its updates
    /// spread over the workers) on `workers` workers. With `checkpoint_after = Some(c)`
    /// the run stops after batch `c` (time `c`) and saves every worker's state: returns
    /// the output and the merged checkpoint.
    fn run<I, O>(
        build: Build<I, O>,
        batches: &[Vec<(I, isize)>],
        workers: usize,
        restore: Option<Checkpoint>,
        checkpoint_after: Option<usize>,
    ) -> (Vec<(O, Time, isize)>, Option<Checkpoint>)
    where
        I: ExchangeData + Send + Sync,
        O: ExchangeData + Send + Sync,
    {
        let output = Arc::new(Mutex::new(Vec::new()));
        let saved = Arc::new(Mutex::new(vec![BTreeMap::new(); workers]));
        let (batches, restore) = (Arc::new(batches.to_vec()), Arc::new(restore));
        let (sink, saves) = (output.clone(), saved.clone());
        timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let checkpoints = match restore.as_ref() {
                Some(checkpoint) => Checkpoints::restoring(checkpoint.for_worker(index, peers)),
                None => Checkpoints::new(),
            };
            let probe = Handle::new();
            let sink = sink.clone();
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, records) = scope.new_collection::<I, isize>();
                build(records, &checkpoints)
                    .inner
                    .inspect(move |(o, t, r)| sink.lock().unwrap().push((o.clone(), *t, *r)))
                    .probe_with(&probe);
                input
            });
            checkpoints.check_restored().expect("the checkpoint is of this operator");
            let first = restore.as_ref().as_ref().map_or(0, |c| c.through as usize);
            let last = checkpoint_after.unwrap_or(batches.len());
            for (k, batch) in batches.iter().enumerate().take(last).skip(first) {
                input.advance_to(k as Time + 1);
                for (i, (d, r)) in batch.iter().enumerate() {
                    if i % peers == index {
                        input.update(d.clone(), *r);
                    }
                }
            }
            input.advance_to(last as Time + 1);
            input.flush();
            while probe.less_than(&(last as Time + 1)) {
                worker.step();
            }
            if checkpoint_after.is_some() {
                saves.lock().unwrap()[index] = checkpoints.save(last as Time);
            }
        })
        .expect("timely runs");
        let output = std::mem::take(&mut *output.lock().unwrap());
        let checkpoint =
            checkpoint_after.map(|c| Checkpoint::merge(c as Time, std::mem::take(&mut *saved.lock().unwrap())));
        (output, checkpoint)
    }

    fn accumulated<O: ExchangeData>(output: &[(O, Time, isize)], from: Time, to: Time) -> Accumulated<O> {
        (from..=to)
            .map(|time| {
                let mut at: Vec<_> =
                    output.iter().filter(|(_, t, _)| *t <= time).map(|(o, _, r)| (o.clone(), *r)).collect();
                differential_dataflow::consolidation::consolidate(&mut at);
                at
            })
            .collect()
    }

    /// The accumulated output at each time from `cut` to the last batch: run straight
    /// through on `workers`, and checkpointed after batch `cut` on `workers` then restored
    /// on `restore_workers`. The two must be equal.
    pub fn straight_and_restored<I, O>(
        build: Build<I, O>,
        batches: &[Vec<(I, isize)>],
        cut: usize,
        workers: usize,
        restore_workers: usize,
    ) -> (Accumulated<O>, Accumulated<O>)
    where
        I: ExchangeData + Send + Sync,
        O: ExchangeData + Send + Sync,
    {
        let cut = cut.min(batches.len());
        let (straight, _) = run(build, batches, workers, None, None);
        let (_, checkpoint) = run(build, batches, workers, None, Some(cut));
        let (restored, _) = run(build, batches, restore_workers, checkpoint, None);
        let end = batches.len() as Time;
        (accumulated(&straight, cut as Time, end), accumulated(&restored, cut as Time, end))
    }

    /// Panics unless [`straight_and_restored`] agree, for 1 → 1, 2 → 2, 1 → 2 and 2 → 1 workers.
    pub fn assert_restores_exactly<I, O>(build: Build<I, O>, batches: &[Vec<(I, isize)>], cut: usize)
    where
        I: ExchangeData + Send + Sync,
        O: ExchangeData + Send + Sync + std::fmt::Debug,
    {
        for (workers, restore_workers) in [(1, 1), (2, 2), (1, 2), (2, 1)] {
            let (straight, restored) = straight_and_restored(build, batches, cut, workers, restore_workers);
            assert_eq!(straight, restored, "checkpoint after batch {cut}, {workers} → {restore_workers} workers");
        }
    }

    /// A whole pipeline under test, built as the server builds it.
    #[derive(Clone)]
    pub struct PipelineUnderTest {
        /// Its input relations, in the order `build` asks for them.
        pub input_specs: Vec<&'static RelationSpec>,
        pub build: BuildViews,
        pub config: PipelineConfig,
    }

    /// A pipeline's input updates at one logical time, as the server feeds them:
    /// `(input, row, diff)`, `input` indexing [`PipelineUnderTest::input_specs`].
    pub type PipelineBatch = Vec<(usize, Row, isize)>;

    /// A view's row, with the view's name.
    pub type ViewRow = (String, Row);

    /// [`run`] for a whole pipeline: its views' rows come out of a sink like the server's.
    /// Restored, it is fed at the checkpoint's time what a restore feeds: each table's
    /// current rows (the updates of the batches up to the checkpoint, consolidated), and
    /// no source events.
    fn run_pipeline(
        pipeline: &PipelineUnderTest,
        batches: &[PipelineBatch],
        workers: usize,
        restore: Option<Checkpoint>,
        checkpoint_after: Option<usize>,
    ) -> (Vec<(ViewRow, Time, isize)>, Option<Checkpoint>) {
        let output = Arc::new(Mutex::new(Vec::new()));
        let saved = Arc::new(Mutex::new(vec![BTreeMap::new(); workers]));
        let (pipeline, batches, restore) = (Arc::new(pipeline.clone()), Arc::new(batches.to_vec()), Arc::new(restore));
        let (sink, saves) = (output.clone(), saved.clone());
        timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let checkpoints = match restore.as_ref() {
                Some(checkpoint) => Checkpoints::restoring(checkpoint.for_worker(index, peers)),
                None => Checkpoints::new(),
            };
            // The views' joint frontier: every time before it is complete.
            let upper = Rc::new(Cell::new(Some(0)));
            let mut sessions = worker.dataflow::<Time, _, _>(|scope| {
                let mut inputs = Inputs::with_checkpoints(scope, pipeline.input_specs.clone(), checkpoints.clone());
                let views = (pipeline.build)(&pipeline.config, &mut inputs);
                let names: Vec<String> = views.iter().map(|view| view.spec().name.to_string()).collect();
                let mut builder = OperatorBuilder::new("CollectViews".to_string(), scope);
                let mut readers: Vec<_> = views.into_iter().map(|view| view.connect(&mut builder)).collect();
                let (sink, upper) = (sink.clone(), upper.clone());
                builder.build(move |_capabilities| {
                    move |frontiers| {
                        for (name, read) in names.iter().zip(readers.iter_mut()) {
                            read(&mut |row, time, diff| sink.lock().unwrap().push(((name.clone(), row), time, diff)));
                        }
                        upper.set(frontiers.iter().filter_map(|f| f.frontier().first().copied()).min());
                    }
                });
                inputs.into_sessions()
            });
            checkpoints.check_restored().expect("the checkpoint is of this pipeline");
            let mut feed = |time: Time, updates: Vec<(usize, Row, isize)>| {
                for session in sessions.iter_mut() {
                    session.advance_to(time);
                }
                for (i, (input, row, diff)) in updates.into_iter().enumerate() {
                    if i % peers == index {
                        sessions[input].update(row, diff);
                    }
                }
            };
            let first = restore.as_ref().as_ref().map_or(0, |c| c.through as usize);
            if first > 0 {
                let is_table = |input: usize| matches!(pipeline.input_specs[input].kind, RelationKind::Table { .. });
                let mut tables: Vec<((usize, Row), isize)> = batches[..first]
                    .iter()
                    .flatten()
                    .filter(|(input, _, _)| is_table(*input))
                    .map(|(input, row, diff)| ((*input, row.clone()), *diff))
                    .collect();
                differential_dataflow::consolidation::consolidate(&mut tables);
                feed(first as Time, tables.into_iter().map(|((input, row), diff)| (input, row, diff)).collect());
            }
            let last = checkpoint_after.unwrap_or(batches.len());
            for (k, batch) in batches.iter().enumerate().take(last).skip(first) {
                feed(k as Time + 1, batch.clone());
            }
            feed(last as Time + 1, Vec::new());
            for session in sessions.iter_mut() {
                session.flush();
            }
            while upper.get().is_some_and(|upper| upper <= last as Time) {
                worker.step();
            }
            if checkpoint_after.is_some() {
                saves.lock().unwrap()[index] = checkpoints.save(last as Time);
            }
        })
        .expect("timely runs");
        let output = std::mem::take(&mut *output.lock().unwrap());
        let checkpoint =
            checkpoint_after.map(|c| Checkpoint::merge(c as Time, std::mem::take(&mut *saved.lock().unwrap())));
        (output, checkpoint)
    }

    /// Panics unless `pipeline`'s views, run straight through `batches` and checkpointed
    /// after batch `cut` then restored, agree after every batch from `cut` on, for 1 → 1,
    /// 2 → 2, 1 → 2 and 2 → 1 workers.
    pub fn assert_pipeline_restores_exactly(pipeline: &PipelineUnderTest, batches: &[PipelineBatch], cut: usize) {
        let cut = cut.min(batches.len());
        let end = batches.len() as Time;
        for (workers, restore_workers) in [(1, 1), (2, 2), (1, 2), (2, 1)] {
            let (straight, _) = run_pipeline(pipeline, batches, workers, None, None);
            let (_, checkpoint) = run_pipeline(pipeline, batches, workers, None, Some(cut));
            let (restored, _) = run_pipeline(pipeline, batches, restore_workers, checkpoint, None);
            assert_eq!(
                accumulated(&straight, cut as Time, end),
                accumulated(&restored, cut as Time, end),
                "checkpoint after batch {cut}, {workers} → {restore_workers} workers"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(shared: Option<u32>, keyed: &[(u64, u32)]) -> SavedState {
        let mut state = SavedState::default();
        if let Some(shared) = shared {
            state.set_shared(&shared);
        }
        for (route, value) in keyed {
            state.push_keyed(*route, value);
        }
        state
    }

    #[test]
    fn merged_entries_go_back_to_the_worker_their_route_lands_on() {
        let one = BTreeMap::from([("op".to_string(), saved(Some(7), &[(0, 10), (3, 13)]))]);
        let two = BTreeMap::from([("op".to_string(), saved(Some(7), &[(1, 11), (2, 12)]))]);
        let checkpoint = Checkpoint::merge(5, vec![one, two]);
        for peers in 1..=3 {
            let mut all = Vec::new();
            for index in 0..peers {
                let checkpoints = Checkpoints::restoring(checkpoint.for_worker(index, peers));
                let mut slot = checkpoints.slot("op");
                let restored = slot.take_restored().expect("restoring");
                assert_eq!(restored.through, 5);
                assert_eq!(restored.state.shared::<u32>(), Some(7));
                for (route, bytes) in &restored.state.keyed {
                    assert_eq!(*route as usize % peers, index);
                    all.push(decode::<u32>(bytes));
                }
                assert_eq!(checkpoints.check_restored(), Ok(()));
            }
            all.sort_unstable();
            assert_eq!(all, [10, 11, 12, 13], "{peers} workers");
        }
    }

    /// Bytes read as byte strings are the encoding plain vectors of `u8` had, so
    /// checkpoints written before read the same.
    #[test]
    fn saved_bytes_encode_as_plain_byte_vectors() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Plain {
            shared: Option<Vec<u8>>,
            keyed: Vec<(u64, Vec<u8>)>,
        }
        let state = saved(Some(7), &[(0, 10), (3, 1300)]);
        let plain = Plain { shared: state.shared.clone(), keyed: state.keyed.clone() };
        let bytes = bincode::serialize(&state).unwrap();
        assert_eq!(bytes, bincode::serialize(&plain).unwrap());
        assert_eq!(bincode::deserialize::<SavedState>(&bytes).unwrap(), state);
        let none = SavedState::default();
        let plain = Plain { shared: None, keyed: Vec::new() };
        assert_eq!(bincode::serialize(&none).unwrap(), bincode::serialize(&plain).unwrap());
    }

    #[test]
    fn a_checkpoint_of_an_unknown_operator_is_refused() {
        let states = BTreeMap::from([("gone".to_string(), SavedState::default())]);
        let checkpoints = Checkpoints::restoring(Checkpoint { through: 1, states }.for_worker(0, 1));
        checkpoints.slot("here").on_save(|_| SavedState::default());
        assert!(checkpoints.check_restored().unwrap_err().contains("gone"));
    }

    #[test]
    fn save_asks_every_operator() {
        let checkpoints = Checkpoints::new();
        let mut slot = checkpoints.slot("a");
        assert!(slot.take_restored().is_none());
        slot.on_save(|through| saved(Some(through as u32), &[]));
        checkpoints.slot("b").on_save(|_| saved(None, &[(4, 1)]));
        let states = checkpoints.save(9);
        assert_eq!(states["a"].shared::<u32>(), Some(9));
        assert_eq!(states["b"].keyed::<u32>().collect::<Vec<_>>(), [1]);
    }

    #[test]
    #[should_panic(expected = "checkpoint id a registered twice")]
    fn an_id_registered_twice_panics() {
        let checkpoints = Checkpoints::new();
        let _first = checkpoints.slot("a");
        let _second = checkpoints.slot("a");
    }
}
