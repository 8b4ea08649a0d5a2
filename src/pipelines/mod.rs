//! Each pipeline's server side, one folder per pipeline, and [`PIPELINES`], the
//! registry the generic code iterates (beside `diffmart_dataflows`' registry of the
//! same pipelines' relations and views).
//!
//! A pipeline's folder holds what is its own and nothing generic: `generator.rs` (its
//! simulation), `topics.rs` (the Kafka topics it reads, decoded and encoded in one
//! place over [`crate::json`]), `sinks.rs` (relations it writes to Kafka), `http.rs`
//! (its routes), and whatever else only it needs. It says what it has by implementing
//! [`Pipeline`]; a pipeline without topics, sinks or routes keeps the defaults and
//! has no file for them. The functions below iterate the registry, and the server
//! hands what they return to the generic Kafka sources and sinks, HTTP router and
//! embedded generator, which know no pipeline; the benchmarks and `diffmart produce`
//! use them too.

pub mod casino;
pub mod ecommerce;
pub mod inventory;
pub mod pricing;
pub mod retail;

use axum::Router;
use diffmart_dataflows::datum::{Micros, RelationSpec, Row};
use futures::future::BoxFuture;

use crate::http::api::AppState;
use crate::sinks::kafka::KafkaSink;
use crate::sources::GeneratorConfig;
use crate::sources::kafka::topic::KafkaSource;
use crate::sources::simulation::{HeldRows, MergedEvents, Simulation, nothing_held};

/// What a pipeline brings to the server besides its dataflow.
pub trait Pipeline: Sync {
    /// Its name in `diffmart_dataflows`' registry.
    fn name(&self) -> &'static str;

    /// Its part of the embedded generator, from `start` on. `held`: what its
    /// relations already hold, for a generator that continues from it.
    fn simulation(&self, seed: u64, start: Micros, held: HeldRows<'_>) -> Simulation;

    /// The Kafka topics that feed its input relations with `--kafka-brokers`, and
    /// that `diffmart produce` writes its simulation's events to.
    fn topics(&self) -> Vec<KafkaSource> {
        Vec::new()
    }

    /// Relations it writes to Kafka with `--kafka-brokers`; topic names start with `topic_prefix`.
    fn sinks(&self, topic_prefix: &str) -> Vec<KafkaSink> {
        let _ = topic_prefix;
        Vec::new()
    }

    /// Its HTTP routes, merged into the API's router.
    fn routes(&self) -> Router<AppState> {
        Router::new()
    }

    /// Tables its demo keeps in PostgreSQL for diffmart's CDC to mirror.
    fn postgres_tables(&self) -> Option<&'static dyn PostgresTables> {
        None
    }
}

/// Tables a demo keeps in PostgreSQL, which diffmart mirrors over CDC: `diffmart
/// produce --cdc-url` creates and seeds them, and writes the generated rows of
/// [`PostgresTables::relation`] there instead of to a topic.
pub trait PostgresTables: Sync {
    /// The relation whose generated rows go to PostgreSQL.
    fn relation(&self) -> &'static RelationSpec;

    /// Creates the tables that are missing and seeds them.
    fn prepare<'a>(&'a self, client: &'a tokio_postgres::Client) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Inserts generated rows of [`PostgresTables::relation`].
    fn insert<'a>(&'a self, client: &'a tokio_postgres::Client, rows: &'a [Row]) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Every pipeline, in the order their simulations are seeded (the n-th gets the
/// n-th seed derived from `--generator-seed`): add a pipeline at the end, so the
/// others keep their events.
pub static PIPELINES: [&dyn Pipeline; 5] =
    [&retail::Retail, &ecommerce::Ecommerce, &casino::Casino, &inventory::Inventory, &pricing::Pricing];

/// Every topic diffmart reads with `--kafka-brokers`: each pipeline's
/// ([`Pipeline::topics`]), in registry order.
pub fn kafka_sources() -> Vec<KafkaSource> {
    PIPELINES.iter().flat_map(|pipeline| pipeline.topics()).collect()
}

/// Every pipeline's sinks ([`Pipeline::sinks`]), each topic named with
/// `--kafka-topic-prefix` first.
pub fn kafka_sinks(topic_prefix: &str) -> Vec<KafkaSink> {
    PIPELINES.iter().flat_map(|pipeline| pipeline.sinks(topic_prefix)).collect()
}

/// Every pipeline's HTTP routes ([`Pipeline::routes`]) as one router.
pub fn routes() -> Router<AppState> {
    PIPELINES.iter().fold(Router::new(), |router, pipeline| router.merge(pipeline.routes()))
}

/// Every pipeline's simulation, in registry order. Each gets its own seed derived
/// from the configured one, so adding a pipeline never changes another one's events;
/// the first is seeded with the configured seed itself.
pub fn simulations(config: &GeneratorConfig, held: HeldRows<'_>) -> Vec<Simulation> {
    simulations_of(config, held, |_| true)
}

/// The simulations of the pipelines `include` picks, each seeded as in [`simulations`].
pub fn simulations_of(
    config: &GeneratorConfig,
    held: HeldRows<'_>,
    include: impl Fn(&dyn Pipeline) -> bool,
) -> Vec<Simulation> {
    let seed = |pipeline: u64| config.seed.wrapping_add(pipeline.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..)
        .zip(PIPELINES)
        .filter(|(_, pipeline)| include(*pipeline))
        .map(|(index, pipeline)| pipeline.simulation(seed(index), config.start, held))
        .collect()
}

/// Every pipeline's simulation as one, as the generator runs it: all bootstrap
/// rows, then every pipeline's events merged in event-time order.
pub fn every_pipeline(seed: u64, start: Micros) -> Simulation {
    let simulations = simulations(&GeneratorConfig { seed, start, rate: None, events: None }, &nothing_held);
    let bootstrap = simulations.iter().flat_map(|s| s.bootstrap.iter().cloned()).collect();
    Simulation { bootstrap, events: Box::new(MergedEvents::new(simulations.into_iter().map(|s| s.events))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pipeline_is_a_dataflows_pipeline() {
        let dataflows: Vec<&str> = diffmart_dataflows::pipelines().map(|(name, _, _)| name).collect();
        for pipeline in &PIPELINES {
            assert!(dataflows.contains(&pipeline.name()), "{} has no dataflow", pipeline.name());
        }
    }

    #[test]
    fn topics_feed_input_relations_of_their_own_pipeline() {
        for pipeline in &PIPELINES {
            let (_, inputs, _) =
                diffmart_dataflows::pipelines().find(|(name, _, _)| *name == pipeline.name()).expect("registered");
            for topic in pipeline.topics() {
                assert!(
                    inputs.iter().any(|spec| spec.name == topic.relation.name),
                    "{}: {} feeds {}, not one of its inputs",
                    pipeline.name(),
                    topic.topic,
                    topic.relation.name
                );
                assert!(topic.relation.columns.iter().any(|c| c.name == topic.key_column), "{}", topic.topic);
            }
        }
    }
}
