//! The inventory pipeline (`shared/spec/PIPELINES.md` §D): stock per product, orders
//! deducted as they come, inventory events and alerts.

pub mod catalog;
pub mod generator;
pub mod sinks;
pub mod topics;

use diffmart_dataflows::datum::{Micros, Record};
use diffmart_dataflows::inventory::ProductUpdate;

use super::Pipeline;
use crate::sinks::kafka::KafkaSink;
use crate::sources::kafka::topic::KafkaSource;
use crate::sources::simulation::{HeldRows, Simulation};

pub struct Inventory;

impl Pipeline for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    /// Orders from the products `product_updates` already holds (a `--catalog` file),
    /// or from a catalog of its own when it holds none.
    fn simulation(&self, seed: u64, start: Micros, held: HeldRows<'_>) -> Simulation {
        let loaded = held(ProductUpdate::spec()).iter().filter_map(|row| ProductUpdate::from_row(row).ok()).collect();
        generator::InventoryGenerator::simulation(seed, start, loaded)
    }

    fn topics(&self) -> Vec<KafkaSource> {
        topics::topics()
    }

    fn sinks(&self, topic_prefix: &str) -> Vec<KafkaSink> {
        sinks::inventory_sinks(topic_prefix)
    }
}
