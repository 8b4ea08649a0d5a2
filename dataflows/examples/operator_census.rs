//! Counts the timely operators each pipeline builds, by name.
//!
//! Every logical time costs each operator a little progress tracking (and a
//! scheduling, for those holding capabilities), so the operator count is the
//! per-time cost the benchmarks' low-rate freshness measures:
//!
//! ```sh
//! cargo run --release -p diffmart-dataflows --example operator_census
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::VecCollection;
use differential_dataflow::input::Input;
use diffmart_dataflows::datum::{RelationSpec, Row};
use diffmart_dataflows::{PipelineConfig, Time, casino, ecommerce, inventory, pricing, retail, system};
use timely::logging::{TimelyEvent, TimelyEventBuilder};

type Build = for<'s> fn(&PipelineConfig, &[VecCollection<'s, Time, Row>]) -> Vec<VecCollection<'s, Time, Row>>;
/// A pipeline's name, its input relations, and how its views are built.
type Pipeline = (&'static str, fn() -> Vec<&'static RelationSpec>, Build);

fn main() {
    let pipelines: [Pipeline; 6] = [
        ("retail", retail::input_specs, retail::build_from_rows),
        ("ecommerce", ecommerce::input_specs, ecommerce::build_from_rows),
        ("casino", casino::input_specs, casino::build_from_rows),
        ("inventory", inventory::input_specs, inventory::build_from_rows),
        ("pricing", pricing::input_specs, pricing::build_from_rows),
        ("system", system::input_specs, system::build_from_rows),
    ];
    timely::execute_directly(move |worker| {
        let names: Rc<RefCell<Vec<String>>> = Rc::default();
        let log = names.clone();
        worker.log_register().expect("logging").insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
            for (_, event) in data.iter().flatten() {
                if let TimelyEvent::Operates(operates) = event {
                    log.borrow_mut().push(operates.name.clone());
                }
            }
        });
        let config = PipelineConfig::default();
        let mut total = 0;
        for (pipeline, input_specs, build) in pipelines {
            names.borrow_mut().clear();
            worker.dataflow::<Time, _, _>(|scope| {
                let inputs: Vec<VecCollection<Time, Row>> =
                    input_specs().iter().map(|_| scope.new_collection().1).collect();
                build(&config, &inputs);
            });
            worker.log_register().expect("logging").flush();
            let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
            for name in names.borrow().iter() {
                *by_name.entry(name.clone()).or_default() += 1;
            }
            let count: usize = by_name.values().sum();
            total += count;
            let mut ranked: Vec<_> = by_name.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let top: Vec<String> = ranked.iter().take(12).map(|(name, n)| format!("{name} {n}")).collect();
            println!("{pipeline}: {count} operators; {}", top.join(", "));
        }
        println!("all pipelines: {total} operators (plus the server's publishing sink)");
    });
}
