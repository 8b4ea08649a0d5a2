//! Sinks: relations' changes leaving diffmart, fed by the store's change feed
//! (`Store::subscribe`: a snapshot, then every change batch in order).

pub mod inventory;
pub mod kafka;

use chrono::SecondsFormat;
use diffmart_dataflows::datum::{Datum, RelationSpec};
use serde_json::{Map, Number, Value};

/// A value as JSON: numbers (integers exactly; `numeric` and `double` as JSON
/// numbers, exact up to 15 significant digits), text, timestamps as RFC 3339 UTC
/// strings (`2025-06-01T12:00:00.5Z`), dates as `YYYY-MM-DD`, `jsonb` inline.
pub fn datum_to_json(datum: &Datum) -> Value {
    match datum {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Bool(*b),
        Datum::Int32(v) => Value::from(*v),
        Datum::Int64(v) => Value::from(*v),
        Datum::Numeric(d) => number(d.to_string().parse().unwrap_or(f64::NAN)),
        Datum::Text(s) => Value::String(s.clone()),
        Datum::Timestamp(micros) => match chrono::DateTime::from_timestamp_micros(*micros) {
            Some(t) => Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => Value::from(*micros),
        },
        Datum::Float64(v) => number(v.get()),
        Datum::Date(days) => match chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::days((*days).into())))
        {
            Some(date) => Value::String(date.format("%Y-%m-%d").to_string()),
            None => Value::from(*days),
        },
        Datum::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
    }
}

/// JSON has no NaN or infinities: those become strings, as PostgreSQL spells them.
fn number(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".into()),
        None if v > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// A row as a JSON object keyed by column name, in column order.
pub fn row_to_object(spec: &RelationSpec, row: &[Datum]) -> Map<String, Value> {
    spec.columns.iter().zip(row).map(|(column, datum)| (column.name.to_string(), datum_to_json(datum))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn values_as_json() {
        assert_eq!(datum_to_json(&Datum::Numeric(Decimal::new(1999, 2))).to_string(), "19.99");
        assert_eq!(datum_to_json(&Datum::Timestamp(1_735_787_045_000_000)), Value::from("2025-01-02T03:04:05Z"));
        assert_eq!(datum_to_json(&Datum::Timestamp(1_735_787_045_500_000)), Value::from("2025-01-02T03:04:05.500Z"));
        assert_eq!(datum_to_json(&Datum::Date(1)), Value::from("1970-01-02"));
        assert_eq!(datum_to_json(&Datum::from(f64::NAN)), Value::from("NaN"));
        assert_eq!(datum_to_json(&Datum::Json("{\"a\": [1]}".into())), serde_json::json!({"a": [1]}));
        assert_eq!(datum_to_json(&Datum::Null), Value::Null);
    }
}
