//! diffmart's pipelines: differential dataflow definitions and nothing else (no I/O).
//!
//! Each pipeline lives in its own module and reads like the SQL it maintains:
//! every view is a function under a doc comment holding its SQL definition.

pub mod boundary;
pub mod casino;
pub mod checkpoint;
pub mod datum;
pub use datum::relation;
pub mod ecommerce;
pub mod inventory;
pub mod money;
pub mod operators;
pub mod pricing;
pub mod retail;
pub mod system;

/// Logical time of the dataflows: the engine's batch sequence number.
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

/// Builds a pipeline's views from its inputs (asked for in `input_specs` order): one
/// per `view_specs` entry, in any order (each view names its spec).
pub type BuildViews = for<'s> fn(&PipelineConfig, &mut Inputs<'s>) -> Vec<View<'s>>;

/// One pipeline: its input relations, its views, and how the views are built.
struct Pipeline {
    name: &'static str,
    input_specs: fn() -> Vec<&'static RelationSpec>,
    view_specs: fn() -> Vec<&'static RelationSpec>,
    /// Asks for the pipeline's inputs in `input_specs` order; returns its views.
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

/// Every view of every pipeline: the catalog lists them in this order, after the inputs.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    PIPELINES.iter().flat_map(|p| (p.view_specs)()).collect()
}

/// Every pipeline, by name, with its input relations and how its views are built
/// (for tools that build one pipeline at a time).
pub fn pipelines() -> impl Iterator<Item = (&'static str, Vec<&'static RelationSpec>, BuildViews)> {
    PIPELINES.iter().map(|p| (p.name, (p.input_specs)(), p.build))
}

/// Builds every pipeline's views, asking `inputs` for the input relations in
/// [`input_specs`] order: one per [`view_specs`] entry, each naming its spec
/// ([`View::spec`]), in no particular order.
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
        check_views(pipeline.name, &(pipeline.view_specs)(), &built);
        views.extend(built);
    }
    views
}

/// Panics unless `views` are the views `specs` declare, each built once.
fn check_views(pipeline: &str, specs: &[&'static RelationSpec], views: &[View<'_>]) {
    let mut unbuilt: Vec<&'static RelationSpec> = specs.to_vec();
    for view in views {
        let spec = view.spec();
        match unbuilt.iter().position(|s| std::ptr::eq(*s, spec)) {
            Some(i) => {
                unbuilt.swap_remove(i);
            }
            None if specs.iter().any(|s| std::ptr::eq(*s, spec)) => {
                panic!("{pipeline}: view {} built twice", spec.name)
            }
            None => panic!("{pipeline}: built view {}, which its view_specs do not list", spec.name),
        }
    }
    let unbuilt: Vec<_> = unbuilt.iter().map(|s| s.name).collect();
    assert!(unbuilt.is_empty(), "{pipeline}: views declared but not built: {unbuilt:?}");
}

/// Views completed when a snapshot is read (see [`datum::ReadTimeLookup`]).
pub fn read_time_lookups() -> Vec<datum::ReadTimeLookup> {
    retail::read_time_lookups()
}

/// CHECK constraints of input relations, beyond column types and NOT NULL (checked
/// by [`datum::validate_row`], so every way in enforces them).
pub fn check_row(spec: &RelationSpec, row: &[datum::Datum]) -> Result<(), datum::RowError> {
    pricing::check_row(spec, row)?;
    casino::settings::check_row(spec, row)
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

#[cfg(test)]
mod tests {
    use differential_dataflow::ExchangeData;
    use differential_dataflow::input::Input;
    use timely::dataflow::Scope;

    use super::*;
    use crate::casino::GameStats;
    use crate::datum::Record;
    use crate::pricing::{PriceHistoryRow, PriceUpdate, ProductPrice};

    #[test]
    fn relation_names_are_unique() {
        let mut names: Vec<_> = input_specs().into_iter().chain(view_specs()).map(|spec| spec.name).collect();
        names.sort_unstable();
        let twice: Vec<_> = names.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        assert!(twice.is_empty(), "{twice:?}");
    }

    #[test]
    fn every_declared_view_is_built_once() {
        timely::execute_directly(|worker| {
            worker.dataflow::<Time, _, _>(|scope| {
                let mut inputs = Inputs::new(scope, input_specs());
                let views = build_views(&PipelineConfig::default(), &mut inputs);
                let mut built: Vec<_> = views.iter().map(|view| view.spec().name).collect();
                let mut declared: Vec<_> = view_specs().iter().map(|spec| spec.name).collect();
                built.sort_unstable();
                declared.sort_unstable();
                assert_eq!(built, declared);
                inputs.into_sessions()
            });
        });
    }

    /// A view of `R` records, over an input of its own.
    fn view_of<'s, R: Record + ExchangeData>(scope: Scope<'s, Time>) -> View<'s> {
        let (_input, records) = scope.new_collection::<R, isize>();
        View::of_records(records)
    }

    /// Checks pricing's views, as `views` builds them.
    fn check_pricing(views: for<'s> fn(Scope<'s, Time>) -> Vec<View<'s>>) {
        timely::execute_directly(move |worker| {
            worker.dataflow::<Time, _, _>(|scope| check_views("pricing", &pricing::view_specs(), &views(scope)));
        });
    }

    #[test]
    fn views_are_named_in_any_order() {
        check_pricing(|s| vec![view_of::<PriceUpdate>(s), view_of::<ProductPrice>(s), view_of::<PriceHistoryRow>(s)]);
    }

    #[test]
    #[should_panic(expected = "pricing: view price_updates built twice")]
    fn a_view_built_twice_is_refused() {
        check_pricing(|s| {
            vec![
                view_of::<PriceUpdate>(s),
                view_of::<ProductPrice>(s),
                view_of::<PriceHistoryRow>(s),
                view_of::<PriceUpdate>(s),
            ]
        });
    }

    #[test]
    #[should_panic(expected = "pricing: views declared but not built: [\"price_history\"]")]
    fn a_view_left_unbuilt_is_refused() {
        check_pricing(|s| vec![view_of::<PriceUpdate>(s), view_of::<ProductPrice>(s)]);
    }

    #[test]
    #[should_panic(expected = "pricing: built view game_stats, which its view_specs do not list")]
    fn another_pipelines_view_is_refused() {
        check_pricing(|s| {
            vec![
                view_of::<PriceUpdate>(s),
                view_of::<ProductPrice>(s),
                view_of::<PriceHistoryRow>(s),
                view_of::<GameStats>(s),
            ]
        });
    }
}
