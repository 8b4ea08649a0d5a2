//! What a pipeline's generator hands the embedded generator (and `diffmart produce`,
//! and the benchmarks): rows loaded first, then an endless stream of events.

use diffmart_dataflows::datum::{Micros, RelationSpec, Row};

/// One row of one input relation, stamped with its simulated event time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The relation's name, as in its `RelationSpec`.
    pub relation: &'static str,
    pub row: Row,
    pub event_time: Micros,
}

/// One pipeline's simulated processes: rows loaded before anything else (its
/// catalog), then an endless stream of events in event-time order.
pub struct Simulation {
    pub bootstrap: Vec<GeneratedEvent>,
    pub events: Box<dyn Iterator<Item = GeneratedEvent> + Send>,
}

/// The rows a relation holds when a simulation starts (a `--catalog` file's
/// products, for one), for a generator that continues from them.
pub type HeldRows<'a> = &'a dyn Fn(&RelationSpec) -> Vec<Row>;

/// [`HeldRows`] of an empty store.
pub fn nothing_held(_: &RelationSpec) -> Vec<Row> {
    Vec::new()
}

/// The simulations' streams merged into one, in event-time order (ties go to the
/// earlier simulation, so the merge is deterministic).
pub struct MergedEvents {
    streams: Vec<std::iter::Peekable<Box<dyn Iterator<Item = GeneratedEvent> + Send>>>,
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
