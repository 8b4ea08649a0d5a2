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

use diffmart_dataflows::boundary::Inputs;
use diffmart_dataflows::{PipelineConfig, Time};
use timely::logging::{TimelyEvent, TimelyEventBuilder};

fn main() {
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
        for (pipeline, input_specs, build) in diffmart_dataflows::pipelines() {
            names.borrow_mut().clear();
            worker.dataflow::<Time, _, _>(|scope| {
                let mut inputs = Inputs::new(scope, input_specs);
                // The views go unread: the server's sink reads them without operators of their own.
                build(&config, &mut inputs);
                inputs.into_sessions()
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
