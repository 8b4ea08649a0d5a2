//! The inventory pipeline's sinks (`shared/spec/PIPELINES.md` §D): `inventory_events` to
//! `inventory-events` and `inventory_alerts` to `inventory-alerts`, in the original's JSON.

use diffmart_dataflows::datum::{Datum, RelationSpec, Row};
use serde_json::{Map, Value};

use super::kafka::{KafkaSink, SinkFormat};

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

/// A row of `inventory_events` or `inventory_alerts` as the original's JSON: camelCase
/// fields, and the event or alert time as `timestamp` in epoch milliseconds.
pub fn inventory_sink_json(spec: &RelationSpec, row: &Row) -> Value {
    let mut object = Map::new();
    for (column, datum) in spec.columns.iter().zip(row) {
        let value = match datum {
            Datum::Timestamp(micros) => Value::from(micros.div_euclid(1000)),
            other => super::datum_to_json(other),
        };
        let name = if matches!(column.name, "event_time" | "alert_time") {
            "timestamp".to_string()
        } else {
            camel_case(column.name)
        };
        object.insert(name, value);
    }
    Value::Object(object)
}

/// The two sinks, on `prefix` + `inventory-events` / `inventory-alerts`, keyed by product id.
pub fn inventory_sinks(prefix: &str) -> Vec<KafkaSink> {
    vec![
        KafkaSink {
            relation: "inventory_events".into(),
            topic: format!("{prefix}inventory-events"),
            format: SinkFormat::Inserts(inventory_sink_json),
            key_column: Some(0),
        },
        KafkaSink {
            relation: "inventory_alerts".into(),
            topic: format!("{prefix}inventory-alerts"),
            format: SinkFormat::Inserts(inventory_sink_json),
            key_column: Some(1),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffmart_dataflows::datum::F64;

    #[test]
    fn events_are_camel_case_with_millisecond_timestamps() {
        let spec = diffmart_dataflows::inventory::view_specs()[1];
        let row: Row = vec![
            "P1".into(),
            "Laptop".into(),
            "INVENTORY_DECREASED".into(),
            17.into(),
            15.into(),
            Datum::Float64(F64::new(1899.99)),
            Datum::Float64(F64::new(1899.99)),
            Datum::Timestamp(1_700_000_000_123_456),
            "Order o1: 2 units sold".into(),
        ];
        let json = inventory_sink_json(spec, &row);
        assert_eq!(
            json,
            serde_json::json!({
                "productId": "P1", "productName": "Laptop", "eventType": "INVENTORY_DECREASED",
                "previousInventory": 17, "currentInventory": 15, "previousPrice": 1899.99,
                "currentPrice": 1899.99, "timestamp": 1_700_000_000_123i64, "changeReason": "Order o1: 2 units sold"
            })
        );
        assert_eq!(camel_case("previous_inventory"), "previousInventory");
    }
}
