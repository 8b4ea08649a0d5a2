//! The three input tables of the e-commerce pipeline, as the seed's `create_tables.sql`
//! declares them: every column nullable except the primary key.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::datum::{
    Column, ColumnType, Datum, F64, Micros, Record, RelationKind, RelationSpec, Row, RowError, RowReader, col,
    col_not_null,
};
use ColumnType::{Bool, Float64, Int32, Json, Text, Timestamp};

/// `products` (table, primary key `product_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub name: Option<String>,
    pub category: Option<String>,
    pub price: Option<F64>,
    pub inventory_count: Option<i32>,
    pub created_at: Option<Micros>,
    pub is_active: Option<bool>,
}

/// `users` (table, primary key `user_id`). No view reads it; it is there to be joined in queries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    pub email: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub device_type: Option<String>,
    pub created_at: Option<Micros>,
    pub last_login: Option<Micros>,
}

/// `user_events` (table, primary key `event_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserEvent {
    pub event_id: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    /// `pageview`, `product_view`, `add_to_cart`, `remove_from_cart`, `checkout` or `purchase`.
    pub event_type: Option<String>,
    pub product_id: Option<String>,
    pub page_url: Option<String>,
    pub referrer_url: Option<String>,
    pub device_type: Option<String>,
    pub event_time: Option<Micros>,
    /// Canonical jsonb text.
    pub event_data: Option<String>,
}

impl UserEvent {
    pub fn is(&self, event_type: &str) -> bool {
        self.event_type.as_deref() == Some(event_type)
    }
}

fn table(name: &'static str, columns: Vec<Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::Table { primary_key: vec![0] }, columns }
}

static PRODUCTS: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "products",
        vec![
            col_not_null("product_id", Text),
            col("name", Text),
            col("category", Text),
            col("price", Float64),
            col("inventory_count", Int32),
            col("created_at", Timestamp),
            col("is_active", Bool),
        ],
    )
});
static USERS: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "users",
        vec![
            col_not_null("user_id", Text),
            col("email", Text),
            col("country", Text),
            col("city", Text),
            col("device_type", Text),
            col("created_at", Timestamp),
            col("last_login", Timestamp),
        ],
    )
});
static USER_EVENTS: LazyLock<RelationSpec> = LazyLock::new(|| {
    table(
        "user_events",
        vec![
            col_not_null("event_id", Text),
            col("user_id", Text),
            col("session_id", Text),
            col("event_type", Text),
            col("product_id", Text),
            col("page_url", Text),
            col("referrer_url", Text),
            col("device_type", Text),
            col("event_time", Timestamp),
            col("event_data", Json),
        ],
    )
});

pub(crate) fn timestamp_or_null(t: Option<Micros>) -> Datum {
    t.map_or(Datum::Null, Datum::Timestamp)
}
pub(crate) fn double_or_null(v: Option<F64>) -> Datum {
    v.map_or(Datum::Null, Datum::Float64)
}
fn json_or_null(v: &Option<String>) -> Datum {
    v.clone().map_or(Datum::Null, Datum::Json)
}

impl Record for Product {
    fn spec() -> &'static RelationSpec {
        &PRODUCTS
    }
    fn to_row(&self) -> Row {
        vec![
            self.product_id.as_str().into(),
            self.name.clone().into(),
            self.category.clone().into(),
            double_or_null(self.price),
            self.inventory_count.into(),
            timestamp_or_null(self.created_at),
            self.is_active.into(),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(Product {
            product_id: r.text(0)?,
            name: r.opt_text(1)?,
            category: r.opt_text(2)?,
            price: r.opt_f64(3)?.map(F64::new),
            inventory_count: r.opt_i32(4)?,
            created_at: r.opt_timestamp(5)?,
            is_active: r.opt_bool(6)?,
        })
    }
}

impl Record for User {
    fn spec() -> &'static RelationSpec {
        &USERS
    }
    fn to_row(&self) -> Row {
        vec![
            self.user_id.as_str().into(),
            self.email.clone().into(),
            self.country.clone().into(),
            self.city.clone().into(),
            self.device_type.clone().into(),
            timestamp_or_null(self.created_at),
            timestamp_or_null(self.last_login),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(User {
            user_id: r.text(0)?,
            email: r.opt_text(1)?,
            country: r.opt_text(2)?,
            city: r.opt_text(3)?,
            device_type: r.opt_text(4)?,
            created_at: r.opt_timestamp(5)?,
            last_login: r.opt_timestamp(6)?,
        })
    }
}

impl Record for UserEvent {
    fn spec() -> &'static RelationSpec {
        &USER_EVENTS
    }
    fn to_row(&self) -> Row {
        vec![
            self.event_id.as_str().into(),
            self.user_id.clone().into(),
            self.session_id.clone().into(),
            self.event_type.clone().into(),
            self.product_id.clone().into(),
            self.page_url.clone().into(),
            self.referrer_url.clone().into(),
            self.device_type.clone().into(),
            timestamp_or_null(self.event_time),
            json_or_null(&self.event_data),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(UserEvent {
            event_id: r.text(0)?,
            user_id: r.opt_text(1)?,
            session_id: r.opt_text(2)?,
            event_type: r.opt_text(3)?,
            product_id: r.opt_text(4)?,
            page_url: r.opt_text(5)?,
            referrer_url: r.opt_text(6)?,
            device_type: r.opt_text(7)?,
            event_time: r.opt_timestamp(8)?,
            event_data: r.opt_json(9)?,
        })
    }
}
