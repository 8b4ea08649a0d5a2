//! PostgreSQL's text output of a value → a [`Datum`] of the mirrored column's type.
//!
//! Both the initial snapshot (text results of a query) and the stream (pgoutput
//! sends text) come through here, so a row reads the same either way. The
//! sessions pin `DateStyle=ISO` and `TimeZone=UTC`, the formats parsed below.

use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime};
use diffmart_dataflows::datum::{ColumnType, Datum, F64, parse_json};
use rust_decimal::{Decimal, RoundingStrategy};

/// Type OIDs of the PostgreSQL types a mirrored column can come from.
mod oid {
    pub const BOOL: u32 = 16;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Whether values of the PostgreSQL type `type_oid` fit a diffmart column of type `ty`
/// (integers may widen, `timestamp` and `timestamptz` are both read as UTC).
pub fn compatible(type_oid: u32, ty: ColumnType) -> bool {
    use oid::*;
    let accepted: &[u32] = match ty {
        ColumnType::Bool => &[BOOL],
        ColumnType::Int32 => &[INT2, INT4],
        ColumnType::Int64 => &[INT2, INT4, INT8],
        ColumnType::Numeric { .. } => &[NUMERIC, INT2, INT4, INT8],
        ColumnType::Text => &[TEXT, VARCHAR, BPCHAR, NAME, CHAR, UUID],
        ColumnType::TimestampTz | ColumnType::Timestamp => &[TIMESTAMPTZ, TIMESTAMP],
        ColumnType::Float64 => &[FLOAT4, FLOAT8],
        ColumnType::Date => &[DATE],
        ColumnType::Json => &[JSON, JSONB],
    };
    accepted.contains(&type_oid)
}

/// PostgreSQL's name of a type OID, for error messages.
pub fn type_name(type_oid: u32) -> String {
    use oid::*;
    let name = match type_oid {
        BOOL => "boolean",
        CHAR => "\"char\"",
        NAME => "name",
        INT8 => "bigint",
        INT2 => "smallint",
        INT4 => "integer",
        TEXT => "text",
        JSON => "json",
        FLOAT4 => "real",
        FLOAT8 => "double precision",
        BPCHAR => "character",
        VARCHAR => "character varying",
        DATE => "date",
        TIMESTAMP => "timestamp without time zone",
        TIMESTAMPTZ => "timestamp with time zone",
        NUMERIC => "numeric",
        UUID => "uuid",
        JSONB => "jsonb",
        other => return format!("type oid {other}"),
    };
    name.to_string()
}

/// Parses `text` as a value of a column of type `ty`. Numerics with more decimal
/// places than the column keeps are rounded half away from zero, as PostgreSQL's
/// `numeric(p, s)` does.
pub fn parse(ty: ColumnType, text: &str) -> Result<Datum, String> {
    let invalid = || format!("invalid {} value {text:?}", ty.sql_name());
    Ok(match ty {
        ColumnType::Bool => match text {
            "t" | "true" => Datum::Bool(true),
            "f" | "false" => Datum::Bool(false),
            _ => return Err(invalid()),
        },
        ColumnType::Int32 => Datum::Int32(text.parse().map_err(|_| invalid())?),
        ColumnType::Int64 => Datum::Int64(text.parse().map_err(|_| invalid())?),
        ColumnType::Numeric { scale } => {
            let value = Decimal::from_str(text).map_err(|e| format!("{}: {e}", invalid()))?;
            Datum::Numeric(if value.scale() > scale {
                value.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
            } else {
                value
            })
        }
        ColumnType::Text => Datum::Text(text.to_string()),
        ColumnType::TimestampTz | ColumnType::Timestamp => Datum::Timestamp(parse_timestamp(text).ok_or_else(invalid)?),
        ColumnType::Float64 => Datum::Float64(F64::new(match text {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => text.parse().map_err(|_| invalid())?,
        })),
        ColumnType::Date => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            Datum::Date((date - epoch).num_days().try_into().map_err(|_| invalid())?)
        }
        ColumnType::Json => Datum::Json(parse_json(text).map_err(|e| e.0)?),
    })
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]]` (ISO DateStyle) → microseconds UTC.
/// Without an offset (`timestamp`) the value is taken as UTC. Infinite and BC
/// timestamps have no diffmart value.
fn parse_timestamp(text: &str) -> Option<i64> {
    let time_start = text.find(' ')? + 1;
    let (local, offset_seconds) = match text[time_start..].find(['+', '-']) {
        None => (text, 0),
        Some(at) => {
            let (local, offset) = text.split_at(time_start + at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let mut parts = offset[1..].split(':');
            let mut seconds = 0i64;
            for unit in [3600, 60, 1] {
                if let Some(part) = parts.next() {
                    if part.len() != 2 {
                        return None;
                    }
                    seconds += part.parse::<i64>().ok()? * unit;
                }
            }
            if parts.next().is_some() {
                return None;
            }
            (local, sign * seconds)
        }
    };
    let local = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let utc = local.and_utc().timestamp_micros();
    utc.checked_sub(offset_seconds * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let noon = 1_717_243_200_000_000; // 2024-06-01 12:00:00 UTC
        assert_eq!(parse_timestamp("2024-06-01 12:00:00+00"), Some(noon));
        assert_eq!(parse_timestamp("2024-06-01 12:00:00"), Some(noon));
        assert_eq!(parse_timestamp("2024-06-01 12:00:00.25+00"), Some(noon + 250_000));
        assert_eq!(parse_timestamp("2024-06-01 14:30:00+02:30"), Some(noon));
        assert_eq!(parse_timestamp("2024-06-01 07:00:00.000001-05"), Some(noon + 1));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.5+00"), Some(-500_000));
        assert_eq!(parse_timestamp("infinity"), None);
        assert_eq!(parse_timestamp("0044-03-15 12:00:00+00 BC"), None);
    }

    #[test]
    fn values() {
        let money = ColumnType::Numeric { scale: 2 };
        assert_eq!(parse(money, "19.99"), Ok(Datum::Numeric("19.99".parse().unwrap())));
        assert_eq!(parse(money, "0.125"), Ok(Datum::Numeric("0.13".parse().unwrap())));
        assert_eq!(parse(money, "-0.125"), Ok(Datum::Numeric("-0.13".parse().unwrap())));
        assert!(parse(money, "NaN").is_err());
        assert_eq!(parse(ColumnType::Int32, "-7"), Ok(Datum::Int32(-7)));
        assert!(parse(ColumnType::Int32, "3000000000").unwrap_err().contains("integer"));
        assert_eq!(parse(ColumnType::Bool, "t"), Ok(Datum::Bool(true)));
        assert_eq!(parse(ColumnType::Date, "1970-01-02"), Ok(Datum::Date(1)));
        assert_eq!(parse(ColumnType::Float64, "-Infinity"), Ok(Datum::Float64(F64::new(f64::NEG_INFINITY))));
        assert_eq!(
            parse(ColumnType::Json, r#"{"b": 1, "a": [1, 2]}"#),
            Ok(Datum::Json(r#"{"a": [1, 2], "b": 1}"#.into()))
        );
        assert_eq!(parse(ColumnType::Text, "it's"), Ok(Datum::text("it's")));
    }

    #[test]
    fn compatibility() {
        assert!(compatible(oid::INT2, ColumnType::Int32));
        assert!(!compatible(oid::INT8, ColumnType::Int32));
        assert!(compatible(oid::VARCHAR, ColumnType::Text));
        assert!(compatible(oid::TIMESTAMP, ColumnType::TimestampTz));
        assert!(!compatible(oid::TEXT, ColumnType::Numeric { scale: 2 }));
        assert_eq!(type_name(oid::NUMERIC), "numeric");
    }
}
