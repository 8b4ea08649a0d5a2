//! Sources: where input events come from: the embedded generator, Kafka topics
//! and PostgreSQL tables (logical replication); they report on themselves
//! through [`status`].

pub mod cdc;
pub mod clock;
pub mod control;
pub mod kafka;
pub mod simulation;
pub mod status;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::datum::{Micros, RelationKind};
use diffmart_dataflows::system::SourceStatus;

pub use self::clock::now_micros;
use self::control::{GeneratorControl, Pace};
pub use self::simulation::{GeneratedEvent, HeldRows, MergedEvents, Simulation, nothing_held};
use crate::engine::{Engine, SOURCE_TICK, Update};

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

/// Loads the bootstrap rows of `simulations` (e.g. `pipelines::simulations`, every
/// pipeline's), then streams their events on a thread. It only writes: what the
/// simulations continue from (a loaded catalog) is given to them by whoever builds them.
///
/// Tables another source owns (see [`Engine::claim_relations`], e.g. CDC mirrors) are
/// left alone: their rows and events are skipped, so claim them before this runs.
pub fn spawn_generator(
    engine: Arc<Engine>,
    config: GeneratorConfig,
    simulations: Vec<Simulation>,
) -> anyhow::Result<Generator> {
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
