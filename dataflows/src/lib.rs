//! diffmart's pipelines: differential dataflow definitions and nothing else (no I/O).
//!
//! Each pipeline lives in its own module and reads like the SQL it maintains:
//! every view is a function under a doc comment holding its SQL definition.

pub mod datum;
pub mod money;
pub mod operators;
pub mod retail;

/// Logical time of the dataflows: the serving layer's batch sequence number.
/// Event time is data (a column), never this.
pub type Time = u64;

use datum::{RelationSpec, Row};
use differential_dataflow::VecCollection;

/// Every input relation of every pipeline, in the order [`build_views`] takes them.
pub fn input_specs() -> Vec<&'static RelationSpec> {
    retail::input_specs()
}

/// Every view of every pipeline, in the order [`build_views`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    retail::view_specs()
}

/// Builds every pipeline's views from the input relations (as rows, in
/// [`input_specs`] order). The result lines up with [`view_specs`].
pub fn build_views<'s>(inputs: &[VecCollection<'s, Time, Row>]) -> Vec<VecCollection<'s, Time, Row>> {
    retail::build_from_rows(inputs)
}
