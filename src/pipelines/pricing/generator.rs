//! A deterministic stand-in for the pricing demo's `event-producer` (seed 004).
//!
//! The seed says only that the producer is synthetic, uses the static catalog PA..PJ
//! and sends each product's catalog base price as the event price, so that prices move
//! with demand alone. The rest is this generator's own choice, stated here so nobody
//! mistakes it for the original's: products uniformly at random; event types view
//! 70 %, cart 20 %, purchase 10 %; users `user-1`..`user-100`; one event every
//! 0.1–0.9 s of event time (about 2 a second); timestamps in whole milliseconds,
//! as the topic carries them.
//!
//! Like the other generators it is a simulation on an event-time clock: the same
//! seed and start give the same events, in event-time order.

use diffmart_dataflows::datum::{F64, Micros, Record};
use diffmart_dataflows::pricing::{CATALOG, CatalogProduct, ProductEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sources::simulation::{GeneratedEvent, Simulation};

const EVENT_TYPES: [(&str, u32); 3] = [("view", 70), ("cart", 20), ("purchase", 10)];
const USERS: u32 = 100;
/// Gap between events, in milliseconds of event time.
const GAP_MS: std::ops::Range<i64> = 100..900;

/// An infinite, deterministic stream of `product_events` rows in event-time order.
pub struct PricingGenerator {
    rng: StdRng,
    /// Event time of the next event, whole milliseconds.
    next_at: Micros,
}

impl PricingGenerator {
    pub fn new(seed: u64, start: Micros) -> PricingGenerator {
        PricingGenerator { rng: StdRng::seed_from_u64(seed), next_at: start - start.rem_euclid(1000) }
    }

    /// The seed's catalog as `pricing_products` rows, added at `start`.
    pub fn catalog(start: Micros) -> Vec<CatalogProduct> {
        CATALOG
            .iter()
            .map(|(id, price)| CatalogProduct {
                product_id: id.to_string(),
                base_price: F64::new(*price),
                added_at: Some(start),
            })
            .collect()
    }

    /// This pipeline's part of the embedded generator: the catalog, then the events.
    pub fn simulation(seed: u64, start: Micros) -> Simulation {
        let bootstrap = PricingGenerator::catalog(start)
            .iter()
            .map(|p| GeneratedEvent { relation: CatalogProduct::spec().name, row: p.to_row(), event_time: start })
            .collect();
        Simulation { bootstrap, events: Box::new(PricingGenerator::new(seed, start)) }
    }
}

impl Iterator for PricingGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        let at = self.next_at;
        let (product_id, price) = CATALOG[self.rng.random_range(0..CATALOG.len())];
        let mut ticket = self.rng.random_range(0..EVENT_TYPES.iter().map(|(_, w)| w).sum::<u32>());
        let mut event_type = EVENT_TYPES[0].0;
        for (kind, weight) in EVENT_TYPES {
            if ticket < weight {
                event_type = kind;
                break;
            }
            ticket -= weight;
        }
        let user = self.rng.random_range(1..=USERS);
        let event = ProductEvent {
            event_type: event_type.into(),
            product_id: product_id.into(),
            user_id: Some(format!("user-{user}")),
            timestamp: at,
            price: F64::new(price),
        };
        self.next_at = at + self.rng.random_range(GAP_MS) * 1000;
        Some(GeneratedEvent { relation: ProductEvent::spec().name, row: event.to_row(), event_time: at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffmart_dataflows::datum::{MICROS_PER_SECOND, validate_row};
    use std::collections::HashMap;

    const START: Micros = 1_700_000_000_123_456;

    #[test]
    fn events_are_valid_deterministic_and_in_time_order() {
        let take = |seed| PricingGenerator::new(seed, START).take(20_000).collect::<Vec<_>>();
        let events = take(4);
        assert_eq!(events, take(4));
        assert_ne!(events[..50], take(5)[..50]);
        let mut last = 0;
        let mut kinds: HashMap<String, usize> = HashMap::new();
        let mut products: HashMap<String, usize> = HashMap::new();
        for e in &events {
            validate_row(ProductEvent::spec(), &e.row).unwrap();
            let event = ProductEvent::from_row(&e.row).unwrap();
            assert!(e.event_time >= last && event.timestamp == e.event_time);
            assert_eq!(event.timestamp % 1000, 0, "whole milliseconds");
            let base = CATALOG.iter().find(|(id, _)| *id == event.product_id).unwrap().1;
            assert_eq!(event.price.get(), base, "the event price is the catalog price");
            last = e.event_time;
            *kinds.entry(event.event_type).or_default() += 1;
            *products.entry(event.product_id).or_default() += 1;
        }
        let share = |k: &str| kinds[k] as f64 / events.len() as f64;
        assert!((share("view") - 0.7).abs() < 0.02 && (share("cart") - 0.2).abs() < 0.02, "{kinds:?}");
        assert_eq!(products.len(), 10);
        let span = (events.last().unwrap().event_time - events[0].event_time) as f64 / MICROS_PER_SECOND as f64;
        let rate = events.len() as f64 / span;
        assert!((1.9..2.1).contains(&rate), "{rate} events/s");
    }

    #[test]
    fn the_catalog_is_the_seeds() {
        let catalog = PricingGenerator::catalog(START);
        assert_eq!(catalog.len(), 10);
        assert_eq!((catalog[0].product_id.as_str(), catalog[0].base_price.get()), ("PA", 299.0));
        assert_eq!((catalog[9].product_id.as_str(), catalog[9].base_price.get()), ("PJ", 159.0));
        for p in &catalog {
            validate_row(CatalogProduct::spec(), &p.to_row()).unwrap();
        }
    }
}
