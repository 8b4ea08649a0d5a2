//! Open-loop load at a fixed offered rate, and freshness measured from the schedule.
//!
//! Event `i` of a run is due at `start + i / rate`, whatever the engine is doing: a
//! driver thread hands ingest every event that is due, once a `SOURCE_TICK` as the
//! generator does (an event due just after a hand-over waits for the next one, and
//! that wait counts in its freshness), so a slow engine faces a growing queue
//! instead of a slower client. A monitor thread waits for each batch's logical time
//! to become visible in the store (the moment a snapshot, hence a SELECT, sees it)
//! and records, for every event, visible − due.
//! Measuring from the due time, not the send time, counts the queueing delay too
//! (no coordinated omission).
//!
//! A run may start with a warm-up: its events are offered on the same schedule, but
//! their freshness is reported apart (`warmup_freshness_ms`), and CPU per event counts
//! from the end of it. A freshly started engine spends its first few hundred
//! milliseconds growing arrangements and faulting in memory, which in a 3-second run
//! is a tenth of the events and would decide the p99 of what is meant to be the
//! steady state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::Time;
use serde::{Deserialize, Serialize};

use super::process;
use super::stats::Latency;
use crate::engine::{Engine, SOURCE_TICK, Update};

/// Largest batch the driver hands over at once when it finds itself behind.
const MAX_BATCH: usize = 50_000;

/// How a run judges that the engine kept up.
#[derive(Clone, Copy, Debug)]
pub struct Verdict {
    /// Stop offering once this much of the schedule is queued but not yet visible.
    pub overload_lag: Duration,
    /// The last events may be this late, plus `drain_share` of the run's length.
    pub drain_allowance: Duration,
    pub drain_share: f64,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict { overload_lag: Duration::from_secs(2), drain_allowance: Duration::from_millis(100), drain_share: 0.02 }
    }
}

/// One open-loop run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenLoopResult {
    pub offered_rate: f64,
    /// Events scheduled (all of them unless the run stopped on overload).
    pub events_scheduled: u64,
    pub events_sent: u64,
    pub scheduled_seconds: f64,
    /// Events per second between the first event's due time and the last one's visibility.
    pub achieved_rate: f64,
    /// Seconds of the schedule offered as warm-up, before what is measured.
    #[serde(default)]
    pub warmup_seconds: f64,
    /// Due time to visibility of the warm-up's events (the start-up transient).
    #[serde(default)]
    pub warmup_freshness_ms: Latency,
    /// Due time to visibility, over every event sent after the warm-up.
    pub freshness_ms: Latency,
    /// How late the last 1 % of the events were, at worst: a backlog that grew shows here.
    pub tail_freshness_ms: f64,
    /// The run stopped offering because the backlog passed the overload lag.
    pub overloaded: bool,
    /// Kept up: not overloaded, and the tail's lateness within the allowance.
    pub sustained: bool,
    /// Batches the driver handed to ingest (several may share a logical time).
    pub batches: u64,
    /// Logical times the run's events went out in: how many events shared each.
    #[serde(default)]
    pub logical_times: u64,
    /// CPU time of diffmart's threads (not the benchmark's) per event after the
    /// warm-up, in microseconds.
    pub cpu_us_per_event: f64,
}

/// Offers `updates` at `rate` events per second and waits until every sent event is
/// visible. The events of the first `warmup` of the schedule are measured apart.
pub fn run(
    engine: &Arc<Engine>,
    updates: Vec<Update>,
    rate: f64,
    warmup: Duration,
    verdict: Verdict,
) -> anyhow::Result<OpenLoopResult> {
    anyhow::ensure!(rate.is_finite() && rate > 0.0, "the offered rate must be positive, got {rate}");
    let total = updates.len();
    let warmup_events = ((warmup.as_secs_f64() * rate).ceil() as usize).min(total);
    let visible_events = Arc::new(AtomicUsize::new(0));
    let (batches_tx, batches_rx) = std::sync::mpsc::channel::<(Time, usize, usize)>();
    // A little slack, so both threads are running before the first event is due.
    let start = Instant::now() + Duration::from_millis(20);

    let monitor = {
        let store = engine.store().clone();
        let visible_events = visible_events.clone();
        std::thread::Builder::new()
            .name(format!("{}monitor", process::BENCH_THREAD_PREFIX))
            .spawn(move || {
                let mut freshness_us: Vec<u32> = Vec::with_capacity(total);
                let mut last_visible = start;
                let mut batches = 0u64;
                let mut times = 0u64;
                let mut last_time = None;
                // Batches sent and not yet seen: (logical time, first event, events).
                let mut pending = std::collections::VecDeque::<(Time, usize, usize)>::new();
                loop {
                    if pending.is_empty() {
                        match batches_rx.recv() {
                            Ok(batch) => pending.push_back(batch),
                            Err(_) => break,
                        }
                    }
                    // The driver may be done (disconnected): what is pending still counts.
                    while let Ok(batch) = batches_rx.try_recv() {
                        pending.push_back(batch);
                    }
                    let oldest = pending.front().expect("a batch is pending").0;
                    if !store.wait_visible_blocking(oldest) {
                        break;
                    }
                    // Everything before `upper` was visible by `seen` (read in this order, so
                    // a batch is never credited with an earlier moment than it deserves).
                    let upper = store.snapshot().upper;
                    let seen = Instant::now();
                    last_visible = seen;
                    let seen_us = seen.saturating_duration_since(start).as_secs_f64() * 1e6;
                    while let Some(&(time, first, count)) = pending.front() {
                        if time >= upper {
                            break;
                        }
                        pending.pop_front();
                        batches += 1;
                        if last_time != Some(time) {
                            last_time = Some(time);
                            times += 1;
                        }
                        for i in first..first + count {
                            let due_us = i as f64 / rate * 1e6;
                            freshness_us.push((seen_us - due_us).max(0.0).min(u32::MAX as f64) as u32);
                        }
                        visible_events.fetch_add(count, Ordering::Release);
                    }
                }
                (freshness_us, last_visible, batches, times)
            })
            .context("spawning the monitor")?
    };

    let driver = {
        let ingest = engine.ingest();
        let visible_events = visible_events.clone();
        std::thread::Builder::new()
            .name(format!("{}driver", process::BENCH_THREAD_PREFIX))
            .spawn(move || -> anyhow::Result<(usize, bool, Option<process::CpuTimes>)> {
                let overload_events = (verdict.overload_lag.as_secs_f64() * rate).max(1.0) as usize;
                // CPU is counted from the first event after the warm-up.
                let mut cpu_before = None;
                let mut pending = updates.into_iter();
                let mut sent = 0usize;
                // Hands over at most once a tick, as the generator does (see SOURCE_TICK).
                let mut last_send = start;
                while sent < total {
                    let now = Instant::now();
                    let elapsed = now.saturating_duration_since(start).as_secs_f64();
                    // Event i is due at i / rate: events 0..=floor(elapsed × rate) are due now.
                    let due = if now < start { 0 } else { ((elapsed * rate) as usize + 1).min(total) };
                    if due <= sent || now < last_send + SOURCE_TICK {
                        let next_due =
                            (start + Duration::from_secs_f64(sent as f64 / rate)).max(last_send + SOURCE_TICK);
                        std::thread::sleep(next_due.saturating_duration_since(now));
                        continue;
                    }
                    let mut count = (due - sent).min(MAX_BATCH);
                    if sent < warmup_events {
                        // A batch ends with the warm-up, so CPU is counted from its end.
                        count = count.min(warmup_events - sent);
                    } else if cpu_before.is_none() {
                        cpu_before = Some(process::engine_cpu_nanos());
                    }
                    last_send = now;
                    let batch: Vec<Update> = pending.by_ref().take(count).collect();
                    let time = ingest.send_stamped(batch).context("the engine shut down")?;
                    let _ = batches_tx.send((time, sent, count));
                    sent += count;
                    if sent - visible_events.load(Ordering::Acquire) > overload_events {
                        return Ok((sent, true, cpu_before));
                    }
                }
                Ok((sent, false, cpu_before))
            })
            .context("spawning the driver")?
    };

    let (sent, overloaded, cpu_before) = driver.join().map_err(|_| anyhow::anyhow!("the driver panicked"))??;
    let (mut freshness_us, last_visible, batches, logical_times) =
        monitor.join().map_err(|_| anyhow::anyhow!("the monitor panicked"))?;
    anyhow::ensure!(freshness_us.len() == sent, "the engine shut down during the run");
    let measured_events = sent.saturating_sub(warmup_events);
    // No CPU figure if the run stopped (overloaded) before the warm-up ended.
    let cpu_nanos = cpu_before.map_or(0, |before| process::engine_cpu_nanos().since(&before));

    let tail = sent.div_ceil(100);
    let tail_freshness_ms = freshness_us[sent - tail..].iter().copied().max().unwrap_or(0) as f64 / 1e3;
    let measured_us = freshness_us.split_off(warmup_events.min(sent));
    let scheduled_seconds = total as f64 / rate;
    let allowance_ms = verdict.drain_allowance.as_secs_f64() * 1e3 + verdict.drain_share * scheduled_seconds * 1e3;
    let active = last_visible.saturating_duration_since(start).as_secs_f64();
    Ok(OpenLoopResult {
        offered_rate: rate,
        events_scheduled: total as u64,
        events_sent: sent as u64,
        scheduled_seconds,
        achieved_rate: sent as f64 / active.max(1e-9),
        warmup_seconds: warmup_events as f64 / rate,
        warmup_freshness_ms: Latency::of_micros(freshness_us),
        freshness_ms: Latency::of_micros(measured_us),
        tail_freshness_ms,
        overloaded,
        sustained: !overloaded && tail_freshness_ms <= allowance_ms,
        batches,
        logical_times,
        cpu_us_per_event: cpu_nanos as f64 / 1e3 / (measured_events.max(1) as f64),
    })
}
