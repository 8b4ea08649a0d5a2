//! The three input tables of the e-commerce pipeline, as the seed's `create_tables.sql`
//! declares them: every column nullable except the primary key.

use serde::{Deserialize, Serialize};

use crate::datum::{ColumnType, F64, Micros};
use crate::relation::relation;
use ColumnType::{Bool, Float64, Int32, Json, Text, Timestamp};

relation! {
    /// `products` (table).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct Product: table "products" (primary_key = product_id) {
        pub product_id: String = Text,
        pub name: Option<String> = Text,
        pub category: Option<String> = Text,
        pub price: Option<F64> = Float64,
        pub inventory_count: Option<i32> = Int32,
        pub created_at: Option<Micros> = Timestamp,
        pub is_active: Option<bool> = Bool,
    }
}

relation! {
    /// `users` (table). No view reads it; it is there to be joined in queries.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct User: table "users" (primary_key = user_id) {
        pub user_id: String = Text,
        pub email: Option<String> = Text,
        pub country: Option<String> = Text,
        pub city: Option<String> = Text,
        pub device_type: Option<String> = Text,
        pub created_at: Option<Micros> = Timestamp,
        pub last_login: Option<Micros> = Timestamp,
    }
}

relation! {
    /// `user_events` (table).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct UserEvent: table "user_events" (primary_key = event_id) {
        pub event_id: String = Text,
        pub user_id: Option<String> = Text,
        pub session_id: Option<String> = Text,
        /// `pageview`, `product_view`, `add_to_cart`, `remove_from_cart`, `checkout` or `purchase`.
        pub event_type: Option<String> = Text,
        pub product_id: Option<String> = Text,
        pub page_url: Option<String> = Text,
        pub referrer_url: Option<String> = Text,
        pub device_type: Option<String> = Text,
        pub event_time: Option<Micros> = Timestamp,
        /// Canonical jsonb text.
        pub event_data: Option<String> = Json,
    }
}

impl UserEvent {
    pub fn is(&self, event_type: &str) -> bool {
        self.event_type.as_deref() == Some(event_type)
    }
}
