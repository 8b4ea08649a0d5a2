//! Random histories of the pricing inputs, for the checkpoint tests: events of a few
//! products, late, out of order and with gaps longer than the retention, among catalog
//! rows added, updated and deleted, and overrides set, replaced and removed.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::state::PricingInput;
use super::{CatalogProduct, OverrideRemoval, PriceOverride, ProductEvent};
use crate::datum::{F64, MICROS_PER_MINUTE, Micros};

/// The retention the histories are made for: six hours.
pub const RETENTION: Micros = 6 * 60 * MICROS_PER_MINUTE;

const T0: Micros = 1_700_000_000_000_000;
const PRODUCTS: [&str; 3] = ["PA", "PB", "PC"];
/// Event types: the three that count and one that does not.
const KINDS: [&str; 4] = ["view", "cart", "purchase", "click"];

/// One thing that happens to the pricing inputs in a batch. `at` is minutes after the
/// batch's own time (two hours a batch), so it may lie before earlier batches' events.
#[derive(Clone, Debug)]
pub enum Step {
    /// `copies` events of a product.
    Event { product: usize, kind: usize, at: i64, price: u16, copies: isize },
    /// The product's catalog row inserted or updated.
    Catalog { product: usize, price: u16, at: Option<i64> },
    /// The product's catalog row deleted.
    Uncatalog { product: usize },
    /// The product's override set or replaced.
    Override { product: usize, price: u16, at: Option<i64> },
    /// The product's override deleted, and its removal time recorded (as the engine does).
    Unoverride { product: usize, at: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    let product = 0..PRODUCTS.len();
    // Mostly near the batch's time, some far behind it, a few far ahead of it.
    let at = prop_oneof![8 => -180..60i64, 1 => -900..-400i64, 1 => 400..900i64];
    prop_oneof![
        8 => (product.clone(), 0..KINDS.len(), at.clone(), 1..500u16, 1..=2isize)
            .prop_map(|(product, kind, at, price, copies)| Step::Event { product, kind, at, price, copies }),
        2 => (product.clone(), 1..500u16, proptest::option::weighted(0.8, at.clone()))
            .prop_map(|(product, price, at)| Step::Catalog { product, price, at }),
        1 => product.clone().prop_map(|product| Step::Uncatalog { product }),
        2 => (product.clone(), 1..500u16, proptest::option::weighted(0.8, at.clone()))
            .prop_map(|(product, price, at)| Step::Override { product, price, at }),
        // Removed mostly after the events around it, so later events still fall before it.
        2 => (product, -60..300i64).prop_map(|(product, at)| Step::Unoverride { product, at }),
    ]
}

/// Histories of up to 12 batches of up to 8 steps.
pub fn histories() -> impl Strategy<Value = Vec<Vec<Step>>> {
    prop::collection::vec(prop::collection::vec(step(), 0..8), 1..12)
}

/// A price with a fraction, so prices carry all of an f64's bits.
fn price(price: u16) -> F64 {
    F64::new(f64::from(price) * 0.37)
}

/// The updates each batch of `steps` makes, keyed by product: its events, and each table
/// row's net change (a consolidated batch, as the engine writes one).
pub fn batches(steps: &[Vec<Step>]) -> Vec<Vec<((String, PricingInput), isize)>> {
    // The tables: (product, 0 catalog | 1 override | 2 removal) → row.
    let mut tables: BTreeMap<(usize, u8), PricingInput> = BTreeMap::new();
    let mut out = Vec::new();
    for (batch, steps) in steps.iter().enumerate() {
        let time = |at: i64| T0 + (batch as i64 * 120 + at) * MICROS_PER_MINUTE;
        let before = tables.clone();
        let mut updates = Vec::new();
        for step in steps {
            match *step {
                Step::Event { product, kind, at, price: p, copies } => {
                    let event = ProductEvent {
                        event_type: KINDS[kind].into(),
                        product_id: PRODUCTS[product].into(),
                        user_id: Some(format!("u{}", at.rem_euclid(3))),
                        timestamp: time(at),
                        price: price(p),
                    };
                    updates.push(((PRODUCTS[product].to_string(), PricingInput::Event(event)), copies));
                }
                Step::Catalog { product, price: p, at } => {
                    let row = CatalogProduct {
                        product_id: PRODUCTS[product].into(),
                        base_price: price(p),
                        added_at: at.map(time),
                    };
                    tables.insert((product, 0), PricingInput::Catalog(row));
                }
                Step::Uncatalog { product } => {
                    tables.remove(&(product, 0));
                }
                Step::Override { product, price: p, at } => {
                    let row = PriceOverride {
                        product_id: PRODUCTS[product].into(),
                        override_price: price(p),
                        reason: Some("test".into()),
                        set_time: at.map(time),
                    };
                    tables.insert((product, 1), PricingInput::Override(row));
                }
                Step::Unoverride { product, at } => {
                    if tables.remove(&(product, 1)).is_some() {
                        let row = OverrideRemoval { product_id: PRODUCTS[product].into(), removed_at: time(at) };
                        tables.insert((product, 2), PricingInput::Removal(row));
                    }
                }
            }
        }
        for (key, row) in &before {
            if tables.get(key) != Some(row) {
                updates.push(((PRODUCTS[key.0].to_string(), row.clone()), -1));
            }
        }
        for (key, row) in &tables {
            if before.get(key) != Some(row) {
                updates.push(((PRODUCTS[key.0].to_string(), row.clone()), 1));
            }
        }
        out.push(updates);
    }
    out
}
