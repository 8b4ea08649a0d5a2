//! The retail pipeline (`shared/spec/PIPELINES.md` §A): live inventory and dynamic
//! pricing over clicks, purchases, restocks, competitor quotes and orders.

pub mod generator;
pub mod postgres;
pub mod topics;

use diffmart_dataflows::datum::{Micros, Record};
use diffmart_dataflows::retail::ProductInventory;

use self::generator::RetailGenerator;
use super::{Pipeline, PostgresTables};
use crate::sources::kafka::topic::KafkaSource;
use crate::sources::simulation::{GeneratedEvent, HeldRows, Simulation};

pub struct Retail;

impl Pipeline for Retail {
    fn name(&self) -> &'static str {
        "retail"
    }

    /// The product catalog, then the five producers.
    fn simulation(&self, seed: u64, start: Micros, _held: HeldRows<'_>) -> Simulation {
        Simulation {
            bootstrap: RetailGenerator::catalog()
                .iter()
                .map(|p| GeneratedEvent { relation: ProductInventory::spec().name, row: p.to_row(), event_time: start })
                .collect(),
            events: Box::new(RetailGenerator::new(seed, start)),
        }
    }

    fn topics(&self) -> Vec<KafkaSource> {
        topics::topics()
    }

    fn postgres_tables(&self) -> Option<&'static dyn PostgresTables> {
        Some(&postgres::DemoTables)
    }
}
