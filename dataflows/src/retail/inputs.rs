//! The retail inputs: four Kafka event streams (`web_clicks`, `competitor_prices`,
//! `purchases`, `restocks`) and two tables (`product_inventory`, `orders`), with the
//! narrower records the views read of the clicks and purchases.

use std::sync::LazyLock;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::MONEY;
use crate::datum::{
    Column, ColumnType, Datum, Micros, Record, RelationKind, RelationSpec, Row, RowError, RowReader, col, col_not_null,
};
use ColumnType::{Int32, Text, TimestampTz};

/// `web_clicks` (Kafka topic `web_clicks`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WebClick {
    pub event_time: Micros,
    pub product_id: i32,
    pub event_type: String,
}

/// `competitor_prices` (Kafka topic `competitor_prices`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CompetitorPrice {
    pub ts: Micros,
    pub product_id: i32,
    pub competitor: String,
    pub competitor_price: Decimal,
}

/// `purchases` (Kafka topic `purchases`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Purchase {
    pub purchase_time: Micros,
    pub product_id: i32,
    pub quantity_purchased: i32,
    pub customer_id: String,
}

/// A click as the views read it: no view reads `event_type`. Without its one string,
/// each further copy of a click is a memcpy (timely copies a stream's batches for
/// every reader but the last, and the clicks have three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct Click {
    pub(super) event_time: Micros,
    pub(super) product_id: i32,
}

/// A purchase as the views read it: no view reads `customer_id` (see [`Click`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct PurchasedQuantity {
    pub(super) purchase_time: Micros,
    pub(super) product_id: i32,
    pub(super) quantity_purchased: i32,
}

/// `restocks` (Kafka topic `restocks`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Restock {
    pub restock_time: Micros,
    pub product_id: i32,
    pub quantity_restocked: i32,
}

/// `product_inventory` (table, primary key `product_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductInventory {
    pub product_id: i32,
    pub product_name: Option<String>,
    pub stock_level: Option<i32>,
    pub reorder_threshold: Option<i32>,
    pub supplier: Option<String>,
    pub base_price: Option<Decimal>,
}

/// `orders` (table, primary key `order_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Order {
    pub order_id: i32,
    pub order_time: Option<Micros>,
    pub product_id: Option<i32>,
    pub quantity: Option<i32>,
    pub customer_id: Option<String>,
}

fn source(name: &'static str, event_time_column: usize, columns: Vec<Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::Source { event_time_column }, columns }
}
fn table(name: &'static str, columns: Vec<Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::Table { primary_key: vec![0] }, columns }
}

static WEB_CLICKS: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "web_clicks",
        0,
        vec![
            col_not_null("event_time", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("event_type", Text),
        ],
    )
});
static COMPETITOR_PRICES: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "competitor_prices",
        0,
        vec![
            col_not_null("ts", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("competitor", Text),
            col_not_null("competitor_price", MONEY),
        ],
    )
});
static PURCHASES: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "purchases",
        0,
        vec![
            col_not_null("purchase_time", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("quantity_purchased", Int32),
            col_not_null("customer_id", Text),
        ],
    )
});
static RESTOCKS: LazyLock<RelationSpec> = LazyLock::new(|| {
    source(
        "restocks",
        0,
        vec![
            col_not_null("restock_time", TimestampTz),
            col_not_null("product_id", Int32),
            col_not_null("quantity_restocked", Int32),
        ],
    )
});
static PRODUCT_INVENTORY: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "product_inventory",
        vec![
            col_not_null("product_id", Int32),
            col("product_name", Text),
            col("stock_level", Int32),
            col("reorder_threshold", Int32),
            col("supplier", Text),
            col("base_price", MONEY),
        ],
    )
});
static ORDERS: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "orders",
        vec![
            col_not_null("order_id", Int32),
            col("order_time", TimestampTz),
            col("product_id", Int32),
            col("quantity", Int32),
            col("customer_id", Text),
        ],
    )
});

impl Record for WebClick {
    fn spec() -> &'static RelationSpec {
        &WEB_CLICKS
    }
    fn to_row(&self) -> Row {
        vec![Datum::Timestamp(self.event_time), self.product_id.into(), self.event_type.as_str().into()]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(WebClick { event_time: r.timestamp(0)?, product_id: r.i32(1)?, event_type: r.text(2)? })
    }
}

impl Record for CompetitorPrice {
    fn spec() -> &'static RelationSpec {
        &COMPETITOR_PRICES
    }
    fn to_row(&self) -> Row {
        vec![
            Datum::Timestamp(self.ts),
            self.product_id.into(),
            self.competitor.as_str().into(),
            self.competitor_price.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(CompetitorPrice {
            ts: r.timestamp(0)?,
            product_id: r.i32(1)?,
            competitor: r.text(2)?,
            competitor_price: r.decimal(3)?,
        })
    }
}

impl Record for Purchase {
    fn spec() -> &'static RelationSpec {
        &PURCHASES
    }
    fn to_row(&self) -> Row {
        vec![
            Datum::Timestamp(self.purchase_time),
            self.product_id.into(),
            self.quantity_purchased.into(),
            self.customer_id.as_str().into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Purchase {
            purchase_time: r.timestamp(0)?,
            product_id: r.i32(1)?,
            quantity_purchased: r.i32(2)?,
            customer_id: r.text(3)?,
        })
    }
}

impl Record for Restock {
    fn spec() -> &'static RelationSpec {
        &RESTOCKS
    }
    fn to_row(&self) -> Row {
        vec![Datum::Timestamp(self.restock_time), self.product_id.into(), self.quantity_restocked.into()]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Restock { restock_time: r.timestamp(0)?, product_id: r.i32(1)?, quantity_restocked: r.i32(2)? })
    }
}

impl Record for ProductInventory {
    fn spec() -> &'static RelationSpec {
        &PRODUCT_INVENTORY
    }
    fn to_row(&self) -> Row {
        vec![
            self.product_id.into(),
            self.product_name.clone().into(),
            self.stock_level.into(),
            self.reorder_threshold.into(),
            self.supplier.clone().into(),
            self.base_price.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(ProductInventory {
            product_id: r.i32(0)?,
            product_name: r.opt_text(1)?,
            stock_level: r.opt_i32(2)?,
            reorder_threshold: r.opt_i32(3)?,
            supplier: r.opt_text(4)?,
            base_price: r.opt_decimal(5)?,
        })
    }
}

impl Record for Order {
    fn spec() -> &'static RelationSpec {
        &ORDERS
    }
    fn to_row(&self) -> Row {
        vec![
            self.order_id.into(),
            self.order_time.map(Datum::Timestamp).unwrap_or(Datum::Null),
            self.product_id.into(),
            self.quantity.into(),
            self.customer_id.clone().into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Order {
            order_id: r.i32(0)?,
            order_time: r.opt_timestamp(1)?,
            product_id: r.opt_i32(2)?,
            quantity: r.opt_i32(3)?,
            customer_id: r.opt_text(4)?,
        })
    }
}
