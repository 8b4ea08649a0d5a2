//! Fields of `event_data` (jsonb), read the way PostgreSQL's SQL reads them.
//!
//! `(event_data->>'total_amount')::double precision` and
//! `(event_data->>'item_count')::int`: `->>` gives the field as text (a JSON string's
//! contents, or a number's digits), NULL when `event_data` is NULL, not an object,
//! has no such key, or holds JSON `null`; the cast then parses that text.
//!
//! Where PostgreSQL's cast would raise an error and abort the statement, diffmart
//! cannot refuse an event that is already stored, so the field counts as NULL
//! (SUM skips it):
//! - `total_amount`: a string that is not a number (`"abc"`), `true`/`false`, an
//!   array or an object;
//! - `item_count`: the same, plus numbers that are not integers (`2.5`, and also
//!   `2.0`, which PostgreSQL's `int` cast refuses) and integers outside `int`'s range.
//!
//! Strings holding a number are read like PostgreSQL reads them (`"12.5"` → 12.5,
//! `" 3 "` → 3, `"NaN"`, `"Infinity"`).

use serde_json::Value;

/// The field `key` of a JSON object given as (canonical jsonb) text, when present and not `null`.
fn field(json: &str, key: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(mut map)) => map.remove(key).filter(|v| !v.is_null()),
        _ => None,
    }
}

/// `(json->>'key')::double precision`, NULL where PostgreSQL would fail (see the module docs).
pub fn double_field(json: &str, key: &str) -> Option<f64> {
    match field(json, key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_double(&s),
        _ => None,
    }
}

/// `(json->>'key')::int`, NULL where PostgreSQL would fail (see the module docs).
pub fn int_field(json: &str, key: &str) -> Option<i32> {
    match field(json, key)? {
        Value::Number(n) => n.as_i64().and_then(|v| i32::try_from(v).ok()),
        Value::String(s) => s.trim().parse::<i32>().ok(),
        _ => None,
    }
}

/// PostgreSQL's `float8in`: surrounding white space, decimal or exponent notation,
/// `NaN`, `Infinity`/`inf` with an optional sign, all case-insensitive.
fn parse_double(text: &str) -> Option<f64> {
    // Rust's parser takes the same forms, words included (`inf`, `infinity`, `nan`, any case).
    text.trim().parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_counts_of_the_seed_data() {
        let purchase =
            r#"{"order_id": "ORD001", "item_count": 2, "total_amount": 149.98, "payment_method": "credit_card"}"#;
        assert_eq!(double_field(purchase, "total_amount"), Some(149.98));
        assert_eq!(int_field(purchase, "item_count"), Some(2));
        assert_eq!(double_field("{}", "total_amount"), None);
        assert_eq!(int_field(r#"{"quantity": 1}"#, "item_count"), None);
    }

    #[test]
    fn nulls_strings_and_wrong_types() {
        assert_eq!(double_field(r#"{"total_amount": null}"#, "total_amount"), None);
        assert_eq!(double_field(r#"{"total_amount": "12.5"}"#, "total_amount"), Some(12.5));
        assert_eq!(double_field(r#"{"total_amount": " 7 "}"#, "total_amount"), Some(7.0));
        assert!(double_field(r#"{"total_amount": "NaN"}"#, "total_amount").unwrap().is_nan());
        assert_eq!(double_field(r#"{"total_amount": "-Infinity"}"#, "total_amount"), Some(f64::NEG_INFINITY));
        assert_eq!(double_field(r#"{"total_amount": "abc"}"#, "total_amount"), None);
        assert_eq!(double_field(r#"{"total_amount": true}"#, "total_amount"), None);
        assert_eq!(double_field(r#"{"total_amount": [1]}"#, "total_amount"), None);
        assert_eq!(double_field(r#"[{"total_amount": 1}]"#, "total_amount"), None);
        assert_eq!(double_field("3", "total_amount"), None);
        assert_eq!(int_field(r#"{"item_count": 2.5}"#, "item_count"), None);
        assert_eq!(int_field(r#"{"item_count": 2.0}"#, "item_count"), None);
        assert_eq!(int_field(r#"{"item_count": "3"}"#, "item_count"), Some(3));
        assert_eq!(int_field(r#"{"item_count": " -3 "}"#, "item_count"), Some(-3));
        assert_eq!(int_field(r#"{"item_count": 3000000000}"#, "item_count"), None);
        assert_eq!(int_field(r#"{"item_count": "2.5"}"#, "item_count"), None);
    }
}
