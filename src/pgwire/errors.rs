//! SQLSTATE codes for errors, so clients can tell a typo from a duplicate key.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};

use crate::engine::SqlError;

/// Rewrites an internal error into the `ErrorResponse` a PostgreSQL client expects.
pub fn to_client_error(error: &mut PgWireError) {
    if let PgWireError::ApiError(inner) = error {
        let (code, message) = classify(inner.as_ref());
        *error = PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)));
    }
}

fn classify(error: &(dyn std::error::Error + 'static)) -> (&'static str, String) {
    if let Some(e) = error.downcast_ref::<SqlError>() {
        return (e.sqlstate, e.message.clone());
    }
    if let Some(e) = error.downcast_ref::<ParserError>() {
        return ("42601", format!("syntax error: {e}"));
    }
    if let Some(e) = error.downcast_ref::<DataFusionError>() {
        return classify_datafusion(e);
    }
    if let Some(e) = error.downcast_ref::<PgWireError>() {
        return ("XX000", e.to_string());
    }
    ("XX000", error.to_string())
}

fn classify_datafusion(error: &DataFusionError) -> (&'static str, String) {
    let root = error.find_root();
    let message = strip_prefixes(&root.to_string());
    let code = match root {
        DataFusionError::External(e) => {
            if let Some(e) = e.downcast_ref::<SqlError>() {
                return (e.sqlstate, e.message.clone());
            }
            return classify(e.as_ref());
        }
        DataFusionError::SQL(_, _) => "42601",
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(e, _) => match e.as_ref() {
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            ArrowError::DivideByZero => "22012",
            ArrowError::InvalidArgumentError(m) if m.contains("non-nullable") => "23502",
            ArrowError::ArithmeticOverflow(_) => "22003",
            _ => "XX000",
        },
        DataFusionError::Plan(m) => plan_error_code(m),
        DataFusionError::Execution(m) if m.contains("Cannot cast") || m.contains("cast") => "22P02",
        DataFusionError::Execution(_) => "22000",
        // Only the memory pool runs out; the limit is per statement (--query-memory-limit).
        DataFusionError::ResourcesExhausted(_) => {
            return (
                "53200",
                format!("out of memory: the statement needs more than the query memory limit ({message})"),
            );
        }
        _ => "XX000",
    };
    (code, message)
}

/// DataFusion's planner says most things in `Plan` errors; tell them apart by wording.
fn plan_error_code(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("inconsistent data length") || m.contains("column count") {
        "42601"
    } else if m.contains("table") && m.contains("not found") {
        "42P01"
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703"
    } else if m.contains("invalid function") || m.contains("no function matches") {
        "42883"
    } else if m.contains("cannot") && (m.contains("coerce") || m.contains("cast")) || m.contains("type") {
        "42804"
    } else {
        "42000"
    }
}

/// "Error during planning: x" → "x": the client already knows it is an error.
fn strip_prefixes(message: &str) -> String {
    let mut m = message;
    for prefix in [
        "Error during planning: ",
        "Execution error: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Resources exhausted: ",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest;
        }
    }
    m.to_string()
}
