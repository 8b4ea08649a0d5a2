//! Reading and writing the real binary's relations over pgwire in the canonical form of
//! [`super`], so they compare row for row with PostgreSQL's ([`super::pg_canonical_rows`]).

use diffmart_dataflows::datum::{ColumnType, Datum, RelationSpec};
use rust_decimal::Decimal;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{CanonicalRow, canonical_date, canonical_decimal, canonical_float, canonical_text, canonical_timestamp};

/// Rows of a query as text (`NULL` for nulls), through the simple query protocol.
pub async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect()
}

/// A value as both diffmart and PostgreSQL read it as the column's type in SQL.
pub fn sql_literal(datum: &Datum) -> String {
    match datum {
        Datum::Null => "NULL".into(),
        Datum::Bool(b) => b.to_string(),
        Datum::Int32(v) => v.to_string(),
        Datum::Int64(v) => v.to_string(),
        Datum::Numeric(v) => v.to_string(),
        Datum::Float64(v) => format!("{:?}", v.get()),
        Datum::Text(s) | Datum::Json(s) => canonical_text(s),
        Datum::Timestamp(t) => format!("'{}'", canonical_timestamp(*t)),
        Datum::Date(d) => format!("'{}'", canonical_date(*d)),
    }
}

/// `(v1, v2, …)`: a row as a VALUES tuple.
pub fn values_tuple(row: &[Datum]) -> String {
    format!("({})", row.iter().map(sql_literal).collect::<Vec<_>>().join(", "))
}

/// A value as diffmart's text protocol prints it, in canonical form.
pub fn canonical_wire_value(ty: ColumnType, text: Option<&str>) -> String {
    let Some(text) = text else { return "NULL".into() };
    match ty {
        ColumnType::Int32 | ColumnType::Int64 | ColumnType::Numeric { .. } => {
            canonical_decimal(text.parse::<Decimal>().unwrap_or_else(|e| panic!("number {text}: {e}")))
        }
        ColumnType::Float64 => canonical_float(text.parse::<f64>().unwrap_or_else(|e| panic!("double {text}: {e}"))),
        ColumnType::Bool => match text {
            "t" | "true" => "true".into(),
            "f" | "false" => "false".into(),
            other => panic!("boolean {other}"),
        },
        ColumnType::Timestamp | ColumnType::TimestampTz => canonical_timestamp(parse_wire_timestamp(text)),
        ColumnType::Text | ColumnType::Json | ColumnType::Date => canonical_text(text),
    }
}

/// Microseconds since the epoch of a timestamp as diffmart prints it (UTC).
pub fn parse_wire_timestamp(text: &str) -> i64 {
    let trimmed = text.trim_end_matches("+00:00").trim_end_matches("+00").trim_end_matches('Z');
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(trimmed, format) {
            return t.and_utc().timestamp_micros();
        }
    }
    panic!("unparsable timestamp {text}")
}

/// Every row of relation `spec` as diffmart serves it over the simple query protocol,
/// in canonical form, sorted.
pub async fn diffmart_canonical_rows(client: &Client, spec: &RelationSpec) -> Vec<CanonicalRow> {
    let names: Vec<String> = spec.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let sql = format!("SELECT {} FROM {}", names.join(", "), spec.name);
    let messages = client.simple_query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut rows: Vec<CanonicalRow> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some(spec.columns.iter().enumerate().map(|(i, c)| canonical_wire_value(c.ty, row.get(i))).collect())
            }
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}
