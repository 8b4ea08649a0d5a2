//! D. Inventory with order deduction (`shared/spec/PIPELINES.md` §D, seed 002).
//!
//! Two append-only sources, `product_updates` (the catalog bootstrap and the Kafka topic
//! `product-updates`) and `order_events` (Kafka `order-events`), feed one state per
//! product: a keyed timely operator ([`book::InventoryBook`], whose documentation defines
//! the arrival order, the clock, staleness and retention) applies each product's updates
//! and orders in arrival order and emits differential updates to five views:
//!
//! - `inventory_current`: one row per product, replaced when the product changes;
//! - `inventory_events`, `inventory_alerts`, `inventory_rejections`: append-only, each
//!   row retracted `--retention` of pipeline clock after it was emitted;
//! - `inventory_rejection_counts`: all-time rejected inputs per kind.
//!
//! None of these views is a SQL query over the inputs (the original is a Flink
//! `KeyedProcessFunction`): each one's doc comment says what it holds instead.

pub mod book;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::CountTotal;
use serde::{Deserialize, Serialize};

use self::book::{InventoryBook, InventoryChange, product_route};
use crate::boundary::{Inputs, View};
use crate::checkpoint::{Checkpoints, SavedState};
use crate::datum::{ColumnType, Datum, F64, Micros, Record, RelationSpec};
use crate::operators::{ClockedState, accumulated, run_clocked, split_by_kind};
use crate::relation::{ColumnValue, Holds, relation};
use crate::{PipelineConfig, Time};

type Coll<'s, D> = VecCollection<'s, Time, D>;
use ColumnType::{Float64, Int32, Int64, Json, Text, TimestampTz};

// ------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------

relation! {
    /// A `product_updates` row: one product object of the catalog file or of a
    /// `product-updates` message. Ids and names may be missing or empty: such rows reach
    /// the pipeline and are rejected there, visibly, in `inventory_rejections`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductUpdate: source "product_updates" (event_time = update_time) {
        pub product_id: Option<String> = Text,
        pub name: Option<String> = Text,
        pub description: Option<String> = Text,
        pub price: F64 = Float64,
        pub category: Option<String> = Text,
        pub brand: Option<String> = Text,
        pub image_url: Option<String> = Text,
        pub inventory: i32 = Int32,
        /// The JSON array of tags, as canonical `jsonb` text.
        pub tags: Option<String> = Json,
        pub rating: Option<F64> = Float64,
        pub review_count: Option<i32> = Int32,
        /// When the update happened: the Kafka message's timestamp, or the load time of the catalog.
        pub update_time: Micros = TimestampTz,
        /// Position in the source's order (see [`book::arrival_order`]).
        pub arrival: i64 = Int64,
    }
}

relation! {
    /// An `order_events` row: one order line. Missing ids or a non-positive quantity are
    /// rejected by the pipeline (`inventory_rejections`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct OrderEvent: source "order_events" (event_time = order_time) {
        pub order_id: Option<String> = Text,
        pub product_id: Option<String> = Text,
        pub quantity: Option<i32> = Int32,
        /// The order's `timestamp`.
        pub order_time: Micros = TimestampTz,
        /// Position in the source's order (see [`book::arrival_order`]).
        pub arrival: i64 = Int64,
    }
}

pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![ProductUpdate::spec(), OrderEvent::spec()]
}

/// Either input, as the product operator takes them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InventoryInput {
    Update(ProductUpdate),
    Order(OrderEvent),
}

impl InventoryInput {
    pub fn event_time(&self) -> Micros {
        match self {
            InventoryInput::Update(u) => u.update_time,
            InventoryInput::Order(o) => o.order_time,
        }
    }
    /// The product whose state the input goes to (also for inputs to be rejected).
    fn product_key(&self) -> Option<&str> {
        match self {
            InventoryInput::Update(u) => u.product_id.as_deref(),
            InventoryInput::Order(o) => o.product_id.as_deref(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Views
// ------------------------------------------------------------------------------------------

relation! {
    /// An `inventory_current` row.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CurrentProduct: view "inventory_current" {
        pub product_id: String = Text,
        pub name: String = Text,
        pub category: Option<String> = Text,
        pub price: F64 = Float64,
        pub inventory: i32 = Int32,
        /// `IN_STOCK`, `LOW_STOCK` (1..9) or `OUT_OF_STOCK`.
        pub status: String = Text,
        pub last_update: Micros = TimestampTz,
    }
}

relation! {
    /// An `inventory_events` row (Kafka `inventory-events`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct InventoryEvent: view "inventory_events" {
        pub product_id: String = Text,
        pub product_name: String = Text,
        pub event_type: String = Text,
        pub previous_inventory: i32 = Int32,
        pub current_inventory: i32 = Int32,
        pub previous_price: F64 = Float64,
        pub current_price: F64 = Float64,
        pub event_time: Micros = TimestampTz,
        pub change_reason: String = Text,
    }
}

relation! {
    /// An `inventory_alerts` row (Kafka `inventory-alerts`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct InventoryAlert: view "inventory_alerts" {
        pub alert_type: String = Text,
        pub product_id: String = Text,
        pub message: String = Text,
        pub severity: String = Text,
        pub alert_time: Micros = TimestampTz,
    }
}

/// What was rejected: `product_update` or `order` in the views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RejectionKind {
    ProductUpdate,
    Order,
}

impl RejectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::ProductUpdate => "product_update",
            RejectionKind::Order => "order",
        }
    }
}

impl ColumnValue for RejectionKind {
    const HOLDS: Holds = Holds::Text;
    fn to_datum(&self, _ty: ColumnType) -> Datum {
        Datum::text(self.as_str())
    }
    fn from_datum_ref(datum: &Datum, _ty: ColumnType) -> Option<RejectionKind> {
        match datum {
            Datum::Text(kind) if kind == "product_update" => Some(RejectionKind::ProductUpdate),
            Datum::Text(kind) if kind == "order" => Some(RejectionKind::Order),
            _ => None,
        }
    }
}

relation! {
    /// An `inventory_rejections` row.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct Rejection: view "inventory_rejections" {
        pub kind: RejectionKind = Text,
        pub order_id: Option<String> = Text,
        pub product_id: Option<String> = Text,
        pub reason: String = Text,
        /// The rejected input's event time.
        pub event_time: Micros = TimestampTz,
    }
}

relation! {
    /// An `inventory_rejection_counts` row.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct RejectionCount: view "inventory_rejection_counts" {
        pub kind: RejectionKind = Text,
        pub rejected: i64 = Int64,
    }
}

/// The inventory views, as the catalog lists them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        CurrentProduct::spec(),
        InventoryEvent::spec(),
        InventoryAlert::spec(),
        Rejection::spec(),
        RejectionCount::spec(),
    ]
}

/// Builds the inventory views from its inputs.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let product_updates = inputs.projected(InventoryInput::Update);
    let order_events = inputs.projected(InventoryInput::Order);
    inventory(config, product_updates.concat(order_events), inputs.checkpoints())
}

/// Builds the inventory views from product updates and orders, the history-dependent
/// operators registering in `checkpoints`. Both inputs are sources: each path from them
/// passes the product books (or, for the counts, the accumulation tap after them)
/// before any other operator that holds state.
pub fn inventory<'s>(
    config: &PipelineConfig,
    inputs: Coll<'s, InventoryInput>,
    checkpoints: &Checkpoints,
) -> Vec<View<'s>> {
    let [current, events, alerts, rejections, rejected] =
        split_by_kind(product_states(inputs, config.retention, checkpoints), InventoryChange::kind);
    vec![
        inventory_current(current),
        inventory_events(events),
        inventory_alerts(alerts),
        inventory_rejections(rejections),
        View::new(inventory_rejection_counts(rejected, checkpoints), |(kind, rejected)| RejectionCount {
            kind,
            rejected,
        }),
    ]
}

/// `inventory_current(product_id, name, category, price, inventory, status, last_update)`:
/// every product seen in a valid product update, as its updates and orders left it.
/// `status` is `OUT_OF_STOCK` at 0, `LOW_STOCK` in 1..9, `IN_STOCK` from 10; `last_update`
/// is the newest event time of an update or order applied to it.
fn inventory_current<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Current(product) => Some(product),
        _ => None,
    })
}

/// `inventory_events(product_id, product_name, event_type, previous_inventory,
/// current_inventory, previous_price, current_price, event_time, change_reason)`: one row
/// per rule of the spec's table that fired (PRODUCT_ADDED, INVENTORY_DECREASED,
/// INVENTORY_INCREASED, OUT_OF_STOCK, BACK_IN_STOCK, PRICE_CHANGED, STALE_INVENTORY).
/// `event_time` is the input's event time (STALE_INVENTORY: last update + 1 hour); the
/// previous/current columns are the product before and after the input.
fn inventory_events<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Event(event) => Some(event),
        _ => None,
    })
}

/// `inventory_alerts(alert_type, product_id, message, severity, alert_time)`: LOW_STOCK
/// (CRITICAL at ≤ 5 units, else WARNING), OUT_OF_STOCK (CRITICAL) and PRICE_DROP (INFO).
fn inventory_alerts<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Alert(alert) => Some(alert),
        _ => None,
    })
}

/// `inventory_rejections(kind, order_id, product_id, reason, event_time)`: inputs that
/// changed nothing because they were invalid (empty ids or name, quantity ≤ 0, negative
/// inventory) or, for orders, named a product never seen.
fn inventory_rejections<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Rejection(rejection) => Some(rejection),
        _ => None,
    })
}

/// `inventory_rejection_counts(kind, rejected)`: every rejection since start-up, per kind
/// (`product_update`, `order`), retention or not:
/// ```sql
/// SELECT kind, COUNT(*) AS rejected FROM <every rejection ever> GROUP BY kind;
/// ```
fn inventory_rejection_counts<'s>(
    changes: Coll<'s, InventoryChange>,
    checkpoints: &Checkpoints,
) -> Coll<'s, (RejectionKind, i64)> {
    let rejected = changes.flat_map(|change| match change {
        InventoryChange::Rejected(kind) => Some(kind),
        _ => None,
    });
    // The rejections are never retracted: the tap keeps their count per kind across a
    // checkpoint, where the rejected inputs are long gone.
    accumulated(rejected, checkpoints.slot("inventory.rejection_counts"))
        .count_total()
        .map(|(kind, n)| (kind, n as i64))
}

// ------------------------------------------------------------------------------------------
// The keyed product operator
// ------------------------------------------------------------------------------------------

/// Runs an [`InventoryBook`] per worker over the inputs exchanged by product id; every
/// worker also receives every batch's newest event time, so all share one clock. The
/// books are checkpointed as `inventory.products`.
fn product_states<'s>(
    inputs: Coll<'s, InventoryInput>,
    retention: Micros,
    checkpoints: &Checkpoints,
) -> Coll<'s, InventoryChange> {
    let key: fn(&InventoryInput) -> u64 = |input| product_route(input.product_key());
    let slot = checkpoints.slot("inventory.products");
    run_clocked("InventoryProducts", inputs, key, InventoryInput::event_time, InventoryBook::new(retention), slot).0
}

impl ClockedState for InventoryBook {
    type Input = InventoryInput;
    type Change = InventoryChange;
    fn process(
        &mut self,
        batch: Vec<(InventoryInput, isize)>,
        batch_max: Option<Micros>,
        out: &mut Vec<(InventoryChange, isize)>,
    ) {
        InventoryBook::process(self, batch, batch_max, out)
    }
    fn save(&self) -> SavedState {
        InventoryBook::save(self)
    }
    fn restore(&mut self, saved: &SavedState, out: &mut Vec<(InventoryChange, isize)>) {
        InventoryBook::restore(self, saved, out)
    }
}

#[cfg(test)]
mod restore_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::validate_row;

    #[test]
    fn rows_round_trip_and_validate() {
        let update = ProductUpdate {
            product_id: Some("PROD_0001".into()),
            name: Some("Laptop".into()),
            description: None,
            price: F64::new(1899.99),
            category: Some("Electronics".into()),
            brand: Some("FutureTech".into()),
            image_url: None,
            inventory: 17,
            tags: Some("[\"laptop\"]".into()),
            rating: Some(F64::new(4.5)),
            review_count: Some(49),
            update_time: 1_700_000_000_000_000,
            arrival: 3,
        };
        validate_row(ProductUpdate::spec(), &update.to_row()).unwrap();
        assert_eq!(ProductUpdate::from_row(&update.to_row()).unwrap(), update);
        let order = OrderEvent {
            order_id: Some("o1".into()),
            product_id: None,
            quantity: Some(2),
            order_time: 1_700_000_000_000_000,
            arrival: 9,
        };
        validate_row(OrderEvent::spec(), &order.to_row()).unwrap();
        assert_eq!(OrderEvent::from_row(&order.to_row()).unwrap(), order);
        for spec in view_specs() {
            assert!(spec.columns.iter().all(|c| c.nullable), "{}", spec.name);
        }
    }
}
