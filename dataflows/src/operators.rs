//! Operators differential does not ship, written as timely operators that emit
//! differential updates. One module per family:
//!
//! - [`accumulated`], a pass-through that keeps what accumulated, for checkpoints;
//! - [`joins`], `LEFT JOIN` against a side with at most one row per key;
//! - [`max_per_key`], the greatest (latest) value per key;
//! - [`splitting`], one collection into several, in one pass;
//! - [`clocks`], event-time clocks, watermarks, the retention horizon's filter, and
//!   keyed state machines run on the clock;
//! - [`prefix_fold`] and [`range_sum`]: ordered aggregates per key, read at query
//!   positions.

pub mod accumulated;
pub mod clocks;
pub mod joins;
pub mod max_per_key;
pub mod prefix_fold;
pub mod range_sum;
pub mod splitting;

pub use self::accumulated::accumulated;
pub use self::clocks::{BatchMaxima, ClockedState, EventClock, Expiry, batch_maxima, horizon_filter, run_clocked};
pub use self::joins::{ByKey, left_join_unique};
pub use self::max_per_key::{EventTimeOf, max_per_key};
pub use self::prefix_fold::{Compaction, prefix_fold_at};
pub use self::range_sum::range_sum_at;
pub use self::splitting::{split_by_kind, unzip};

/// The answers as of each of `batches` batches, from every update captured: what the
/// property tests compare, an operator's against differential's own formulation.
#[cfg(test)]
fn answers_after_each_batch<D: Ord + Clone>(
    updates: &[(D, crate::Time, isize)],
    batches: usize,
) -> Vec<Vec<(D, isize)>> {
    (0..batches)
        .map(|time| {
            let mut at: Vec<_> =
                updates.iter().filter(|(_, t, _)| *t <= time as crate::Time).map(|(d, _, r)| (d.clone(), *r)).collect();
            differential_dataflow::consolidation::consolidate(&mut at);
            at
        })
        .collect()
}
