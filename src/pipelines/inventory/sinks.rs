//! The inventory pipeline's sinks (`shared/spec/PIPELINES.md` §D): `inventory_events` to
//! `inventory-events` and `inventory_alerts` to `inventory-alerts`, in the original's
//! JSON (camelCase fields, the event or alert time as `timestamp` in epoch milliseconds).

use diffmart_dataflows::datum::{RelationSpec, Row};
use serde_json::Value;

use super::topics::original_json;
use crate::sinks::kafka::{KafkaSink, SinkFormat};

/// A row of `inventory_events` or `inventory_alerts` as the original's JSON.
pub fn inventory_sink_json(spec: &RelationSpec, row: &Row) -> Value {
    original_json(spec, row)
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
    use diffmart_dataflows::datum::{Datum, F64};

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
    }
}
