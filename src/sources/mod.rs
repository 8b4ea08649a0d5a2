//! Sources: where input events come from: the embedded generator, Kafka topics
//! and PostgreSQL tables (logical replication); they report on themselves
//! through [`status`].

pub mod casino_generator;
pub mod cdc;
pub mod ecommerce_generator;
pub mod generator;
pub mod kafka;
pub mod pricing_generator;
pub mod status;
pub mod timestamps;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::datum::{Micros, Record};
use diffmart_dataflows::retail::ProductInventory;
use diffmart_dataflows::system::SourceStatus;

use self::generator::{GeneratedEvent, RetailGenerator};
use crate::serving::{Engine, Update};

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

/// Every pipeline's simulation. Each gets its own seed derived from the
/// configured one, so adding a pipeline never changes another one's events.
fn simulations(config: &GeneratorConfig) -> Vec<Simulation> {
    let seed = |pipeline: u64| config.seed.wrapping_add(pipeline.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let retail = Simulation {
        bootstrap: RetailGenerator::catalog()
            .iter()
            .map(|p| GeneratedEvent {
                relation: ProductInventory::spec().name,
                row: p.to_row(),
                event_time: config.start,
            })
            .collect(),
        events: Box::new(RetailGenerator::new(seed(0), config.start)),
    };
    vec![
        retail,
        ecommerce_generator::simulation(seed(1), config.start),
        casino_generator::CasinoGenerator::simulation(seed(2), config.start),
        pricing_generator::PricingGenerator::simulation(seed(4), config.start),
    ]
}

/// The simulations' streams merged into one, in event-time order (ties go to the
/// earlier simulation, so the merge is deterministic).
struct MergedEvents {
    streams: Vec<std::iter::Peekable<Box<dyn Iterator<Item = GeneratedEvent> + Send>>>,
}

impl MergedEvents {
    fn peek_time(&mut self) -> Option<Micros> {
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

/// Loads every pipeline's bootstrap rows, then streams events on a thread.
///
/// Tables another source owns (see [`Engine::claim_relations`], e.g. CDC mirrors) are
/// left alone: their rows and events are skipped, so claim them before this runs.
pub fn spawn_generator(engine: Arc<Engine>, config: GeneratorConfig) -> anyhow::Result<JoinHandle<()>> {
    let ids: Vec<(&'static str, usize)> = engine.catalog().iter().map(|(id, spec)| (spec.name, id)).collect();
    let owned: std::collections::HashSet<usize> =
        ids.iter().map(|(_, id)| *id).filter(|&id| engine.owner_of(id).is_some()).collect();
    let relation = move |name: &str| {
        ids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id).with_context(|| format!("no relation {name}"))
    };
    let simulations = simulations(&config);
    let mut bootstrap = Vec::new();
    for event in simulations.iter().flat_map(|s| &s.bootstrap) {
        let id = relation(event.relation)?;
        if !owned.contains(&id) {
            bootstrap.push(Update::insert(id, event.row.clone()));
        }
    }
    engine.apply_blocking(bootstrap).map_err(|e| anyhow::anyhow!("loading the generator's catalogs: {e}"))?;
    let mut events = MergedEvents { streams: simulations.into_iter().map(|s| s.events.peekable()).collect() };
    let mut status = GeneratorStatus::new(status::StatusRelations::of(engine.catalog())?);
    let ingest = engine.ingest();
    std::thread::Builder::new()
        .name("diffmart-generator".into())
        .spawn(move || {
            let wall_start = Instant::now();
            let mut emitted: u64 = 0;
            let limit = config.events.unwrap_or(u64::MAX);
            while emitted < limit {
                let elapsed = wall_start.elapsed();
                let simulated_now = config.start + elapsed.as_micros() as Micros;
                let due = match config.rate {
                    Some(rate) => ((elapsed.as_secs_f64() * rate) as u64).saturating_sub(emitted),
                    None => u64::MAX,
                };
                let mut batch = Vec::new();
                while batch.len() < MAX_BATCH && (batch.len() as u64) < due.min(limit - emitted) {
                    let Some(next) = events.peek_time() else { break };
                    if config.rate.is_none() && next > simulated_now {
                        break;
                    }
                    let event = events.next().expect("peeked");
                    match relation(event.relation) {
                        Ok(id) if owned.contains(&id) => {}
                        Ok(id) => batch.push(Update::insert(id, event.row)),
                        Err(e) => {
                            tracing::error!("generator stopped: {e}");
                            return;
                        }
                    }
                }
                emitted += batch.len() as u64;
                if !batch.is_empty() {
                    // The status row travels with the events, so a reader who sees
                    // `messages = N` sees the first N events too.
                    status.report("running", emitted, &mut batch);
                    ingest.send(batch);
                    continue;
                }
                let Some(next) = events.peek_time() else { break };
                let wait = match config.rate {
                    Some(rate) => {
                        Duration::from_secs_f64(((emitted + 1) as f64 / rate - elapsed.as_secs_f64()).max(0.0))
                    }
                    None => Duration::from_micros((next - simulated_now).max(0) as u64),
                };
                std::thread::sleep(wait.min(Duration::from_millis(100)));
            }
            let mut last = Vec::new();
            status.report("finished", emitted, &mut last);
            ingest.send(last);
            tracing::info!(events = emitted, "generator finished");
        })
        .context("spawning the generator")
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
