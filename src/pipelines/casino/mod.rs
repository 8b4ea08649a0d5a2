//! The casino pipeline (`shared/spec/PIPELINES.md` §C): members' bets and wins,
//! their running totals and the offers they earn.

pub mod generator;
pub mod http;
pub mod settings;
pub mod topics;

use axum::Router;
use diffmart_dataflows::datum::Micros;

use super::Pipeline;
use crate::http::api::AppState;
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

    fn routes(&self) -> Router<AppState> {
        http::routes()
    }
}
