//! Freshness at a fixed offered rate, and the highest rate sustained.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::BenchOptions;
use super::open_loop::{self, OpenLoopResult, Verdict};
use super::workload::{Feed, Workload, start_engine_profiled};
use crate::compute::profile::{OperatorProfile, OperatorSummary};

/// One open-loop run of a workload on a number of workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FreshnessResult {
    pub workload: Workload,
    pub workers: usize,
    #[serde(flatten)]
    pub run: OpenLoopResult,
    /// The busiest operators, with `--operator-profile N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operators: Option<OperatorSummary>,
}

/// A fresh engine (catalogs loaded), offered `--warmup` and then `seconds` of events
/// at `rate`. Events are generated before the clock starts.
pub fn offer(
    options: &BenchOptions,
    workload: Workload,
    workers: usize,
    rate: f64,
    seconds: f64,
    operator_profile: Option<Arc<OperatorProfile>>,
) -> anyhow::Result<OpenLoopResult> {
    let engine = start_engine_profiled(options, workers, options.retention, operator_profile)?;
    let mut feed = Feed::new(workload, &engine, options.seed)?;
    feed.load_bootstrap(&engine)?;
    let warmup = options.warmup;
    let events = feed.take((rate * (warmup.as_secs_f64() + seconds)).ceil().max(1.0) as usize)?;
    open_loop::run(&engine, events, rate, warmup, Verdict::default())
}

pub fn freshness(options: &BenchOptions, workload: Workload, workers: usize) -> anyhow::Result<FreshnessResult> {
    let seconds = options.duration.as_secs_f64();
    let profile = options.new_operator_profile();
    let run = offer(options, workload, workers, options.rate, seconds, profile.clone())?;
    tracing::info!(
        workload = workload.name(),
        workers,
        rate = options.rate,
        p99_ms = run.freshness_ms.p99,
        sustained = run.sustained,
        "freshness"
    );
    let operators = profile.map(|p| p.summary(options.operator_profile));
    Ok(FreshnessResult { workload, workers, run, operators })
}

/// The rate search of one workload on a number of workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MaxRateResult {
    pub workload: Workload,
    pub workers: usize,
    /// The highest offered rate a probe sustained (0 if none did).
    pub max_sustained_rate: f64,
    /// The lowest offered rate a probe did not sustain, if one was tried.
    pub first_failed_rate: Option<f64>,
    pub probe_seconds: f64,
    pub probes: Vec<OpenLoopResult>,
}

/// Doubles the offered rate from `--search-start` until a probe fails to keep up
/// (or `--search-max`), then bisects (geometrically) `--search-steps` times.
pub fn max_rate(options: &BenchOptions, workload: Workload, workers: usize) -> anyhow::Result<MaxRateResult> {
    let seconds = options.probe_duration.as_secs_f64();
    let mut probes = Vec::new();
    let mut probe = |rate: f64| -> anyhow::Result<bool> {
        let run = offer(options, workload, workers, rate, seconds, None)?;
        tracing::info!(
            workload = workload.name(),
            workers,
            rate,
            p99_ms = run.freshness_ms.p99,
            tail_ms = run.tail_freshness_ms,
            sustained = run.sustained,
            "probe"
        );
        let sustained = run.sustained;
        probes.push(run);
        Ok(sustained)
    };
    let (mut low, mut high) = (0.0f64, None::<f64>);
    let mut rate = options.search_start;
    loop {
        if probe(rate)? {
            low = rate;
            if rate >= options.search_max {
                break;
            }
            rate = (rate * 2.0).min(options.search_max);
        } else {
            high = Some(rate);
            break;
        }
    }
    if let Some(mut failed) = high {
        for _ in 0..options.search_steps {
            let mid = if low > 0.0 { (low * failed).sqrt() } else { failed / 2.0 };
            if probe(mid)? {
                low = mid;
            } else {
                failed = mid;
            }
        }
        high = Some(failed);
    }
    Ok(MaxRateResult {
        workload,
        workers,
        max_sustained_rate: low.round(),
        first_failed_rate: high.map(f64::round),
        probe_seconds: seconds,
        probes,
    })
}
