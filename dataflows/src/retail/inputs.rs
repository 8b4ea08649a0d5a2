//! The retail inputs: four Kafka event streams (`web_clicks`, `competitor_prices`,
//! `purchases`, `restocks`) and two tables (`product_inventory`, `orders`), with the
//! narrower records the views read of the clicks and purchases.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::MONEY;
use crate::datum::{ColumnType, Micros};
use crate::relation::relation;
use ColumnType::{Int32, Text, TimestampTz};

relation! {
    /// `web_clicks` (Kafka topic `web_clicks`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct WebClick: source "web_clicks" (event_time = event_time) {
        pub event_time: Micros = TimestampTz,
        pub product_id: i32 = Int32,
        pub event_type: String = Text,
    }
}

relation! {
    /// `competitor_prices` (Kafka topic `competitor_prices`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CompetitorPrice: source "competitor_prices" (event_time = ts) {
        pub ts: Micros = TimestampTz,
        pub product_id: i32 = Int32,
        pub competitor: String = Text,
        pub competitor_price: Decimal = MONEY,
    }
}

relation! {
    /// `purchases` (Kafka topic `purchases`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct Purchase: source "purchases" (event_time = purchase_time) {
        pub purchase_time: Micros = TimestampTz,
        pub product_id: i32 = Int32,
        pub quantity_purchased: i32 = Int32,
        pub customer_id: String = Text,
    }
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

relation! {
    /// `restocks` (Kafka topic `restocks`).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct Restock: source "restocks" (event_time = restock_time) {
        pub restock_time: Micros = TimestampTz,
        pub product_id: i32 = Int32,
        pub quantity_restocked: i32 = Int32,
    }
}

relation! {
    /// `product_inventory` (table).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductInventory: table "product_inventory" (primary_key = product_id) {
        pub product_id: i32 = Int32,
        pub product_name: Option<String> = Text,
        pub stock_level: Option<i32> = Int32,
        pub reorder_threshold: Option<i32> = Int32,
        pub supplier: Option<String> = Text,
        pub base_price: Option<Decimal> = MONEY,
    }
}

relation! {
    /// `orders` (table).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct Order: table "orders" (primary_key = order_id) {
        pub order_id: i32 = Int32,
        pub order_time: Option<Micros> = TimestampTz,
        pub product_id: Option<i32> = Int32,
        pub quantity: Option<i32> = Int32,
        pub customer_id: Option<String> = Text,
    }
}
