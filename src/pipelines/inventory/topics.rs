//! The inventory pipeline's JSON (seed 002): product objects (the catalog file and the
//! `product-updates` topic) and order lines (`order-events`), read into rows and written
//! back in the original's format (camelCase fields, epoch-millisecond timestamps).
//!
//! What is checked here is the *shape*: a field of the wrong JSON type, a missing
//! `price`, `inventory` or `timestamp`, or a message that is not JSON makes the whole
//! message a source error (`diffmart_source_errors`). Empty or missing ids and names,
//! a quantity ≤ 0 and the like are *content*: those rows go in, and the pipeline rejects
//! them visibly in `inventory_rejections`.

use std::path::Path;

use anyhow::Context;
use diffmart_dataflows::datum::{ColumnType, Datum, F64, Micros, Record, RelationSpec, Row};
use diffmart_dataflows::inventory::{OrderEvent, ProductUpdate};
use serde_json::{Map, Value, json};

use super::kafka::KafkaMessage;
use super::kafka::decode::datum_from_json;

/// Products one message may hold: `arrival` packs the offset and the index in the message.
pub const MAX_PRODUCTS_PER_MESSAGE: usize = 1 << 20;

/// `arrival` of the `index`-th row of the message at `offset`: offset order first.
pub fn arrival_of(offset: i64, index: usize) -> i64 {
    offset.saturating_mul(MAX_PRODUCTS_PER_MESSAGE as i64).saturating_add(index as i64)
}

fn optional_text(object: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("field \"{field}\": expected a string, got {}", short(other))),
    }
}

fn typed(object: &Map<String, Value>, field: &str, ty: ColumnType, required: bool) -> Result<Datum, String> {
    let datum = match object.get(field) {
        None => Datum::Null,
        Some(value) => datum_from_json(ty, value).map_err(|e| format!("field \"{field}\": {e}"))?,
    };
    if required && datum.is_null() {
        return Err(format!("missing field \"{field}\""));
    }
    Ok(datum)
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 { format!("{}…", text.chars().take(40).collect::<String>()) } else { text }
}

/// One product object as a `product_updates` row.
pub fn product_from_object(
    object: &Map<String, Value>,
    update_time: Micros,
    arrival: i64,
) -> Result<ProductUpdate, String> {
    let float = |field: &str, required: bool| -> Result<Option<F64>, String> {
        Ok(match typed(object, field, ColumnType::Float64, required)? {
            Datum::Float64(v) => Some(v),
            _ => None,
        })
    };
    let int = |field: &str, required: bool| -> Result<Option<i32>, String> {
        Ok(match typed(object, field, ColumnType::Int32, required)? {
            Datum::Int32(v) => Some(v),
            _ => None,
        })
    };
    let tags = match object.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(diffmart_dataflows::datum::canonical_json(&Value::Array(items.clone())))
        }
        Some(other) => return Err(format!("field \"tags\": expected an array of strings, got {}", short(other))),
    };
    Ok(ProductUpdate {
        product_id: optional_text(object, "productId")?,
        name: optional_text(object, "name")?,
        description: optional_text(object, "description")?,
        price: float("price", true)?.expect("required"),
        category: optional_text(object, "category")?,
        brand: optional_text(object, "brand")?,
        image_url: optional_text(object, "imageUrl")?,
        inventory: int("inventory", true)?.expect("required"),
        tags,
        rating: float("rating", false)?,
        review_count: int("reviewCount", false)?,
        update_time,
        arrival,
    })
}

/// One order line `{"orderId", "productId", "quantity", "timestamp"}` as an `order_events` row.
pub fn order_from_object(object: &Map<String, Value>, arrival: i64) -> Result<OrderEvent, String> {
    let quantity = match typed(object, "quantity", ColumnType::Int32, false)? {
        Datum::Int32(v) => Some(v),
        _ => None,
    };
    let Datum::Timestamp(order_time) = typed(object, "timestamp", ColumnType::TimestampTz, true)? else {
        unreachable!("a required timestamp field is a timestamp")
    };
    Ok(OrderEvent {
        order_id: optional_text(object, "orderId")?,
        product_id: optional_text(object, "productId")?,
        quantity,
        order_time,
        arrival,
    })
}

/// The products of a JSON value: one object, or an array of objects.
pub fn product_objects(value: &Value) -> Result<Vec<&Map<String, Value>>, String> {
    match value {
        Value::Object(object) => Ok(vec![object]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item.as_object().ok_or_else(|| format!("element {i}: expected a product object")))
            .collect(),
        other => Err(format!("expected a product object or an array of them, got {}", short(other))),
    }
}

/// The message's time: its Kafka timestamp, or now when it has none.
fn message_time(message: &KafkaMessage<'_>) -> Micros {
    message.timestamp_ms.and_then(|ms| ms.checked_mul(1000)).unwrap_or_else(super::now_micros)
}

/// Decoder of `product-updates`: one product object or an array of them per message.
pub fn decode_product_updates(_spec: &RelationSpec, message: &KafkaMessage<'_>) -> Result<Vec<Row>, String> {
    let value: Value = serde_json::from_slice(message.payload).map_err(|e| format!("invalid JSON: {e}"))?;
    let objects = product_objects(&value)?;
    if objects.len() > MAX_PRODUCTS_PER_MESSAGE {
        return Err(format!("{} products in one message, at most {MAX_PRODUCTS_PER_MESSAGE}", objects.len()));
    }
    let time = message_time(message);
    objects
        .into_iter()
        .enumerate()
        .map(|(i, object)| {
            product_from_object(object, time, arrival_of(message.offset, i))
                .map(|p| p.to_row())
                .map_err(|e| if value.is_array() { format!("element {i}: {e}") } else { e })
        })
        .collect()
}

/// Decoder of `order-events`: one order line per message.
pub fn decode_order_events(_spec: &RelationSpec, message: &KafkaMessage<'_>) -> Result<Vec<Row>, String> {
    let object = super::kafka::decode::parse_object(message.payload)?;
    Ok(vec![order_from_object(&object, arrival_of(message.offset, 0))?.to_row()])
}

/// Reads a catalog file in the original's format (`initial-products.json`: an array of
/// product objects), every product stamped with `load_time` and its index as arrival.
pub fn load_catalog_file(path: &Path, load_time: Micros) -> anyhow::Result<Vec<ProductUpdate>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the catalog {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("the catalog {} is not valid JSON", path.display()))?;
    let objects = product_objects(&value).map_err(|e| anyhow::anyhow!("the catalog {}: {e}", path.display()))?;
    objects
        .into_iter()
        .enumerate()
        .map(|(i, object)| {
            product_from_object(object, load_time, i as i64)
                .map_err(|e| anyhow::anyhow!("the catalog {}, product {i}: {e}", path.display()))
        })
        .collect()
}

fn float_json(value: F64) -> Value {
    serde_json::Number::from_f64(value.get()).map_or(Value::Null, Value::Number)
}

/// A product as the original's JSON object (what `product-updates` carries).
pub fn product_json(product: &ProductUpdate) -> Value {
    let tags: Value = product.tags.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
    json!({
        "productId": product.product_id,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "brand": product.brand,
        "price": float_json(product.price),
        "inventory": product.inventory,
        "imageUrl": product.image_url,
        "tags": tags,
        "rating": product.rating.map(float_json),
        "reviewCount": product.review_count,
    })
}

/// An order line as `order-events` carries it (`timestamp` in epoch milliseconds).
pub fn order_json(order: &OrderEvent) -> Value {
    json!({
        "orderId": order.order_id,
        "productId": order.product_id,
        "quantity": order.quantity,
        "timestamp": order.order_time.div_euclid(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8], offset: i64) -> KafkaMessage<'_> {
        KafkaMessage { topic: "t", partition: 0, offset, timestamp_ms: Some(1_700_000_000_123), key: None, payload }
    }

    #[test]
    fn products_come_as_objects_or_arrays() {
        let one = br#"{"productId": "P1", "name": "A", "price": 9.5, "inventory": 3, "tags": ["x"], "rating": 4, "reviewCount": 2}"#;
        let rows = decode_product_updates(ProductUpdate::spec(), &message(one, 7)).unwrap();
        let product = ProductUpdate::from_row(&rows[0]).unwrap();
        assert_eq!(product.product_id.as_deref(), Some("P1"));
        assert_eq!((product.price.get(), product.inventory, product.arrival), (9.5, 3, 7 << 20));
        assert_eq!(product.update_time, 1_700_000_000_123_000);
        assert_eq!(product.tags.as_deref(), Some("[\"x\"]"));
        let many = br#"[{"productId": "P1", "name": "A", "price": 1, "inventory": 1}, {"productId": "", "price": 2, "inventory": 0}]"#;
        let rows = decode_product_updates(ProductUpdate::spec(), &message(many, 2)).unwrap();
        assert_eq!(rows.len(), 2, "an empty id is the pipeline's to reject");
        assert_eq!(ProductUpdate::from_row(&rows[1]).unwrap().arrival, (2 << 20) + 1);
    }

    #[test]
    fn malformed_messages_say_why() {
        let err = |payload: &[u8]| decode_product_updates(ProductUpdate::spec(), &message(payload, 0)).unwrap_err();
        assert!(err(b"{oops").starts_with("invalid JSON"));
        assert_eq!(err(br#"{"productId": "P", "inventory": 1}"#), "missing field \"price\"");
        assert!(
            err(br#"[{"productId": "P", "price": 1, "inventory": "many"}]"#)
                .starts_with("element 0: field \"inventory\"")
        );
        assert!(err(b"[1]").contains("element 0: expected a product object"));
        assert!(err(b"3").contains("expected a product object or an array"));
        let order = |payload: &[u8]| decode_order_events(OrderEvent::spec(), &message(payload, 0));
        assert_eq!(
            order(br#"{"orderId": "o", "productId": "P", "quantity": 2}"#).unwrap_err(),
            "missing field \"timestamp\""
        );
        let row = order(br#"{"orderId": "o", "productId": "P", "quantity": -1, "timestamp": 1700000000000}"#).unwrap();
        assert_eq!(OrderEvent::from_row(&row[0]).unwrap().quantity, Some(-1), "the pipeline rejects it");
    }

    #[test]
    fn orders_round_trip_through_json() {
        let order = OrderEvent {
            order_id: Some("o1".into()),
            product_id: Some("P".into()),
            quantity: Some(2),
            order_time: 1_700_000_000_123_000,
            arrival: 0,
        };
        let back = order_from_object(order_json(&order).as_object().unwrap(), 0).unwrap();
        assert_eq!(back, order);
    }
}
