//! The casino pipeline (`shared/spec/PIPELINES.md` §C): members' bets and wins,
//! their running totals and the offers they earn.

pub mod generator;
pub mod topics;

use diffmart_dataflows::datum::Micros;

use super::Pipeline;
use crate::sources::kafka::topic::KafkaSource;
use crate::sources::simulation::{HeldRows, Simulation};

pub struct Casino;

impl Pipeline for Casino {
    fn name(&self) -> &'static str {
        "casino"
    }

    fn simulation(&self, seed: u64, start: Micros, _held: HeldRows<'_>) -> Simulation {
        generator::CasinoGenerator::simulation(seed, start)
    }

    fn topics(&self) -> Vec<KafkaSource> {
        topics::topics()
    }
}
