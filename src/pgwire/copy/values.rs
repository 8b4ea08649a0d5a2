//! A COPY field's text → a [`Datum`] of its column's type.
//!
//! PostgreSQL's text form of a value is what CDC reads too, so that parser
//! (`sources::cdc::values::parse`) does the work; COPY adds what PostgreSQL's input
//! functions accept beyond their output: `yes`/`on`/`1` for booleans, surrounding
//! blanks around numbers, and timestamps written as RFC 3339 or with a `T` (the JSON
//! codec's forms), as data exported by other tools has them.

use diffmart_dataflows::datum::{ColumnType, Datum};

use crate::json::parse_timestamp;
use crate::sources::cdc::values::parse as parse_postgres_text;

/// Why a field's text is not a value of its column's type: PostgreSQL's SQLSTATE and message.
#[derive(Debug, PartialEq, Eq)]
pub struct ValueError {
    pub sqlstate: &'static str,
    pub message: String,
}

pub fn parse(ty: ColumnType, text: &str) -> Result<Datum, ValueError> {
    let invalid = || ValueError {
        sqlstate: "22P02",
        message: format!("invalid input syntax for type {}: \"{text}\"", type_name(ty)),
    };
    match ty {
        ColumnType::Text => Ok(Datum::Text(text.to_string())),
        ColumnType::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Ok(Datum::Bool(true)),
            "f" | "false" | "n" | "no" | "off" | "0" => Ok(Datum::Bool(false)),
            _ => Err(invalid()),
        },
        ColumnType::Int32 | ColumnType::Int64 => {
            let trimmed = text.trim();
            parse_postgres_text(ty, trimmed).map_err(|_| match trimmed.parse::<i128>() {
                Ok(_) => ValueError {
                    sqlstate: "22003",
                    message: format!("value \"{text}\" is out of range for type {}", type_name(ty)),
                },
                Err(_) => invalid(),
            })
        }
        ColumnType::TimestampTz | ColumnType::Timestamp => parse_postgres_text(ty, text)
            .or_else(|_| parse_timestamp(text).map(Datum::Timestamp))
            .map_err(|_| invalid()),
        ColumnType::Numeric { .. } | ColumnType::Float64 | ColumnType::Date => {
            parse_postgres_text(ty, text.trim()).map_err(|_| invalid())
        }
        ColumnType::Json => parse_postgres_text(ty, text).map_err(|message| ValueError { sqlstate: "22P02", message }),
    }
}

/// The type's name as PostgreSQL's input errors say it.
fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        other => other.sql_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_postgresql_reads_them() {
        assert_eq!(parse(ColumnType::Int32, " 42 "), Ok(Datum::Int32(42)));
        assert_eq!(parse(ColumnType::Bool, "Yes"), Ok(Datum::Bool(true)));
        let noon = 1_717_243_200_000_000;
        for text in ["2024-06-01 12:00:00+00", "2024-06-01T12:00:00Z", "2024-06-01 14:00:00+02"] {
            assert_eq!(parse(ColumnType::TimestampTz, text), Ok(Datum::Timestamp(noon)), "{text}");
        }
        let wrong = parse(ColumnType::Int32, "abc").unwrap_err();
        assert_eq!(
            (wrong.sqlstate, wrong.message.as_str()),
            ("22P02", "invalid input syntax for type integer: \"abc\"")
        );
        assert_eq!(parse(ColumnType::Int32, "3000000000").unwrap_err().sqlstate, "22003");
        assert_eq!(parse(ColumnType::Numeric { scale: 2 }, "1.005"), Ok(Datum::Numeric("1.01".parse().unwrap())));
        assert_eq!(parse(ColumnType::TimestampTz, "soon").unwrap_err().sqlstate, "22P02");
    }
}
