//! Where compute's time goes, by operator: timely's own logging of operator
//! schedulings, summed per operator and attributed to the pipeline that built it.
//!
//! A profiler (perf) sees timely's scheduler and differential's generic code, and
//! cannot tell one pipeline's `Reduce` from another's; timely knows which operator
//! it is running. Each scheduling's time counts once, for the innermost operator
//! running (a subgraph's own time excludes its children's).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

/// Operator times of every worker of a run, filled while it runs.
#[derive(Debug, Default)]
pub struct OperatorProfile {
    operators: Mutex<HashMap<OperatorKey, OperatorTotals>>,
}

/// An operator across workers: each worker builds the same operators in the same order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OperatorKey {
    id: usize,
    name: String,
}

#[derive(Clone, Debug, Default)]
struct OperatorTotals {
    pipeline: &'static str,
    schedulings: u64,
    busy: Duration,
    records_in: u64,
    input_type: String,
}

/// One operator's share of a run, summed over workers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OperatorTime {
    pub pipeline: String,
    pub operator: String,
    /// Timely's worker-unique operator id (the same on every worker).
    pub id: usize,
    pub schedulings: u64,
    pub busy_ms: f64,
    /// Records received through exchanges (timely logs no others: a pipelined
    /// input, as into a `map`, counts nothing).
    pub records_in: u64,
    /// The type of the first input's containers, paths shortened: what the operator
    /// works on, which tells one `Join` from another.
    pub input_type: String,
}

/// The busiest operators of a run, and every operator's time together.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OperatorSummary {
    /// Every operator's busy time together (each listed one is a share of it).
    pub busy_ms: f64,
    pub busiest: Vec<OperatorTime>,
}

/// Which pipeline built the operators from an id on: `(first id, pipeline)`, in id order.
pub type PipelineBoundaries = Vec<(usize, &'static str)>;

/// What one worker's logger keeps between batches of log events.
#[derive(Default)]
struct WorkerLog {
    names: HashMap<usize, String>,
    /// Operator ids by address (scope path and index in it).
    ids: HashMap<Vec<usize>, usize>,
    /// Channel ids to the operator they feed.
    channel_targets: HashMap<usize, usize>,
    /// Channels into operators not logged yet, by target address: (channel, port, type).
    unresolved: HashMap<Vec<usize>, Vec<(usize, usize, String)>>,
    /// Operators running now, innermost last: id, start, time spent in children.
    running: Vec<(usize, Duration, Duration)>,
}

impl OperatorProfile {
    /// Starts logging `worker`'s schedulings. Call before building the dataflow;
    /// `boundaries` is filled while it is built.
    pub fn attach(self: &Arc<Self>, worker: &mut Worker, boundaries: Rc<RefCell<PipelineBoundaries>>) {
        let profile = self.clone();
        let mut log = WorkerLog::default();
        let Some(mut registry) = worker.log_register() else { return };
        registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
            let Some(events) = data else { return };
            let mut totals = profile.operators.lock().unwrap();
            for (at, event) in events.iter() {
                match event {
                    TimelyEvent::Operates(operates) => {
                        log.names.insert(operates.id, operates.name.clone());
                        log.ids.insert(operates.addr.clone(), operates.id);
                        // An operator's input channels are logged before the operator is.
                        for (channel, port, typ) in log.unresolved.remove(&operates.addr).unwrap_or_default() {
                            log.channel_feeds(&mut totals, channel, operates.id, port, &typ);
                        }
                    }
                    TimelyEvent::Channels(channel) => {
                        let mut target = channel.scope_addr.clone();
                        target.push(channel.target.0);
                        match log.ids.get(&target) {
                            Some(&id) => log.channel_feeds(&mut totals, channel.id, id, channel.target.1, &channel.typ),
                            None => log.unresolved.entry(target).or_default().push((
                                channel.id,
                                channel.target.1,
                                channel.typ.clone(),
                            )),
                        }
                    }
                    TimelyEvent::Messages(message) if !message.is_send => {
                        let Some(&id) = log.channel_targets.get(&message.channel) else { continue };
                        totals.entry(log.key(id)).or_default().records_in += message.record_count.max(0) as u64;
                    }
                    TimelyEvent::Schedule(schedule) => match schedule.start_stop {
                        StartStop::Start => log.running.push((schedule.id, *at, Duration::ZERO)),
                        StartStop::Stop => {
                            let Some((id, start, children)) = log.running.pop() else { continue };
                            debug_assert_eq!(id, schedule.id, "schedulings nest");
                            let elapsed = at.saturating_sub(start);
                            if let Some(parent) = log.running.last_mut() {
                                parent.2 += elapsed;
                            }
                            let entry = totals.entry(log.key(id)).or_default();
                            entry.pipeline = pipeline_of(&boundaries.borrow(), id);
                            entry.schedulings += 1;
                            entry.busy += elapsed.saturating_sub(children);
                        }
                    },
                    _ => {}
                }
            }
        });
    }

    /// Forgets what was summed so far (what the operators are stays known).
    pub fn reset(&self) {
        for totals in self.operators.lock().unwrap().values_mut() {
            totals.schedulings = 0;
            totals.busy = Duration::ZERO;
            totals.records_in = 0;
        }
    }

    /// The `n` busiest operators, and all operators' time together.
    pub fn summary(&self, n: usize) -> OperatorSummary {
        let mut busiest = self.operators();
        let busy_ms = busiest.iter().map(|o| o.busy_ms).sum();
        busiest.truncate(n);
        OperatorSummary { busy_ms, busiest }
    }

    /// Every operator that ran, the busiest first.
    pub fn operators(&self) -> Vec<OperatorTime> {
        let totals = self.operators.lock().unwrap();
        let mut operators: Vec<OperatorTime> = totals
            .iter()
            .map(|(key, totals)| OperatorTime {
                pipeline: totals.pipeline.to_string(),
                operator: key.name.clone(),
                id: key.id,
                schedulings: totals.schedulings,
                busy_ms: totals.busy.as_secs_f64() * 1e3,
                records_in: totals.records_in,
                input_type: totals.input_type.clone(),
            })
            .collect();
        operators.sort_by(|a, b| b.busy_ms.total_cmp(&a.busy_ms).then(a.id.cmp(&b.id)));
        operators
    }
}

impl WorkerLog {
    fn key(&self, id: usize) -> OperatorKey {
        OperatorKey { id, name: self.names.get(&id).cloned().unwrap_or_default() }
    }

    /// Records that `channel` feeds input `port` of operator `id`.
    fn channel_feeds(
        &mut self,
        totals: &mut HashMap<OperatorKey, OperatorTotals>,
        channel: usize,
        id: usize,
        port: usize,
        typ: &str,
    ) {
        self.channel_targets.insert(channel, id);
        let entry = totals.entry(self.key(id)).or_default();
        if entry.input_type.is_empty() || port == 0 {
            entry.input_type = shorten_type(typ);
        }
    }
}

/// `alloc::vec::Vec<((i32, diffmart_dataflows::retail::Sale), u64, isize)>` →
/// `Vec<((i32, Sale), u64, isize)>`: every path reduced to its last segment.
fn shorten_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut segment = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            out.push_str(segment.rsplit("::").next().unwrap_or(""));
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(segment.rsplit("::").next().unwrap_or(""));
    out
}

/// The pipeline that built operator `id`; operators built before any pipeline
/// (inputs, the dataflow itself) and after them (the publishing sink) are compute's.
fn pipeline_of(boundaries: &[(usize, &'static str)], id: usize) -> &'static str {
    match boundaries.partition_point(|&(first, _)| first <= id) {
        0 => "compute",
        i => boundaries[i - 1].1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_belong_to_the_pipeline_whose_range_holds_them() {
        let boundaries = vec![(5, "retail"), (9, "casino"), (12, "compute")];
        assert_eq!(pipeline_of(&boundaries, 0), "compute");
        assert_eq!(pipeline_of(&boundaries, 5), "retail");
        assert_eq!(pipeline_of(&boundaries, 8), "retail");
        assert_eq!(pipeline_of(&boundaries, 9), "casino");
        assert_eq!(pipeline_of(&boundaries, 40), "compute");
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(
            shorten_type("alloc::vec::Vec<((i32, diffmart_dataflows::retail::Sale), u64, isize)>"),
            "Vec<((i32, Sale), u64, isize)>"
        );
        assert_eq!(shorten_type("u64"), "u64");
    }
}
