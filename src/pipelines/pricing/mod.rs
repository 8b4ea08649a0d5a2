//! The pricing pipeline (`shared/spec/PIPELINES.md` §E): demand-driven prices per
//! product, overridden over HTTP, published to `price-updates` and a WebSocket.

pub mod generator;
pub mod http;
pub mod sinks;
pub mod topics;

use axum::Router;
use diffmart_dataflows::datum::Micros;

use super::Pipeline;
use crate::http::api::AppState;
use crate::sinks::kafka::KafkaSink;
use crate::sources::kafka::topic::KafkaSource;
use crate::sources::simulation::{HeldRows, Simulation};

pub struct Pricing;

impl Pipeline for Pricing {
    fn name(&self) -> &'static str {
        "pricing"
    }

    fn simulation(&self, seed: u64, start: Micros, _held: HeldRows<'_>) -> Simulation {
        generator::PricingGenerator::simulation(seed, start)
    }

    fn topics(&self) -> Vec<KafkaSource> {
        topics::topics()
    }

    fn sinks(&self, topic_prefix: &str) -> Vec<KafkaSink> {
        vec![sinks::price_updates_sink(&format!("{topic_prefix}price-updates"))]
    }

    fn routes(&self) -> Router<AppState> {
        http::routes()
    }
}
