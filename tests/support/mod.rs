//! Shared helpers of the integration tests: a throwaway PostgreSQL server
//! ([`postgres::TestPostgres`]) and multiset comparison of relations between
//! diffmart and PostgreSQL in a canonical text form.
//!
//! Canonical form of a value: `NULL`; numbers (integers and numerics alike) as
//! the normalised decimal (`12.50` → `12.5`, `-0` → `0`); text in single quotes;
//! timestamps as RFC 3339 UTC with microseconds. A row is the list of its
//! canonical values, a relation the sorted list of its rows.

#![allow(dead_code)]

pub mod oracle;
pub mod overrides;
pub mod postgres;
pub mod server;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use diffmart_dataflows::datum::{ColumnType, Datum, RelationSpec, Row};
use rust_decimal::Decimal;

/// A row in canonical form.
pub type CanonicalRow = Vec<String>;

pub fn canonical_decimal(d: Decimal) -> String {
    if d.is_zero() { "0".to_string() } else { d.normalize().to_string() }
}

pub fn canonical_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("<timestamp {micros}us out of range>"),
    }
}

/// Doubles compare to 12 significant digits: PostgreSQL and Rust may sum in a
/// different order, which moves the last bits.
pub fn canonical_float(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.is_finite() {
        format!("{:.11e}", v)
    } else {
        v.to_string()
    }
}

pub fn canonical_date(days: i32) -> String {
    match chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(days.into())))
    {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => format!("<date {days} out of range>"),
    }
}

pub fn canonical_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A diffmart value in canonical form.
pub fn canonical_datum(d: &Datum) -> String {
    match d {
        Datum::Null => "NULL".to_string(),
        Datum::Bool(b) => b.to_string(),
        Datum::Int32(v) => v.to_string(),
        Datum::Int64(v) => v.to_string(),
        Datum::Numeric(v) => canonical_decimal(*v),
        Datum::Text(s) => canonical_text(s),
        Datum::Timestamp(t) => canonical_timestamp(*t),
        Datum::Float64(v) => canonical_float(v.get()),
        Datum::Date(days) => canonical_date(*days),
        Datum::Json(text) => canonical_text(text),
    }
}

/// diffmart rows in canonical form, sorted.
pub fn canonical_rows(rows: &[Row]) -> Vec<CanonicalRow> {
    let mut out: Vec<CanonicalRow> = rows.iter().map(|r| r.iter().map(canonical_datum).collect()).collect();
    out.sort();
    out
}

/// The select-list expression that makes PostgreSQL print column `name` of type
/// `ty` as text [`canonical_pg_value`] understands.
pub fn pg_text_expr(name: &str, ty: ColumnType) -> String {
    match ty {
        // Exact: extract() returns numeric since PostgreSQL 14.
        ColumnType::TimestampTz | ColumnType::Timestamp => {
            format!("(extract(epoch from \"{name}\") * 1000000)::bigint::text")
        }
        _ => format!("\"{name}\"::text"),
    }
}

/// A value printed by [`pg_text_expr`] in canonical form.
pub fn canonical_pg_value(ty: ColumnType, text: Option<&str>) -> String {
    let Some(text) = text else { return "NULL".to_string() };
    match ty {
        ColumnType::Int32 | ColumnType::Int64 | ColumnType::Numeric { .. } => match Decimal::from_str(text) {
            Ok(d) => canonical_decimal(d),
            Err(_) => format!("<unparsable number {text}>"),
        },
        ColumnType::Float64 => match text.trim().parse::<f64>() {
            Ok(v) => canonical_float(v),
            Err(_) => format!("<unparsable double {text}>"),
        },
        ColumnType::Date => canonical_text(text),
        ColumnType::Json => canonical_text(text),
        ColumnType::TimestampTz | ColumnType::Timestamp => match text.parse::<i64>() {
            Ok(micros) => canonical_timestamp(micros),
            Err(_) => format!("<unparsable timestamp {text}>"),
        },
        ColumnType::Bool => match text {
            "true" | "t" => "true".to_string(),
            "false" | "f" => "false".to_string(),
            other => format!("<unparsable bool {other}>"),
        },
        ColumnType::Text => canonical_text(text),
    }
}

/// The SELECT that reads relation `spec` (by its name and column names) from PostgreSQL as text.
pub fn pg_select(spec: &RelationSpec) -> String {
    let columns: Vec<String> = spec.columns.iter().map(|c| pg_text_expr(c.name, c.ty)).collect();
    format!("SELECT {} FROM \"{}\"", columns.join(", "), spec.name)
}

/// Every row of `spec`'s namesake in PostgreSQL, in canonical form, sorted.
pub async fn pg_canonical_rows(client: &tokio_postgres::Client, spec: &RelationSpec) -> Vec<CanonicalRow> {
    let sql = pg_select(spec);
    let rows = client.query(sql.as_str(), &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out: Vec<CanonicalRow> = rows
        .iter()
        .map(|row| {
            spec.columns
                .iter()
                .enumerate()
                .map(|(i, c)| canonical_pg_value(c.ty, row.get::<_, Option<&str>>(i)))
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// The multiset difference of two sorted relations, or `None` when they are equal:
/// a readable report of at most `limit` rows each way. Rows that agree on their
/// first `key_columns` columns are also shown side by side.
pub fn multiset_diff(
    columns: &[&str],
    key_columns: usize,
    expected: &[CanonicalRow],
    actual: &[CanonicalRow],
    expected_name: &str,
    actual_name: &str,
    limit: usize,
) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut counts: BTreeMap<&CanonicalRow, isize> = BTreeMap::new();
    for row in expected {
        *counts.entry(row).or_default() += 1;
    }
    for row in actual {
        *counts.entry(row).or_default() -= 1;
    }
    let missing: Vec<(&CanonicalRow, isize)> = counts.iter().filter(|(_, c)| **c > 0).map(|(r, c)| (*r, *c)).collect();
    let extra: Vec<(&CanonicalRow, isize)> = counts.iter().filter(|(_, c)| **c < 0).map(|(r, c)| (*r, -*c)).collect();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "{expected_name} has {} rows, {actual_name} has {}; {} rows only in {expected_name}, {} only in {actual_name}",
        expected.len(),
        actual.len(),
        missing.iter().map(|(_, c)| c).sum::<isize>(),
        extra.iter().map(|(_, c)| c).sum::<isize>()
    );
    let _ = writeln!(report, "  columns: ({})", columns.join(", "));
    for (title, rows) in [(expected_name, &missing), (actual_name, &extra)] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(report, "  only in {title}:");
        for (row, count) in rows.iter().take(limit) {
            let times = if *count > 1 { format!("  (x{count})") } else { String::new() };
            let _ = writeln!(report, "    ({}){times}", row.join(", "));
        }
        if rows.len() > limit {
            let _ = writeln!(report, "    ... and {} more", rows.len() - limit);
        }
    }
    // Rows of the same leading key on both sides, side by side, help spot which column is off.
    let key_len = key_columns.clamp(1, columns.len().max(1));
    let mut pairs = 0;
    for (m, _) in &missing {
        if let Some((e, _)) = extra.iter().find(|(e, _)| e[..key_len] == m[..key_len]) {
            if pairs == 0 {
                let _ = writeln!(report, "  same ({}) on both sides:", columns[..key_len].join(", "));
            }
            let _ = writeln!(report, "    {expected_name:>10}: ({})", m.join(", "));
            let _ = writeln!(report, "    {actual_name:>10}: ({})", e.join(", "));
            pairs += 1;
            if pairs >= limit {
                break;
            }
        }
    }
    Some(report)
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port").local_addr().unwrap().port()
}

/// A client of a pgwire server started in process on `engine`, on a free port.
pub async fn in_process_client(engine: &std::sync::Arc<diffmart::engine::Engine>) -> tokio_postgres::Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    diffmart::pgwire::spawn(engine.clone(), listener);
    let config = format!("host={} port={} user=root dbname=dev", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Runs a query over pgwire against an in-process server on `engine`.
pub fn query(engine: &std::sync::Arc<diffmart::engine::Engine>, sql: &str) -> Vec<Vec<Option<String>>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = in_process_client(engine).await;
        let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
    })
}

/// Every relation's rows, sorted, as the engine's latest snapshot shows them.
pub fn engine_contents(engine: &diffmart::engine::Engine) -> BTreeMap<&'static str, Vec<Row>> {
    let snapshot = engine.snapshot();
    engine
        .catalog()
        .iter()
        .map(|(id, spec)| {
            let mut rows = snapshot.rows(id);
            rows.sort();
            (spec.name, rows)
        })
        .collect()
}
