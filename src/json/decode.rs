//! JSON to values and rows.
//!
//! A row is read from one JSON object, each column from the field of the same name
//! (or the field a custom decoder names), converted by the column's type. What a
//! field may hold:
//!
//! | column type | JSON |
//! |---|---|
//! | `int`, `bigint` | an integer number in range |
//! | `numeric` | a number, or a string holding one; rounded half away from zero to the column's scale, as `numeric(p, s)` does |
//! | `varchar` | a string |
//! | `timestamptz`, `timestamp` | a string: RFC 3339, `YYYY-MM-DD HH:MM:SS[Z]` (UTC), or an integer: milliseconds since the epoch |
//! | `double precision` | a number |
//! | `boolean` | `true` / `false` |
//! | `date` | a string `YYYY-MM-DD` |
//! | `jsonb` | any value |
//!
//! `null` or a missing field is NULL, which a NOT NULL column refuses. Extra
//! fields are ignored. Custom decoders (other field names, several rows per
//! message) reuse [`datum_from_json`] and [`row_from_fields`].

use std::str::FromStr;

use diffmart_dataflows::datum::{Column, ColumnType, Datum, RelationSpec, Row, canonical_json};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::timestamps::parse_timestamp;
use crate::engine::arrow::round_to_scale;

/// Parses a payload (a message, a request body) as one JSON object.
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!("expected a JSON object, got {}", kind_of(&other))),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// One row of `spec` from a JSON object whose field names are the column names.
pub fn row_from_object(spec: &RelationSpec, object: &Map<String, Value>) -> Result<Row, String> {
    row_from_fields(spec, object, |column| column.name)
}

/// One row of `spec` from a JSON object, each column read from the field `field_of(column)`.
pub fn row_from_fields<'c>(
    spec: &'c RelationSpec,
    object: &Map<String, Value>,
    field_of: impl Fn(&'c Column) -> &'c str,
) -> Result<Row, String> {
    spec.columns
        .iter()
        .map(|column| {
            let field = field_of(column);
            let datum = match object.get(field) {
                Some(value) => datum_from_json(column.ty, value).map_err(|e| format!("field \"{field}\": {e}"))?,
                None => Datum::Null,
            };
            if datum.is_null() && !column.nullable {
                return Err(if object.contains_key(field) {
                    format!("field \"{field}\" is null")
                } else {
                    format!("missing field \"{field}\"")
                });
            }
            Ok(datum)
        })
        .collect()
}

/// A JSON value as a value of a column of type `ty`.
pub fn datum_from_json(ty: ColumnType, value: &Value) -> Result<Datum, String> {
    if value.is_null() {
        return Ok(Datum::Null);
    }
    let wrong = |want: &str| format!("expected {want}, got {}", kind_of(value));
    Ok(match ty {
        ColumnType::Bool => Datum::Bool(value.as_bool().ok_or_else(|| wrong("true or false"))?),
        ColumnType::Int32 => {
            let v = value.as_i64().ok_or_else(|| wrong("an integer"))?;
            Datum::Int32(i32::try_from(v).map_err(|_| format!("{v} is out of range for type integer"))?)
        }
        ColumnType::Int64 => Datum::Int64(value.as_i64().ok_or_else(|| wrong("an integer"))?),
        ColumnType::Numeric { scale } => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                _ => return Err(wrong("a number")),
            };
            let exact = Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .map_err(|_| format!("{text} is not a number that fits numeric"))?;
            Datum::Numeric(round_to_scale(exact, scale))
        }
        ColumnType::Text => Datum::Text(value.as_str().ok_or_else(|| wrong("a string"))?.to_string()),
        ColumnType::TimestampTz | ColumnType::Timestamp => match value {
            Value::String(s) => Datum::Timestamp(parse_timestamp(s)?),
            Value::Number(n) => {
                let millis = n.as_i64().ok_or_else(|| wrong("whole milliseconds since the epoch"))?;
                Datum::Timestamp(millis.checked_mul(1000).ok_or_else(|| format!("{millis} ms is out of range"))?)
            }
            _ => return Err(wrong("a timestamp string or epoch milliseconds")),
        },
        ColumnType::Float64 => Datum::from(value.as_f64().ok_or_else(|| wrong("a number"))?),
        ColumnType::Date => {
            let text = value.as_str().ok_or_else(|| wrong("a date string"))?;
            let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| format!("invalid date {text:?}: expected YYYY-MM-DD"))?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch exists");
            Datum::Date((date - epoch).num_days() as i32)
        }
        ColumnType::Json => Datum::Json(canonical_json(value)),
    })
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => format!("a string {:?}…", s.chars().take(40).collect::<String>()),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffmart_dataflows::datum::Record;
    use diffmart_dataflows::retail::{CompetitorPrice, Purchase};

    fn purchase(json: &str) -> Result<Row, String> {
        parse_object(json.as_bytes()).and_then(|o| row_from_object(Purchase::spec(), &o))
    }

    #[test]
    fn reads_the_producers_json() {
        let row = purchase(
            r#"{"purchase_time": "2025-01-02 03:04:05Z", "product_id": 7, "quantity_purchased": 2, "customer_id": "abc"}"#,
        )
        .unwrap();
        let expected = Purchase {
            purchase_time: 1_735_787_045_000_000,
            product_id: 7,
            quantity_purchased: 2,
            customer_id: "abc".into(),
        };
        assert_eq!(row, expected.to_row());
        let object = parse_object(
            br#"{"ts": 1735787045000, "product_id": 1, "competitor": "ShopA", "competitor_price": 19.995}"#,
        )
        .unwrap();
        let quote = CompetitorPrice::from_row(&row_from_object(CompetitorPrice::spec(), &object).unwrap()).unwrap();
        assert_eq!(quote.ts, 1_735_787_045_000_000);
        assert_eq!(quote.competitor_price, Decimal::new(2000, 2), "rounded half away from zero like numeric(10,2)");
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let err = |json: &str| purchase(json).unwrap_err();
        assert!(err("{not json").starts_with("invalid JSON"));
        assert_eq!(err("[1]"), "expected a JSON object, got an array");
        assert_eq!(
            err(r#"{"purchase_time": "2025-01-02 03:04:05Z", "product_id": 7, "quantity_purchased": 2}"#),
            "missing field \"customer_id\""
        );
        assert_eq!(
            err(
                r#"{"purchase_time": "2025-01-02 03:04:05Z", "product_id": "7", "quantity_purchased": 2, "customer_id": "a"}"#
            ),
            "field \"product_id\": expected an integer, got the string \"7\""
        );
        assert!(
            err(r#"{"purchase_time": "soon", "product_id": 7, "quantity_purchased": 2, "customer_id": "a"}"#)
                .contains("invalid timestamp")
        );
        assert!(
            err(r#"{"purchase_time": "2025-01-02 03:04:05Z", "product_id": 7, "quantity_purchased": 9999999999, "customer_id": "a"}"#)
                .contains("out of range")
        );
        assert_eq!(
            err(r#"{"purchase_time": null, "product_id": 7, "quantity_purchased": 2, "customer_id": "a"}"#),
            "field \"purchase_time\" is null"
        );
    }
}
