//! Sources: where input events come from: the embedded generator, Kafka topics
//! and PostgreSQL tables (logical replication); they report on themselves
//! through [`status`].

pub mod casino_generator;
pub mod cdc;
pub mod control;
pub mod ecommerce_generator;
pub mod generator;
pub mod inventory_generator;
pub mod inventory_json;
pub mod kafka;
pub mod pricing_generator;
pub mod status;
pub mod timestamps;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::datum::{Micros, Record, RelationKind};
use diffmart_dataflows::inventory::ProductUpdate;
use diffmart_dataflows::retail::ProductInventory;
use diffmart_dataflows::system::SourceStatus;

use self::control::{GeneratorControl, Pace};
use self::generator::{GeneratedEvent, RetailGenerator};
use crate::serving::{Engine, SOURCE_TICK, Update};

/// How the embedded generator runs.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Event time of the simulated clock's start.
    pub start: Micros,
    /// Events per wall-clock second; `None` follows the simulated clock in real time.
    pub rate: Option<f64>,
    /// Stop after this many events.
    pub events: Option<u64>,
}

/// Largest batch handed to ingest at once when running behind.
const MAX_BATCH: usize = 50_000;

/// One pipeline's simulated processes: rows loaded before anything else (its
/// catalog), then an endless stream of events in event-time order.
pub struct Simulation {
    pub bootstrap: Vec<GeneratedEvent>,
    pub events: Box<dyn Iterator<Item = GeneratedEvent> + Send>,
}

/// The retail pipeline's simulation: the product catalog, then the five producers.
pub fn retail_simulation(seed: u64, start: Micros) -> Simulation {
    Simulation {
        bootstrap: RetailGenerator::catalog()
            .iter()
            .map(|p| GeneratedEvent { relation: ProductInventory::spec().name, row: p.to_row(), event_time: start })
            .collect(),
        events: Box::new(RetailGenerator::new(seed, start)),
    }
}

/// Every pipeline's simulation. Each gets its own seed derived from the
/// configured one, so adding a pipeline never changes another one's events.
/// Retail comes first, seeded with the configured seed itself.
/// `loaded_products`: what `product_updates` already holds (a `--catalog` file).
pub fn simulations(config: &GeneratorConfig, loaded_products: Vec<ProductUpdate>) -> Vec<Simulation> {
    let seed = |pipeline: u64| config.seed.wrapping_add(pipeline.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let retail = retail_simulation(seed(0), config.start);
    vec![
        retail,
        ecommerce_generator::simulation(seed(1), config.start),
        casino_generator::CasinoGenerator::simulation(seed(2), config.start),
        inventory_generator::InventoryGenerator::simulation(seed(3), config.start, loaded_products),
        pricing_generator::PricingGenerator::simulation(seed(4), config.start),
    ]
}

/// The simulations' streams merged into one, in event-time order (ties go to the
/// earlier simulation, so the merge is deterministic).
pub struct MergedEvents {
    streams: Vec<std::iter::Peekable<Box<dyn Iterator<Item = GeneratedEvent> + Send>>>,
}

/// Every pipeline's simulation as one, as the generator runs it: all bootstrap
/// rows, then every pipeline's events merged in event-time order.
pub fn every_pipeline(seed: u64, start: Micros) -> Simulation {
    let simulations = simulations(&GeneratorConfig { seed, start, rate: None, events: None }, Vec::new());
    let bootstrap = simulations.iter().flat_map(|s| s.bootstrap.iter().cloned()).collect();
    Simulation { bootstrap, events: Box::new(MergedEvents::new(simulations.into_iter().map(|s| s.events))) }
}

impl MergedEvents {
    /// Merges the simulations' event streams; their bootstrap rows are left to the caller.
    pub fn new(streams: impl IntoIterator<Item = Box<dyn Iterator<Item = GeneratedEvent> + Send>>) -> MergedEvents {
        MergedEvents { streams: streams.into_iter().map(Iterator::peekable).collect() }
    }

    /// Event time of the next event.
    pub fn peek_time(&mut self) -> Option<Micros> {
        self.streams.iter_mut().filter_map(|s| s.peek().map(|e| e.event_time)).min()
    }
}

impl Iterator for MergedEvents {
    type Item = GeneratedEvent;
    fn next(&mut self) -> Option<GeneratedEvent> {
        let earliest =
            self.streams.iter_mut().enumerate().filter_map(|(i, s)| s.peek().map(|e| (e.event_time, i))).min()?.1;
        self.streams[earliest].next()
    }
}

/// The running generator: its control handle and its thread.
pub struct Generator {
    pub control: Arc<GeneratorControl>,
    pub thread: JoinHandle<()>,
}

impl Generator {
    /// Waits until it has emitted everything (`--generator-events`) or the engine stops.
    pub fn join(self) -> std::thread::Result<()> {
        self.thread.join()
    }
}

/// Loads every pipeline's bootstrap rows, then streams events on a thread.
///
/// Tables another source owns (see [`Engine::claim_relations`], e.g. CDC mirrors) are
/// left alone: their rows and events are skipped, so claim them before this runs.
pub fn spawn_generator(engine: Arc<Engine>, config: GeneratorConfig) -> anyhow::Result<Generator> {
    let ids: Vec<(&'static str, usize)> = engine.catalog().iter().map(|(id, spec)| (spec.name, id)).collect();
    let owned: std::collections::HashSet<usize> =
        ids.iter().map(|(_, id)| *id).filter(|&id| engine.owner_of(id).is_some()).collect();
    let tables: std::collections::HashSet<usize> = engine
        .catalog()
        .iter()
        .filter(|(_, spec)| matches!(spec.kind, RelationKind::Table { .. }))
        .map(|(id, _)| id)
        .collect();
    let relation = move |name: &str| {
        ids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id).with_context(|| format!("no relation {name}"))
    };
    // A generated row for a key a client (or another source) already wrote is
    // skipped: the generator never replaces what someone else wrote.
    let generated = move |id: usize, row| {
        if tables.contains(&id) { Update::insert_if_absent(id, row) } else { Update::insert(id, row) }
    };
    let loaded_products = engine
        .catalog()
        .id(ProductUpdate::spec().name)
        .map(|id| engine.snapshot().rows(id).iter().filter_map(|row| ProductUpdate::from_row(row).ok()).collect())
        .unwrap_or_default();
    let simulations = simulations(&config, loaded_products);
    let mut bootstrap = Vec::new();
    for event in simulations.iter().flat_map(|s| &s.bootstrap) {
        let id = relation(event.relation)?;
        if !owned.contains(&id) {
            bootstrap.push(generated(id, event.row.clone()));
        }
    }
    engine.apply_blocking(bootstrap).map_err(|e| anyhow::anyhow!("loading the generator's catalogs: {e}"))?;
    let mut events = MergedEvents::new(simulations.into_iter().map(|s| s.events));
    let mut status = GeneratorStatus::new(status::StatusRelations::of(engine.catalog())?);
    let ingest = engine.ingest();
    let control = Arc::new(GeneratorControl::new(Pace::from_rate(config.rate), config.events));
    let thread_control = control.clone();
    let thread = std::thread::Builder::new()
        .name("diffmart-generator".into())
        .spawn(move || {
            let control = thread_control;
            let limit = config.events.unwrap_or(u64::MAX);
            let mut emitted: u64 = 0;
            // The simulated clock: it follows the wall clock at the natural pace, stands
            // still while paused, and is the newest event's time at a fixed rate.
            let mut clock = config.start;
            // Pacing starts afresh at every change of setting, from where things stand.
            let mut anchor = (u64::MAX, Instant::now(), emitted, clock);
            let mut shown = "";
            while emitted < limit {
                let setting = control.setting();
                if setting.revision != anchor.0 {
                    anchor = (setting.revision, Instant::now(), emitted, clock);
                }
                let (_, wall, emitted_before, clock_before) = anchor;
                if !setting.running {
                    if shown != "stopped" {
                        let mut batch = Vec::new();
                        status.report("stopped", emitted, &mut batch);
                        ingest.send(batch);
                        shown = "stopped";
                    }
                    control.wait(setting.revision, Duration::from_secs(1));
                    continue;
                }
                let elapsed = wall.elapsed();
                let natural = setting.pace == Pace::Natural;
                if natural {
                    clock = clock_before + elapsed.as_micros() as Micros;
                }
                let due = match setting.pace {
                    Pace::Fixed(rate) => {
                        ((elapsed.as_secs_f64() * rate) as u64).saturating_sub(emitted - emitted_before)
                    }
                    Pace::Natural => u64::MAX,
                };
                let mut batch = Vec::new();
                let mut newest = None;
                while batch.len() < MAX_BATCH && (batch.len() as u64) < due.min(limit - emitted) {
                    let Some(next) = events.peek_time() else { break };
                    if natural && next > clock {
                        break;
                    }
                    let event = events.next().expect("peeked");
                    newest = Some(event.event_time);
                    match relation(event.relation) {
                        Ok(id) if owned.contains(&id) => {}
                        Ok(id) => batch.push(generated(id, event.row)),
                        Err(e) => {
                            tracing::error!("generator stopped: {e}");
                            return;
                        }
                    }
                }
                emitted += batch.len() as u64;
                if let Some(newest) = newest {
                    if !natural {
                        clock = newest;
                    }
                    control.record(emitted, newest);
                }
                if !batch.is_empty() {
                    // The status row travels with the events, so a reader who sees
                    // `messages = N` sees the first N events too.
                    status.report("running", emitted, &mut batch);
                    shown = "running";
                    ingest.send(batch);
                    // One hand-over a tick: what comes due meanwhile goes in the next.
                    control.wait(setting.revision, SOURCE_TICK);
                    continue;
                }
                let Some(next) = events.peek_time() else { break };
                let wait = match setting.pace {
                    Pace::Fixed(rate) => Duration::from_secs_f64(
                        ((emitted - emitted_before + 1) as f64 / rate - elapsed.as_secs_f64()).max(0.0),
                    ),
                    Pace::Natural => Duration::from_micros((next - clock).max(0) as u64),
                };
                control.wait(setting.revision, wait.min(Duration::from_millis(100)));
            }
            let mut last = Vec::new();
            status.report("finished", emitted, &mut last);
            ingest.send(last);
            control.finish();
            tracing::info!(events = emitted, "generator finished");
        })
        .context("spawning the generator")?;
    Ok(Generator { control, thread })
}

/// Loads a catalog file (`--catalog`, the original's `initial-products.json` format) into
/// `product_updates`, whoever else feeds it; returns how many products it held.
pub fn load_catalog(engine: &Engine, path: &std::path::Path, load_time: Micros) -> anyhow::Result<usize> {
    let products = inventory_json::load_catalog_file(path, load_time)?;
    let id = engine.catalog().id(ProductUpdate::spec().name).context("no relation product_updates")?;
    let updates: Vec<Update> = products.iter().map(|p| Update::insert(id, p.to_row())).collect();
    engine.apply_blocking(updates).map_err(|e| anyhow::anyhow!("loading the catalog {}: {e}", path.display()))?;
    tracing::info!(products = products.len(), file = %path.display(), "catalog loaded");
    Ok(products.len())
}

/// The generator's row in `diffmart_sources`: kind `generator`, name `embedded`;
/// `messages` (and `position`) count the events emitted so far.
struct GeneratorStatus {
    board: status::StatusBoard,
}

impl GeneratorStatus {
    fn new(relations: status::StatusRelations) -> GeneratorStatus {
        GeneratorStatus { board: status::StatusBoard::new(relations) }
    }

    fn report(&mut self, state: &str, emitted: u64, updates: &mut Vec<Update>) {
        let emitted = emitted as i64;
        let row = SourceStatus {
            kind: "generator".into(),
            name: "embedded".into(),
            partition: 0,
            relation: None,
            reader: None,
            status: state.into(),
            position: Some(emitted),
            high_watermark: None,
            lag: None,
            messages: emitted,
            errors: 0,
            last_error: None,
            updated_at: now_micros(),
        };
        self.board.set(row, updates);
    }
}

/// Now, as event time.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or(0)
}
