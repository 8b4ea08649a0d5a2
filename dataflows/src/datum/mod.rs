//! The values every relation is made of, and the schemas that name them.
//!
//! Pipelines compute over typed records, but what they hand to the engine
//! is a relation of [`Row`]s described by a [`RelationSpec`]: that keeps the
//! engine and SQL layers generic over however many pipelines exist.

pub mod relation;
mod rows;

pub use self::rows::{ReaderCells, Record, RowError, RowErrorKind, RowReader, validate_row};
pub(crate) use self::rows::{check_column_count, column_error};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC. Every timestamp in diffmart.
pub type Micros = i64;

pub const MICROS_PER_SECOND: Micros = 1_000_000;
pub const MICROS_PER_MINUTE: Micros = 60 * MICROS_PER_SECOND;

/// One SQL value. `Null` sorts first, as it does nowhere in SQL: the order only
/// serves to keep rows in collections and maps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Datum {
    Null,
    Bool(bool),
    Int32(i32),
    Int64(i64),
    Numeric(Decimal),
    Text(String),
    /// `timestamptz` or `timestamp`, microseconds since the epoch (UTC).
    Timestamp(Micros),
    /// `double precision`.
    Float64(F64),
    /// `date`, days since 1970-01-01.
    Date(i32),
    /// `jsonb`, held as its canonical text (see [`canonical_json`]).
    Json(String),
}

/// An `f64` that can live in ordered collections: ordered by `total_cmp`, with
/// `-0.0` folded into `0.0` and every NaN into one, so equal SQL values are equal
/// keys (PostgreSQL also treats all NaNs as equal, and greater than any number).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct F64(f64);

impl F64 {
    pub fn new(value: f64) -> F64 {
        F64(if value == 0.0 {
            0.0
        } else if value.is_nan() {
            f64::NAN
        } else {
            value
        })
    }
    pub fn get(self) -> f64 {
        self.0
    }
}
impl PartialEq for F64 {
    fn eq(&self, other: &F64) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for F64 {}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &F64) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F64 {
    fn cmp(&self, other: &F64) -> std::cmp::Ordering {
        F64::new(self.0).0.total_cmp(&F64::new(other.0).0)
    }
}
impl std::hash::Hash for F64 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        F64::new(self.0).0.to_bits().hash(state)
    }
}
impl From<f64> for F64 {
    fn from(v: f64) -> F64 {
        F64::new(v)
    }
}

/// PostgreSQL's `jsonb` text form of a JSON value: object keys ordered by length
/// and then bytes (jsonb's storage order), `": "` and `", "` as separators.
/// Duplicate keys keep the last value, as jsonb does.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical_json(value, &mut out);
    out
}

fn write_canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_canonical_json(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Parses JSON text into its canonical `jsonb` form.
pub fn parse_json(text: &str) -> Result<String, RowError> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| canonical_json(&v))
        .map_err(|e| RowError::invalid(format!("invalid input syntax for type json: {e}")))
}

impl Datum {
    pub fn text(s: impl Into<String>) -> Datum {
        Datum::Text(s.into())
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}

impl<T: Into<Datum>> From<Option<T>> for Datum {
    fn from(value: Option<T>) -> Datum {
        value.map_or(Datum::Null, Into::into)
    }
}
impl From<i32> for Datum {
    fn from(v: i32) -> Datum {
        Datum::Int32(v)
    }
}
impl From<i64> for Datum {
    fn from(v: i64) -> Datum {
        Datum::Int64(v)
    }
}
impl From<Decimal> for Datum {
    fn from(v: Decimal) -> Datum {
        Datum::Numeric(v)
    }
}
impl From<String> for Datum {
    fn from(v: String) -> Datum {
        Datum::Text(v)
    }
}
impl From<&str> for Datum {
    fn from(v: &str) -> Datum {
        Datum::Text(v.to_string())
    }
}
impl From<f64> for Datum {
    fn from(v: f64) -> Datum {
        Datum::Float64(F64::new(v))
    }
}
impl From<bool> for Datum {
    fn from(v: bool) -> Datum {
        Datum::Bool(v)
    }
}

/// A row of a relation, in the column order of its [`RelationSpec`].
pub type Row = Vec<Datum>;

/// SQL column types, as clients see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Bool,
    Int32,
    Int64,
    /// `numeric` with a fixed number of decimal places (DEVELOPERS.md, "Values and types", says which).
    Numeric {
        scale: u32,
    },
    Text,
    TimestampTz,
    /// `timestamp` without time zone (values are still UTC microseconds).
    Timestamp,
    Float64,
    Date,
    Json,
}

impl ColumnType {
    /// The PostgreSQL spelling, for `\d` and error messages.
    pub fn sql_name(&self) -> &'static str {
        match self {
            ColumnType::Bool => "boolean",
            ColumnType::Int32 => "integer",
            ColumnType::Int64 => "bigint",
            ColumnType::Numeric { .. } => "numeric",
            ColumnType::Text => "character varying",
            ColumnType::TimestampTz => "timestamp with time zone",
            ColumnType::Timestamp => "timestamp without time zone",
            ColumnType::Float64 => "double precision",
            ColumnType::Date => "date",
            ColumnType::Json => "jsonb",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// What a relation is, which decides what SQL may do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelationKind {
    /// Written with INSERT/UPDATE/DELETE (or mirrored by CDC); `primary_key` are column indexes.
    Table { primary_key: Vec<usize> },
    /// An append-only event stream; holds the retention window of event time.
    Source { event_time_column: usize },
    /// A materialized view, maintained by a dataflow.
    View,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationSpec {
    pub name: &'static str,
    pub kind: RelationKind,
    pub columns: Vec<Column>,
}

/// A view the dataflow keeps without some of its columns: they are filled in from
/// another view's row with the same key each time a snapshot is read.
///
/// For joins whose materialized result would rewrite many rows on one small change
/// (a product's every window row on one competitor price): kept apart, the change
/// touches one row of the lookup view, and the join costs only those who read it.
#[derive(Clone, Copy, Debug)]
pub struct ReadTimeLookup {
    /// The view, as maintained: its own columns, the looked-up ones NULL.
    pub view: &'static str,
    /// A view with at most one row per value of its first column, the key.
    pub lookup: &'static str,
    /// The column of `view` that holds the key.
    pub key_column: usize,
    /// A maintained row with the lookup row of its key (`None`: there is none) → the view's row.
    pub complete: fn(&[Datum], Option<&[Datum]>) -> Row,
}

impl RelationSpec {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// Shorthand for spec tables: `col("product_id", ColumnType::Int32)`.
pub const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty, nullable: true }
}

/// A non-nullable column.
pub const fn col_not_null(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty, nullable: false }
}
