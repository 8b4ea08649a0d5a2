//! The per-product state machine of the inventory pipeline: one [`InventoryBook`] per
//! timely worker holds the products whose id hashes to it, and applies their product
//! updates and orders in arrival order (see [`arrival_order`]).
//!
//! # Time
//!
//! Logical time is the ingest batch; every batch is applied whole, in batch order.
//! The pipeline's *clock* is the newest event time of any product update or order in
//! the batches applied so far (over all workers: each worker broadcasts its share's
//! maximum, so every worker steps through the same clock). After the events of a batch
//! are applied the clock advances, then:
//!
//! - *stale*: every product whose last update (product update or order) is at least
//!   [`STALE_AFTER`] behind the clock, and that has not been reported since, gets one
//!   STALE_INVENTORY event, dated `last_update + 1 h`; the next update re-arms it;
//! - *retention*: a row of an append-only view (`inventory_events`, `inventory_alerts`,
//!   `inventory_rejections`) emitted when the clock was `C` is retracted once the clock
//!   passes `C + retention`. Each row lives `retention` of pipeline clock, late rows too,
//!   so memory is bounded by the rows of one retention window.
//!
//! Per event the cost is O(log products): a hash map of product states, an ordered set
//! of stale deadlines and a FIFO queue of retained rows. Nothing re-reads history.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::{
    CurrentProduct, InventoryAlert, InventoryEvent, InventoryInput, OrderEvent, ProductUpdate, Rejection, RejectionKind,
};
use crate::datum::{F64, MICROS_PER_MINUTE, Micros};

/// A product with no update for this long (of pipeline clock) is reported stale.
pub const STALE_AFTER: Micros = 60 * MICROS_PER_MINUTE;
/// Inventory below this is low stock (so 1..9 with the spec's numbers).
pub const LOW_STOCK_BELOW: i32 = 10;
/// Low stock at or below this is CRITICAL, above it WARNING.
pub const CRITICAL_AT_OR_BELOW: i32 = 5;
/// A price moves when it changes by more than this.
pub const PRICE_EPSILON: f64 = 0.01;
/// A price drop of at least this share raises PRICE_DROP.
pub const PRICE_DROP_SHARE: f64 = 0.10;

pub mod event_type {
    pub const PRODUCT_ADDED: &str = "PRODUCT_ADDED";
    pub const INVENTORY_DECREASED: &str = "INVENTORY_DECREASED";
    pub const INVENTORY_INCREASED: &str = "INVENTORY_INCREASED";
    pub const OUT_OF_STOCK: &str = "OUT_OF_STOCK";
    pub const BACK_IN_STOCK: &str = "BACK_IN_STOCK";
    pub const PRICE_CHANGED: &str = "PRICE_CHANGED";
    pub const STALE_INVENTORY: &str = "STALE_INVENTORY";
}

pub mod alert_type {
    pub const LOW_STOCK: &str = "LOW_STOCK";
    pub const OUT_OF_STOCK: &str = "OUT_OF_STOCK";
    pub const PRICE_DROP: &str = "PRICE_DROP";
}

pub mod severity {
    pub const CRITICAL: &str = "CRITICAL";
    pub const WARNING: &str = "WARNING";
    pub const INFO: &str = "INFO";
}

/// `status` of `inventory_current`.
pub fn stock_status(inventory: i32) -> &'static str {
    if inventory <= 0 {
        "OUT_OF_STOCK"
    } else if inventory < LOW_STOCK_BELOW {
        "LOW_STOCK"
    } else {
        "IN_STOCK"
    }
}

/// What the book emits: one collection, split into the views afterwards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InventoryChange {
    Current(CurrentProduct),
    Event(InventoryEvent),
    Alert(InventoryAlert),
    Rejection(Rejection),
    /// One per rejected input, never retracted: the all-time count of its kind.
    Rejected(RejectionKind),
}

impl InventoryChange {
    /// The view a change is for, in [`crate::inventory`]'s order of views (see
    /// [`crate::operators::split_by_kind`]).
    pub fn kind(&self) -> usize {
        match self {
            InventoryChange::Current(_) => 0,
            InventoryChange::Event(_) => 1,
            InventoryChange::Alert(_) => 2,
            InventoryChange::Rejection(_) => 3,
            InventoryChange::Rejected(_) => 4,
        }
    }
}

/// One product's state.
#[derive(Clone, Debug, PartialEq)]
struct ProductState {
    name: String,
    category: Option<String>,
    price: f64,
    inventory: i32,
    /// Newest event time of an update or order applied to it.
    last_update: Micros,
    /// Whether STALE_INVENTORY was emitted since the last update.
    reported_stale: bool,
}

impl ProductState {
    fn current(&self, product_id: &str) -> CurrentProduct {
        CurrentProduct {
            product_id: product_id.to_string(),
            name: self.name.clone(),
            category: self.category.clone(),
            price: F64::new(self.price),
            inventory: self.inventory,
            status: stock_status(self.inventory).to_string(),
            last_update: self.last_update,
        }
    }

    fn stale_deadline(&self) -> Micros {
        self.last_update.saturating_add(STALE_AFTER)
    }
}

/// The state of the products of one worker (see the module documentation).
#[derive(Debug)]
pub struct InventoryBook {
    retention: Micros,
    clock: Option<Micros>,
    products: HashMap<String, ProductState>,
    /// (deadline, product) of every product not yet reported stale.
    stale_deadlines: BTreeSet<(Micros, String)>,
    /// Rows of the append-only views, oldest first, with the clock they were emitted at.
    retained: VecDeque<(Micros, RetainedRow)>,
}

/// A retained row, serialized: kept only to be retracted when it expires, and a
/// retention window holds one per inventory event. As a value it took a 136-byte slot
/// (the size of the largest variant) and a heap string per text column; serialized
/// (bincode, variable-length integers) it is one allocation of about its text.
#[derive(Debug)]
struct RetainedRow(Box<[u8]>);

impl RetainedRow {
    fn options() -> impl Options {
        bincode::DefaultOptions::new()
    }

    fn new(change: &InventoryChange) -> RetainedRow {
        let bytes = Self::options().serialize(change).expect("an inventory row serializes");
        RetainedRow(bytes.into_boxed_slice())
    }

    fn change(&self) -> InventoryChange {
        Self::options().deserialize(&self.0).expect("a retained row deserializes as it was serialized")
    }
}

impl InventoryBook {
    /// A book whose append-only rows live `retention` (≥ 0) of pipeline clock.
    pub fn new(retention: Micros) -> InventoryBook {
        InventoryBook {
            retention: retention.max(0),
            clock: None,
            products: HashMap::new(),
            stale_deadlines: BTreeSet::new(),
            retained: VecDeque::new(),
        }
    }

    /// Rows of the append-only views currently held (for tests of memory bounds).
    pub fn retained_rows(&self) -> usize {
        self.retained.len()
    }

    pub fn clock(&self) -> Option<Micros> {
        self.clock
    }

    /// Applies one complete batch: `inputs` are this worker's share, `batch_max` the
    /// newest event time in the whole batch. Pushes the views' changes to `out`.
    pub fn process(
        &mut self,
        inputs: Vec<(InventoryInput, isize)>,
        batch_max: Option<Micros>,
        out: &mut Vec<(InventoryChange, isize)>,
    ) {
        // `inventory_current` rows of the products this batch touches, before it.
        let mut before: BTreeMap<String, Option<CurrentProduct>> = BTreeMap::new();
        let mut appended: Vec<InventoryChange> = Vec::new();
        for input in arrival_order(inputs) {
            let product_id = match &input {
                InventoryInput::Update(u) => non_empty(&u.product_id),
                InventoryInput::Order(o) => non_empty(&o.product_id),
            };
            if let Some(id) = product_id
                && !before.contains_key(id)
            {
                before.insert(id.to_string(), self.products.get(id).map(|s| s.current(id)));
            }
            self.apply(input, &mut appended);
        }
        // Staleness and expiry follow the clock, which the batch has now moved.
        self.clock = self.clock.max(batch_max);
        if let Some(clock) = self.clock {
            self.report_stale(clock, &mut appended);
        }
        for (product_id, old) in before {
            let new = self.products.get(&product_id).map(|s| s.current(&product_id));
            if old != new {
                out.extend(old.map(|row| (InventoryChange::Current(row), -1)));
                out.extend(new.map(|row| (InventoryChange::Current(row), 1)));
            }
        }
        let emitted_at = self.clock.unwrap_or(Micros::MIN);
        for change in appended {
            if let InventoryChange::Rejection(rejection) = &change {
                out.push((InventoryChange::Rejected(rejection.kind), 1));
            }
            self.retained.push_back((emitted_at, RetainedRow::new(&change)));
            out.push((change, 1));
        }
        if let Some(clock) = self.clock {
            let horizon = clock.saturating_sub(self.retention);
            while self.retained.front().is_some_and(|(at, _)| *at < horizon) {
                let (_, row) = self.retained.pop_front().expect("non-empty");
                out.push((row.change(), -1));
            }
        }
    }

    /// Applies one input, pushing the rows it appends to the event, alert and rejection views.
    fn apply(&mut self, input: InventoryInput, out: &mut Vec<InventoryChange>) {
        match input {
            InventoryInput::Update(update) => match validate_update(&update).map(str::to_string) {
                Err(reason) => out.push(InventoryChange::Rejection(Rejection {
                    kind: RejectionKind::ProductUpdate,
                    order_id: None,
                    product_id: update.product_id.clone(),
                    reason,
                    event_time: update.update_time,
                })),
                Ok(product_id) => self.apply_update(&product_id, update, out),
            },
            InventoryInput::Order(order) => {
                let valid = validate_order(&order).map(|(o, p, q)| (o.to_string(), p.to_string(), q));
                match valid {
                    Err(reason) => out.push(order_rejection(&order, reason)),
                    Ok((_, product_id, _)) if !self.products.contains_key(&product_id) => {
                        out.push(order_rejection(&order, format!("Unknown product {product_id}")));
                    }
                    Ok((order_id, product_id, quantity)) => {
                        self.apply_order(&product_id, &order_id, quantity, order.order_time, out)
                    }
                }
            }
        }
    }

    fn apply_update(&mut self, product_id: &str, update: ProductUpdate, out: &mut Vec<InventoryChange>) {
        let name = update.name.clone().unwrap_or_default();
        let (price, inventory, at) = (update.price.get(), update.inventory, update.update_time);
        let Some(state) = self.products.get_mut(product_id) else {
            let state = ProductState {
                name,
                category: update.category,
                price,
                inventory,
                last_update: at,
                reported_stale: false,
            };
            let reason = "Product added".to_string();
            out.push(event(
                product_id,
                &state.name,
                event_type::PRODUCT_ADDED,
                (0, inventory),
                (0.0, price),
                at,
                reason,
            ));
            stock_alerts(product_id, &state.name, inventory, at, out);
            self.stale_deadlines.insert((state.stale_deadline(), product_id.to_string()));
            self.products.insert(product_id.to_string(), state);
            return;
        };
        self.stale_deadlines.remove(&(state.stale_deadline(), product_id.to_string()));
        let (old_inventory, old_price) = (state.inventory, state.price);
        state.name = name;
        state.category = update.category;
        state.price = price;
        state.inventory = inventory;
        state.last_update = state.last_update.max(at);
        state.reported_stale = false;
        self.stale_deadlines.insert((state.stale_deadline(), product_id.to_string()));
        let inventories = (old_inventory, inventory);
        let prices = (old_price, price);
        let name = state.name.as_str();
        if inventory != old_inventory {
            let kind = if inventory == 0 {
                event_type::OUT_OF_STOCK
            } else if old_inventory == 0 {
                event_type::BACK_IN_STOCK
            } else if inventory < old_inventory {
                event_type::INVENTORY_DECREASED
            } else {
                event_type::INVENTORY_INCREASED
            };
            let reason = format!("Product update: inventory {old_inventory} -> {inventory}");
            out.push(event(product_id, name, kind, inventories, prices, at, reason));
            // Back in stock raises nothing, even when it lands in low stock (the spec's table).
            if kind != event_type::BACK_IN_STOCK {
                stock_alerts(product_id, name, inventory, at, out);
            }
        }
        if (price - old_price).abs() > PRICE_EPSILON {
            let reason = format!("Product update: price {old_price:.2} -> {price:.2}");
            out.push(event(product_id, name, event_type::PRICE_CHANGED, inventories, prices, at, reason));
            if old_price > 0.0 && (old_price - price) / old_price >= PRICE_DROP_SHARE {
                let share = (old_price - price) / old_price * 100.0;
                out.push(InventoryChange::Alert(InventoryAlert {
                    alert_type: alert_type::PRICE_DROP.into(),
                    product_id: product_id.into(),
                    message: format!("Price drop: {name} from {old_price:.2} to {price:.2} ({share:.1}% off)"),
                    severity: severity::INFO.into(),
                    alert_time: at,
                }));
            }
        }
    }

    fn apply_order(
        &mut self,
        product_id: &str,
        order_id: &str,
        quantity: i32,
        at: Micros,
        out: &mut Vec<InventoryChange>,
    ) {
        let state = self.products.get_mut(product_id).expect("orders of unknown products are rejected first");
        self.stale_deadlines.remove(&(state.stale_deadline(), product_id.to_string()));
        let available = state.inventory;
        let (kind, remaining, reason) = if quantity <= available {
            (event_type::INVENTORY_DECREASED, available - quantity, format!("Order {order_id}: {quantity} units sold"))
        } else {
            let reason =
                format!("Order {order_id}: Insufficient inventory (ordered: {quantity}, available: {available})");
            (event_type::OUT_OF_STOCK, 0, reason)
        };
        state.inventory = remaining;
        state.last_update = state.last_update.max(at);
        state.reported_stale = false;
        self.stale_deadlines.insert((state.stale_deadline(), product_id.to_string()));
        let name = state.name.as_str();
        out.push(event(product_id, name, kind, (available, remaining), (state.price, state.price), at, reason));
        stock_alerts(product_id, name, remaining, at, out);
    }

    /// STALE_INVENTORY for every product whose deadline the clock has reached.
    fn report_stale(&mut self, clock: Micros, out: &mut Vec<InventoryChange>) {
        while let Some((deadline, _)) = self.stale_deadlines.first() {
            if *deadline > clock {
                break;
            }
            let (deadline, product_id) = self.stale_deadlines.pop_first().expect("non-empty");
            let state = self.products.get_mut(&product_id).expect("deadlines belong to known products");
            state.reported_stale = true;
            let reason = "No inventory update for 1 hour".to_string();
            let (inventory, price) = (state.inventory, state.price);
            out.push(event(
                &product_id,
                &state.name,
                event_type::STALE_INVENTORY,
                (inventory, inventory),
                (price, price),
                deadline,
                reason,
            ));
        }
    }
}

fn event(
    product_id: &str,
    name: &str,
    kind: &str,
    (previous_inventory, current_inventory): (i32, i32),
    (previous_price, current_price): (f64, f64),
    event_time: Micros,
    change_reason: String,
) -> InventoryChange {
    InventoryChange::Event(InventoryEvent {
        product_id: product_id.into(),
        product_name: name.into(),
        event_type: kind.into(),
        previous_inventory,
        current_inventory,
        previous_price: F64::new(previous_price),
        current_price: F64::new(current_price),
        event_time,
        change_reason,
    })
}

/// OUT_OF_STOCK at 0, LOW_STOCK in 1..9 (CRITICAL at or below 5, else WARNING).
fn stock_alerts(product_id: &str, name: &str, inventory: i32, at: Micros, out: &mut Vec<InventoryChange>) {
    let (kind, severity, message) = if inventory <= 0 {
        (alert_type::OUT_OF_STOCK, severity::CRITICAL, format!("Out of stock: {name}"))
    } else if inventory < LOW_STOCK_BELOW {
        let severity = if inventory <= CRITICAL_AT_OR_BELOW { severity::CRITICAL } else { severity::WARNING };
        (alert_type::LOW_STOCK, severity, format!("Low stock: {name} has {inventory} units left"))
    } else {
        return;
    };
    out.push(InventoryChange::Alert(InventoryAlert {
        alert_type: kind.into(),
        product_id: product_id.into(),
        message,
        severity: severity.into(),
        alert_time: at,
    }));
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.trim().is_empty())
}

/// The product id of a valid update, or why it is rejected.
fn validate_update(update: &ProductUpdate) -> Result<&str, String> {
    let product_id = non_empty(&update.product_id).ok_or("Product update without productId")?;
    non_empty(&update.name).ok_or_else(|| format!("Product update of {product_id} without name"))?;
    if update.inventory < 0 {
        return Err(format!("Product update of {product_id}: negative inventory {}", update.inventory));
    }
    if !update.price.get().is_finite() || update.price.get() < 0.0 {
        return Err(format!("Product update of {product_id}: invalid price {}", update.price.get()));
    }
    Ok(product_id)
}

/// (order id, product id, quantity) of a valid order, or why it is rejected.
fn validate_order(order: &OrderEvent) -> Result<(&str, &str, i32), String> {
    let order_id = non_empty(&order.order_id).ok_or("Order without orderId")?;
    let product_id = non_empty(&order.product_id).ok_or_else(|| format!("Order {order_id} without productId"))?;
    match order.quantity {
        Some(quantity) if quantity > 0 => Ok((order_id, product_id, quantity)),
        Some(quantity) => Err(format!("Order {order_id}: quantity must be positive, got {quantity}")),
        None => Err(format!("Order {order_id} without quantity")),
    }
}

fn order_rejection(order: &OrderEvent, reason: String) -> InventoryChange {
    InventoryChange::Rejection(Rejection {
        kind: RejectionKind::Order,
        order_id: order.order_id.clone(),
        product_id: order.product_id.clone(),
        reason,
        event_time: order.order_time,
    })
}

/// The order in which one batch's inputs are applied.
///
/// Each source keeps its own order (`arrival`: Kafka offset order within a partition,
/// the generator's sequence): product updates in `arrival` order, orders in `arrival`
/// order. The two streams are merged by event time; on equal times the smaller
/// `arrival` goes first, then the product update. A row repeated `n` times (its
/// difference) is applied `n` times; retractions are ignored, as both inputs are
/// append-only sources that nothing can retract.
pub fn arrival_order(inputs: Vec<(InventoryInput, isize)>) -> Vec<InventoryInput> {
    let mut updates = Vec::new();
    let mut orders = Vec::new();
    for (input, diff) in inputs {
        // Moves the input in (the usual single copy); further copies are clones.
        for copy in std::iter::repeat_n(input, diff.max(0) as usize) {
            match copy {
                InventoryInput::Update(u) => updates.push(u),
                InventoryInput::Order(o) => orders.push(o),
            }
        }
    }
    // Ties on `arrival` (two partitions, or one message twice) fall back to the whole row.
    updates.sort_by(|a, b| a.arrival.cmp(&b.arrival).then_with(|| a.cmp(b)));
    orders.sort_by(|a, b| a.arrival.cmp(&b.arrival).then_with(|| a.cmp(b)));
    let mut merged = Vec::with_capacity(updates.len() + orders.len());
    let (mut updates, mut orders) = (updates.into_iter().peekable(), orders.into_iter().peekable());
    loop {
        let take_update = match (updates.peek(), orders.peek()) {
            (Some(u), Some(o)) => (u.update_time, u.arrival) <= (o.order_time, o.arrival),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_update {
            merged.push(InventoryInput::Update(updates.next().expect("peeked")));
        } else {
            merged.push(InventoryInput::Order(orders.next().expect("peeked")));
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Micros = 1_748_779_200_000_000;
    const MINUTE: Micros = MICROS_PER_MINUTE;

    /// A retained row comes back exactly as it was emitted, so its retraction cancels it.
    #[test]
    fn retained_rows_round_trip() {
        let changes = [
            InventoryChange::Event(InventoryEvent {
                product_id: "P1".into(),
                product_name: "Name — ünïcode".into(),
                event_type: event_type::PRICE_CHANGED.into(),
                previous_inventory: -3,
                current_inventory: i32::MAX,
                previous_price: F64::new(0.1 + 0.2),
                current_price: F64::new(-1e300),
                event_time: Micros::MIN,
                change_reason: String::new(),
            }),
            InventoryChange::Alert(InventoryAlert {
                alert_type: alert_type::LOW_STOCK.into(),
                product_id: "P2".into(),
                message: "x".repeat(300),
                severity: severity::CRITICAL.into(),
                alert_time: T0,
            }),
            InventoryChange::Rejection(Rejection {
                kind: RejectionKind::Order,
                order_id: Some("O1".into()),
                product_id: None,
                reason: "quantity must be positive".into(),
                event_time: -1,
            }),
        ];
        for change in changes {
            let back = RetainedRow::new(&change).change();
            assert_eq!(back, change);
            assert_eq!(format!("{back:?}"), format!("{change:?}"));
        }
    }

    fn product(id: &str, inventory: i32, price: f64, at: Micros) -> InventoryInput {
        InventoryInput::Update(ProductUpdate {
            product_id: Some(id.into()),
            name: Some(format!("Name of {id}")),
            description: None,
            price: F64::new(price),
            category: Some("Toys".into()),
            brand: None,
            image_url: None,
            inventory,
            tags: None,
            rating: None,
            review_count: None,
            update_time: at,
            arrival: at,
        })
    }

    fn order(id: &str, product: &str, quantity: i32, at: Micros) -> InventoryInput {
        InventoryInput::Order(OrderEvent {
            order_id: Some(id.into()),
            product_id: Some(product.into()),
            quantity: Some(quantity),
            order_time: at,
            arrival: at,
        })
    }

    /// One batch through a book; the changes it emits.
    fn run(book: &mut InventoryBook, inputs: Vec<InventoryInput>) -> Vec<(InventoryChange, isize)> {
        let max = inputs
            .iter()
            .map(|i| match i {
                InventoryInput::Update(u) => u.update_time,
                InventoryInput::Order(o) => o.order_time,
            })
            .max();
        let mut out = Vec::new();
        book.process(inputs.into_iter().map(|i| (i, 1)).collect(), max, &mut out);
        out
    }

    fn events(changes: &[(InventoryChange, isize)]) -> Vec<(String, i32, i32, String)> {
        changes
            .iter()
            .filter_map(|(c, d)| match c {
                InventoryChange::Event(e) if *d > 0 => {
                    Some((e.event_type.clone(), e.previous_inventory, e.current_inventory, e.change_reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn alerts(changes: &[(InventoryChange, isize)]) -> Vec<(String, String)> {
        changes
            .iter()
            .filter_map(|(c, d)| match c {
                InventoryChange::Alert(a) if *d > 0 => Some((a.alert_type.clone(), a.severity.clone())),
                _ => None,
            })
            .collect()
    }

    fn kinds(changes: &[(InventoryChange, isize)]) -> Vec<String> {
        events(changes).into_iter().map(|e| e.0).collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn first_sighting_adds_the_product_with_its_stock_alert() {
        let mut book = InventoryBook::new(24 * 60 * MINUTE);
        let out = run(&mut book, vec![product("A", 20, 10.0, T0), product("B", 0, 5.0, T0), product("C", 5, 1.0, T0)]);
        let mut added = events(&out);
        added.sort();
        assert_eq!(
            added.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect::<Vec<_>>(),
            vec![("PRODUCT_ADDED", 0, 0), ("PRODUCT_ADDED", 0, 5), ("PRODUCT_ADDED", 0, 20)]
        );
        let mut raised = alerts(&out);
        raised.sort();
        assert_eq!(raised, vec![pair("LOW_STOCK", "CRITICAL"), pair("OUT_OF_STOCK", "CRITICAL")]);
        let prices: Vec<(f64, f64)> = out
            .iter()
            .filter_map(|(c, _)| match c {
                InventoryChange::Event(e) if e.product_id == "A" => {
                    Some((e.previous_price.get(), e.current_price.get()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(prices, vec![(0.0, 10.0)]);
    }

    #[test]
    fn updates_follow_the_table() {
        let mut book = InventoryBook::new(24 * 60 * MINUTE);
        run(&mut book, vec![product("A", 20, 100.0, T0)]);
        let step = |book: &mut InventoryBook, inventory, price, minute| {
            run(book, vec![product("A", inventory, price, T0 + minute * MINUTE)])
        };
        let out = step(&mut book, 15, 100.0, 1);
        assert_eq!(kinds(&out), vec!["INVENTORY_DECREASED"]);
        assert!(alerts(&out).is_empty());
        let out = step(&mut book, 7, 100.0, 2);
        assert_eq!(
            (kinds(&out), alerts(&out)),
            (vec!["INVENTORY_DECREASED".into()], vec![pair("LOW_STOCK", "WARNING")])
        );
        let out = step(&mut book, 9, 100.0, 3);
        assert_eq!(
            (kinds(&out), alerts(&out)),
            (vec!["INVENTORY_INCREASED".into()], vec![pair("LOW_STOCK", "WARNING")])
        );
        let out = step(&mut book, 5, 100.0, 4);
        assert_eq!(alerts(&out), vec![pair("LOW_STOCK", "CRITICAL")]);
        let out = step(&mut book, 0, 100.0, 5);
        assert_eq!((kinds(&out), alerts(&out)), (vec!["OUT_OF_STOCK".into()], vec![pair("OUT_OF_STOCK", "CRITICAL")]));
        let out = step(&mut book, 3, 100.0, 6);
        assert_eq!((kinds(&out), alerts(&out)), (vec!["BACK_IN_STOCK".into()], vec![]));
        let out = step(&mut book, 30, 100.0, 7);
        assert_eq!((kinds(&out), alerts(&out)), (vec!["INVENTORY_INCREASED".into()], vec![]));
        // Prices: 0.01 is no change; a 5 % drop is a change; a 10 % drop alerts.
        let out = step(&mut book, 30, 99.995, 8);
        assert!(kinds(&out).is_empty() && alerts(&out).is_empty(), "{out:?}");
        let out = step(&mut book, 30, 95.0, 9);
        assert_eq!((kinds(&out), alerts(&out)), (vec!["PRICE_CHANGED".into()], vec![]));
        let out = step(&mut book, 30, 85.5, 10);
        assert_eq!((kinds(&out), alerts(&out)), (vec!["PRICE_CHANGED".into()], vec![pair("PRICE_DROP", "INFO")]));
        let out = step(&mut book, 30, 120.0, 11);
        assert_eq!((kinds(&out), alerts(&out)), (vec!["PRICE_CHANGED".into()], vec![]));
        // Both at once: the inventory event, then the price event.
        let out = step(&mut book, 8, 60.0, 12);
        assert_eq!(kinds(&out), vec!["INVENTORY_DECREASED", "PRICE_CHANGED"]);
        assert_eq!(alerts(&out), vec![pair("LOW_STOCK", "WARNING"), pair("PRICE_DROP", "INFO")]);
    }

    #[test]
    fn a_no_op_update_emits_no_event_or_alert() {
        let mut book = InventoryBook::new(24 * 60 * MINUTE);
        run(&mut book, vec![product("A", 20, 100.0, T0)]);
        let out = run(&mut book, vec![product("A", 20, 100.005, T0 + MINUTE)]);
        assert!(events(&out).is_empty() && alerts(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn orders_deduct_clamp_and_reject() {
        let mut book = InventoryBook::new(24 * 60 * MINUTE);
        run(&mut book, vec![product("A", 17, 10.0, T0)]);
        let out = run(&mut book, vec![order("o1", "A", 2, T0 + 1)]);
        assert_eq!(events(&out), vec![("INVENTORY_DECREASED".into(), 17, 15, "Order o1: 2 units sold".into())]);
        assert!(alerts(&out).is_empty());
        let out = run(&mut book, vec![order("o2", "A", 9, T0 + 2)]);
        assert_eq!(alerts(&out), vec![pair("LOW_STOCK", "WARNING")]);
        let out = run(&mut book, vec![order("o3", "A", 6, T0 + 3)]);
        assert_eq!(events(&out), vec![("INVENTORY_DECREASED".into(), 6, 0, "Order o3: 6 units sold".into())]);
        assert_eq!(alerts(&out), vec![pair("OUT_OF_STOCK", "CRITICAL")]);
        run(&mut book, vec![product("A", 4, 10.0, T0 + 4)]);
        let out = run(&mut book, vec![order("o4", "A", 10, T0 + 5)]);
        assert_eq!(
            events(&out),
            vec![("OUT_OF_STOCK".into(), 4, 0, "Order o4: Insufficient inventory (ordered: 10, available: 4)".into())]
        );
        assert_eq!(alerts(&out), vec![pair("OUT_OF_STOCK", "CRITICAL")]);
        let out = run(
            &mut book,
            vec![order("o5", "nope", 1, T0 + 6), order("", "A", 1, T0 + 6), order("o6", "A", 0, T0 + 6)],
        );
        let reasons: Vec<String> = out
            .iter()
            .filter_map(|(c, _)| match c {
                InventoryChange::Rejection(r) => Some(r.reason.clone()),
                _ => None,
            })
            .collect();
        // Equal times and arrivals: in row order, so the empty order id first.
        assert_eq!(
            reasons,
            vec!["Order without orderId", "Unknown product nope", "Order o6: quantity must be positive, got 0"]
        );
        let counted: isize = out
            .iter()
            .filter(|(c, _)| matches!(c, InventoryChange::Rejected(RejectionKind::Order)))
            .map(|(_, d)| d)
            .sum();
        assert_eq!(counted, 3);
        assert!(events(&out).is_empty());
    }

    #[test]
    fn inventory_current_is_replaced_once_per_batch() {
        let mut book = InventoryBook::new(24 * 60 * MINUTE);
        let out = run(&mut book, vec![product("A", 20, 10.0, T0), order("o1", "A", 3, T0), order("o2", "A", 4, T0)]);
        let current: Vec<(i32, isize)> = out
            .iter()
            .filter_map(|(c, d)| match c {
                InventoryChange::Current(p) => Some((p.inventory, *d)),
                _ => None,
            })
            .collect();
        assert_eq!(current, vec![(13, 1)]);
        let out = run(&mut book, vec![order("o3", "A", 13, T0 + MINUTE)]);
        let current: Vec<(i32, String, isize)> = out
            .iter()
            .filter_map(|(c, d)| match c {
                InventoryChange::Current(p) => Some((p.inventory, p.status.clone(), *d)),
                _ => None,
            })
            .collect();
        assert_eq!(current, vec![(13, "IN_STOCK".into(), -1), (0, "OUT_OF_STOCK".into(), 1)]);
    }

    #[test]
    fn stale_after_an_hour_of_clock_once_until_the_next_update() {
        let mut book = InventoryBook::new(24 * 60 * MINUTE);
        run(&mut book, vec![product("A", 20, 10.0, T0), product("B", 20, 10.0, T0 + 30 * MINUTE)]);
        assert!(
            kinds(&run(&mut book, vec![order("o1", "B", 1, T0 + 59 * MINUTE)])).iter().all(|k| k != "STALE_INVENTORY")
        );
        let out = run(&mut book, vec![order("o2", "B", 1, T0 + 60 * MINUTE)]);
        let stale: Vec<(String, Micros)> = out
            .iter()
            .filter_map(|(c, _)| match c {
                InventoryChange::Event(e) if e.event_type == "STALE_INVENTORY" => {
                    Some((e.product_id.clone(), e.event_time))
                }
                _ => None,
            })
            .collect();
        assert_eq!(stale, vec![("A".into(), T0 + 60 * MINUTE)]);
        // Reported once; an update re-arms it.
        let out = run(&mut book, vec![order("o3", "B", 1, T0 + 100 * MINUTE)]);
        assert_eq!(kinds(&out), vec!["INVENTORY_DECREASED"]);
        run(&mut book, vec![product("A", 21, 10.0, T0 + 101 * MINUTE)]);
        let out = run(&mut book, vec![order("o4", "B", 1, T0 + 161 * MINUTE)]);
        let stale: Vec<String> = out
            .iter()
            .filter_map(|(c, _)| match c {
                InventoryChange::Event(e) if e.event_type == "STALE_INVENTORY" => Some(e.product_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(stale, vec!["A".to_string()]);
    }

    #[test]
    fn retention_retracts_old_rows_and_memory_stays_flat() {
        let retention = 10 * MINUTE;
        let mut book = InventoryBook::new(retention);
        let mut live: HashMap<InventoryChange, isize> = HashMap::new();
        for (change, diff) in run(&mut book, vec![product("A", 1_000_000, 10.0, T0)]) {
            *live.entry(change).or_default() += diff;
        }
        let mut held = Vec::new();
        for second in 1..(3 * 60 * 60) {
            let at = T0 + second * 1_000_000;
            for (change, diff) in run(&mut book, vec![order(&format!("o{second}"), "A", 1, at)]) {
                *live.entry(change).or_default() += diff;
            }
            held.push(book.retained_rows());
        }
        live.retain(|_, d| *d != 0);
        assert!(live.values().all(|d| *d == 1), "nothing retracted twice");
        // One event per second, kept for 10 minutes (plus the batch at the edge).
        assert!(held.iter().all(|&n| n <= 601 + 1), "max {}", held.iter().max().unwrap());
        let events_live = live.keys().filter(|c| matches!(c, InventoryChange::Event(_))).count();
        assert!((600..=601).contains(&events_live), "{events_live}");
    }

    #[test]
    fn the_two_streams_merge_by_event_time_and_keep_their_own_order() {
        let mut u1 = product("A", 1, 1.0, T0 + 5);
        let mut u2 = product("A", 2, 1.0, T0 + 1);
        if let (InventoryInput::Update(a), InventoryInput::Update(b)) = (&mut u1, &mut u2) {
            a.arrival = 10;
            b.arrival = 11; // later in its partition, although its time is earlier
        }
        let mut o1 = order("o1", "A", 1, T0 + 3);
        if let InventoryInput::Order(o) = &mut o1 {
            o.arrival = 3;
        }
        let merged = arrival_order(vec![(u2.clone(), 1), (o1.clone(), 1), (u1.clone(), 1)]);
        assert_eq!(merged, vec![o1, u1, u2]);
    }
}
