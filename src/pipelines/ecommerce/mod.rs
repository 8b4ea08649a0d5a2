//! The e-commerce pipeline (`shared/spec/PIPELINES.md` §B): sessions, funnels and
//! product performance over users' events.

pub mod generator;
pub mod topics;

use diffmart_dataflows::datum::Micros;

use super::Pipeline;
use crate::sources::kafka::topic::KafkaSource;
use crate::sources::simulation::{HeldRows, Simulation};

pub struct Ecommerce;

impl Pipeline for Ecommerce {
    fn name(&self) -> &'static str {
        "ecommerce"
    }

    fn simulation(&self, seed: u64, start: Micros, _held: HeldRows<'_>) -> Simulation {
        generator::simulation(seed, start)
    }

    fn topics(&self) -> Vec<KafkaSource> {
        topics::topics()
    }
}
