//! diffmart's pipelines: differential dataflow definitions and nothing else (no I/O).
//!
//! Each pipeline lives in its own module and reads like the SQL it maintains:
//! every view is a function under a doc comment holding its SQL definition.

pub mod boundary;
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

use boundary::{Inputs, View};
use datum::{Micros, RelationSpec, Row};

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

/// Builds a pipeline's views from its inputs (asked for in `input_specs` order); returns them in `view_specs` order.
pub type BuildViews = for<'s> fn(&PipelineConfig, &mut Inputs<'s>) -> Vec<View<'s>>;

/// One pipeline: its input relations, its views, and how the views are built.
struct Pipeline {
    name: &'static str,
    input_specs: fn() -> Vec<&'static RelationSpec>,
    view_specs: fn() -> Vec<&'static RelationSpec>,
    /// Asks for the pipeline's inputs in `input_specs` order; returns its views in `view_specs` order.
    build: BuildViews,
}

const PIPELINES: [Pipeline; 6] = [
    Pipeline { name: "retail", input_specs: retail::input_specs, view_specs: retail::view_specs, build: retail::build },
    Pipeline {
        name: "ecommerce",
        input_specs: ecommerce::input_specs,
        view_specs: ecommerce::view_specs,
        build: ecommerce::build,
    },
    Pipeline { name: "casino", input_specs: casino::input_specs, view_specs: casino::view_specs, build: casino::build },
    Pipeline {
        name: "inventory",
        input_specs: inventory::input_specs,
        view_specs: inventory::view_specs,
        build: inventory::build,
    },
    Pipeline {
        name: "pricing",
        input_specs: pricing::input_specs,
        view_specs: pricing::view_specs,
        build: pricing::build,
    },
    Pipeline { name: "system", input_specs: system::input_specs, view_specs: system::view_specs, build: system::build },
];

/// Every input relation of every pipeline, in the order [`build_views`] takes them.
pub fn input_specs() -> Vec<&'static RelationSpec> {
    PIPELINES.iter().flat_map(|p| (p.input_specs)()).collect()
}

/// Every view of every pipeline, in the order [`build_views`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    PIPELINES.iter().flat_map(|p| (p.view_specs)()).collect()
}

/// Every pipeline, by name, with its input relations and how its views are built
/// (for tools that build one pipeline at a time).
pub fn pipelines() -> impl Iterator<Item = (&'static str, Vec<&'static RelationSpec>, BuildViews)> {
    PIPELINES.iter().map(|p| (p.name, (p.input_specs)(), p.build))
}

/// Builds every pipeline's views, asking `inputs` for the input relations in
/// [`input_specs`] order. The result lines up with [`view_specs`].
pub fn build_views<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    build_views_announcing(config, inputs, &mut |_| {})
}

/// [`build_views`], calling `starting(pipeline)` before each pipeline builds its
/// operators (a profiler tells whose operators are whose by the ids allocated since).
pub fn build_views_announcing<'s>(
    config: &PipelineConfig,
    inputs: &mut Inputs<'s>,
    starting: &mut dyn FnMut(&'static str),
) -> Vec<View<'s>> {
    let mut views = Vec::new();
    for pipeline in &PIPELINES {
        let asked_before = inputs.len();
        starting(pipeline.name);
        let built = (pipeline.build)(config, inputs);
        assert_eq!(
            inputs.len() - asked_before,
            (pipeline.input_specs)().len(),
            "{}: one input per relation",
            pipeline.name
        );
        assert_eq!(built.len(), (pipeline.view_specs)().len(), "{}: one view per view spec", pipeline.name);
        views.extend(built);
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
