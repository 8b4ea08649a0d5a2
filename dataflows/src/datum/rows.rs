//! Rows as records: reading a row's columns by type ([`RowReader`], [`Record`]),
//! checking a row against its relation ([`validate_row`]), and the errors of both.

use rust_decimal::Decimal;
use std::cell::RefCell;
use std::fmt;

use super::relation::{Cells, ColumnValue};
use super::{ColumnType, Datum, Micros, RelationSpec, Row};

/// Why a row could not become a typed record, or was refused: its message (`.0`,
/// worded as PostgreSQL words it where PostgreSQL has the error) and what kind of
/// error it is (`.1`), which gives its SQLSTATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError(pub String, pub RowErrorKind);

/// The errors a row can have, each with PostgreSQL's SQLSTATE for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowErrorKind {
    /// A value that is not of its column's type, or text that does not parse as it (`22P02`).
    InvalidValue,
    /// NULL in a NOT NULL column (`23502`).
    NotNull,
    /// A CHECK constraint the row violates (`23514`).
    Check,
    /// A numeric with more decimal places than its column holds (`22003`).
    NumericOutOfRange,
    /// A record type that reads its row wrongly: a bug, not bad input (`XX000`).
    Internal,
}

impl RowErrorKind {
    pub fn sqlstate(self) -> &'static str {
        match self {
            RowErrorKind::InvalidValue => "22P02",
            RowErrorKind::NotNull => "23502",
            RowErrorKind::Check => "23514",
            RowErrorKind::NumericOutOfRange => "22003",
            RowErrorKind::Internal => "XX000",
        }
    }
}

impl RowError {
    pub fn invalid(message: impl Into<String>) -> RowError {
        RowError(message.into(), RowErrorKind::InvalidValue)
    }
    pub fn not_null(message: impl Into<String>) -> RowError {
        RowError(message.into(), RowErrorKind::NotNull)
    }
    pub fn check(message: impl Into<String>) -> RowError {
        RowError(message.into(), RowErrorKind::Check)
    }
    pub fn kind(&self) -> RowErrorKind {
        self.1
    }
    /// The SQLSTATE a client sees for this error.
    pub fn sqlstate(&self) -> &'static str {
        self.1.sqlstate()
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RowError {}

/// Typed access to row fields, with errors that name the column.
pub struct RowReader<'a> {
    spec: &'a RelationSpec,
    row: &'a [Datum],
    /// Texts moved out of a row the reader was given to own (see
    /// [`Record::from_owned_row`]), handed out instead of copies; each once.
    moved: Option<RefCell<Vec<Option<String>>>>,
}

impl<'a> RowReader<'a> {
    pub fn new(spec: &'a RelationSpec, row: &'a [Datum]) -> Result<Self, RowError> {
        check_column_count(spec, row.len())?;
        Ok(RowReader { spec, row, moved: None })
    }

    /// A reader of `row` whose text and jsonb values were moved out into `moved`
    /// (by [`move_texts`]): reading one hands over the string instead of a copy.
    fn moving(spec: &'a RelationSpec, row: &'a [Datum], moved: Vec<Option<String>>) -> Result<Self, RowError> {
        Ok(RowReader { moved: Some(RefCell::new(moved)), ..RowReader::new(spec, row)? })
    }

    /// Text `v` of column `i`: moved out of an owned row, or copied.
    fn string(&self, i: usize, v: &str) -> Result<String, RowError> {
        match &self.moved {
            None => Ok(v.to_string()),
            Some(moved) => self.take(moved, i),
        }
    }

    /// The text moved out of column `i`, which only one read may have.
    fn take(&self, moved: &RefCell<Vec<Option<String>>>, i: usize) -> Result<String, RowError> {
        moved.borrow_mut()[i].take().ok_or_else(|| {
            RowError(
                format!(
                    "column \"{}\" of {} was read twice from an owned row",
                    self.spec.columns[i].name, self.spec.name
                ),
                RowErrorKind::Internal,
            )
        })
    }

    fn wrong(&self, i: usize, want: &str) -> RowError {
        wrong_type(self.spec, i, want, &self.row[i])
    }
    fn missing(&self, i: usize) -> RowError {
        null_in_not_null(self.spec, i)
    }

    /// Column `i`, a column of type `ty`, as a `T` (see [`crate::relation::ColumnValue`]).
    pub fn value<T: ColumnValue>(&self, i: usize, ty: ColumnType) -> Result<T, RowError> {
        let datum = &self.row[i];
        match (&self.moved, datum) {
            (Some(moved), Datum::Text(_)) => T::from_datum(Datum::Text(self.take(moved, i)?), ty),
            (Some(moved), Datum::Json(_)) => T::from_datum(Datum::Json(self.take(moved, i)?), ty),
            _ => T::from_datum_ref(datum, ty).ok_or_else(|| datum.clone()),
        }
        .map_err(|datum| column_error(self.spec, i, &datum))
    }

    /// The row's columns, to read in order (see [`crate::relation::Columns`]).
    pub fn cells(&self) -> ReaderCells<'_, 'a> {
        ReaderCells { reader: self, next: 0 }
    }

    pub fn opt_i32(&self, i: usize) -> Result<Option<i32>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Int32(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "integer")),
        }
    }
    pub fn opt_decimal(&self, i: usize) -> Result<Option<Decimal>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Numeric(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "numeric")),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Text(v) => self.string(i, v).map(Some),
            _ => Err(self.wrong(i, "text")),
        }
    }
    pub fn opt_timestamp(&self, i: usize) -> Result<Option<Micros>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Timestamp(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "timestamptz")),
        }
    }
    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Int64(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "bigint")),
        }
    }
    pub fn opt_bool(&self, i: usize) -> Result<Option<bool>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Bool(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "boolean")),
        }
    }
    pub fn opt_f64(&self, i: usize) -> Result<Option<f64>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Float64(v) => Ok(Some(v.get())),
            _ => Err(self.wrong(i, "double precision")),
        }
    }
    pub fn opt_date(&self, i: usize) -> Result<Option<i32>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Date(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "date")),
        }
    }
    /// The canonical jsonb text of a `jsonb` column.
    pub fn opt_json(&self, i: usize) -> Result<Option<String>, RowError> {
        match &self.row[i] {
            Datum::Null => Ok(None),
            Datum::Json(v) => self.string(i, v).map(Some),
            _ => Err(self.wrong(i, "jsonb")),
        }
    }
    pub fn i64(&self, i: usize) -> Result<i64, RowError> {
        self.opt_i64(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn bool(&self, i: usize) -> Result<bool, RowError> {
        self.opt_bool(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn f64(&self, i: usize) -> Result<f64, RowError> {
        self.opt_f64(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn date(&self, i: usize) -> Result<i32, RowError> {
        self.opt_date(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn i32(&self, i: usize) -> Result<i32, RowError> {
        self.opt_i32(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn decimal(&self, i: usize) -> Result<Decimal, RowError> {
        self.opt_decimal(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn text(&self, i: usize) -> Result<String, RowError> {
        self.opt_text(i)?.ok_or_else(|| self.missing(i))
    }
    pub fn timestamp(&self, i: usize) -> Result<Micros, RowError> {
        self.opt_timestamp(i)?.ok_or_else(|| self.missing(i))
    }
}

/// A [`RowReader`]'s columns, read in order.
pub struct ReaderCells<'r, 'a> {
    reader: &'r RowReader<'a>,
    next: usize,
}

impl Cells for ReaderCells<'_, '_> {
    fn next<T: ColumnValue>(&mut self, ty: ColumnType) -> Result<T, RowError> {
        self.next += 1;
        self.reader.value(self.next - 1, ty)
    }
}

/// A row of `len` columns for `spec`, or why not.
pub(crate) fn check_column_count(spec: &RelationSpec, len: usize) -> Result<(), RowError> {
    if len == spec.columns.len() {
        Ok(())
    } else {
        Err(RowError::invalid(format!("{} expects {} columns, got {}", spec.name, spec.columns.len(), len)))
    }
}

/// Why `datum` is no value of column `i` of `spec` for a record to read: NULL where
/// the record's field cannot be, or another type than the column's.
pub(crate) fn column_error(spec: &RelationSpec, i: usize, datum: &Datum) -> RowError {
    if datum.is_null() {
        null_in_not_null(spec, i)
    } else {
        let want = match spec.columns[i].ty {
            ColumnType::Bool => "boolean",
            ColumnType::Int32 => "integer",
            ColumnType::Int64 => "bigint",
            ColumnType::Numeric { .. } => "numeric",
            ColumnType::Text => "text",
            ColumnType::TimestampTz | ColumnType::Timestamp => "timestamptz",
            ColumnType::Float64 => "double precision",
            ColumnType::Date => "date",
            ColumnType::Json => "jsonb",
        };
        wrong_type(spec, i, want, datum)
    }
}

fn wrong_type(spec: &RelationSpec, i: usize, want: &str, datum: &Datum) -> RowError {
    RowError::invalid(format!("column \"{}\" of {} must be {}, got {:?}", spec.columns[i].name, spec.name, want, datum))
}

fn null_in_not_null(spec: &RelationSpec, i: usize) -> RowError {
    RowError::not_null(format!(
        "null value in column \"{}\" of {} violates not-null constraint",
        spec.columns[i].name, spec.name
    ))
}

/// Typed records of a relation, an input or a view, convert to and from rows. Declare
/// them with [`crate::relation::relation!`], which writes this for them.
pub trait Record: Sized {
    fn spec() -> &'static RelationSpec;
    fn to_row(&self) -> Row;
    /// As [`Record::to_row`], moving the record's texts into the row: how a view's
    /// records reach the server (see [`crate::boundary::View`]).
    fn into_row(self) -> Row {
        self.to_row()
    }
    /// The record whose fields `r` reads (each column at most once).
    fn read(r: &RowReader<'_>) -> Result<Self, RowError>;

    fn from_row(row: &[Datum]) -> Result<Self, RowError> {
        Self::read(&RowReader::new(Self::spec(), row)?)
    }

    /// As [`Record::from_row`], but a text is moved out of the row instead of
    /// copied: what the dataflow does with every input row (see [`crate::boundary::RowSession`]).
    fn from_owned_row(mut row: Row) -> Result<Self, RowError> {
        let moved = move_texts(&mut row);
        Self::read(&RowReader::moving(Self::spec(), &row, moved)?)
    }
}

/// Moves every text and jsonb value out of `row`, leaving empty strings, indexed by column.
fn move_texts(row: &mut Row) -> Vec<Option<String>> {
    row.iter_mut()
        .map(|datum| match datum {
            Datum::Text(s) | Datum::Json(s) => Some(std::mem::take(s)),
            _ => None,
        })
        .collect()
}

/// Checks a row against its relation's column types, NOT NULL and CHECK constraints ([`crate::check_row`]).
pub fn validate_row(spec: &RelationSpec, row: &[Datum]) -> Result<(), RowError> {
    if row.len() != spec.columns.len() {
        return Err(RowError::invalid(format!(
            "{} has {} columns, got a row of {}",
            spec.name,
            spec.columns.len(),
            row.len()
        )));
    }
    for (column, datum) in spec.columns.iter().zip(row) {
        let fits = match (datum, column.ty) {
            (Datum::Null, _) => column.nullable,
            (Datum::Bool(_), ColumnType::Bool)
            | (Datum::Int32(_), ColumnType::Int32)
            | (Datum::Int64(_), ColumnType::Int64)
            | (Datum::Text(_), ColumnType::Text)
            | (Datum::Timestamp(_), ColumnType::TimestampTz | ColumnType::Timestamp)
            | (Datum::Float64(_), ColumnType::Float64)
            | (Datum::Date(_), ColumnType::Date)
            | (Datum::Json(_), ColumnType::Json) => true,
            (Datum::Numeric(d), ColumnType::Numeric { scale }) => d.scale() <= scale,
            _ => false,
        };
        if !fits {
            return Err(match datum {
                Datum::Null => RowError::not_null(format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    column.name, spec.name
                )),
                Datum::Numeric(d) if matches!(column.ty, ColumnType::Numeric { .. }) => RowError(
                    format!(
                        "value {d} for column \"{}\" of relation \"{}\" has more decimal places than the column's {}",
                        column.name,
                        spec.name,
                        match column.ty {
                            ColumnType::Numeric { scale } => scale,
                            _ => 0,
                        }
                    ),
                    RowErrorKind::NumericOutOfRange,
                ),
                other => RowError::invalid(format!(
                    "column \"{}\" of relation \"{}\" is of type {}, got {:?}",
                    column.name,
                    spec.name,
                    column.ty.sql_name(),
                    other
                )),
            });
        }
    }
    crate::check_row(spec, row)
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::datum::{RelationKind, col};

    static NOTES: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
        name: "notes",
        kind: RelationKind::View,
        columns: vec![col("id", ColumnType::Int64), col("title", ColumnType::Text), col("body", ColumnType::Json)],
    });

    #[derive(Debug, PartialEq)]
    struct Note {
        id: Option<i64>,
        title: Option<String>,
        body: Option<String>,
    }

    impl Record for Note {
        fn spec() -> &'static RelationSpec {
            &NOTES
        }
        fn to_row(&self) -> Row {
            vec![self.id.into(), self.title.clone().into(), self.body.clone().map_or(Datum::Null, Datum::Json)]
        }
        fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
            Ok(Note { id: r.opt_i64(0)?, title: r.opt_text(1)?, body: r.opt_json(2)? })
        }
    }

    /// Reads `title` twice, which a reader of an owned row cannot do.
    struct TitleTwice;

    impl Record for TitleTwice {
        fn spec() -> &'static RelationSpec {
            &NOTES
        }
        fn to_row(&self) -> Row {
            unreachable!()
        }
        fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
            r.opt_text(1)?;
            r.opt_text(1)?;
            Ok(TitleTwice)
        }
    }

    #[test]
    fn an_owned_row_reads_as_a_borrowed_one() {
        for note in [
            Note { id: Some(7), title: Some("café ☕".into()), body: Some(r#"{"a": [1, 2]}"#.into()) },
            Note { id: None, title: None, body: None },
            Note { id: Some(-1), title: Some(String::new()), body: None },
        ] {
            let row = note.to_row();
            assert_eq!(Note::from_row(&row).unwrap(), note);
            assert_eq!(Note::from_owned_row(row).unwrap(), note);
        }
        let wrong = vec![Datum::Int64(1), Datum::Int32(2), Datum::Null];
        assert_eq!(Note::from_owned_row(wrong.clone()).unwrap_err(), Note::from_row(&wrong).unwrap_err());
    }

    #[test]
    fn an_owned_row_hands_out_each_text_once() {
        let row = vec![Datum::Int64(1), Datum::Text("t".into()), Datum::Null];
        assert!(TitleTwice::from_row(&row).is_ok());
        let error = TitleTwice::from_owned_row(row).err().unwrap();
        assert!(error.0.contains("\"title\" of notes was read twice"), "{error}");
    }
}
