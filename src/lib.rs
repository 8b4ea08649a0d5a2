//! diffmart: retail, e-commerce and casino views kept up to date incrementally
//! and served over the Postgres wire protocol.
//!
//! The data path runs one way: [`sources`] → the [`engine`]'s ingest → compute (the
//! `diffmart-dataflows` crate, hosted by [`compute`]) → the [`engine`]'s store →
//! [`pgwire`], [`http`] and [`sinks`].
//! [`pipelines`] holds each pipeline's own part of those (generator, topics, sinks,
//! routes), which they take from its registry; [`json`] is the JSON codec they share.
//! [`produce`] is a client: it writes the demo's events to Kafka; [`bench`]
//! measures the engine end to end; [`server`] is the command line's wiring of them all.

pub mod arg_values;
pub mod bench;
pub mod cli;
pub mod client_runtime;
pub mod compute;
pub mod engine;
pub mod http;
pub mod json;
pub mod pgwire;
pub mod pipelines;
pub mod produce;
pub mod server;
pub mod sinks;
pub mod sources;
