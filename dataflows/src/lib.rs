//! diffmart's pipelines: differential dataflow definitions and nothing else (no I/O).
//!
//! Each pipeline lives in its own module and reads like the SQL it maintains:
//! every view is a function under a doc comment holding its SQL definition.

pub mod casino;
pub mod datum;
pub mod ecommerce;
pub mod inventory;
pub mod money;
pub mod operators;
pub mod pricing;
pub mod retail;
pub mod system;

/// Logical time of the dataflows: the serving layer's batch sequence number.
/// Event time is data (a column), never this.
pub type Time = u64;

use datum::{Micros, Record, RelationSpec, Row};
use differential_dataflow::VecCollection;

/// Launch options that shape what the pipelines compute.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Event-time history kept in windowed and append-only state (`--retention`).
    pub retention: Micros,
    pub casino: casino::CasinoConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { retention: 24 * 60 * datum::MICROS_PER_MINUTE, casino: casino::CasinoConfig::default() }
    }
}

/// Builds a pipeline's views from its inputs (as rows, in `input_specs` order); returns them in `view_specs` order.
type BuildViews = for<'s> fn(&PipelineConfig, &[VecCollection<'s, Time, Row>]) -> Vec<VecCollection<'s, Time, Row>>;

/// One pipeline: its input relations, its views, and how the views are built.
struct Pipeline {
    name: &'static str,
    input_specs: fn() -> Vec<&'static RelationSpec>,
    view_specs: fn() -> Vec<&'static RelationSpec>,
    /// Takes the pipeline's inputs as rows, in `input_specs` order; returns its views in `view_specs` order.
    build: BuildViews,
}

const PIPELINES: [Pipeline; 6] = [
    Pipeline {
        name: "retail",
        input_specs: retail::input_specs,
        view_specs: retail::view_specs,
        build: retail::build_from_rows,
    },
    Pipeline {
        name: "ecommerce",
        input_specs: ecommerce::input_specs,
        view_specs: ecommerce::view_specs,
        build: ecommerce::build_from_rows,
    },
    Pipeline {
        name: "casino",
        input_specs: casino::input_specs,
        view_specs: casino::view_specs,
        build: casino::build_from_rows,
    },
    Pipeline {
        name: "inventory",
        input_specs: inventory::input_specs,
        view_specs: inventory::view_specs,
        build: inventory::build_from_rows,
    },
    Pipeline {
        name: "pricing",
        input_specs: pricing::input_specs,
        view_specs: pricing::view_specs,
        build: pricing::build_from_rows,
    },
    Pipeline {
        name: "system",
        input_specs: system::input_specs,
        view_specs: system::view_specs,
        build: system::build_from_rows,
    },
];

/// Every input relation of every pipeline, in the order [`build_views`] takes them.
pub fn input_specs() -> Vec<&'static RelationSpec> {
    PIPELINES.iter().flat_map(|p| (p.input_specs)()).collect()
}

/// Every view of every pipeline, in the order [`build_views`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    PIPELINES.iter().flat_map(|p| (p.view_specs)()).collect()
}

/// Builds every pipeline's views from the input relations (as rows, in
/// [`input_specs`] order). The result lines up with [`view_specs`].
pub fn build_views<'s>(
    config: &PipelineConfig,
    inputs: &[VecCollection<'s, Time, Row>],
) -> Vec<VecCollection<'s, Time, Row>> {
    build_views_announcing(config, inputs, &mut |_| {})
}

/// [`build_views`], calling `starting(pipeline)` before each pipeline builds its
/// operators (a profiler tells whose operators are whose by the ids allocated since).
pub fn build_views_announcing<'s>(
    config: &PipelineConfig,
    inputs: &[VecCollection<'s, Time, Row>],
    starting: &mut dyn FnMut(&'static str),
) -> Vec<VecCollection<'s, Time, Row>> {
    assert_eq!(inputs.len(), input_specs().len(), "one collection per input relation");
    let mut rest = inputs;
    let mut views = Vec::new();
    for pipeline in &PIPELINES {
        let (mine, others) = rest.split_at((pipeline.input_specs)().len());
        starting(pipeline.name);
        let built = (pipeline.build)(config, mine);
        assert_eq!(built.len(), (pipeline.view_specs)().len(), "one collection per view");
        views.extend(built);
        rest = others;
    }
    views
}

/// Views completed when a snapshot is read (see [`datum::ReadTimeLookup`]).
pub fn read_time_lookups() -> Vec<datum::ReadTimeLookup> {
    retail::read_time_lookups()
}

/// CHECK constraints of input relations, beyond column types and NOT NULL (checked
/// by [`datum::validate_row`], so every way in enforces them).
pub fn check_row(spec: &RelationSpec, row: &[datum::Datum]) -> Result<(), datum::RowError> {
    pricing::check_row(spec, row)
}

/// DEFAULT values of a row a table write inserts (NULL counts as left out).
pub fn fill_defaults(spec: &RelationSpec, row: &mut Row, now: Micros) {
    pricing::fill_defaults(spec, row, now)
}

/// Rows other tables gain (upserted by key) when a table write deletes `row` for good.
pub fn rows_implied_by_delete(
    spec: &RelationSpec,
    row: &[datum::Datum],
    now: Micros,
) -> Vec<(&'static RelationSpec, Row)> {
    pricing::rows_implied_by_delete(spec, row, now)
}

/// Rows of an input relation as typed records. Rows are validated against their
/// relation's spec before they enter the dataflow, so a failure here is a bug.
pub fn typed<'s, T: Record + differential_dataflow::Data>(
    rows: &VecCollection<'s, Time, Row>,
) -> VecCollection<'s, Time, T> {
    rows.clone().map(|row| match T::from_owned_row(row) {
        Ok(record) => record,
        Err(e) => panic!("row reached the dataflow unvalidated: {e}"),
    })
}
