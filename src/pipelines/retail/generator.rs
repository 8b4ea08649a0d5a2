//! A deterministic stand-in for the retail demo's data producers.
//!
//! The original RisingWave "live inventory and dynamic pricing" demo fed Kafka from
//! five Python loops, each sleeping a random time between messages. Here the same
//! five processes run as a discrete-event simulation on a simulated clock: every
//! process keeps the time of its next event, [`RetailGenerator`] hands out the
//! earliest one and then draws that process's next inter-arrival time. Nothing
//! sleeps, reads a clock or does I/O, so a caller decides the pace (real time,
//! as fast as possible, or a fixed number of events) and the same seed and start
//! always give the same events, which is what tests and benchmarks need.
//!
//! Randomness comes from one seeded `StdRng` and only from integer ranges, uniform
//! `f64` ranges and Bernoulli draws, with weighted choices done here on integer
//! weights, so the sequence depends on nothing but `rand`'s generator itself.

use diffmart_dataflows::datum::{MICROS_PER_SECOND, Micros, Record, Row};
use diffmart_dataflows::retail::{CompetitorPrice, Order, ProductInventory, Purchase, Restock, WebClick};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::sources::simulation::GeneratedEvent;

/// A catalog entry: the `product_inventory` row plus how often the demo picks it.
struct Product {
    name: &'static str,
    stock_level: i32,
    reorder_threshold: i32,
    supplier: &'static str,
    /// Base price in cents, so prices stay exact.
    base_cents: i64,
    /// Popularity in hundredths, as the demo listed it; they sum to [`POPULARITY_TOTAL`],
    /// not to 100, so "normalised popularity" is `popularity / POPULARITY_TOTAL`.
    popularity: u32,
}

const fn product(
    name: &'static str,
    stock_level: i32,
    reorder_threshold: i32,
    supplier: &'static str,
    base_cents: i64,
    popularity: u32,
) -> Product {
    Product { name, stock_level, reorder_threshold, supplier, base_cents, popularity }
}

/// The demo's 20 products; product `i + 1` is `PRODUCTS[i]`.
const PRODUCTS: [Product; 20] = [
    product("Wireless Mouse", 150, 50, "TechSupplies Inc.", 1999, 8),
    product("Mechanical Keyboard", 80, 30, "TechSupplies Inc.", 7999, 5),
    product("27-inch Monitor", 40, 15, "ScreenMakers Ltd.", 22999, 3),
    product("USB-C Hub", 120, 40, "ConnectPro", 3499, 10),
    product("External SSD 1TB", 60, 20, "DataSafe Solutions", 9999, 7),
    product("Gaming Headset", 70, 25, "AudioMax", 5999, 6),
    product("Office Chair", 25, 10, "ErgoFurniture Co.", 14999, 2),
    product("Laptop Stand", 90, 30, "WorkEase Ltd.", 2499, 9),
    product("Portable Projector", 35, 10, "VisionTech", 29999, 1),
    product("Smartphone Tripod", 100, 35, "CaptureGear", 1799, 11),
    product("Bluetooth Speaker", 85, 30, "AudioMax", 4999, 7),
    product("4K Webcam", 50, 20, "VisionTech", 8999, 5),
    product("Portable Power Bank", 120, 40, "ChargeUp", 2999, 12),
    product("Wireless Earbuds", 75, 25, "AudioMax", 5999, 8),
    product("Smartwatch", 40, 15, "WearableTech", 17999, 4),
    product("Graphic Tablet", 30, 10, "DesignPro", 13999, 3),
    product("Electric Standing Desk", 20, 5, "ErgoFurniture Co.", 34999, 2),
    product("Noise-Canceling Headphones", 55, 20, "AudioMax", 19999, 6),
    product("HDMI to USB-C Adapter", 110, 40, "ConnectPro", 1499, 10),
    product("Dual Monitor Arm", 45, 15, "ErgoFurniture Co.", 8999, 5),
];

/// Sum of the popularity weights (1.24 in the demo's units).
const POPULARITY_TOTAL: u32 = {
    let mut total = 0;
    let mut i = 0;
    while i < PRODUCTS.len() {
        total += PRODUCTS[i].popularity;
        i += 1;
    }
    total
};

const COMPETITORS: [&str; 4] = ["ShopA", "ShopB", "ShopC", "ShopD"];
const EVENT_TYPES: [(&str, u32); 3] = [("view", 82), ("add_to_cart", 15), ("remove_from_cart", 3)];
const PURCHASE_QUANTITIES: [(i32, u32); 5] = [(1, 60), (2, 20), (3, 10), (5, 7), (10, 3)];
const RESTOCK_BASES: [(i64, u32); 5] = [(10, 50), (20, 30), (50, 10), (100, 7), (200, 3)];
const CUSTOMER_ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The five producers. The declaration order breaks ties between equal next times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Process {
    WebClicks,
    Purchases,
    Restocks,
    CompetitorPrices,
    Orders,
}

const PROCESSES: [Process; 5] =
    [Process::WebClicks, Process::Purchases, Process::Restocks, Process::CompetitorPrices, Process::Orders];

/// An infinite, deterministic stream of retail events with non-decreasing event times.
pub struct RetailGenerator {
    rng: StdRng,
    /// Next event time of each process, indexed like [`PROCESSES`].
    next_at: [Micros; 5],
    /// Last price, in cents, each competitor quoted for each product: prices follow a
    /// random walk, so each quote depends on the previous one.
    competitor_cents: [[i64; 20]; 4],
    next_order_id: i32,
}

impl RetailGenerator {
    /// Every process fires its first event at `start`, as the demo's loops sent
    /// before they first slept.
    pub fn new(seed: u64, start: Micros) -> RetailGenerator {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut competitor_cents = [[0; 20]; 4];
        for quotes in competitor_cents.iter_mut() {
            for (quote, p) in quotes.iter_mut().zip(&PRODUCTS) {
                let base = p.base_cents as f64;
                *quote = (base * (1.0 + rng.random_range(-0.05..0.05))).round() as i64;
            }
        }
        RetailGenerator { rng, next_at: [start; 5], competitor_cents, next_order_id: 1 }
    }

    /// The 20 product_inventory rows (the catalog), to insert before any event.
    pub fn catalog() -> Vec<ProductInventory> {
        PRODUCTS
            .iter()
            .zip(1..)
            .map(|(p, product_id)| ProductInventory {
                product_id,
                product_name: Some(p.name.to_string()),
                stock_level: Some(p.stock_level),
                reorder_threshold: Some(p.reorder_threshold),
                supplier: Some(p.supplier.to_string()),
                base_price: Some(Decimal::new(p.base_cents, 2)),
            })
            .collect()
    }

    /// Event time of the next event `next()` will return.
    pub fn peek_time(&self) -> Micros {
        self.next_at[self.next_process()]
    }

    /// Index of the process due first; `min_by_key` keeps the first of equal times.
    fn next_process(&self) -> usize {
        (0..PROCESSES.len()).min_by_key(|&i| self.next_at[i]).expect("five processes")
    }

    /// The demo picks clicked, bought and restocked products by popularity.
    fn popular_product(&mut self) -> usize {
        let weights = PRODUCTS.map(|p| p.popularity);
        pick_weighted(&mut self.rng, &weights)
    }

    fn any_product(&mut self) -> usize {
        self.rng.random_range(0..PRODUCTS.len())
    }

    fn quantity(&mut self) -> i32 {
        PURCHASE_QUANTITIES[pick_weighted(&mut self.rng, &PURCHASE_QUANTITIES.map(|(_, w)| w))].0
    }

    fn customer_id(&mut self) -> String {
        (0..10).map(|_| char::from(CUSTOMER_ID_CHARS[self.rng.random_range(0..CUSTOMER_ID_CHARS.len())])).collect()
    }

    fn seconds(&mut self, low: f64, high: f64) -> Micros {
        seconds(self.rng.random_range(low..high))
    }

    /// Draws one event of `process` at `t`, then how long until its next one.
    fn fire(&mut self, process: Process, t: Micros) -> (Row, &'static str, Micros) {
        match process {
            Process::WebClicks => {
                let product = self.popular_product();
                let event_type = EVENT_TYPES[pick_weighted(&mut self.rng, &EVENT_TYPES.map(|(_, w)| w))].0;
                // Mostly bursts of clicks, sometimes a lull: about 2.7 clicks a second.
                let gap = if self.rng.random_bool(0.9) { self.seconds(0.1, 0.5) } else { self.seconds(0.5, 1.5) };
                let click = WebClick { event_time: t, product_id: product_id(product), event_type: event_type.into() };
                (click.to_row(), WebClick::spec().name, gap)
            }
            Process::Purchases => {
                let product = self.popular_product();
                let purchase = Purchase {
                    purchase_time: t,
                    product_id: product_id(product),
                    quantity_purchased: self.quantity(),
                    customer_id: self.customer_id(),
                };
                (purchase.to_row(), Purchase::spec().name, MICROS_PER_SECOND)
            }
            Process::Restocks => {
                let product = self.popular_product();
                let base = RESTOCK_BASES[pick_weighted(&mut self.rng, &RESTOCK_BASES.map(|(_, w)| w))].0;
                // floor(base * normalised popularity * 10), in integers so no rounding creeps in.
                let scaled = base * i64::from(PRODUCTS[product].popularity) * 10 / i64::from(POPULARITY_TOTAL);
                let restock = Restock {
                    restock_time: t,
                    product_id: product_id(product),
                    quantity_restocked: scaled.max(5) as i32,
                };
                let d = self.rng.random_range(5..=20) as f64;
                let gap = self.seconds(d, 2.0 * d);
                (restock.to_row(), Restock::spec().name, gap)
            }
            Process::CompetitorPrices => {
                let competitor = self.rng.random_range(0..COMPETITORS.len());
                let product = self.any_product();
                let cents = self.next_competitor_cents(competitor, product);
                let quote = CompetitorPrice {
                    ts: t,
                    product_id: product_id(product),
                    competitor: COMPETITORS[competitor].into(),
                    competitor_price: Decimal::new(cents, 2),
                };
                let gap = self.seconds(2.0, 6.0);
                (quote.to_row(), CompetitorPrice::spec().name, gap)
            }
            Process::Orders => {
                let product = self.any_product();
                let order = Order {
                    order_id: self.next_order_id,
                    order_time: Some(t),
                    product_id: Some(product_id(product)),
                    quantity: Some(self.quantity()),
                    customer_id: Some(self.customer_id()),
                };
                self.next_order_id += 1;
                let gap = self.seconds(0.5, 1.5);
                (order.to_row(), Order::spec().name, gap)
            }
        }
    }

    /// A mean-reverting random walk: a pull of 10 % toward the base price, ±1 % noise,
    /// and a rare ±10 % jump, kept within 60 %..140 % of base. The bounds are taken in
    /// whole cents (rounded inward) after rounding, so a rounded price never leaves them.
    fn next_competitor_cents(&mut self, competitor: usize, product: usize) -> i64 {
        let base = PRODUCTS[product].base_cents;
        let prev = self.competitor_cents[competitor][product] as f64;
        let pull = 0.1 * (base as f64 - prev);
        let step = self.rng.random_range(-0.01..0.01) * prev;
        let mut price = prev + pull + step;
        if self.rng.random_bool(0.03) {
            price *= if self.rng.random_bool(0.5) { 0.9 } else { 1.1 };
        }
        let low = (base * 60 + 99) / 100; // base is positive: this is the ceiling
        let high = base * 140 / 100;
        let cents = (price.round() as i64).clamp(low, high);
        self.competitor_cents[competitor][product] = cents;
        cents
    }
}

impl Iterator for RetailGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        let i = self.next_process();
        let event_time = self.next_at[i];
        let (row, relation, gap) = self.fire(PROCESSES[i], event_time);
        self.next_at[i] = event_time + gap;
        Some(GeneratedEvent { relation, row, event_time })
    }
}

fn product_id(index: usize) -> i32 {
    index as i32 + 1
}

fn seconds(s: f64) -> Micros {
    (s * MICROS_PER_SECOND as f64).round() as Micros
}

/// Index `i` with probability `weights[i] / sum(weights)`.
fn pick_weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let mut ticket = rng.random_range(0..weights.iter().sum::<u32>());
    for (i, &w) in weights.iter().enumerate() {
        if ticket < w {
            return i;
        }
        ticket -= w;
    }
    unreachable!("ticket is below the total weight")
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffmart_dataflows::datum::Datum;
    use std::collections::HashMap;

    const START: Micros = 1_700_000_000 * MICROS_PER_SECOND;

    fn take(seed: u64, n: usize) -> Vec<GeneratedEvent> {
        RetailGenerator::new(seed, START).take(n).collect()
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(take(7, 10_000), take(7, 10_000));
    }

    #[test]
    fn different_seeds_differ() {
        assert_ne!(take(7, 100), take(8, 100));
    }

    #[test]
    fn times_never_go_back_and_peek_agrees() {
        let mut g = RetailGenerator::new(3, START);
        let mut last = START;
        for _ in 0..20_000 {
            let peeked = g.peek_time();
            let e = g.next().unwrap();
            assert_eq!(e.event_time, peeked);
            assert!(e.event_time >= last);
            last = e.event_time;
        }
    }

    #[test]
    fn catalog_is_the_demo_catalog() {
        let catalog = RetailGenerator::catalog();
        assert_eq!(catalog.len(), 20);
        assert_eq!(catalog.iter().map(|p| p.product_id).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
        assert_eq!(catalog[2].product_name.as_deref(), Some("27-inch Monitor"));
        assert_eq!(catalog[16].base_price, Some(Decimal::new(34999, 2)));
        assert!(catalog.iter().all(|p| p.base_price.unwrap().scale() == 2));
        assert_eq!(POPULARITY_TOTAL, 124);
    }

    #[test]
    fn rates_and_prices_are_plausible() {
        let catalog = RetailGenerator::catalog();
        let events = take(42, 100_000);
        let span = (events.last().unwrap().event_time - START) as f64 / MICROS_PER_SECOND as f64;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut order_ids = Vec::new();
        for e in &events {
            *counts.entry(e.relation).or_default() += 1;
            match e.relation {
                "competitor_prices" => {
                    let quote = CompetitorPrice::from_row(&e.row).unwrap();
                    assert_eq!(quote.ts, e.event_time);
                    let base = catalog[quote.product_id as usize - 1].base_price.unwrap();
                    let price = quote.competitor_price;
                    assert_eq!(price.scale(), 2, "{price}");
                    assert!(
                        price >= base * Decimal::new(6, 1) && price <= base * Decimal::new(14, 1),
                        "{price} vs {base}"
                    );
                }
                "orders" => {
                    let order = Order::from_row(&e.row).unwrap();
                    assert_eq!(order.order_time, Some(e.event_time));
                    assert_eq!(order.customer_id.unwrap().len(), 10);
                    order_ids.push(order.order_id);
                }
                "restocks" => {
                    let restock = Restock::from_row(&e.row).unwrap();
                    assert!(restock.quantity_restocked >= 5);
                }
                "web_clicks" => {
                    assert!(
                        matches!(&e.row[2], Datum::Text(t) if ["view", "add_to_cart", "remove_from_cart"].contains(&t.as_str()))
                    );
                }
                "purchases" => {
                    let purchase = Purchase::from_row(&e.row).unwrap();
                    assert!([1, 2, 3, 5, 10].contains(&purchase.quantity_purchased));
                }
                other => panic!("unexpected relation {other}"),
            }
        }
        assert_eq!(order_ids, (1..=order_ids.len() as i32).collect::<Vec<_>>());
        let rate = |r: &str| counts[r] as f64 / span;
        let within = |r: &str, low: f64, high: f64| {
            assert!((low..=high).contains(&rate(r)), "{r}: {} events/s over {span} s", rate(r));
        };
        within("web_clicks", 2.5, 2.9);
        within("purchases", 0.99, 1.01);
        within("orders", 0.95, 1.05);
        within("competitor_prices", 0.22, 0.28);
        within("restocks", 0.04, 0.067);
    }
}
