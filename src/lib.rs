//! diffmart: retail, e-commerce and casino views kept up to date incrementally
//! and served over the Postgres wire protocol.
//!
//! The data path runs one way: [`sources`] → compute (the `diffmart-dataflows`
//! crate, hosted by [`compute`]) → [`serving`] → [`pgwire`].

pub mod cli;
pub mod compute;
pub mod pgwire;
pub mod serving;
pub mod sources;
