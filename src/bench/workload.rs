//! What a benchmark feeds the engine: the embedded generator's event streams,
//! turned into input updates ahead of time so that generating them is not
//! part of what is measured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::PipelineConfig;
use diffmart_dataflows::datum::Micros;
use serde::{Deserialize, Serialize};

use super::BenchOptions;
use crate::compute::profile::OperatorProfile;
use crate::compute::{ComputeConfig, RelationId};
use crate::engine::{Catalog, DataDir, Engine, Update};
use crate::sources::{self, GeneratedEvent, GeneratorConfig, MergedEvents};

/// 2025-06-01 00:00:00 UTC: every run starts its simulated clock here, so runs repeat exactly.
pub const EVENT_TIME_START: Micros = 1_748_736_000_000_000;

/// Which simulations feed the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// The retail pipeline's five producers alone.
    Retail,
    /// Every registered pipeline's simulation, merged by event time (what the server runs).
    All,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Retail => "retail",
            Workload::All => "all",
        }
    }

    /// The one pipeline it runs; `None` for all of them.
    fn pipeline(self) -> Option<&'static str> {
        match self {
            Workload::Retail => Some("retail"),
            Workload::All => None,
        }
    }
}

/// An engine with its own workers, fed by nothing but the benchmark; durable in a
/// fresh data directory with `--data-dir`.
pub fn start_engine(options: &BenchOptions, workers: usize, retention: Micros) -> anyhow::Result<Arc<Engine>> {
    start_engine_profiled(options, workers, retention, None)
}

/// [`start_engine`], summing each operator's time into `operator_profile` if given.
pub fn start_engine_profiled(
    options: &BenchOptions,
    workers: usize,
    retention: Micros,
    operator_profile: Option<Arc<OperatorProfile>>,
) -> anyhow::Result<Arc<Engine>> {
    let pipelines = PipelineConfig { retention, ..PipelineConfig::default() };
    let config = ComputeConfig { workers, pipelines, operator_profile, ..ComputeConfig::default() };
    let Some(base) = &options.child_data_dir else { return Engine::start(&config) };
    // One directory per engine: a scenario may start several.
    static ENGINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base.join(format!("engine-{n}"));
    let data_dir = DataDir::open(&dir, &Catalog::all_pipelines())?;
    Engine::start_with(&config, Some(data_dir))
}

/// A workload's events as input updates, in event-time order.
pub struct Feed {
    ids: HashMap<&'static str, RelationId>,
    events: MergedEvents,
    bootstrap: Vec<Update>,
    /// Event time of the last event taken.
    pub event_time: Micros,
    /// Events taken so far (bootstrap rows excluded).
    pub taken: u64,
}

impl Feed {
    pub fn new(workload: Workload, engine: &Engine, seed: u64) -> anyhow::Result<Feed> {
        let config = GeneratorConfig { seed, start: EVENT_TIME_START, rate: None, events: None };
        let simulations = crate::pipelines::simulations_of(&config, &sources::nothing_held, |pipeline| {
            workload.pipeline().is_none_or(|name| pipeline.name() == name)
        });
        let ids: HashMap<&'static str, RelationId> =
            engine.catalog().iter().map(|(id, spec)| (spec.name, id)).collect();
        let mut bootstrap = Vec::new();
        for event in simulations.iter().flat_map(|s| &s.bootstrap) {
            bootstrap.push(Update::insert(relation_id(&ids, event)?, event.row.clone()));
        }
        let events = MergedEvents::new(simulations.into_iter().map(|s| s.events));
        Ok(Feed { ids, events, bootstrap, event_time: EVENT_TIME_START, taken: 0 })
    }

    /// Loads the simulations' catalogs (tables filled before any event).
    pub fn load_bootstrap(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let rows = std::mem::take(&mut self.bootstrap);
        engine.apply_blocking(rows).map_err(|e| anyhow::anyhow!("loading the catalogs: {e}"))?;
        Ok(())
    }

    /// The next `n` events.
    pub fn take(&mut self, n: usize) -> anyhow::Result<Vec<Update>> {
        self.take_while_before(n, Micros::MAX)
    }

    /// Up to `n` events with event times before `horizon`.
    pub fn take_while_before(&mut self, n: usize, horizon: Micros) -> anyhow::Result<Vec<Update>> {
        let mut updates = Vec::with_capacity(n.min(1 << 20));
        while updates.len() < n && self.events.peek_time().is_some_and(|t| t < horizon) {
            let event = self.events.next().context("the generator ran dry")?;
            updates.push(Update::insert(relation_id(&self.ids, &event)?, event.row));
            self.event_time = event.event_time;
            self.taken += 1;
        }
        Ok(updates)
    }
}

fn relation_id(ids: &HashMap<&'static str, RelationId>, event: &GeneratedEvent) -> anyhow::Result<RelationId> {
    ids.get(event.relation)
        .copied()
        .with_context(|| format!("the generator writes {}, which is not in the catalog", event.relation))
}

/// What a closed-loop load (as fast as the engine absorbs) achieved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadResult {
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// Feeds events until the feed's event time reaches `horizon` or `limit` events went in,
/// as fast as the engine absorbs them (three batches in flight), and waits until all are visible.
pub fn load_closed_loop(engine: &Engine, feed: &mut Feed, horizon: Micros, limit: u64) -> anyhow::Result<LoadResult> {
    const BATCH: usize = 20_000;
    // Batches sent and not yet waited for, besides the newest: with it, three
    // outstanding, enough for compute's logical time, one gathered behind it and one
    // the store is still applying. Five went no faster, and the two extra batches
    // queued as rows, ~25 MB at the peak of command (2) (docs/benchmarks.md,
    // #memory-for-24-hours-of-events); two went no faster either and had the same peak.
    const IN_FLIGHT: usize = 2;
    let started = Instant::now();
    let ingest = engine.ingest();
    let mut in_flight = std::collections::VecDeque::new();
    let mut events = 0u64;
    let mut last_report = Instant::now();
    loop {
        let want = BATCH.min((limit - events) as usize);
        let batch = feed.take_while_before(want, horizon)?;
        if batch.is_empty() {
            break;
        }
        events += batch.len() as u64;
        in_flight.push_back(ingest.send_stamped(batch).context("the engine shut down")?);
        if in_flight.len() > IN_FLIGHT {
            let oldest = in_flight.pop_front().expect("in flight");
            anyhow::ensure!(engine.store().wait_visible_blocking(oldest), "the engine shut down");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            tracing::info!(events, hours = (feed.event_time - EVENT_TIME_START) as f64 / 3.6e9, "loading");
        }
    }
    if let Some(last) = in_flight.pop_back() {
        anyhow::ensure!(engine.store().wait_visible_blocking(last), "the engine shut down");
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadResult { events, seconds, events_per_second: events as f64 / seconds.max(1e-9) })
}

/// Rows held by the input relations (sources within retention, tables), at the current snapshot.
pub fn retained_input_rows(engine: &Engine) -> u64 {
    let snapshot = engine.snapshot();
    engine
        .catalog()
        .iter()
        .filter(|(id, _)| engine.catalog().is_input(*id))
        .map(|(id, _)| snapshot.len(id) as u64)
        .sum()
}
