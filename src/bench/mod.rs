//! `diffmart bench`: end-to-end measurements of the in-process engine, fed by the
//! embedded generator's event streams (no external services).
//!
//! Scenarios, each in a process of its own (so that memory figures are its own):
//! - `freshness`: open loop at `--rate` (see [`open_loop`]): median / p99 / max of
//!   the time from an event's due time to a snapshot showing it;
//! - `max-rate`: the highest offered rate sustained without the backlog growing;
//! - `history`: CPU per event and RSS after `--history-short` and `--history-long`
//!   of (fast-forwarded) event time at the same rate, and peak RSS per retained event;
//! - `delta`: time to absorb `--delta-events` events on `--delta-state` events of state;
//! - `reads`: SELECT latency over pgwire while ingesting, and its effect on ingestion.
//!
//! The human table goes to stdout, the same figures as JSON to `--json FILE`.

pub mod history;
pub mod open_loop;
pub mod process;
pub mod reads;
pub mod report;
pub mod stats;
pub mod throughput;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use diffmart_dataflows::datum::Micros;
use serde::{Deserialize, Serialize};

use self::report::Report;
pub use self::workload::Workload;
use crate::arg_values::parse_duration;

/// What one scenario measures; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Freshness,
    MaxRate,
    History,
    Delta,
    Reads,
}

impl Scenario {
    pub fn name(self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

/// Options of `diffmart bench`. Durations of wall-clock time (`--duration`, …) and
/// of event time (`--retention`, `--history-long`, …) take `90s`, `15m`, `24h`, `1h30m`.
#[derive(Clone, Debug, Args)]
pub struct BenchOptions {
    /// Scenarios to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["freshness", "max-rate", "history", "delta", "reads"])]
    pub scenarios: Vec<Scenario>,

    /// Workloads of freshness and max-rate (history and reads use `all` if listed, delta `retail`).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["retail", "all"])]
    pub workloads: Vec<Workload>,

    /// Worker counts of freshness and max-rate (the other scenarios use the first).
    #[arg(long, value_delimiter = ',', default_values = ["1", "2"], value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Vec<u16>,

    /// freshness: offered events per second.
    #[arg(long, value_name = "EVENTS/S", default_value_t = 100_000.0)]
    pub rate: f64,

    /// freshness and delta: also time every timely operator and list the N busiest (with their pipeline).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub operator_profile: usize,

    /// freshness: how long events are offered.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_wall_duration)]
    pub duration: Duration,

    /// freshness and max-rate: events offered on the same schedule before the measured
    /// `--duration` (or probe), on the freshly started engine; their freshness is
    /// reported apart as the start-up transient.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_warmup)]
    pub warmup: Duration,

    /// max-rate: how long each probe offers events.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_wall_duration)]
    pub probe_duration: Duration,

    /// max-rate: the first rate probed (doubled until a probe falls behind).
    #[arg(long, value_name = "EVENTS/S", default_value_t = 25_000.0)]
    pub search_start: f64,

    /// max-rate: no probe offers more than this.
    #[arg(long, value_name = "EVENTS/S", default_value_t = 4_000_000.0)]
    pub search_max: f64,

    /// max-rate: bisection steps between the last rate sustained and the first that was not.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub search_steps: u32,

    /// Event time source relations and windowed view state keep (as the server's --retention).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Micros,

    /// history: offered rate of both measurement windows.
    #[arg(long, value_name = "EVENTS/S", default_value_t = 20_000.0)]
    pub history_rate: f64,

    /// history: length of each measurement window (at 20,000 events/s, 2 s of the `all`
    /// workload are about an hour of event time).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_wall_duration)]
    pub history_window: Duration,

    /// history: event time fast-forwarded before the first window.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub history_short: Micros,

    /// history: event time fast-forwarded before the second window.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub history_long: Micros,

    /// delta: events loaded (and kept) before the deltas.
    #[arg(long, value_name = "N", default_value_t = 5_000_000)]
    pub delta_state: u64,

    /// delta: events per delta.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub delta_events: usize,

    /// delta: deltas timed.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub delta_repeats: u64,

    /// reads: offered ingest rate [default: half the highest rate max-rate sustained in
    /// this run for the same workload and workers, else 50000].
    #[arg(long, value_name = "EVENTS/S")]
    pub read_rate: Option<f64>,

    /// reads: how long ingestion runs alone, and then again with the readers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_wall_duration)]
    pub read_duration: Duration,

    /// reads: nice value of the server's client threads (as the server's --client-nice;
    /// 0 measures reads at ingestion's priority).
    #[arg(long, value_name = "N", default_value_t = crate::client_runtime::DEFAULT_CLIENT_NICE, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub client_nice: u8,

    /// reads: event time loaded before measuring, so the views hold a full retention of rows.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub read_prefill: Micros,

    /// Seed of the generator (the same seed gives the same events).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Also write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,

    /// Log every batch to an input log as a server with `--data-dir` does, in fresh
    /// directories under DIR (removed after each scenario): measures durability's cost,
    /// the disk's included.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where a child keeps its engines' data directories (under --data-dir).
    #[arg(long, value_name = "DIR", hide = true)]
    pub child_data_dir: Option<PathBuf>,

    /// Run one scenario in this process (what the parent asks of its children).
    #[arg(long, value_name = "SCENARIO", hide = true)]
    pub child: Option<Scenario>,

    /// Where a child writes its result.
    #[arg(long, value_name = "FILE", hide = true)]
    pub child_output: Option<PathBuf>,
}

/// Seconds-and-up wall-clock durations, with the same syntax as event-time ones.
fn parse_wall_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map(|micros| Duration::from_micros(micros as u64))
}

/// A warm-up's length: a wall-clock duration, or `0` / `0s` for none.
fn parse_warmup(text: &str) -> Result<Duration, String> {
    if matches!(text.trim(), "0" | "0s") { Ok(Duration::ZERO) } else { parse_wall_duration(text) }
}

impl BenchOptions {
    fn check(&self) -> anyhow::Result<()> {
        for (name, rate) in [
            ("--rate", self.rate),
            ("--search-start", self.search_start),
            ("--search-max", self.search_max),
            ("--history-rate", self.history_rate),
            ("--read-rate", self.read_rate.unwrap_or(1.0)),
        ] {
            anyhow::ensure!(rate.is_finite() && rate > 0.0, "{name} must be a positive number, got {rate}");
        }
        anyhow::ensure!(self.search_start <= self.search_max, "--search-start is above --search-max");
        anyhow::ensure!(self.history_short < self.history_long, "--history-short must be shorter than --history-long");
        anyhow::ensure!(self.delta_events > 0, "--delta-events must be at least 1");
        anyhow::ensure!(!self.workloads.is_empty() && !self.workers.is_empty(), "no workload or no worker count");
        Ok(())
    }

    fn first_workers(&self) -> usize {
        self.workers[0].into()
    }

    /// A profile to sum operator times into, with `--operator-profile N` (N > 0).
    fn new_operator_profile(&self) -> Option<std::sync::Arc<crate::compute::profile::OperatorProfile>> {
        (self.operator_profile > 0).then(Default::default)
    }

    /// `preferred` if it is among `--workloads`, else the first listed.
    fn workload_preferring(&self, preferred: Workload) -> Workload {
        if self.workloads.contains(&preferred) { preferred } else { self.workloads[0] }
    }
}

/// One scenario's figures, as a child hands them to its parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioOutput {
    Freshness(Vec<throughput::FreshnessResult>),
    MaxRate(Vec<throughput::MaxRateResult>),
    History(Box<history::HistoryResult>),
    Delta(Box<history::DeltaResult>),
    Reads(Box<reads::ReadsResult>),
}

/// Runs the scenarios (each in a child process), prints the table, writes the JSON.
pub fn run(options: BenchOptions) -> anyhow::Result<()> {
    options.check()?;
    if let Some(scenario) = options.child {
        let output = run_scenario(&options, scenario)?;
        let path = options.child_output.as_ref().context("--child needs --child-output")?;
        std::fs::write(path, serde_json::to_vec(&output)?).with_context(|| format!("writing {}", path.display()))?;
        return Ok(());
    }
    let mut report = Report::start();
    for &scenario in &options.scenarios {
        let mut extra = Vec::new();
        if scenario == Scenario::Reads && options.read_rate.is_none() {
            let workload = options.workload_preferring(Workload::All);
            if let Some(max) = report.max_sustained_rate(workload, options.first_workers()) {
                extra.extend(["--read-rate".to_string(), (max / 2.0).round().max(1.0).to_string()]);
            }
        }
        tracing::info!(scenario = scenario.name(), "running");
        let data_dir = options
            .data_dir
            .as_ref()
            .map(|base| base.join(format!("bench-{}-{}", std::process::id(), scenario.name())));
        if let Some(dir) = &data_dir {
            extra.extend(["--child-data-dir".to_string(), dir.display().to_string()]);
        }
        let output = run_child(scenario, &extra);
        if let Some(dir) = &data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        report.add(output?);
    }
    report.finish();
    print!("{}", report.table());
    if let Some(path) = &options.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_scenario(options: &BenchOptions, scenario: Scenario) -> anyhow::Result<ScenarioOutput> {
    let workers = options.first_workers();
    let combinations =
        || options.workloads.iter().flat_map(|&w| options.workers.iter().map(move |&n| (w, usize::from(n))));
    Ok(match scenario {
        Scenario::Freshness => ScenarioOutput::Freshness(
            combinations().map(|(w, n)| throughput::freshness(options, w, n)).collect::<anyhow::Result<_>>()?,
        ),
        Scenario::MaxRate => ScenarioOutput::MaxRate(
            combinations().map(|(w, n)| throughput::max_rate(options, w, n)).collect::<anyhow::Result<_>>()?,
        ),
        Scenario::History => ScenarioOutput::History(Box::new(history::history(
            options,
            options.workload_preferring(Workload::All),
            workers,
        )?)),
        Scenario::Delta => ScenarioOutput::Delta(Box::new(history::delta(
            options,
            options.workload_preferring(Workload::Retail),
            workers,
        )?)),
        Scenario::Reads => {
            let rate = options.read_rate.unwrap_or(50_000.0);
            ScenarioOutput::Reads(Box::new(reads::reads(
                options,
                options.workload_preferring(Workload::All),
                workers,
                rate,
            )?))
        }
    })
}

/// Runs one scenario in a fresh process: this executable with this process's own
/// arguments, plus `--child`.
fn run_child(scenario: Scenario, extra: &[String]) -> anyhow::Result<ScenarioOutput> {
    let output = std::env::temp_dir().join(format!("diffmart-bench-{}-{}.json", std::process::id(), scenario.name()));
    let status = std::process::Command::new(std::env::current_exe().context("finding diffmart's executable")?)
        .args(std::env::args_os().skip(1))
        .args(extra)
        .arg("--child")
        .arg(scenario.name())
        .arg("--child-output")
        .arg(&output)
        .stdout(std::process::Stdio::null())
        .status()
        .context("starting a benchmark process")?;
    anyhow::ensure!(status.success(), "the {} scenario failed ({status})", scenario.name());
    let text = std::fs::read(&output).with_context(|| format!("reading {}", output.display()))?;
    let _ = std::fs::remove_file(&output);
    serde_json::from_slice(&text).with_context(|| format!("decoding the {} scenario's result", scenario.name()))
}
