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

use std::sync::LazyLock;

use differential_dataflow::VecCollection;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::CountTotal;
use serde::{Deserialize, Serialize};

use self::book::{InventoryBook, InventoryChange};
use crate::boundary::{Inputs, View};
use crate::datum::{
    Column, ColumnType, Datum, F64, Micros, Record, RelationKind, RelationSpec, Row, RowError, RowReader, col,
    col_not_null,
};
use crate::operators::{ClockedState, run_clocked, split_by_kind};
use crate::{PipelineConfig, Time};

type Coll<'s, D> = VecCollection<'s, Time, D>;
use ColumnType::{Float64, Int32, Int64, Json, Text, TimestampTz};

// ------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------

/// A `product_updates` row: one product object of the catalog file or of a
/// `product-updates` message. Ids and names may be missing or empty: such rows reach
/// the pipeline and are rejected there, visibly, in `inventory_rejections`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductUpdate {
    pub product_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: F64,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub image_url: Option<String>,
    pub inventory: i32,
    /// The JSON array of tags, as canonical `jsonb` text.
    pub tags: Option<String>,
    pub rating: Option<F64>,
    pub review_count: Option<i32>,
    /// When the update happened: the Kafka message's timestamp, or the load time of the catalog.
    pub update_time: Micros,
    /// Position in the source's order (see [`book::arrival_order`]).
    pub arrival: i64,
}

/// An `order_events` row: one order line. Missing ids or a non-positive quantity are
/// rejected by the pipeline (`inventory_rejections`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order_id: Option<String>,
    pub product_id: Option<String>,
    pub quantity: Option<i32>,
    /// The order's `timestamp`.
    pub order_time: Micros,
    /// Position in the source's order (see [`book::arrival_order`]).
    pub arrival: i64,
}

/// Index of `update_time` in `product_updates`.
const UPDATE_TIME_COLUMN: usize = 11;
/// Index of `order_time` in `order_events`.
const ORDER_TIME_COLUMN: usize = 3;

static PRODUCT_UPDATES: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
    name: "product_updates",
    kind: RelationKind::Source { event_time_column: UPDATE_TIME_COLUMN },
    columns: vec![
        col("product_id", Text),
        col("name", Text),
        col("description", Text),
        col_not_null("price", Float64),
        col("category", Text),
        col("brand", Text),
        col("image_url", Text),
        col_not_null("inventory", Int32),
        col("tags", Json),
        col("rating", Float64),
        col("review_count", Int32),
        col_not_null("update_time", TimestampTz),
        col_not_null("arrival", Int64),
    ],
});

static ORDER_EVENTS: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
    name: "order_events",
    kind: RelationKind::Source { event_time_column: ORDER_TIME_COLUMN },
    columns: vec![
        col("order_id", Text),
        col("product_id", Text),
        col("quantity", Int32),
        col_not_null("order_time", TimestampTz),
        col_not_null("arrival", Int64),
    ],
});

fn float(value: Option<F64>) -> Datum {
    value.map_or(Datum::Null, Datum::Float64)
}

impl Record for ProductUpdate {
    fn spec() -> &'static RelationSpec {
        &PRODUCT_UPDATES
    }
    fn to_row(&self) -> Row {
        vec![
            self.product_id.clone().into(),
            self.name.clone().into(),
            self.description.clone().into(),
            Datum::Float64(self.price),
            self.category.clone().into(),
            self.brand.clone().into(),
            self.image_url.clone().into(),
            self.inventory.into(),
            self.tags.clone().map_or(Datum::Null, Datum::Json),
            float(self.rating),
            self.review_count.into(),
            Datum::Timestamp(self.update_time),
            self.arrival.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(ProductUpdate {
            product_id: r.opt_text(0)?,
            name: r.opt_text(1)?,
            description: r.opt_text(2)?,
            price: F64::new(r.f64(3)?),
            category: r.opt_text(4)?,
            brand: r.opt_text(5)?,
            image_url: r.opt_text(6)?,
            inventory: r.i32(7)?,
            tags: r.opt_json(8)?,
            rating: r.opt_f64(9)?.map(F64::new),
            review_count: r.opt_i32(10)?,
            update_time: r.timestamp(UPDATE_TIME_COLUMN)?,
            arrival: r.i64(12)?,
        })
    }
}

impl Record for OrderEvent {
    fn spec() -> &'static RelationSpec {
        &ORDER_EVENTS
    }
    fn to_row(&self) -> Row {
        vec![
            self.order_id.clone().into(),
            self.product_id.clone().into(),
            self.quantity.into(),
            Datum::Timestamp(self.order_time),
            self.arrival.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(OrderEvent {
            order_id: r.opt_text(0)?,
            product_id: r.opt_text(1)?,
            quantity: r.opt_i32(2)?,
            order_time: r.timestamp(ORDER_TIME_COLUMN)?,
            arrival: r.i64(4)?,
        })
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

/// An `inventory_current` row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CurrentProduct {
    pub product_id: String,
    pub name: String,
    pub category: Option<String>,
    pub price: F64,
    pub inventory: i32,
    /// `IN_STOCK`, `LOW_STOCK` (1..9) or `OUT_OF_STOCK`.
    pub status: String,
    pub last_update: Micros,
}

/// An `inventory_events` row (Kafka `inventory-events`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InventoryEvent {
    pub product_id: String,
    pub product_name: String,
    pub event_type: String,
    pub previous_inventory: i32,
    pub current_inventory: i32,
    pub previous_price: F64,
    pub current_price: F64,
    pub event_time: Micros,
    pub change_reason: String,
}

/// An `inventory_alerts` row (Kafka `inventory-alerts`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InventoryAlert {
    pub alert_type: String,
    pub product_id: String,
    pub message: String,
    pub severity: String,
    pub alert_time: Micros,
}

/// What was rejected.
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

/// An `inventory_rejections` row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub order_id: Option<String>,
    pub product_id: Option<String>,
    pub reason: String,
    /// The rejected input's event time.
    pub event_time: Micros,
}

fn view(name: &'static str, columns: Vec<Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::View, columns }
}

static INVENTORY_CURRENT: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "inventory_current",
        vec![
            col("product_id", Text),
            col("name", Text),
            col("category", Text),
            col("price", Float64),
            col("inventory", Int32),
            col("status", Text),
            col("last_update", TimestampTz),
        ],
    )
});
static INVENTORY_EVENTS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "inventory_events",
        vec![
            col("product_id", Text),
            col("product_name", Text),
            col("event_type", Text),
            col("previous_inventory", Int32),
            col("current_inventory", Int32),
            col("previous_price", Float64),
            col("current_price", Float64),
            col("event_time", TimestampTz),
            col("change_reason", Text),
        ],
    )
});
static INVENTORY_ALERTS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "inventory_alerts",
        vec![
            col("alert_type", Text),
            col("product_id", Text),
            col("message", Text),
            col("severity", Text),
            col("alert_time", TimestampTz),
        ],
    )
});
static INVENTORY_REJECTIONS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "inventory_rejections",
        vec![
            col("kind", Text),
            col("order_id", Text),
            col("product_id", Text),
            col("reason", Text),
            col("event_time", TimestampTz),
        ],
    )
});
static INVENTORY_REJECTION_COUNTS: LazyLock<RelationSpec> =
    LazyLock::new(|| view("inventory_rejection_counts", vec![col("kind", Text), col("rejected", Int64)]));

/// The inventory views, in the order [`inventory`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![&INVENTORY_CURRENT, &INVENTORY_EVENTS, &INVENTORY_ALERTS, &INVENTORY_REJECTIONS, &INVENTORY_REJECTION_COUNTS]
}

/// Builds the inventory views from its inputs, in `view_specs()` order.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let product_updates = inputs.projected(InventoryInput::Update);
    let order_events = inputs.projected(InventoryInput::Order);
    inventory(config, product_updates.concat(order_events))
}

/// Builds the inventory views from product updates and orders, in `view_specs()` order.
pub fn inventory<'s>(config: &PipelineConfig, inputs: Coll<'s, InventoryInput>) -> Vec<View<'s>> {
    let [current, events, alerts, rejections, rejected] =
        split_by_kind(product_states(inputs, config.retention), InventoryChange::kind);
    vec![
        inventory_current(current),
        inventory_events(events),
        inventory_alerts(alerts),
        inventory_rejections(rejections),
        View::new(inventory_rejection_counts(rejected), |(kind, n)| vec![kind.as_str().into(), n.into()]),
    ]
}

/// `inventory_current(product_id, name, category, price, inventory, status, last_update)`:
/// every product seen in a valid product update, as its updates and orders left it.
/// `status` is `OUT_OF_STOCK` at 0, `LOW_STOCK` in 1..9, `IN_STOCK` from 10; `last_update`
/// is the newest event time of an update or order applied to it.
fn inventory_current<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Current(product) => Some(current_row(&product)),
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
        InventoryChange::Event(event) => Some(event_row(&event)),
        _ => None,
    })
}

/// `inventory_alerts(alert_type, product_id, message, severity, alert_time)`: LOW_STOCK
/// (CRITICAL at ≤ 5 units, else WARNING), OUT_OF_STOCK (CRITICAL) and PRICE_DROP (INFO).
fn inventory_alerts<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Alert(alert) => Some(alert_row(&alert)),
        _ => None,
    })
}

/// `inventory_rejections(kind, order_id, product_id, reason, event_time)`: inputs that
/// changed nothing because they were invalid (empty ids or name, quantity ≤ 0, negative
/// inventory) or, for orders, named a product never seen.
fn inventory_rejections<'s>(changes: Coll<'s, InventoryChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        InventoryChange::Rejection(rejection) => Some(rejection_row(&rejection)),
        _ => None,
    })
}

/// `inventory_rejection_counts(kind, rejected)`: every rejection since start-up, per kind
/// (`product_update`, `order`), retention or not:
/// ```sql
/// SELECT kind, COUNT(*) AS rejected FROM <every rejection ever> GROUP BY kind;
/// ```
fn inventory_rejection_counts<'s>(changes: Coll<'s, InventoryChange>) -> Coll<'s, (RejectionKind, i64)> {
    changes
        .flat_map(|change| match change {
            InventoryChange::Rejected(kind) => Some(kind),
            _ => None,
        })
        .count_total()
        .map(|(kind, n)| (kind, n as i64))
}

fn current_row(p: &CurrentProduct) -> Row {
    vec![
        p.product_id.as_str().into(),
        p.name.as_str().into(),
        p.category.clone().into(),
        Datum::Float64(p.price),
        p.inventory.into(),
        p.status.as_str().into(),
        Datum::Timestamp(p.last_update),
    ]
}

fn event_row(e: &InventoryEvent) -> Row {
    vec![
        e.product_id.as_str().into(),
        e.product_name.as_str().into(),
        e.event_type.as_str().into(),
        e.previous_inventory.into(),
        e.current_inventory.into(),
        Datum::Float64(e.previous_price),
        Datum::Float64(e.current_price),
        Datum::Timestamp(e.event_time),
        e.change_reason.as_str().into(),
    ]
}

fn alert_row(a: &InventoryAlert) -> Row {
    vec![
        a.alert_type.as_str().into(),
        a.product_id.as_str().into(),
        a.message.as_str().into(),
        a.severity.as_str().into(),
        Datum::Timestamp(a.alert_time),
    ]
}

fn rejection_row(r: &Rejection) -> Row {
    vec![
        r.kind.as_str().into(),
        r.order_id.clone().into(),
        r.product_id.clone().into(),
        r.reason.as_str().into(),
        Datum::Timestamp(r.event_time),
    ]
}

// ------------------------------------------------------------------------------------------
// The keyed product operator
// ------------------------------------------------------------------------------------------

/// Runs an [`InventoryBook`] per worker over the inputs exchanged by product id; every
/// worker also receives every batch's newest event time, so all share one clock.
fn product_states<'s>(inputs: Coll<'s, InventoryInput>, retention: Micros) -> Coll<'s, InventoryChange> {
    let key: fn(&InventoryInput) -> u64 = |input| input.product_key().hashed();
    run_clocked("InventoryProducts", inputs, key, InventoryInput::event_time, InventoryBook::new(retention)).0
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
}

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
