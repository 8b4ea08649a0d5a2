//! The benchmark report: every scenario's figures, the machine they ran on, and
//! a human table of the headline numbers.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::history::{DeltaResult, HistoryResult};
use super::open_loop::OpenLoopResult;
use super::reads::ReadsResult;
use super::throughput::{FreshnessResult, MaxRateResult};
use super::{ScenarioOutput, Workload};
use crate::compute::profile::OperatorSummary;

/// Where and when the figures were taken.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_bytes: u64,
    /// `/proc/loadavg` before and after: other work on the machine shows here.
    pub load_average_before: String,
    pub load_average_after: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub diffmart_version: String,
    /// The command line that produced this report.
    pub command: String,
    pub started_at: String,
    pub seconds: f64,
    pub machine: Machine,
    pub freshness: Vec<FreshnessResult>,
    pub max_rate: Vec<MaxRateResult>,
    pub history: Option<HistoryResult>,
    pub delta: Option<DeltaResult>,
    pub reads: Option<ReadsResult>,
    #[serde(skip)]
    clock: Option<std::time::Instant>,
}

impl Report {
    pub fn start() -> Report {
        Report {
            diffmart_version: env!("CARGO_PKG_VERSION").to_string(),
            command: command_line(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                memory_bytes: mem_total(),
                load_average_before: load_average(),
                load_average_after: String::new(),
            },
            clock: Some(std::time::Instant::now()),
            ..Report::default()
        }
    }

    pub fn add(&mut self, output: ScenarioOutput) {
        match output {
            ScenarioOutput::Freshness(runs) => self.freshness.extend(runs),
            ScenarioOutput::MaxRate(searches) => self.max_rate.extend(searches),
            ScenarioOutput::History(result) => self.history = Some(*result),
            ScenarioOutput::Delta(result) => self.delta = Some(*result),
            ScenarioOutput::Reads(result) => self.reads = Some(*result),
        }
    }

    pub fn finish(&mut self) {
        self.seconds = self.clock.map_or(0.0, |c| c.elapsed().as_secs_f64());
        self.machine.load_average_after = load_average();
    }

    pub fn max_sustained_rate(&self, workload: Workload, workers: usize) -> Option<f64> {
        self.max_rate
            .iter()
            .find(|m| m.workload == workload && m.workers == workers && m.max_sustained_rate > 0.0)
            .map(|m| m.max_sustained_rate)
    }

    /// The headline numbers, one section per scenario that ran.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "diffmart {} bench, {} CPUs, {:.1} GB; load average {} → {}; {:.0} s",
            self.diffmart_version,
            m.cpus,
            m.memory_bytes as f64 / 1e9,
            m.load_average_before,
            m.load_average_after,
            self.seconds
        );
        if !self.freshness.is_empty() {
            let _ = writeln!(out, "\nFreshness, open loop (event due → visible in a snapshot)");
            let _ = writeln!(out, "{}", run_header());
            for f in &self.freshness {
                let _ = writeln!(out, "{}", run_row(f.workload, f.workers, &f.run));
            }
            for f in self.freshness.iter().filter(|f| f.run.warmup_seconds > 0.0) {
                let w = &f.run.warmup_freshness_ms;
                let _ = writeln!(
                    out,
                    "  warm-up ({}, {} worker(s), first {:.1} s, not in the row above): p50 / p99 / max {:.2} / {:.2} / {:.2} ms",
                    f.workload.name(),
                    f.workers,
                    f.run.warmup_seconds,
                    w.median,
                    w.p99,
                    w.max
                );
            }
            for f in &self.freshness {
                if let Some(operators) = &f.operators {
                    let runs = format!("{}, {} worker(s)", f.workload.name(), f.workers);
                    operator_table(&mut out, &runs, operators);
                }
            }
        }
        if !self.max_rate.is_empty() {
            let _ = writeln!(out, "\nHighest offered rate sustained (backlog not growing)");
            let _ = writeln!(
                out,
                "{:<8} {:>7} {:>14} {:>14} {:>7} {:>9}",
                "workload", "workers", "sustained ev/s", "failed ev/s", "probes", "probe s"
            );
            for r in &self.max_rate {
                let failed = r.first_failed_rate.map_or("-".to_string(), |f| format!("{f:.0}"));
                let _ = writeln!(
                    out,
                    "{:<8} {:>7} {:>14.0} {:>14} {:>7} {:>9.1}",
                    r.workload.name(),
                    r.workers,
                    r.max_sustained_rate,
                    failed,
                    r.probes.len(),
                    r.probe_seconds
                );
            }
        }
        if let Some(h) = &self.history {
            let _ = writeln!(
                out,
                "\nCost versus history ({}, {} worker(s), retention {:.0} h, offered {:.0} ev/s)",
                h.workload.name(),
                h.workers,
                h.retention_hours,
                h.offered_rate
            );
            let _ = writeln!(
                out,
                "{:>12} {:>12} {:>14} {:>9} {:>10} {:>9} {:>9} {:>15}",
                "event time h", "events", "retained rows", "RSS MB", "cpu µs/ev", "p50 ms", "p99 ms", "fast-fwd ev/s"
            );
            for p in [&h.short, &h.long] {
                let span = format!("{:.1}-{:.1}", p.event_time_hours, p.window_end_hours);
                let _ = writeln!(
                    out,
                    "{:>12} {:>12} {:>14} {:>9.0} {:>10.2} {:>9.2} {:>9.2} {:>15.0}",
                    span,
                    p.events_before,
                    p.retained_input_rows,
                    p.rss_bytes as f64 / 1e6,
                    p.window.cpu_us_per_event,
                    p.window.freshness_ms.median,
                    p.window.freshness_ms.p99,
                    p.fast_forward.events_per_second
                );
            }
            let _ = writeln!(
                out,
                "long/short: cpu per event ×{:.2}, RSS ×{:.2}, p99 ×{:.2}; RSS at the long point {:.0} bytes per retained input row; peak RSS {:.0} MB = {:.0} bytes per retained input row ({:.0} net of the {:.0} MB baseline)",
                h.cpu_ratio,
                h.rss_ratio,
                h.p99_ratio,
                h.rss_bytes_per_retained_event,
                h.peak_rss_bytes as f64 / 1e6,
                h.peak_rss_bytes_per_retained_event,
                h.net_rss_bytes_per_retained_event,
                h.baseline_rss_bytes as f64 / 1e6
            );
        }
        if let Some(d) = &self.delta {
            let _ = writeln!(
                out,
                "\nDelta of {} events on {} events of state ({}, {} worker(s)): absorbed in median {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} deltas",
                d.delta_events,
                d.state_events,
                d.workload.name(),
                d.workers,
                d.absorb_ms.median,
                d.absorb_ms.p99,
                d.absorb_ms.max,
                d.absorb_ms.samples
            );
            let _ = writeln!(
                out,
                "state loaded at {:.0} ev/s (closed loop); RSS {:.0} MB = {:.0} bytes per retained input row",
                d.load.events_per_second,
                d.rss_bytes as f64 / 1e6,
                d.rss_bytes_per_retained_event
            );
            if let Some(operators) = &d.operators {
                operator_table(&mut out, &format!("the deltas, {} worker(s)", d.workers), operators);
            }
        }
        if let Some(r) = &self.reads {
            let _ = writeln!(
                out,
                "\nReads over pgwire while ingesting {:.0} ev/s ({}, {} worker(s), {:.1} h of event time loaded, client threads at nice {})",
                r.offered_rate,
                r.workload.name(),
                r.workers,
                r.prefill_hours,
                r.client_nice
            );
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>8} {:>9} {:>9} {:>9}",
                "query", "queries", "rows", "p50 ms", "p99 ms", "max ms"
            );
            for (name, q) in [("point lookup", &r.point_lookup), ("full scan", &r.full_scan)] {
                let l = &q.latency_ms;
                let _ = writeln!(
                    out,
                    "{:<12} {:>8} {:>8} {:>9.2} {:>9.2} {:>9.2}",
                    name, q.queries, q.rows, l.median, l.p99, l.max
                );
            }
            let _ = writeln!(out, "{}", run_header());
            let _ = writeln!(out, "{}   ingest only", run_row(r.workload, r.workers, &r.ingest_only));
            let _ = writeln!(out, "{}   with reads", run_row(r.workload, r.workers, &r.ingest_with_reads));
            let _ = writeln!(
                out,
                "reads stall ingestion: {} (p99 freshness ×{:.2} with reads)",
                if r.reads_stall_ingestion { "yes" } else { "no" },
                r.freshness_p99_ratio
            );
        }
        out
    }
}

fn run_header() -> String {
    format!(
        "{:<8} {:>7} {:>11} {:>11} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "workload", "workers", "offered/s", "achieved/s", "p50 ms", "p99 ms", "max ms", "cpu µs/ev", "sustained"
    )
}

fn run_row(workload: Workload, workers: usize, run: &OpenLoopResult) -> String {
    let f = &run.freshness_ms;
    format!(
        "{:<8} {:>7} {:>11.0} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>9}",
        workload.name(),
        workers,
        run.offered_rate,
        run.achieved_rate,
        f.median,
        f.p99,
        f.max,
        run.cpu_us_per_event,
        if run.sustained {
            "yes"
        } else if run.overloaded {
            "overload"
        } else {
            "no"
        }
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// This process's arguments, the executable by its file name.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut()
        && let Some(name) = std::path::Path::new(first.as_str()).file_name()
    {
        *first = name.to_string_lossy().into_owned();
    }
    args.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
}

/// Quotes an argument when a shell would split it.
fn shell_word(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The busiest operators of a run (`--operator-profile N`).
fn operator_table(out: &mut String, runs: &str, operators: &OperatorSummary) {
    let _ = writeln!(out, "\nBusiest operators ({runs}): {:.0} ms busy in all, summed over workers", operators.busy_ms);
    let _ = writeln!(
        out,
        "{:>9} {:>6} {:>11} {:>10} {:>6}  {:<10} operator (input)",
        "busy ms", "share", "schedulings", "records in", "id", "pipeline"
    );
    for o in &operators.busiest {
        let share = 100.0 * o.busy_ms / operators.busy_ms.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "{:>9.1} {:>5.1}% {:>11} {:>10} {:>6}  {:<10} {} ({})",
            o.busy_ms, share, o.schedulings, o.records_in, o.id, o.pipeline, o.operator, o.input_type
        );
    }
}
