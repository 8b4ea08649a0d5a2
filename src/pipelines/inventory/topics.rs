//! The inventory demo's JSON (seed 002): product objects (the catalog file and the
//! `product-updates` topic) and order lines (`order-events`), read into rows and written
//! back in the original's format: each column a camelCase field (`product_id` →
//! `productId`), the time of an order, event or alert as `timestamp` in epoch
//! milliseconds. The sinks (`sinks.rs`) write the same format.
//!
//! What is checked here is the *shape*: a field of the wrong JSON type, a missing
//! `price`, `inventory` or `timestamp`, or a message that is not JSON makes the whole
//! message a source error (`diffmart_source_errors`). Empty or missing ids and names,
//! a quantity ≤ 0 and the like are *content*: those rows go in, and the pipeline rejects
//! them visibly in `inventory_rejections`.

use diffmart_dataflows::datum::{Column, ColumnType, Datum, Micros, Record, RelationSpec, Row, canonical_json};
use diffmart_dataflows::inventory::{OrderEvent, ProductUpdate};
use serde_json::{Map, Value};

use crate::json::{TimestampForm, datum_from_json, datum_to_json_as, parse_object};
use crate::sources::clock::now_micros;
use crate::sources::kafka::topic::{KafkaMessage, KafkaSource};

/// The topics, keyed by product id; a product message's Kafka timestamp is its update
/// time, which is read back as `update_time`.
pub fn topics() -> Vec<KafkaSource> {
    vec![
        KafkaSource::custom(
            "product-updates",
            ProductUpdate::spec(),
            "product_id",
            decode_product_updates,
            encode_original,
        )
        .stamped_with_event_time(),
        KafkaSource::custom("order-events", OrderEvent::spec(), "product_id", decode_order_events, encode_original),
    ]
}

/// Products one message may hold: `arrival` packs the offset and the index in the message.
pub const MAX_PRODUCTS_PER_MESSAGE: usize = 1 << 20;

/// `arrival` of the `index`-th row of the message at `offset`: offset order first.
pub fn arrival_of(offset: i64, index: usize) -> i64 {
    offset.saturating_mul(MAX_PRODUCTS_PER_MESSAGE as i64).saturating_add(index as i64)
}

/// Columns the original's objects do not carry: where a row stands in its topic, and
/// a product's update time (its message's timestamp).
const NOT_IN_JSON: [&str; 2] = ["arrival", "update_time"];

/// A column's field in the original's JSON.
pub fn field_name(column: &str) -> String {
    match column {
        "order_time" | "event_time" | "alert_time" => "timestamp".into(),
        _ => camel_case(column),
    }
}

/// `product_id` → `productId`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A row as the original's JSON object (what `product-updates`, `order-events` and the
/// sinks carry).
pub fn original_json(spec: &RelationSpec, row: &Row) -> Value {
    let fields = spec.columns.iter().zip(row).filter(|(column, _)| !NOT_IN_JSON.contains(&column.name));
    Value::Object(
        fields
            .map(|(column, datum)| (field_name(column.name), datum_to_json_as(datum, TimestampForm::EpochMillis)))
            .collect(),
    )
}

fn encode_original(spec: &RelationSpec, row: &Row) -> Result<String, String> {
    Ok(original_json(spec, row).to_string())
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 { format!("{}…", text.chars().take(40).collect::<String>()) } else { text }
}

/// A column from its field of a JSON object, by the shape rules above: text must be a
/// string, `tags` an array of strings, and a NOT NULL column's field must be there.
fn column_from_object(object: &Map<String, Value>, column: &Column) -> Result<Datum, String> {
    let field = field_name(column.name);
    let Some(value) = object.get(&field).filter(|value| !value.is_null()) else {
        return if column.nullable { Ok(Datum::Null) } else { Err(format!("missing field \"{field}\"")) };
    };
    match (column.ty, value) {
        (ColumnType::Text, Value::String(s)) => Ok(Datum::Text(s.clone())),
        (ColumnType::Text, other) => Err(format!("field \"{field}\": expected a string, got {}", short(other))),
        (ColumnType::Json, Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Datum::Json(canonical_json(value)))
        }
        (ColumnType::Json, other) => {
            Err(format!("field \"{field}\": expected an array of strings, got {}", short(other)))
        }
        (ty, value) => datum_from_json(ty, value).map_err(|e| format!("field \"{field}\": {e}")),
    }
}

/// A row of `spec` from one of the original's objects, with the columns the object
/// does not carry (see [`NOT_IN_JSON`]) given.
fn row_from_object(
    spec: &RelationSpec,
    object: &Map<String, Value>,
    not_in_json: impl Fn(&str) -> Datum,
) -> Result<Row, String> {
    spec.columns
        .iter()
        .map(|column| {
            if NOT_IN_JSON.contains(&column.name) {
                Ok(not_in_json(column.name))
            } else {
                column_from_object(object, column)
            }
        })
        .collect()
}

/// One product object as a `product_updates` row.
pub fn product_from_object(object: &Map<String, Value>, update_time: Micros, arrival: i64) -> Result<Row, String> {
    row_from_object(ProductUpdate::spec(), object, |column| match column {
        "update_time" => Datum::Timestamp(update_time),
        _ => Datum::Int64(arrival),
    })
}

/// One order line `{"orderId", "productId", "quantity", "timestamp"}` as an `order_events` row.
pub fn order_from_object(object: &Map<String, Value>, arrival: i64) -> Result<Row, String> {
    row_from_object(OrderEvent::spec(), object, |_| Datum::Int64(arrival))
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
    message.timestamp_ms.and_then(|ms| ms.checked_mul(1000)).unwrap_or_else(now_micros)
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
                .map_err(|e| if value.is_array() { format!("element {i}: {e}") } else { e })
        })
        .collect()
}

/// Decoder of `order-events`: one order line per message.
pub fn decode_order_events(_spec: &RelationSpec, message: &KafkaMessage<'_>) -> Result<Vec<Row>, String> {
    let object = parse_object(message.payload)?;
    Ok(vec![order_from_object(&object, arrival_of(message.offset, 0))?])
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
        assert_eq!((product.rating.map(|r| r.get()), product.review_count), (Some(4.0), Some(2)));
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
        assert_eq!(err(br#"{"productId": "P", "price": null, "inventory": 1}"#), "missing field \"price\"");
        assert!(
            err(br#"[{"productId": "P", "price": 1, "inventory": "many"}]"#)
                .starts_with("element 0: field \"inventory\"")
        );
        assert_eq!(
            err(br#"{"productId": 5, "price": 1, "inventory": 1}"#),
            "field \"productId\": expected a string, got 5"
        );
        assert_eq!(
            err(br#"{"productId": "P", "price": 1, "inventory": 1, "tags": [1]}"#),
            "field \"tags\": expected an array of strings, got [1]"
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
    fn rows_round_trip_through_the_original_json() {
        let order = OrderEvent {
            order_id: Some("o1".into()),
            product_id: Some("P".into()),
            quantity: Some(2),
            order_time: 1_700_000_000_123_000,
            arrival: 0,
        };
        let json = original_json(OrderEvent::spec(), &order.to_row());
        assert_eq!(
            json,
            serde_json::json!({"orderId": "o1", "productId": "P", "quantity": 2, "timestamp": 1_700_000_000_123i64})
        );
        let back = order_from_object(json.as_object().unwrap(), 0).unwrap();
        assert_eq!(OrderEvent::from_row(&back).unwrap(), order);
        let product = ProductUpdate {
            product_id: Some("P1".into()),
            name: Some("Lamp".into()),
            description: None,
            price: diffmart_dataflows::datum::F64::new(19.5),
            category: Some("Home".into()),
            brand: None,
            image_url: Some("/p1.png".into()),
            inventory: 4,
            tags: Some(diffmart_dataflows::datum::canonical_json(&serde_json::json!(["a", "b"]))),
            rating: None,
            review_count: Some(3),
            update_time: 1_700_000_000_123_000,
            arrival: 9,
        };
        let json = original_json(ProductUpdate::spec(), &product.to_row());
        assert_eq!(
            json,
            serde_json::json!({
                "productId": "P1", "name": "Lamp", "description": null, "category": "Home", "brand": null,
                "price": 19.5, "inventory": 4, "imageUrl": "/p1.png", "tags": ["a", "b"], "rating": null,
                "reviewCount": 3
            })
        );
        let back = product_from_object(json.as_object().unwrap(), product.update_time, product.arrival).unwrap();
        assert_eq!(ProductUpdate::from_row(&back).unwrap(), product);
    }
}
