//! The embedded generator: streams the pipelines' simulated events into ingest at
//! their natural pace or a fixed rate, and resumes where it stopped after a restart.
//!
//! Its events depend only on its [`GeneratorSettings`] (seed, start, the catalog the
//! simulations continue from), so resuming is replaying: with a data directory the
//! settings are kept in `generator.json`, each batch is logged with how many events
//! the generator had taken from its stream ([`GeneratorProgress`]), and a restart
//! skips that many and goes on. Same settings, same continuation.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::datum::{Micros, RelationKind};
use diffmart_dataflows::system::SourceStatus;
use serde::{Deserialize, Serialize};

use super::control::{GeneratorControl, Pace};
use super::simulation::{MergedEvents, Simulation};
use super::{now_micros, status};
use crate::engine::{DataDir, Engine, SOURCE_TICK, SourcePosition, SourcePositions, Update};

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

/// What decides the generator's events, kept in a data directory so that a restart
/// continues the same stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorSettings {
    pub seed: u64,
    /// Event time of the simulated clock's start.
    pub start: Micros,
    /// CRC-32 of the `--catalog` file the simulations continue from, if any.
    pub catalog: Option<u32>,
}

/// The state file of [`GeneratorSettings`] in a data directory.
const SETTINGS_FILE: &str = "generator.json";

impl GeneratorSettings {
    /// The seed when none is given.
    pub const DEFAULT_SEED: u64 = 1;

    /// The settings to run with. A data directory that has run the generator keeps
    /// its settings: options that are given must agree with them (another seed would
    /// be another stream, not a continuation). Otherwise the options decide (seed
    /// [`Self::DEFAULT_SEED`], start now) and are saved for the next start.
    pub fn settle(
        data_dir: Option<&DataDir>,
        seed: Option<u64>,
        start: Option<Micros>,
        catalog: Option<u32>,
    ) -> anyhow::Result<GeneratorSettings> {
        let chosen = GeneratorSettings {
            seed: seed.unwrap_or(Self::DEFAULT_SEED),
            start: start.unwrap_or_else(now_micros),
            catalog,
        };
        let Some(dir) = data_dir else { return Ok(chosen) };
        let Some(saved) = dir.read_state::<GeneratorSettings>(SETTINGS_FILE)? else {
            dir.write_state(SETTINGS_FILE, &chosen)?;
            return Ok(chosen);
        };
        let differs = |what: &str, given: String, kept: String| {
            anyhow::anyhow!(
                "{what} {given} differs from the {kept} the generator of the data directory {} runs with; \
                 leave it out to continue that generator's stream, or start on a new --data-dir",
                dir.path().display()
            )
        };
        if let Some(seed) = seed
            && seed != saved.seed
        {
            return Err(differs("--generator-seed", seed.to_string(), format!("seed {}", saved.seed)));
        }
        if let Some(start) = start
            && start != saved.start
        {
            let show = |t: Micros| match chrono::DateTime::from_timestamp_micros(t) {
                Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                None => format!("{t} µs"),
            };
            return Err(differs("--generator-start", show(start), format!("start {}", show(saved.start))));
        }
        if catalog != saved.catalog {
            let show = |c: Option<u32>| match c {
                Some(crc) => format!("catalog file with CRC-32 {crc:08x}"),
                None => "no catalog file".to_string(),
            };
            return Err(differs("--catalog: a", show(catalog), show(saved.catalog)));
        }
        Ok(saved)
    }
}

/// How far the generator had got, logged with each of its batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeneratorProgress {
    /// Events taken from the merged stream, including those of relations another
    /// source owns (skipped).
    pub consumed: u64,
    /// Events handed to ingest (what `--generator-events` counts).
    pub emitted: u64,
    /// The simulated clock: the newest event's time.
    pub clock: Micros,
}

impl GeneratorProgress {
    const CONSUMED: &str = "generator/consumed";
    const EMITTED: &str = "generator/emitted";
    const CLOCK: &str = "generator/clock";

    /// Where a previous run stopped, if the log says it had started.
    pub fn recovered(positions: &SourcePositions) -> Option<GeneratorProgress> {
        let consumed = *positions.get(Self::CONSUMED)?;
        Some(GeneratorProgress {
            consumed: consumed as u64,
            emitted: positions.get(Self::EMITTED).copied().unwrap_or(0) as u64,
            clock: positions.get(Self::CLOCK).copied().unwrap_or(0),
        })
    }

    fn positions(&self) -> Vec<SourcePosition> {
        vec![
            (Self::CONSUMED.to_string(), self.consumed as i64),
            (Self::EMITTED.to_string(), self.emitted as i64),
            (Self::CLOCK.to_string(), self.clock),
        ]
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

/// Loads the bootstrap rows of `simulations` (e.g. `pipelines::simulations`, every
/// pipeline's), then streams their events on a thread. It only writes: what the
/// simulations continue from (a loaded catalog) is given to them by whoever builds them.
///
/// On an engine that recovered a generator's progress from its data directory
/// (started with the same [`GeneratorSettings`]), the bootstrap rows are in already:
/// the stream skips the events taken before and goes on from there.
///
/// Tables another source owns (see [`Engine::claim_relations`], e.g. CDC mirrors) are
/// left alone: their rows and events are skipped, so claim them before this runs.
pub fn spawn_generator(
    engine: Arc<Engine>,
    config: GeneratorConfig,
    simulations: Vec<Simulation>,
) -> anyhow::Result<Generator> {
    let ids: Vec<(&'static str, usize)> = engine.catalog().iter().map(|(id, spec)| (spec.name, id)).collect();
    let owned: HashSet<usize> = ids.iter().map(|(_, id)| *id).filter(|&id| engine.owner_of(id).is_some()).collect();
    let tables: HashSet<usize> = engine
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
    let resumed = GeneratorProgress::recovered(&engine.recovered_positions());
    let mut progress = match resumed {
        Some(progress) => {
            tracing::info!(
                consumed = progress.consumed,
                emitted = progress.emitted,
                "the generator continues where it stopped"
            );
            progress
        }
        None => {
            let mut bootstrap = Vec::new();
            for event in simulations.iter().flat_map(|s| &s.bootstrap) {
                let id = relation(event.relation)?;
                if !owned.contains(&id) {
                    bootstrap.push(generated(id, event.row.clone()));
                }
            }
            // Logged with the generator's first position, so a restart never loads them twice.
            let progress = GeneratorProgress { consumed: 0, emitted: 0, clock: config.start };
            engine
                .apply_blocking_from(bootstrap, progress.positions())
                .map_err(|e| anyhow::anyhow!("loading the generator's catalogs: {e}"))?;
            progress
        }
    };
    let mut events = MergedEvents::new(simulations.into_iter().map(|s| s.events));
    let mut status = GeneratorStatus::new(status::StatusRelations::of(engine.catalog())?);
    let ingest = engine.ingest();
    let control = Arc::new(GeneratorControl::new(Pace::from_rate(config.rate), config.events));
    if resumed.is_some() {
        control.record(progress.emitted, progress.clock);
    }
    let thread_control = control.clone();
    let thread = std::thread::Builder::new()
        .name("diffmart-generator".into())
        .spawn(move || {
            let control = thread_control;
            let limit = config.events.unwrap_or(u64::MAX);
            // Nothing to skip to when it had finished.
            if progress.consumed > 0 && progress.emitted < limit {
                let started = Instant::now();
                // `nth(n - 1)` takes n events.
                if events.nth(progress.consumed as usize - 1).is_none() {
                    tracing::error!(
                        consumed = progress.consumed,
                        "the generator's stream ended before where it stopped"
                    );
                    return;
                }
                tracing::info!(
                    events = progress.consumed,
                    seconds = started.elapsed().as_secs_f64(),
                    "the generator skipped the events it had emitted before"
                );
            }
            // The simulated clock: it follows the wall clock at the natural pace, stands
            // still while paused, and is the newest event's time at a fixed rate. After
            // a restart it goes on from the newest event emitted before.
            let mut clock = progress.clock;
            // Pacing starts afresh at every change of setting, from where things stand.
            let mut anchor = (u64::MAX, Instant::now(), progress.emitted, clock);
            let mut shown = "";
            while progress.emitted < limit {
                let setting = control.setting();
                if setting.revision != anchor.0 {
                    anchor = (setting.revision, Instant::now(), progress.emitted, clock);
                }
                let (_, wall, emitted_before, clock_before) = anchor;
                if !setting.running {
                    if shown != "stopped" {
                        let mut batch = Vec::new();
                        status.report("stopped", progress.emitted, &mut batch);
                        ingest.send_from(batch, progress.positions());
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
                        ((elapsed.as_secs_f64() * rate) as u64).saturating_sub(progress.emitted - emitted_before)
                    }
                    Pace::Natural => u64::MAX,
                };
                let mut batch = Vec::new();
                let mut newest = None;
                while batch.len() < MAX_BATCH && (batch.len() as u64) < due.min(limit - progress.emitted) {
                    let Some(next) = events.peek_time() else { break };
                    if natural && next > clock {
                        break;
                    }
                    let event = events.next().expect("peeked");
                    progress.consumed += 1;
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
                progress.emitted += batch.len() as u64;
                if let Some(newest) = newest {
                    if !natural {
                        clock = newest;
                    }
                    progress.clock = newest;
                    control.record(progress.emitted, newest);
                }
                if !batch.is_empty() {
                    // The status row travels with the events, so a reader who sees
                    // `messages = N` sees the first N events too.
                    status.report("running", progress.emitted, &mut batch);
                    shown = "running";
                    ingest.send_from(batch, progress.positions());
                    // A fault the tests inject (`--features failpoints`): the thread panics.
                    fail::fail_point!("generator-batch");
                    // One hand-over a tick: what comes due meanwhile goes in the next.
                    control.wait(setting.revision, SOURCE_TICK);
                    continue;
                }
                let Some(next) = events.peek_time() else { break };
                let wait = match setting.pace {
                    Pace::Fixed(rate) => Duration::from_secs_f64(
                        ((progress.emitted - emitted_before + 1) as f64 / rate - elapsed.as_secs_f64()).max(0.0),
                    ),
                    Pace::Natural => Duration::from_micros((next - clock).max(0) as u64),
                };
                control.wait(setting.revision, wait.min(Duration::from_millis(100)));
            }
            let mut last = Vec::new();
            status.report("finished", progress.emitted, &mut last);
            ingest.send_from(last, progress.positions());
            control.finish();
            tracing::info!(events = progress.emitted, "generator finished");
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
