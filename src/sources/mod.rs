//! Sources: where input events come from: the embedded generator, Kafka topics
//! and PostgreSQL tables (logical replication); they report on themselves
//! through [`status`].

pub mod cdc;
pub mod clock;
pub mod control;
pub mod generator;
pub mod kafka;
pub mod simulation;
pub mod status;

pub use self::clock::now_micros;
pub use self::generator::{Generator, GeneratorConfig, GeneratorSettings, spawn_generator};
pub use self::simulation::{GeneratedEvent, HeldRows, MergedEvents, Simulation, nothing_held};
