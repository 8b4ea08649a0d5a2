//! The inventory pipeline (`shared/spec/PIPELINES.md` §D, seed 002) through the engine.
//!
//! - the spec's table, rule by rule: a scripted history and the exact events, alerts and
//!   rejections each step must append;
//! - an oracle: random interleavings of product updates and orders over a few products,
//!   in random batches, against a plain sequential fold written from the spec's table
//!   ([`Reference`]), with 1 and 2 workers;
//! - the original catalog file (200 products), queried over pgwire;
//! - retention: the append-only views keep a window, not history;
//! - Kafka (librdkafka's mock cluster): object and array messages, malformed ones, the
//!   sink topics read back as the spec's JSON.
//!
//! Run: `cargo test --release --test inventory`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart::pipelines::Pipeline;
use diffmart::pipelines::inventory::Inventory;
use diffmart::pipelines::inventory::generator::InventoryGenerator;
use diffmart::pipelines::inventory::sinks::inventory_sink_json;
use diffmart::sinks::kafka::KafkaSinks;
use diffmart::sources::kafka::{KafkaConfig, KafkaSources};
use diffmart_dataflows::datum::{Datum, F64, MICROS_PER_MINUTE, Micros, Record, Row};
use diffmart_dataflows::inventory::{OrderEvent, ProductUpdate};
use diffmart_dataflows::system::{SourceError, SourceStatus};
use proptest::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

/// 2025-06-01 12:00:00 UTC.
const T0: Micros = 1_748_779_200_000_000;
const MINUTE: Micros = MICROS_PER_MINUTE;
const CATALOG_FILE: &str = "../shared/data/kartshoppe-initial-products.json";

fn start_engine(workers: usize, retention: Option<Micros>) -> Arc<Engine> {
    let mut config = ComputeConfig { workers, ..Default::default() };
    if let Some(retention) = retention {
        config.pipelines.retention = retention;
    }
    Engine::start(&config).expect("engine starts")
}

fn rows(engine: &Engine, name: &str) -> Vec<Row> {
    let mut rows = engine.snapshot().rows(engine.catalog().id(name).unwrap_or_else(|| panic!("no relation {name}")));
    rows.sort();
    rows
}

/// The rows `after` has beyond `before` (both sorted multisets).
fn appended(before: &[Row], after: &[Row]) -> Vec<Row> {
    let mut counts: BTreeMap<&Row, i64> = BTreeMap::new();
    for row in after {
        *counts.entry(row).or_default() += 1;
    }
    for row in before {
        *counts.entry(row).or_default() -= 1;
    }
    assert!(counts.values().all(|c| *c >= 0), "an append-only view lost rows");
    counts.into_iter().flat_map(|(row, c)| std::iter::repeat_n(row.clone(), c as usize)).collect()
}

// ------------------------------------------------------------------------------------------
// Inputs, written compactly
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Input {
    Update { product: String, name: String, inventory: i32, price: f64, at: Micros },
    Order { order: String, product: String, quantity: i32, at: Micros },
}

fn update(product: &str, inventory: i32, price: f64, at: Micros) -> Input {
    Input::Update { product: product.into(), name: format!("{product} name"), inventory, price, at }
}

fn order(order: &str, product: &str, quantity: i32, at: Micros) -> Input {
    Input::Order { order: order.into(), product: product.into(), quantity, at }
}

fn empty_to_none(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// The input as a row of its relation, `arrival` its position in the whole history.
fn as_update(engine: &Engine, input: &Input, arrival: i64) -> Update {
    match input {
        Input::Update { product, name, inventory, price, at } => {
            let row = ProductUpdate {
                product_id: empty_to_none(product),
                name: empty_to_none(name),
                description: None,
                price: F64::new(*price),
                category: Some("Toys".into()),
                brand: None,
                image_url: None,
                inventory: *inventory,
                tags: None,
                rating: None,
                review_count: None,
                update_time: *at,
                arrival,
            };
            Update::insert(engine.catalog().id("product_updates").unwrap(), row.to_row())
        }
        Input::Order { order, product, quantity, at } => {
            let row = OrderEvent {
                order_id: empty_to_none(order),
                product_id: empty_to_none(product),
                quantity: Some(*quantity),
                order_time: *at,
                arrival,
            };
            Update::insert(engine.catalog().id("order_events").unwrap(), row.to_row())
        }
    }
}

/// Applies the batches in order, numbering inputs across the whole history.
fn apply_batches(engine: &Engine, batches: &[Vec<Input>]) {
    let mut arrival = 0;
    for batch in batches {
        let updates = batch
            .iter()
            .map(|input| {
                arrival += 1;
                as_update(engine, input, arrival)
            })
            .collect();
        engine.apply_blocking(updates).unwrap();
    }
}

fn event(product: &str, kind: &str, inventories: (i32, i32), prices: (f64, f64), at: Micros, reason: &str) -> Row {
    vec![
        product.into(),
        format!("{product} name").into(),
        kind.into(),
        inventories.0.into(),
        inventories.1.into(),
        prices.0.into(),
        prices.1.into(),
        Datum::Timestamp(at),
        reason.into(),
    ]
}

fn alert(kind: &str, product: &str, message: &str, severity: &str, at: Micros) -> Row {
    vec![kind.into(), product.into(), message.into(), severity.into(), Datum::Timestamp(at)]
}

fn rejection(kind: &str, order: Option<&str>, product: Option<&str>, reason: &str, at: Micros) -> Row {
    vec![
        kind.into(),
        order.map(str::to_string).into(),
        product.map(str::to_string).into(),
        reason.into(),
        Datum::Timestamp(at),
    ]
}

// ------------------------------------------------------------------------------------------
// The spec's table, rule by rule
// ------------------------------------------------------------------------------------------

/// One scripted step: a batch, and exactly what it appends to each append-only view.
struct Step {
    rule: &'static str,
    batch: Vec<Input>,
    events: Vec<Row>,
    alerts: Vec<Row>,
    rejections: Vec<Row>,
}

fn step(rule: &'static str, batch: Vec<Input>, events: Vec<Row>, alerts: Vec<Row>) -> Step {
    Step { rule, batch, events, alerts, rejections: Vec::new() }
}

#[test]
fn every_rule_of_the_table() {
    let at = |minute: i64| T0 + minute * MINUTE;
    let n = "A name";
    let steps = vec![
        step(
            "first sighting, in stock",
            vec![update("A", 20, 100.0, at(0))],
            vec![event("A", "PRODUCT_ADDED", (0, 20), (0.0, 100.0), at(0), "Product added")],
            vec![],
        ),
        step(
            "first sighting, low stock",
            vec![update("L", 4, 3.0, at(0))],
            vec![event("L", "PRODUCT_ADDED", (0, 4), (0.0, 3.0), at(0), "Product added")],
            vec![alert("LOW_STOCK", "L", "Low stock: L name has 4 units left", "CRITICAL", at(0))],
        ),
        step(
            "first sighting, out of stock",
            vec![update("Z", 0, 3.0, at(0))],
            vec![event("Z", "PRODUCT_ADDED", (0, 0), (0.0, 3.0), at(0), "Product added")],
            vec![alert("OUT_OF_STOCK", "Z", "Out of stock: Z name", "CRITICAL", at(0))],
        ),
        step(
            "inventory down",
            vec![update("A", 12, 100.0, at(1))],
            vec![event(
                "A",
                "INVENTORY_DECREASED",
                (20, 12),
                (100.0, 100.0),
                at(1),
                "Product update: inventory 20 -> 12",
            )],
            vec![],
        ),
        step(
            "inventory down into low stock (warning)",
            vec![update("A", 7, 100.0, at(2))],
            vec![event(
                "A",
                "INVENTORY_DECREASED",
                (12, 7),
                (100.0, 100.0),
                at(2),
                "Product update: inventory 12 -> 7",
            )],
            vec![alert("LOW_STOCK", "A", &format!("Low stock: {n} has 7 units left"), "WARNING", at(2))],
        ),
        step(
            "inventory up, still low (critical at 5)",
            vec![update("A", 5, 100.0, at(3)), update("A", 6, 100.0, at(3))],
            vec![
                event("A", "INVENTORY_DECREASED", (7, 5), (100.0, 100.0), at(3), "Product update: inventory 7 -> 5"),
                event("A", "INVENTORY_INCREASED", (5, 6), (100.0, 100.0), at(3), "Product update: inventory 5 -> 6"),
            ],
            vec![
                alert("LOW_STOCK", "A", &format!("Low stock: {n} has 5 units left"), "CRITICAL", at(3)),
                alert("LOW_STOCK", "A", &format!("Low stock: {n} has 6 units left"), "WARNING", at(3)),
            ],
        ),
        step(
            "update to 0",
            vec![update("A", 0, 100.0, at(4))],
            vec![event("A", "OUT_OF_STOCK", (6, 0), (100.0, 100.0), at(4), "Product update: inventory 6 -> 0")],
            vec![alert("OUT_OF_STOCK", "A", &format!("Out of stock: {n}"), "CRITICAL", at(4))],
        ),
        step(
            "from 0 to > 0",
            vec![update("A", 3, 100.0, at(5))],
            vec![event("A", "BACK_IN_STOCK", (0, 3), (100.0, 100.0), at(5), "Product update: inventory 0 -> 3")],
            vec![],
        ),
        step(
            "inventory up out of low stock",
            vec![update("A", 40, 100.0, at(6))],
            vec![event(
                "A",
                "INVENTORY_INCREASED",
                (3, 40),
                (100.0, 100.0),
                at(6),
                "Product update: inventory 3 -> 40",
            )],
            vec![],
        ),
        step("a change of at most 0.01 is no change", vec![update("A", 40, 100.004, at(7))], vec![], vec![]),
        step(
            "price down by less than 10 %",
            vec![update("A", 40, 95.0, at(8))],
            vec![event(
                "A",
                "PRICE_CHANGED",
                (40, 40),
                (100.004, 95.0),
                at(8),
                "Product update: price 100.00 -> 95.00",
            )],
            vec![],
        ),
        step(
            "price down by 10 %",
            vec![update("A", 40, 85.5, at(9))],
            vec![event("A", "PRICE_CHANGED", (40, 40), (95.0, 85.5), at(9), "Product update: price 95.00 -> 85.50")],
            vec![alert("PRICE_DROP", "A", &format!("Price drop: {n} from 95.00 to 85.50 (10.0% off)"), "INFO", at(9))],
        ),
        step(
            "price up",
            vec![update("A", 40, 90.0, at(10))],
            vec![event("A", "PRICE_CHANGED", (40, 40), (85.5, 90.0), at(10), "Product update: price 85.50 -> 90.00")],
            vec![],
        ),
        step(
            "order, enough stock",
            vec![order("o1", "A", 2, at(11))],
            vec![event("A", "INVENTORY_DECREASED", (40, 38), (90.0, 90.0), at(11), "Order o1: 2 units sold")],
            vec![],
        ),
        step(
            "order into low stock",
            vec![order("o2", "A", 30, at(12))],
            vec![event("A", "INVENTORY_DECREASED", (38, 8), (90.0, 90.0), at(12), "Order o2: 30 units sold")],
            vec![alert("LOW_STOCK", "A", &format!("Low stock: {n} has 8 units left"), "WARNING", at(12))],
        ),
        step(
            "order of exactly the stock",
            vec![order("o3", "A", 8, at(13))],
            vec![event("A", "INVENTORY_DECREASED", (8, 0), (90.0, 90.0), at(13), "Order o3: 8 units sold")],
            vec![alert("OUT_OF_STOCK", "A", &format!("Out of stock: {n}"), "CRITICAL", at(13))],
        ),
        step(
            "order larger than stock",
            vec![order("o4", "L", 10, at(14))],
            vec![event(
                "L",
                "OUT_OF_STOCK",
                (4, 0),
                (3.0, 3.0),
                at(14),
                "Order o4: Insufficient inventory (ordered: 10, available: 4)",
            )],
            vec![alert("OUT_OF_STOCK", "L", "Out of stock: L name", "CRITICAL", at(14))],
        ),
        Step {
            rule: "unknown product, bad orders and bad updates",
            batch: vec![
                order("o5", "NOPE", 1, at(15)),
                order("o6", "A", 0, at(15)),
                order("", "A", 1, at(15)),
                order("o7", "", 1, at(15)),
                update("", 5, 1.0, at(15)),
                Input::Update { product: "B".into(), name: String::new(), inventory: 5, price: 1.0, at: at(15) },
            ],
            events: vec![],
            alerts: vec![],
            rejections: vec![
                rejection("order", Some("o5"), Some("NOPE"), "Unknown product NOPE", at(15)),
                rejection("order", Some("o6"), Some("A"), "Order o6: quantity must be positive, got 0", at(15)),
                rejection("order", None, Some("A"), "Order without orderId", at(15)),
                rejection("order", Some("o7"), None, "Order o7 without productId", at(15)),
                rejection("product_update", None, None, "Product update without productId", at(15)),
                rejection("product_update", None, Some("B"), "Product update of B without name", at(15)),
            ],
        },
        step(
            "an update that changes neither inventory nor price",
            vec![Input::Update { product: "Z".into(), name: "Z name".into(), inventory: 0, price: 3.0, at: at(16) }],
            vec![],
            vec![],
        ),
        step(
            "no update for an hour: stale, once",
            vec![order("o8", "A", 1, at(74))],
            vec![
                event(
                    "A",
                    "OUT_OF_STOCK",
                    (0, 0),
                    (90.0, 90.0),
                    at(74),
                    "Order o8: Insufficient inventory (ordered: 1, available: 0)",
                ),
                // L's last update was the order at minute 14, Z's the update at 16.
                event("L", "STALE_INVENTORY", (0, 0), (3.0, 3.0), at(74), "No inventory update for 1 hour"),
            ],
            vec![alert("OUT_OF_STOCK", "A", &format!("Out of stock: {n}"), "CRITICAL", at(74))],
        ),
        step(
            "stale later for the others, and not again for L",
            vec![order("o9", "A", 1, at(200))],
            vec![
                event(
                    "A",
                    "OUT_OF_STOCK",
                    (0, 0),
                    (90.0, 90.0),
                    at(200),
                    "Order o9: Insufficient inventory (ordered: 1, available: 0)",
                ),
                event("Z", "STALE_INVENTORY", (0, 0), (3.0, 3.0), at(76), "No inventory update for 1 hour"),
            ],
            vec![alert("OUT_OF_STOCK", "A", &format!("Out of stock: {n}"), "CRITICAL", at(200))],
        ),
    ];
    for workers in [1, 2] {
        let engine = start_engine(workers, None);
        let mut arrival = 0;
        for step in &steps {
            let before = ["inventory_events", "inventory_alerts", "inventory_rejections"].map(|v| rows(&engine, v));
            let updates = step
                .batch
                .iter()
                .map(|input| {
                    arrival += 1;
                    as_update(&engine, input, arrival)
                })
                .collect();
            engine.apply_blocking(updates).unwrap();
            for (i, (view, want)) in [
                ("inventory_events", &step.events),
                ("inventory_alerts", &step.alerts),
                ("inventory_rejections", &step.rejections),
            ]
            .into_iter()
            .enumerate()
            {
                let mut want = want.clone();
                want.sort();
                assert_eq!(
                    appended(&before[i], &rows(&engine, view)),
                    want,
                    "{workers} workers, {}: {view}",
                    step.rule
                );
            }
        }
        let current = rows(&engine, "inventory_current");
        assert_eq!(current.len(), 3, "{current:?}");
        let a: [Datum; 6] = ["A".into(), "A name".into(), "Toys".into(), 90.0.into(), 0.into(), "OUT_OF_STOCK".into()];
        assert_eq!(current[0][..6], a);
        assert_eq!(current[0][6], Datum::Timestamp(at(200)));
        let counts =
            vec![vec![Datum::from("order"), Datum::from(4i64)], vec![Datum::from("product_update"), Datum::from(2i64)]];
        assert_eq!(rows(&engine, "inventory_rejection_counts"), counts);
    }
}

// ------------------------------------------------------------------------------------------
// The oracle: a sequential fold over the same inputs
// ------------------------------------------------------------------------------------------

struct RefProduct {
    name: String,
    price: f64,
    inventory: i32,
    last_update: Micros,
    stale_reported: bool,
}

/// The spec's table as a plain fold over inputs in arrival order, batch after batch.
#[derive(Default)]
struct Reference {
    products: BTreeMap<String, RefProduct>,
    clock: Option<Micros>,
    events: Vec<Row>,
    alerts: Vec<Row>,
    rejections: Vec<Row>,
}

impl Reference {
    fn stock_alert(&mut self, product: &str, name: &str, inventory: i32, at: Micros) {
        if inventory == 0 {
            self.alerts.push(alert("OUT_OF_STOCK", product, &format!("Out of stock: {name}"), "CRITICAL", at));
        } else if inventory < 10 {
            let severity = if inventory <= 5 { "CRITICAL" } else { "WARNING" };
            let message = format!("Low stock: {name} has {inventory} units left");
            self.alerts.push(alert("LOW_STOCK", product, &message, severity, at));
        }
    }

    fn event(&mut self, product: &str, kind: &str, inv: (i32, i32), price: (f64, f64), at: Micros, reason: String) {
        let name = self.products[product].name.clone();
        let mut row = event(product, kind, inv, price, at, &reason);
        row[1] = name.into();
        self.events.push(row);
    }

    fn apply(&mut self, input: &Input) {
        match input.clone() {
            Input::Update { product, name, inventory, price, at } => {
                if product.is_empty() || name.is_empty() {
                    let reason = if product.is_empty() {
                        "Product update without productId".to_string()
                    } else {
                        format!("Product update of {product} without name")
                    };
                    self.rejections.push(rejection(
                        "product_update",
                        None,
                        empty_to_none(&product).as_deref(),
                        &reason,
                        at,
                    ));
                    return;
                }
                let Some(old) = self.products.get(&product) else {
                    let state =
                        RefProduct { name: name.clone(), price, inventory, last_update: at, stale_reported: false };
                    self.products.insert(product.clone(), state);
                    self.event(&product, "PRODUCT_ADDED", (0, inventory), (0.0, price), at, "Product added".into());
                    self.stock_alert(&product, &name, inventory, at);
                    return;
                };
                let (old_inventory, old_price, last) = (old.inventory, old.price, old.last_update);
                let state = RefProduct {
                    name: name.clone(),
                    price,
                    inventory,
                    last_update: last.max(at),
                    stale_reported: false,
                };
                self.products.insert(product.clone(), state);
                if inventory != old_inventory {
                    let kind = if inventory == 0 {
                        "OUT_OF_STOCK"
                    } else if old_inventory == 0 {
                        "BACK_IN_STOCK"
                    } else if inventory < old_inventory {
                        "INVENTORY_DECREASED"
                    } else {
                        "INVENTORY_INCREASED"
                    };
                    let reason = format!("Product update: inventory {old_inventory} -> {inventory}");
                    self.event(&product, kind, (old_inventory, inventory), (old_price, price), at, reason);
                    if kind != "BACK_IN_STOCK" {
                        self.stock_alert(&product, &name, inventory, at);
                    }
                }
                if (price - old_price).abs() > 0.01 {
                    let reason = format!("Product update: price {old_price:.2} -> {price:.2}");
                    self.event(&product, "PRICE_CHANGED", (old_inventory, inventory), (old_price, price), at, reason);
                    let drop = (old_price - price) / old_price;
                    if old_price > 0.0 && drop >= 0.10 {
                        let message =
                            format!("Price drop: {name} from {old_price:.2} to {price:.2} ({:.1}% off)", drop * 100.0);
                        self.alerts.push(alert("PRICE_DROP", &product, &message, "INFO", at));
                    }
                }
            }
            Input::Order { order, product, quantity, at } => {
                let reject = |reason: String| {
                    rejection(
                        "order",
                        empty_to_none(&order).as_deref(),
                        empty_to_none(&product).as_deref(),
                        &reason,
                        at,
                    )
                };
                let reason = if order.is_empty() {
                    Some("Order without orderId".to_string())
                } else if product.is_empty() {
                    Some(format!("Order {order} without productId"))
                } else if quantity <= 0 {
                    Some(format!("Order {order}: quantity must be positive, got {quantity}"))
                } else if !self.products.contains_key(&product) {
                    Some(format!("Unknown product {product}"))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    self.rejections.push(reject(reason));
                    return;
                }
                let state = self.products.get_mut(&product).unwrap();
                let (available, price, name) = (state.inventory, state.price, state.name.clone());
                let (kind, remaining, reason) = if quantity <= available {
                    ("INVENTORY_DECREASED", available - quantity, format!("Order {order}: {quantity} units sold"))
                } else {
                    (
                        "OUT_OF_STOCK",
                        0,
                        format!("Order {order}: Insufficient inventory (ordered: {quantity}, available: {available})"),
                    )
                };
                state.inventory = remaining;
                state.last_update = state.last_update.max(at);
                state.stale_reported = false;
                self.event(&product, kind, (available, remaining), (price, price), at, reason);
                self.stock_alert(&product, &name, remaining, at);
            }
        }
    }

    /// A batch: its inputs in order, then the clock moves and stale products are reported.
    fn batch(&mut self, inputs: &[Input]) {
        for input in inputs {
            self.apply(input);
        }
        let newest = inputs.iter().map(|i| match i {
            Input::Update { at, .. } | Input::Order { at, .. } => *at,
        });
        self.clock = self.clock.into_iter().chain(newest).max();
        let Some(clock) = self.clock else { return };
        let mut stale = Vec::new();
        for (product, state) in &mut self.products {
            if !state.stale_reported && state.last_update + 60 * MINUTE <= clock {
                state.stale_reported = true;
                let (inv, price) = (state.inventory, state.price);
                stale.push((product.clone(), inv, price, state.last_update + 60 * MINUTE));
            }
        }
        for (product, inv, price, at) in stale {
            self.event(
                &product,
                "STALE_INVENTORY",
                (inv, inv),
                (price, price),
                at,
                "No inventory update for 1 hour".into(),
            );
        }
    }

    fn current(&self) -> Vec<Row> {
        self.products
            .iter()
            .map(|(id, p)| {
                let status = match p.inventory {
                    0 => "OUT_OF_STOCK",
                    1..=9 => "LOW_STOCK",
                    _ => "IN_STOCK",
                };
                vec![
                    id.as_str().into(),
                    p.name.as_str().into(),
                    "Toys".into(),
                    p.price.into(),
                    p.inventory.into(),
                    status.into(),
                    Datum::Timestamp(p.last_update),
                ]
            })
            .collect()
    }
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

/// A random history: inputs with non-decreasing times (ties included) over a few products,
/// cut into batches.
fn history() -> impl Strategy<Value = Vec<Vec<Input>>> {
    let product = prop::sample::select(vec!["P1", "P2", "P3", "P4", ""]);
    let input =
        (0..10u8, product, 0..16i32, prop::sample::select(vec![10.0, 9.0, 8.0, 10.005, 12.5]), 0..25i64, 0..4u8)
            .prop_map(|(kind, product, amount, price, gap_minutes, name)| {
                let at = gap_minutes; // turned into a time below
                if kind < 4 {
                    let name =
                        if name == 0 && !product.is_empty() { String::new() } else { format!("{product} v{name}") };
                    Input::Update { product: product.into(), name, inventory: amount, price, at }
                } else {
                    Input::Order {
                        order: format!("o{kind}{amount}"),
                        product: product.into(),
                        quantity: amount - 2,
                        at,
                    }
                }
            });
    (prop::collection::vec(input, 1..80), prop::collection::vec(1..8usize, 1..80)).prop_map(|(inputs, sizes)| {
        let mut time = T0;
        let inputs: Vec<Input> = inputs
            .into_iter()
            .map(|input| match input {
                Input::Update { product, name, inventory, price, at } => {
                    time += at * at * MINUTE / 8;
                    Input::Update { product, name, inventory, price, at: time }
                }
                Input::Order { order, product, quantity, at } => {
                    time += at * at * MINUTE / 8;
                    Input::Order { order, product, quantity, at: time }
                }
            })
            .collect();
        let mut batches = Vec::new();
        let mut rest = &inputs[..];
        for size in sizes.into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, more) = rest.split_at(size.min(rest.len()));
            batches.push(batch.to_vec());
            rest = more;
        }
        batches
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn views_equal_a_sequential_fold(batches in history()) {
        let mut reference = Reference::default();
        for batch in &batches {
            reference.batch(batch);
        }
        for workers in [1, 2] {
            // Nothing expires within these histories (at most about 100 hours).
            let engine = start_engine(workers, Some(1000 * 24 * 60 * MINUTE));
            apply_batches(&engine, &batches);
            prop_assert_eq!(rows(&engine, "inventory_current"), sorted(reference.current()), "{} workers", workers);
            prop_assert_eq!(rows(&engine, "inventory_events"), sorted(reference.events.clone()), "{} workers", workers);
            prop_assert_eq!(rows(&engine, "inventory_alerts"), sorted(reference.alerts.clone()), "{} workers", workers);
            prop_assert_eq!(rows(&engine, "inventory_rejections"), sorted(reference.rejections.clone()), "{} workers", workers);
        }
    }
}

// ------------------------------------------------------------------------------------------
// The catalog file, the generator, retention
// ------------------------------------------------------------------------------------------

fn text(value: &str) -> Option<String> {
    Some(value.to_string())
}

#[test]
fn the_original_catalog_loads_and_is_queryable_over_pgwire() {
    let file: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(CATALOG_FILE).unwrap()).unwrap();
    let low = file.iter().filter(|p| p["inventory"].as_i64().unwrap() < 10).count();
    let engine = start_engine(2, None);
    let loaded =
        diffmart::pipelines::inventory::catalog::load_catalog(&engine, std::path::Path::new(CATALOG_FILE), T0).unwrap();
    assert_eq!(loaded.len(), 200);
    assert_eq!(
        support::query(
            &engine,
            "SELECT count(*), count(DISTINCT category), min(product_id), max(product_id) FROM inventory_current"
        ),
        vec![vec![text("200"), text("8"), text("PROD_0001"), text("PROD_0200")]]
    );
    assert_eq!(
        support::query(
            &engine,
            "SELECT name, price, inventory, status FROM inventory_current WHERE product_id = 'PROD_0001'"
        ),
        vec![vec![text("FutureTech UltraBook Pro 15"), text("1899.99"), text("17"), text("IN_STOCK")]]
    );
    assert_eq!(
        support::query(&engine, "SELECT event_type, count(*) FROM inventory_events GROUP BY event_type"),
        vec![vec![text("PRODUCT_ADDED"), text("200")]]
    );
    assert_eq!(
        support::query(&engine, "SELECT count(*) FROM inventory_alerts WHERE alert_type = 'LOW_STOCK'"),
        vec![vec![Some(low.to_string())]]
    );
    assert!(low > 0, "the file has low-stock products");
    assert_eq!(support::query(&engine, "SELECT count(*) FROM product_updates"), vec![vec![text("200")]]);

    // The generator then orders from the file's products.
    let config = diffmart::sources::GeneratorConfig { seed: 4, start: T0, rate: Some(100_000.0), events: Some(20_000) };
    let held = |spec: &diffmart_dataflows::datum::RelationSpec| {
        diffmart::pipelines::inventory::catalog::held_rows(&loaded, spec)
    };
    let simulations = diffmart::pipelines::simulations(&config, &held);
    diffmart::sources::spawn_generator(engine.clone(), config, simulations).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::query(&engine, "SELECT status FROM diffmart_sources WHERE kind = 'generator'")
        != vec![vec![text("finished")]]
    {
        assert!(Instant::now() < deadline, "the generator did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let orders = support::query(&engine, "SELECT count(*) FROM order_events");
    assert!(orders[0][0].as_deref().unwrap().parse::<i64>().unwrap() > 100, "{orders:?}");
    assert_eq!(support::query(&engine, "SELECT count(*) FROM inventory_current"), vec![vec![text("200")]]);
    // Only the generator's deliberate unknown products are rejected.
    let rejected = support::query(
        &engine,
        "SELECT count(*) FROM inventory_rejections WHERE reason NOT LIKE 'Unknown product PROD_9%'",
    );
    assert_eq!(rejected, vec![vec![text("0")]]);
}

#[test]
fn generated_history_is_the_same_with_one_and_two_workers() {
    let contents = |workers: usize| {
        let engine = start_engine(workers, Some(30 * MINUTE));
        let simulation = InventoryGenerator::simulation(7, T0, Vec::new());
        let id = |name: &str| engine.catalog().id(name).unwrap();
        engine
            .apply_blocking(
                simulation.bootstrap.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect(),
            )
            .unwrap();
        let events: Vec<_> = simulation.events.take(12_000).collect();
        for chunk in events.chunks(211) {
            engine
                .apply_blocking(chunk.iter().map(|e| Update::insert(id(e.relation), e.row.clone())).collect())
                .unwrap();
        }
        [
            "inventory_current",
            "inventory_events",
            "inventory_alerts",
            "inventory_rejections",
            "inventory_rejection_counts",
        ]
        .map(|view| (view, rows(&engine, view)))
    };
    let one = contents(1);
    let two = contents(2);
    for ((view, a), (_, b)) in one.iter().zip(&two) {
        assert!(!a.is_empty(), "{view} is empty: the workload does not exercise it");
        assert!(a == b, "{view} differs between 1 and 2 workers");
    }
    // Over three hours of orders, 30 minutes of events are kept.
    let events = &one[1].1;
    let newest =
        events.iter().filter_map(|r| if let Datum::Timestamp(t) = r[7] { Some(t) } else { None }).max().unwrap();
    let oldest =
        events.iter().filter_map(|r| if let Datum::Timestamp(t) = r[7] { Some(t) } else { None }).min().unwrap();
    // (An event is dated by its input, at most a batch, about 4 minutes, before it was emitted.)
    assert!(newest - oldest <= 35 * MINUTE, "events span {} minutes", (newest - oldest) / MINUTE);
    let kinds: std::collections::BTreeSet<String> = events.iter().map(|r| format!("{:?}", r[2])).collect();
    assert!(kinds.len() >= 3, "{kinds:?}");
}

// ------------------------------------------------------------------------------------------
// Kafka
// ------------------------------------------------------------------------------------------

fn send(producer: &BaseProducer, topic: &str, partition: i32, payload: &str) {
    loop {
        match producer.send(BaseRecord::<str, str>::to(topic).partition(partition).payload(payload)) {
            Ok(()) => return,
            Err((e, _)) => {
                assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(_)), "{e}");
                producer.poll(Duration::from_millis(50));
            }
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn messages_read(engine: &Engine) -> i64 {
    rows(engine, SourceStatus::spec().name)
        .iter()
        .map(|r| SourceStatus::from_row(r).unwrap())
        .filter(|s| s.partition >= 0)
        .map(|s| s.messages)
        .sum()
}

fn product_json(id: &str, inventory: i64, price: f64) -> Value {
    json!({"productId": id, "name": format!("{id} name"), "description": "d", "price": price, "category": "Toys",
           "brand": "KidsJoy", "imageUrl": "u", "inventory": inventory, "tags": ["a", "b"], "rating": 4.5, "reviewCount": 3})
}

#[test]
fn kafka_topics_feed_the_views_and_sinks_write_the_spec_json() {
    let mock = MockCluster::new(1).expect("mock cluster starts");
    for (topic, partitions) in
        [("product-updates", 2), ("order-events", 2), ("inventory-events", 2), ("inventory-alerts", 1)]
    {
        mock.create_topic(topic, partitions, 1).unwrap();
    }
    let brokers = mock.bootstrap_servers();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "1").create().unwrap();
    let engine = start_engine(2, None);
    let sources =
        KafkaSources::start(&engine, KafkaConfig { readers: 2, ..KafkaConfig::new(&brokers) }, Inventory.topics())
            .unwrap();
    let sinks = KafkaSinks::start(&engine, &brokers, &[], Inventory.sinks("")).unwrap();

    // Products: one object, an array (with an empty id inside), and malformed messages.
    let products: Vec<(i32, String)> = vec![
        (0, product_json("K1", 20, 10.0).to_string()),
        (1, json!([product_json("K2", 3, 5.0), product_json("", 1, 1.0), product_json("K3", 50, 2.0)]).to_string()),
        (0, "{not json".into()),
        (1, json!({"productId": "K9", "name": "x", "inventory": 1}).to_string()),
        (0, json!([product_json("K4", 1, 1.0), 7]).to_string()),
    ];
    for (partition, payload) in &products {
        send(&producer, "product-updates", *partition, payload);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    wait_for("the products", || messages_read(&engine) == 5 && rows(&engine, "inventory_current").len() == 3);

    // Orders, after the products exist: good, too large, unknown, bad.
    let order = |id: &str, product: &str, quantity: i64| {
        json!({"orderId": id, "productId": product, "quantity": quantity, "timestamp": T0 / 1000 + 60_000}).to_string()
    };
    let orders: Vec<(i32, String)> = vec![
        (0, order("o1", "K1", 2)),
        (0, order("o2", "K1", 15)),
        (1, order("o3", "K2", 5)),
        (1, order("o4", "NOPE", 1)),
        (0, order("o5", "K3", 0)),
        (1, json!({"orderId": "o6", "productId": "K3", "quantity": 1}).to_string()),
    ];
    for (partition, payload) in &orders {
        send(&producer, "order-events", *partition, payload);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    wait_for("the orders", || messages_read(&engine) == 11);

    let current: BTreeMap<String, (i64, String)> =
        support::query(&engine, "SELECT product_id, inventory, status FROM inventory_current")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), (r[1].as_ref().unwrap().parse().unwrap(), r[2].clone().unwrap())))
            .collect();
    let expected: BTreeMap<String, (i64, String)> = [
        ("K1".to_string(), (3, "LOW_STOCK".to_string())),
        ("K2".to_string(), (0, "OUT_OF_STOCK".to_string())),
        ("K3".to_string(), (50, "IN_STOCK".to_string())),
    ]
    .into();
    assert_eq!(current, expected);
    let reasons: Vec<String> = support::query(&engine, "SELECT reason FROM inventory_rejections ORDER BY reason")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["Order o5: quantity must be positive, got 0", "Product update without productId", "Unknown product NOPE"]
    );
    let mut errors: Vec<(String, String)> = rows(&engine, SourceError::spec().name)
        .iter()
        .map(|r| SourceError::from_row(r).unwrap())
        .map(|e| (e.name, e.error))
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].0 == "order-events" && errors[0].1.contains("missing field \"timestamp\""), "{errors:?}");
    let product_errors: Vec<&str> = errors[1..].iter().map(|(_, e)| e.as_str()).collect();
    assert!(product_errors.iter().any(|e| e.starts_with("invalid JSON")), "{product_errors:?}");
    assert!(product_errors.iter().any(|e| e.contains("missing field \"price\"")), "{product_errors:?}");
    assert!(product_errors.iter().any(|e| e.contains("element 1: expected a product object")), "{product_errors:?}");
    let o2 = support::query(
        &engine,
        "SELECT event_type, previous_inventory, current_inventory FROM inventory_events WHERE change_reason LIKE 'Order o2%'",
    );
    assert_eq!(o2, vec![vec![text("INVENTORY_DECREASED"), text("18"), text("3")]]);

    // The sink topics hold every event and alert, as the spec's JSON.
    let events_spec = engine.catalog().lookup("inventory_events").unwrap().1;
    let alerts_spec = engine.catalog().lookup("inventory_alerts").unwrap().1;
    let mut want: Vec<(String, String)> = rows(&engine, "inventory_events")
        .iter()
        .map(|r| ("inventory-events".to_string(), inventory_sink_json(events_spec, r).to_string()))
        .chain(
            rows(&engine, "inventory_alerts")
                .iter()
                .map(|r| ("inventory-alerts".to_string(), inventory_sink_json(alerts_spec, r).to_string())),
        )
        .collect();
    want.sort();
    let upper = engine.snapshot().upper;
    let counters = sinks.counters.clone();
    wait_for("the sinks to deliver", || {
        counters.written_upper.load(std::sync::atomic::Ordering::Acquire) >= upper
            && counters.delivered.load(std::sync::atomic::Ordering::Acquire) == want.len() as u64
    });
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "inventory-sink-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for (topic, partitions) in [("inventory-events", 2), ("inventory-alerts", 1)] {
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut got: Vec<(String, String)> = Vec::new();
    let mut raw: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want.len() {
        assert!(Instant::now() < deadline, "read {} of {} sink messages", got.len(), want.len());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            got.push((message.topic().to_string(), value.to_string()));
            raw.push(value);
        }
    }
    got.sort();
    assert_eq!(got, want);
    let o1 = raw.iter().find(|v| v["changeReason"] == "Order o1: 2 units sold").expect("o1's event was written");
    assert_eq!(
        *o1,
        json!({"productId": "K1", "productName": "K1 name", "eventType": "INVENTORY_DECREASED", "previousInventory": 20,
               "currentInventory": 18, "previousPrice": 10.0, "currentPrice": 10.0, "timestamp": T0 / 1000 + 60_000,
               "changeReason": "Order o1: 2 units sold"})
    );
    let low =
        raw.iter().find(|v| v["alertType"] == "LOW_STOCK" && v["productId"] == "K1").expect("K1's low stock alert");
    assert_eq!(
        *low,
        json!({"alertType": "LOW_STOCK", "productId": "K1", "message": "Low stock: K1 name has 3 units left",
               "severity": "CRITICAL", "timestamp": T0 / 1000 + 60_000})
    );
    sinks.stop();
    sources.stop();
}
