//! Rows CDC cannot take (a value diffmart has no type for, a broken NOT NULL or
//! CHECK rule): why, and the values upstream sent, for `diffmart_source_errors`.

use diffmart_dataflows::datum::{Datum, Row, validate_row};

use super::mirror::MirroredTable;
use super::pgoutput::{Tuple, TupleValue};
use crate::sources::status::payload_preview;

/// A snapshot row as read: the row, or why it cannot be.
pub(super) type RowRead = Result<Row, Refused>;

/// A row diffmart cannot take: why, and its values as upstream sent them (abbreviated).
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) error: String,
    pub(super) values: String,
}

impl Refused {
    pub(super) fn of(error: String, tuple: &Tuple) -> Refused {
        let values = tuple.iter().map(|value| match value {
            TupleValue::Null => None,
            TupleValue::UnchangedToast => Some("(unchanged)"),
            TupleValue::Text(text) => Some(text.as_str()),
        });
        Refused { error, values: values_preview(values) }
    }
}

/// A row's values as `(v1, v2, NULL, …)`, cut to `diffmart_source_errors`' payload length.
pub(super) fn values_preview<'a>(values: impl Iterator<Item = Option<&'a str>>) -> String {
    let values: Vec<&str> = values.map(|v| v.unwrap_or("NULL")).collect();
    payload_preview(format!("({})", values.join(", ")).as_bytes())
}

/// The row, if it keeps its table's rules (NOT NULL, CHECK): one that does not
/// would make the engine refuse the whole transaction.
pub(super) fn checked(table: &MirroredTable, row: Row) -> Result<Row, String> {
    validate_row(table.spec, &row).map_err(|e| format!("{}: {e}", table.display()))?;
    Ok(row)
}

/// [`checked`] for an update's new row, when it has every value (an unchanged
/// TOASTed value is diffmart's already, which kept the rules).
pub(super) fn checked_partial(table: &MirroredTable, row: Vec<Option<Datum>>) -> Result<Vec<Option<Datum>>, String> {
    if row.iter().all(Option::is_some) {
        let whole: Row = row.iter().flatten().cloned().collect();
        checked(table, whole)?;
    }
    Ok(row)
}
