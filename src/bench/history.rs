//! Cost versus history: the same offered rate after a short and after a long
//! stretch of event time (fast-forwarded), and small deltas on a large state.

use std::time::{Duration, Instant};

use diffmart_dataflows::datum::{MICROS_PER_SECOND, Micros};
use serde::{Deserialize, Serialize};

use super::BenchOptions;
use super::open_loop::{self, OpenLoopResult, Verdict};
use super::process;
use super::stats::Latency;
use super::workload::{
    EVENT_TIME_START, Feed, LoadResult, Workload, load_closed_loop, retained_input_rows, start_engine,
    start_engine_profiled,
};
use crate::compute::profile::OperatorSummary;

/// The engine after some event time of history, measured at the offered rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Event time behind the measurement window, in hours.
    pub event_time_hours: f64,
    /// Event time at the end of the window (the window itself moves event time on).
    pub window_end_hours: f64,
    /// Events ingested before the measurement window.
    pub events_before: u64,
    /// How fast the fast-forward to this point went (closed loop).
    pub fast_forward: LoadResult,
    pub retained_input_rows: u64,
    pub rss_bytes: u64,
    pub window: OpenLoopResult,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryResult {
    pub workload: Workload,
    pub workers: usize,
    pub retention_hours: f64,
    pub offered_rate: f64,
    /// RSS once the engine had started and loaded the catalogs.
    pub baseline_rss_bytes: u64,
    pub short: HistoryPoint,
    pub long: HistoryPoint,
    /// long / short: CPU per event, RSS, p99 freshness.
    pub cpu_ratio: f64,
    pub rss_ratio: f64,
    pub p99_ratio: f64,
    /// RSS at the long point (after its window), per input row retained there.
    pub rss_bytes_per_retained_event: f64,
    /// Peak RSS of the whole scenario, and per input row retained at the long point.
    pub peak_rss_bytes: u64,
    pub peak_rss_bytes_per_retained_event: f64,
    /// The same, less the baseline (what the retained history itself costs).
    pub net_rss_bytes_per_retained_event: f64,
}

pub fn history(options: &BenchOptions, workload: Workload, workers: usize) -> anyhow::Result<HistoryResult> {
    let engine = start_engine(options, workers, options.retention)?;
    let mut feed = Feed::new(workload, &engine, options.seed)?;
    feed.load_bootstrap(&engine)?;
    let baseline = process::memory().rss;
    process::reset_peak_rss();
    let window_events = (options.history_rate * options.history_window.as_secs_f64()).ceil() as usize;
    let point = |until: Micros, feed: &mut Feed| -> anyhow::Result<HistoryPoint> {
        let fast_forward = load_closed_loop(&engine, feed, EVENT_TIME_START + until, u64::MAX)?;
        let events_before = feed.taken;
        let hours = |t: Micros| (t - EVENT_TIME_START) as f64 / (3600 * MICROS_PER_SECOND) as f64;
        let event_time_hours = hours(feed.event_time);
        let events = feed.take(window_events)?;
        let window = open_loop::run(&engine, events, options.history_rate, Duration::ZERO, Verdict::default())?;
        let point = HistoryPoint {
            event_time_hours,
            window_end_hours: hours(feed.event_time),
            events_before,
            fast_forward,
            retained_input_rows: retained_input_rows(&engine),
            rss_bytes: process::memory().rss,
            window,
        };
        tracing::info!(
            hours = point.event_time_hours,
            events = point.events_before,
            rss_mb = point.rss_bytes / 1_000_000,
            cpu_us = point.window.cpu_us_per_event,
            "history point"
        );
        Ok(point)
    };
    let short = point(options.history_short, &mut feed)?;
    let long = point(options.history_long, &mut feed)?;
    let peak = process::memory().peak_rss;
    let retained = long.retained_input_rows.max(1) as f64;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    Ok(HistoryResult {
        workload,
        workers,
        retention_hours: options.retention as f64 / (3600 * MICROS_PER_SECOND) as f64,
        offered_rate: options.history_rate,
        baseline_rss_bytes: baseline,
        cpu_ratio: ratio(long.window.cpu_us_per_event, short.window.cpu_us_per_event),
        rss_ratio: ratio(long.rss_bytes as f64, short.rss_bytes as f64),
        p99_ratio: ratio(long.window.freshness_ms.p99, short.window.freshness_ms.p99),
        peak_rss_bytes: peak,
        rss_bytes_per_retained_event: long.rss_bytes as f64 / retained,
        peak_rss_bytes_per_retained_event: peak as f64 / retained,
        net_rss_bytes_per_retained_event: peak.saturating_sub(baseline) as f64 / retained,
        short,
        long,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeltaResult {
    pub workload: Workload,
    pub workers: usize,
    /// Events loaded before the deltas (nothing expires: retention covers them all).
    pub state_events: u64,
    pub load: LoadResult,
    pub retained_input_rows: u64,
    pub rss_bytes: u64,
    pub rss_bytes_per_retained_event: f64,
    pub delta_events: usize,
    /// Time from handing a delta to ingest until a snapshot shows all of it.
    pub absorb_ms: Latency,
    /// The busiest operators during the deltas (not the load), with `--operator-profile N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operators: Option<OperatorSummary>,
}

/// Retention for the delta scenario: far more event time than any state size needs.
const KEEP_EVERYTHING: Micros = 3650 * 24 * 3600 * MICROS_PER_SECOND;

pub fn delta(options: &BenchOptions, workload: Workload, workers: usize) -> anyhow::Result<DeltaResult> {
    let profile = options.new_operator_profile();
    let engine = start_engine_profiled(options, workers, KEEP_EVERYTHING, profile.clone())?;
    let mut feed = Feed::new(workload, &engine, options.seed)?;
    feed.load_bootstrap(&engine)?;
    let load = load_closed_loop(&engine, &mut feed, Micros::MAX, options.delta_state)?;
    tracing::info!(events = load.events, per_second = load.events_per_second, "state loaded");
    if let Some(profile) = &profile {
        profile.reset();
    }
    let mut absorb = Vec::with_capacity(options.delta_repeats as usize);
    for _ in 0..options.delta_repeats {
        let delta = feed.take(options.delta_events)?;
        let started = Instant::now();
        engine.apply_blocking(delta).map_err(|e| anyhow::anyhow!("applying a delta: {e}"))?;
        absorb.push(started.elapsed());
    }
    let retained = retained_input_rows(&engine);
    let rss = process::memory().rss;
    Ok(DeltaResult {
        workload,
        workers,
        state_events: load.events,
        load,
        retained_input_rows: retained,
        rss_bytes: rss,
        rss_bytes_per_retained_event: rss as f64 / retained.max(1) as f64,
        delta_events: options.delta_events,
        absorb_ms: Latency::of_durations(&absorb),
        operators: profile.map(|p| p.summary(options.operator_profile)),
    })
}
