//! A deterministic stand-in for the KartShoppe inventory demo's producers (seed 002).
//!
//! The demo loads 200 products from `initial-products.json`, then customers check out
//! (one `order-events` message per order line) and, now and then, the shop restocks a
//! product or changes its price (`product-updates`). Here that is a simulation on an
//! event-time clock, like the other generators: the same seed and start give the same
//! rows, in event-time order, and nothing sleeps or reads a clock.
//!
//! - the catalog: 200 products `PROD_0001`..`PROD_0200` of the file's shape (eight
//!   categories, brands, prices, 5..200 units, tags, ratings), drawn from the seed, or
//!   the products already loaded from a `--catalog` file;
//! - orders: about one a second, 1–3 units of a uniformly chosen product; one in 200 names
//!   a product that does not exist (the demo's rejected orders);
//! - restocks: every 20–40 s the product with the least stock of 8 random ones gets 20–100
//!   units; price changes: every 30–90 s a random product moves by −20 % .. +15 %.
//!
//! Product updates carry the whole product, with the inventory the generator expects the
//! pipeline to hold (it follows its own orders, clamped at 0 as the pipeline does).

use diffmart_dataflows::datum::{F64, MICROS_PER_SECOND, Micros, Record};
use diffmart_dataflows::inventory::{OrderEvent, ProductUpdate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sources::simulation::{GeneratedEvent, Simulation};

pub const CATALOG_SIZE: usize = 200;

/// Category, price range in cents, brands, and (product, description) pairs.
type Category = (&'static str, (i64, i64), &'static [&'static str], &'static [(&'static str, &'static str)]);

const CATEGORIES: [Category; 8] = [
    (
        "Electronics",
        (2_999, 249_999),
        &["FutureTech", "InnovateTech", "DigitalCraft", "SmartLife", "TechPro"],
        &[
            ("UltraBook Pro 15", "High-performance laptop with 32GB RAM and 1TB SSD"),
            ("Wireless Noise-Canceling Headphones", "Premium ANC headphones with 30-hour battery"),
            ("4K Webcam", "Ultra HD webcam with auto-focus"),
            ("Tablet Pro 12", "12-inch tablet with stylus support"),
            ("Smart Speaker", "Voice assistant speaker with room-filling sound"),
        ],
    ),
    (
        "Fashion",
        (1_999, 49_999),
        &["LuxeWear", "UrbanTrend", "StyleCraft", "ModernFit", "ClassicStyle"],
        &[
            ("Running Shoes", "Lightweight running shoes with cushioned sole"),
            ("Wool Coat", "Double-breasted winter coat"),
            ("Smart Watch Band", "Breathable sport band"),
            ("Leather Belt", "Full-grain leather belt"),
            ("Denim Jacket", "Classic fit denim jacket"),
        ],
    ),
    (
        "Home & Garden",
        (1_499, 39_999),
        &["GreenLife", "SmartHome", "EcoHome", "ComfortZone", "HomeEssentials"],
        &[
            ("Smart LED Bulbs (4-pack)", "Dimmable color bulbs with app control"),
            ("Smart Thermostat", "Learning thermostat that saves energy"),
            ("Garden Tool Set", "Five stainless steel garden tools"),
            ("Memory Foam Pillow", "Ergonomic pillow for deep sleep"),
            ("Robot Vacuum", "Self-charging vacuum with mapping"),
        ],
    ),
    (
        "Sports",
        (1_999, 59_999),
        &["EndurancePro", "ActiveLife", "FitPro", "PowerGear", "SportMax"],
        &[
            ("Premium Yoga Mat", "Non-slip mat with alignment lines"),
            ("Swimming Goggles", "Anti-fog goggles with UV protection"),
            ("Camping Tent", "Four-person waterproof tent"),
            ("Adjustable Dumbbells", "Space-saving dumbbells from 2 to 24 kg"),
            ("Cycling Helmet", "Ventilated helmet with rear light"),
        ],
    ),
    (
        "Books",
        (999, 6_999),
        &["PageTurner", "KnowledgePress", "BookWorm", "LiteraryGems", "ReadMore"],
        &[
            ("Quantum Reality", "A journey through modern physics"),
            ("World History Atlas", "Illustrated atlas of world history"),
            ("The Art of Cooking", "Recipes and techniques from great chefs"),
            ("Mindful Living", "A practical guide to calm"),
            ("Data Science Handbook", "Tools and methods for data work"),
        ],
    ),
    (
        "Beauty",
        (1_299, 19_999),
        &["BeautyPlus", "PureRadiance", "LuxeBeauty", "GlowUp", "NaturalGlow"],
        &[
            ("Anti-Aging Serum", "Vitamin C serum for radiant skin"),
            ("LED Mirror", "Lighted makeup mirror with three modes"),
            ("Body Care Gift Set", "Lotion, scrub and body wash"),
            ("Hair Dryer", "Ionic dryer with diffuser"),
            ("Perfume Collection", "Three signature scents"),
        ],
    ),
    (
        "Toys",
        (999, 29_999),
        &["KidsJoy", "ToyLand", "PlayTime", "CreativeMinds", "FunFactory"],
        &[
            ("Wooden Train Set", "Fifty-piece wooden railway"),
            ("Remote Control Drone", "Beginner drone with HD camera"),
            ("Building Blocks", "Five hundred colorful blocks"),
            ("Science Kit", "Twenty experiments for young scientists"),
            ("Plush Bear", "Extra soft teddy bear"),
        ],
    ),
    (
        "Food & Grocery",
        (499, 7_999),
        &["FreshPicks", "TasteMakers", "GourmetKitchen", "Artisan Foods", "OrganicChoice"],
        &[
            ("Extra Virgin Olive Oil", "Cold-pressed olive oil"),
            ("Tea Sampler Box", "Twenty teas from around the world"),
            ("Dark Chocolate Collection", "Single-origin chocolate bars"),
            ("Coffee Beans", "Medium roast whole beans"),
            ("Honey Gift Set", "Three raw honeys"),
        ],
    ),
];

const EDITIONS: [&str; 3] = ["", " Pro", " Premium"];

/// The generated catalog, `PROD_0001`..`PROD_0200`, stamped at `start`.
pub fn generated_catalog(seed: u64, start: Micros) -> Vec<ProductUpdate> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..CATALOG_SIZE)
        .map(|i| {
            let (category, (low, high), brands, items) = CATEGORIES[i % CATEGORIES.len()];
            let brand = brands[rng.random_range(0..brands.len())];
            let (item, description) = items[rng.random_range(0..items.len())];
            let edition = EDITIONS[rng.random_range(0..EDITIONS.len())];
            // Prices end in .99, like the file's.
            let cents = rng.random_range(low / 100..=high / 100) * 100 + 99;
            let tags: Vec<String> = item
                .split_whitespace()
                .take(2)
                .map(|w| w.to_lowercase())
                .chain([brand.to_lowercase().replace(' ', ""), category.to_lowercase()])
                .collect();
            ProductUpdate {
                product_id: Some(format!("PROD_{:04}", i + 1)),
                name: Some(format!("{brand} {item}{edition}")),
                description: Some(format!("{description}. Premium quality from {brand}.")),
                price: F64::new(cents as f64 / 100.0),
                category: Some(category.to_string()),
                brand: Some(brand.to_string()),
                image_url: Some(format!("https://picsum.photos/400/300?random={}", i + 1)),
                inventory: rng.random_range(5..=200),
                tags: Some(diffmart_dataflows::datum::canonical_json(&serde_json::json!(tags))),
                rating: Some(F64::new(f64::from(rng.random_range(6..=10u8)) / 2.0)),
                review_count: Some(rng.random_range(0..=500)),
                update_time: start,
                arrival: i as i64,
            }
        })
        .collect()
}

/// The three processes, in tie-breaking order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Process {
    Order,
    Restock,
    PriceChange,
}

const PROCESSES: [Process; 3] = [Process::Order, Process::Restock, Process::PriceChange];

/// An infinite, deterministic stream of `order_events` and `product_updates` rows.
pub struct InventoryGenerator {
    rng: StdRng,
    /// The products as the generator expects the pipeline to hold them.
    products: Vec<ProductUpdate>,
    next_at: [Micros; 3],
    next_order: u64,
    /// `arrival` of the next row (after the catalog's).
    next_arrival: i64,
}

impl InventoryGenerator {
    /// Events over `products` (the catalog, with at least one valid product), from `start`.
    pub fn new(seed: u64, start: Micros, products: Vec<ProductUpdate>) -> InventoryGenerator {
        let products: Vec<ProductUpdate> = products
            .into_iter()
            .filter(|p| p.product_id.as_deref().is_some_and(|id| !id.is_empty()) && p.inventory >= 0)
            .collect();
        let next_arrival = products.iter().map(|p| p.arrival + 1).max().unwrap_or(0);
        InventoryGenerator {
            rng: StdRng::seed_from_u64(seed),
            products,
            next_at: [start, start + 20 * MICROS_PER_SECOND, start + 30 * MICROS_PER_SECOND],
            next_order: 1,
            next_arrival,
        }
    }

    /// This pipeline's part of the embedded generator. With `loaded` products (a
    /// `--catalog` file, already in `product_updates`) it orders those; otherwise it
    /// bootstraps its own catalog.
    pub fn simulation(seed: u64, start: Micros, loaded: Vec<ProductUpdate>) -> Simulation {
        let (bootstrap, products) = if loaded.is_empty() {
            let catalog = generated_catalog(seed, start);
            let rows = catalog
                .iter()
                .map(|p| GeneratedEvent { relation: ProductUpdate::spec().name, row: p.to_row(), event_time: start })
                .collect();
            (rows, catalog)
        } else {
            (Vec::new(), loaded)
        };
        let generator = InventoryGenerator::new(seed.wrapping_add(1), start, products);
        let events: Box<dyn Iterator<Item = GeneratedEvent> + Send> =
            if generator.products.is_empty() { Box::new(std::iter::empty()) } else { Box::new(generator) };
        Simulation { bootstrap, events }
    }

    fn take_arrival(&mut self) -> i64 {
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        arrival
    }

    fn seconds(&mut self, low: f64, high: f64) -> Micros {
        // Whole milliseconds, so the time survives Kafka's millisecond timestamps.
        (self.rng.random_range(low..high) * 1000.0).round() as Micros * 1000
    }

    fn fire(&mut self, process: Process, at: Micros) -> (GeneratedEvent, Micros) {
        match process {
            Process::Order => {
                let quantity = [1, 1, 1, 2, 2, 3][self.rng.random_range(0..6)];
                let unknown = self.rng.random_range(0..200) == 0;
                let index = self.rng.random_range(0..self.products.len());
                let product_id = if unknown {
                    format!("PROD_{:04}", 9000 + index)
                } else {
                    let product = &mut self.products[index];
                    product.inventory = (product.inventory - quantity).max(0);
                    product.product_id.clone().expect("valid products have ids")
                };
                let order = OrderEvent {
                    order_id: Some(format!("ORD-{:08}", self.next_order)),
                    product_id: Some(product_id),
                    quantity: Some(quantity),
                    order_time: at,
                    arrival: self.take_arrival(),
                };
                self.next_order += 1;
                let gap = self.seconds(0.5, 1.5);
                (GeneratedEvent { relation: OrderEvent::spec().name, row: order.to_row(), event_time: at }, gap)
            }
            Process::Restock => {
                let index = (0..8)
                    .map(|_| self.rng.random_range(0..self.products.len()))
                    .min_by_key(|&i| (self.products[i].inventory, i))
                    .expect("eight draws");
                let units = self.rng.random_range(20..=100);
                self.products[index].inventory += units;
                let gap = self.seconds(20.0, 40.0);
                (self.product_event(index, at), gap)
            }
            Process::PriceChange => {
                let index = self.rng.random_range(0..self.products.len());
                let factor = self.rng.random_range(0.8..1.15);
                let cents = (self.products[index].price.get() * factor * 100.0).round().max(1.0);
                self.products[index].price = F64::new(cents / 100.0);
                let gap = self.seconds(30.0, 90.0);
                (self.product_event(index, at), gap)
            }
        }
    }

    fn product_event(&mut self, index: usize, at: Micros) -> GeneratedEvent {
        let arrival = self.take_arrival();
        let product = &mut self.products[index];
        product.update_time = at;
        product.arrival = arrival;
        GeneratedEvent { relation: ProductUpdate::spec().name, row: product.to_row(), event_time: at }
    }
}

impl Iterator for InventoryGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        let i = (0..PROCESSES.len()).min_by_key(|&i| self.next_at[i]).expect("three processes");
        let at = self.next_at[i];
        let (event, gap) = self.fire(PROCESSES[i], at);
        self.next_at[i] = at + gap;
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Micros = 1_748_779_200_000_000;

    #[test]
    fn the_catalog_has_the_files_shape_and_follows_the_seed() {
        let catalog = generated_catalog(1, START);
        assert_eq!(catalog.len(), 200);
        assert_eq!(catalog[0].product_id.as_deref(), Some("PROD_0001"));
        assert_eq!(catalog[199].product_id.as_deref(), Some("PROD_0200"));
        assert!(catalog.iter().all(|p| (5..=200).contains(&p.inventory) && p.price.get() > 0.0));
        assert_eq!(catalog, generated_catalog(1, START));
        assert_ne!(catalog, generated_catalog(2, START));
    }

    #[test]
    fn events_are_ordered_deterministic_and_mixed() {
        let take = |seed| -> Vec<GeneratedEvent> {
            InventoryGenerator::new(seed, START, generated_catalog(seed, START)).take(5_000).collect()
        };
        let events = take(3);
        assert_eq!(events, take(3));
        assert!(events.windows(2).all(|w| w[0].event_time <= w[1].event_time));
        assert!(events.iter().all(|e| e.event_time % 1000 == 0));
        let updates = events.iter().filter(|e| e.relation == "product_updates").count();
        let orders = events.len() - updates;
        // About one order a second, one update every ~20 s.
        assert!(orders > 20 * updates && updates > 50, "{orders} orders, {updates} updates");
        let arrivals: Vec<i64> = events
            .iter()
            .map(|e| match e.relation {
                "order_events" => OrderEvent::from_row(&e.row).unwrap().arrival,
                _ => ProductUpdate::from_row(&e.row).unwrap().arrival,
            })
            .collect();
        assert!(arrivals.windows(2).all(|w| w[0] < w[1]) && arrivals[0] >= 200);
    }
}
