//! Values and rows to JSON.
//!
//! Numbers stay numbers (integers exactly; `numeric` and `double` as JSON numbers,
//! exact up to 15 significant digits), text is a string, dates are `YYYY-MM-DD`,
//! `jsonb` is inline, and a timestamp takes the [`TimestampForm`] its reader expects
//! (RFC 3339 UTC unless said otherwise).

use chrono::SecondsFormat;
use diffmart_dataflows::datum::{Datum, Micros, RelationSpec};
use rust_decimal::Decimal;
use serde_json::{Map, Number, Value};

/// How a timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampForm {
    /// An RFC 3339 UTC string with as many fraction digits as it needs: `2025-06-01T12:00:00.5Z`.
    Rfc3339,
    /// A number: whole milliseconds since the epoch, `1748779200500`.
    EpochMillis,
    /// A string in whole seconds, UTC without a zone: `2025-06-01 12:00:00`.
    Seconds,
    /// A string in whole seconds with a `Z`: `2025-06-01 12:00:00Z`.
    SecondsZ,
}

/// A timestamp in `form`; `None` when it is out of chrono's range (only the string forms can be).
pub fn timestamp_json(micros: Micros, form: TimestampForm) -> Option<Value> {
    if form == TimestampForm::EpochMillis {
        return Some(Value::from(micros.div_euclid(1000)));
    }
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(Value::String(match form {
        TimestampForm::Rfc3339 => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        TimestampForm::Seconds => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        TimestampForm::SecondsZ => t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        TimestampForm::EpochMillis => unreachable!("returned above"),
    }))
}

/// A value as JSON, timestamps as RFC 3339 UTC strings (`2025-06-01T12:00:00.5Z`).
pub fn datum_to_json(datum: &Datum) -> Value {
    datum_to_json_as(datum, TimestampForm::Rfc3339)
}

/// A value as JSON, timestamps in `form` (as epoch microseconds when out of range).
pub fn datum_to_json_as(datum: &Datum, form: TimestampForm) -> Value {
    match datum {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Bool(*b),
        Datum::Int32(v) => Value::from(*v),
        Datum::Int64(v) => Value::from(*v),
        Datum::Numeric(d) => number(d.to_string().parse().unwrap_or(f64::NAN)),
        Datum::Text(s) => Value::String(s.clone()),
        Datum::Timestamp(micros) => timestamp_json(*micros, form).unwrap_or_else(|| Value::from(*micros)),
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

/// A row as a JSON object keyed by column name, timestamps as RFC 3339.
pub fn row_to_object(spec: &RelationSpec, row: &[Datum]) -> Map<String, Value> {
    row_to_object_as(spec, row, TimestampForm::Rfc3339)
}

/// A row as a JSON object keyed by column name, timestamps in `form`.
pub fn row_to_object_as(spec: &RelationSpec, row: &[Datum], form: TimestampForm) -> Map<String, Value> {
    spec.columns
        .iter()
        .zip(row)
        .map(|(column, datum)| (column.name.to_string(), datum_to_json_as(datum, form)))
        .collect()
}

/// A row as Python's `json.dumps` writes a dict of its columns, which is what the
/// original demos' producers sent: fields in column order, `", "` and `": "`
/// separators, `numeric` as a Python float (`19.9`, `20.0`), timestamps in `form`.
/// Fails only on a timestamp out of range.
pub fn python_object(spec: &RelationSpec, row: &[Datum], form: TimestampForm) -> Result<String, String> {
    let mut out = String::from("{");
    for (i, (column, datum)) in spec.columns.iter().zip(row).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&Value::from(column.name).to_string());
        out.push_str(": ");
        match datum {
            Datum::Numeric(d) => out.push_str(&python_float(*d)),
            Datum::Timestamp(micros) => {
                let value =
                    timestamp_json(*micros, form).ok_or_else(|| format!("{}: event time out of range", column.name))?;
                out.push_str(&value.to_string());
            }
            other => out.push_str(&datum_to_json(other).to_string()),
        }
    }
    out.push('}');
    Ok(out)
}

/// How Python's `json.dumps` prints a float that holds a decimal: `19.9`, `20.0`.
pub fn python_float(value: Decimal) -> String {
    let text = value.normalize().to_string();
    if text.contains('.') { text } else { format!("{text}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffmart_dataflows::datum::Record;
    use diffmart_dataflows::retail::CompetitorPrice;

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

    #[test]
    fn timestamp_forms() {
        let t = 1_735_787_045_250_000; // 2025-01-02 03:04:05.25 UTC
        assert_eq!(timestamp_json(t, TimestampForm::EpochMillis), Some(Value::from(1_735_787_045_250i64)));
        assert_eq!(timestamp_json(t, TimestampForm::Seconds), Some(Value::from("2025-01-02 03:04:05")));
        assert_eq!(timestamp_json(t, TimestampForm::SecondsZ), Some(Value::from("2025-01-02 03:04:05Z")));
        assert_eq!(timestamp_json(-1, TimestampForm::EpochMillis), Some(Value::from(-1)), "floored, not truncated");
    }

    #[test]
    fn rows_as_python_writes_them() {
        let quote = CompetitorPrice {
            ts: 1_735_787_045_250_000,
            product_id: 3,
            competitor: "Shop \"A\"".into(),
            competitor_price: Decimal::new(2000, 2),
        };
        assert_eq!(
            python_object(CompetitorPrice::spec(), &quote.to_row(), TimestampForm::SecondsZ).unwrap(),
            r#"{"ts": "2025-01-02 03:04:05Z", "product_id": 3, "competitor": "Shop \"A\"", "competitor_price": 20.0}"#
        );
        assert_eq!(python_float(Decimal::new(1990, 2)), "19.9");
        assert_eq!(python_float(Decimal::new(5, 2)), "0.05");
    }
}
