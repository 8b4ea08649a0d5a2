//! The per-product state machine of the inventory pipeline: one [`InventoryBook`] per
//! timely worker holds the products whose id hashes to it, and applies each product's
//! updates and orders in that product's arrival order (see [`arrival_order`]).
//!
//! # Time
//!
//! Logical time is the ingest batch; every batch is applied whole, in batch order, and
//! within a batch product by product, each product's inputs merged on their own
//! ([`arrival_order`]).
//!
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
//! What happens to a product is decided by its own inputs and the clock alone: the
//! clock moves once per batch, after the batch, to the same value on every worker, and
//! all rows of a batch are emitted at it. So the answer is the same on any number of
//! workers, whichever products share one.
//!
//! Per event the cost is O(log products): a hash map of product states, an ordered set
//! of stale deadlines and a FIFO queue of retained rows. Nothing re-reads history.
//!
//! # Checkpoints
//!
//! The book's output depends on the order and the clock its inputs arrived at, and on
//! inputs long expired, so it saves its state ([`InventoryBook::save`]): the clock, each
//! product, and each retained row with the clock it was emitted at (its retraction
//! follows that clock, not the row's own times). A restored book announces what it had
//! emitted and not retracted ([`InventoryBook::restore`]); the never-retracted
//! `Rejected` markers are not held here, the count behind them keeps them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bincode::Options;
use differential_dataflow::hashable::Hashable;
use serde::{Deserialize, Serialize};

use super::{
    CurrentProduct, InventoryAlert, InventoryEvent, InventoryInput, OrderEvent, ProductUpdate, Rejection, RejectionKind,
};
use crate::checkpoint::SavedState;
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

    /// The product id a row belongs to: the product's, or a rejected input's (missing
    /// or empty ids included), so the row is saved where that input was routed.
    /// `Rejected` markers belong to no product.
    fn product_key(&self) -> Option<&str> {
        match self {
            InventoryChange::Current(product) => Some(&product.product_id),
            InventoryChange::Event(event) => Some(&event.product_id),
            InventoryChange::Alert(alert) => Some(&alert.product_id),
            InventoryChange::Rejection(rejection) => rejection.product_id.as_deref(),
            InventoryChange::Rejected(_) => None,
        }
    }
}

/// The route of an input or a saved entry of product `product_id` (the id as the input
/// has it): the books are exchanged by it, and checkpoints restore by it, so a product's
/// state lands on the worker its inputs go to.
pub fn product_route(product_id: Option<&str>) -> u64 {
    product_id.hashed()
}

/// One product's state. A checkpoint saves it whole, `price` bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// A checkpoint's entry of one product key: the product, if one was ever added under
/// it, and the retained rows of the key with the clock each was emitted at.
#[derive(Serialize, Deserialize)]
struct SavedProduct {
    product_id: Option<String>,
    state: Option<ProductState>,
    rows: Vec<(Micros, InventoryChange)>,
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

    /// This worker's state at a checkpoint: the clock (the same on every worker) as
    /// shared state, and one entry per product key, routed by [`product_route`]. The
    /// stale deadlines follow from the products (every product not reported stale).
    pub fn save(&self) -> SavedState {
        fn entry<'k>(keys: &'k mut BTreeMap<Option<String>, SavedProduct>, id: Option<&str>) -> &'k mut SavedProduct {
            let product_id = id.map(str::to_string);
            keys.entry(product_id.clone()).or_insert(SavedProduct { product_id, state: None, rows: Vec::new() })
        }
        let mut keys = BTreeMap::new();
        for (product_id, state) in &self.products {
            entry(&mut keys, Some(product_id)).state = Some(state.clone());
        }
        for (emitted_at, row) in &self.retained {
            let change = row.change();
            entry(&mut keys, change.product_key()).rows.push((*emitted_at, change));
        }
        let mut saved = SavedState::default();
        saved.set_shared(&self.clock);
        for (product_id, product) in keys {
            saved.push_keyed(product_route(product_id.as_deref()), &product);
        }
        saved
    }

    /// Takes back this worker's share of a saved state into a new book, and pushes to
    /// `out` every row it had emitted and not retracted: each product's current row
    /// and every retained row.
    pub fn restore(&mut self, saved: &SavedState, out: &mut Vec<(InventoryChange, isize)>) {
        self.clock = saved.shared::<Option<Micros>>().flatten();
        let mut rows = Vec::new();
        for product in saved.keyed::<SavedProduct>() {
            if let Some(state) = product.state {
                let product_id = product.product_id.expect("a product has an id");
                if !state.reported_stale {
                    self.stale_deadlines.insert((state.stale_deadline(), product_id.clone()));
                }
                out.push((InventoryChange::Current(state.current(&product_id)), 1));
                self.products.insert(product_id, state);
            }
            rows.extend(product.rows);
        }
        // Oldest first again (the workers' queues merged), so each row expires when it would have.
        rows.sort_by_key(|(emitted_at, _)| *emitted_at);
        for (emitted_at, change) in rows {
            self.retained.push_back((emitted_at, RetainedRow::new(&change)));
            out.push((change, 1));
        }
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

/// The order in which one batch's inputs are applied: product by product, each
/// product's updates and orders merged on their own (the spec: events *per product*
/// are applied in arrival order).
///
/// A product's inputs are those with its product id, as the input has it (missing and
/// empty ids too: it is the key inputs are routed to a worker by). Its product updates
/// keep their source order (`arrival`: Kafka offset order within a partition, the
/// generator's sequence; ties, as from two partitions or one message twice, fall back
/// to the whole row), and so do its orders. The two sequences are merged as sorted
/// streams: the next input is whichever head has the smaller `(event time, arrival)`,
/// the product update when both are equal.
///
/// No input of another product takes part in a product's merge, so a product's order
/// depends on its own inputs only; `arrival` is only ever compared within a product,
/// as Kafka offsets are only ordered within a partition. That makes a batch's result
/// the same on any number of workers: a worker holds whole products, every input reads
/// and changes only its own product's state, and the clock, staleness and retention
/// move once per batch, after all of it. Products follow one another in order of id.
///
/// A row repeated `n` times (its difference) is applied `n` times; retractions are
/// ignored, as both inputs are append-only sources that nothing can retract.
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
    // Sorted by product id first, each stream holds its products' sequences one after
    // the other. The merge takes the smaller id first, so it goes through the products
    // one by one, and within a product it is that product's merge alone.
    updates.sort_by(|a, b| {
        (a.product_id.as_deref(), a.arrival).cmp(&(b.product_id.as_deref(), b.arrival)).then_with(|| a.cmp(b))
    });
    orders.sort_by(|a, b| {
        (a.product_id.as_deref(), a.arrival).cmp(&(b.product_id.as_deref(), b.arrival)).then_with(|| a.cmp(b))
    });
    let mut merged = Vec::with_capacity(updates.len() + orders.len());
    let (mut updates, mut orders) = (updates.into_iter().peekable(), orders.into_iter().peekable());
    loop {
        let take_update = match (updates.peek(), orders.peek()) {
            (Some(u), Some(o)) => {
                (u.product_id.as_deref(), u.update_time, u.arrival)
                    <= (o.product_id.as_deref(), o.order_time, o.arrival)
            }
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
mod tests;
