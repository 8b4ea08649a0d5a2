//! Declaring a relation once: [`relation!`] turns one struct declaration into the
//! record type, its [`RelationSpec`] and its row conversion ([`Record`]).
//!
//! ```text
//! relation! {
//!     /// `web_clicks` (Kafka topic `web_clicks`).
//!     #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
//!     pub struct WebClick: source "web_clicks" (event_time = event_time) {
//!         pub event_time: Micros = TimestampTz,
//!         pub product_id: i32 = Int32,
//!         pub event_type: String = Text,
//!     }
//! }
//! ```
//!
//! - The kind follows the struct's name: `source "name" (event_time = field)`, `table "name"
//!   (primary_key = field, …)` or `view "name"`; without one, the struct is a group of
//!   columns other declarations include (below).
//! - Each field is a column, named as the field (`field as "name": …` for a name that is not
//!   a Rust identifier; key and event-time fields must be named as their columns), of the
//!   [`ColumnType`] after `=`, any constant expression (`MONEY`, `Numeric { scale: 0 }`).
//!   The field's Rust type must hold the column type ([`ColumnValue`]): a mismatch does not
//!   compile. A column is nullable when its Rust type is an `Option`; a view's columns are
//!   all nullable, as PostgreSQL's materialized views' are.
//! - A field without `= type` is a group of columns spliced in its place: a struct declared
//!   without a kind, or another relation's record (its columns, its nullability).
//!
//! Rows are read column by column in field order, each once; an owned row's texts are
//! moved into the record, never copied ([`Record::from_owned_row`], which the dataflow
//! calls per input row), and [`Record::into_row`] moves them back out (per view change).

use rust_decimal::Decimal;

#[cfg(doc)]
use crate::datum::Record;
use crate::datum::{Column, ColumnType, Datum, F64, RelationKind, RelationSpec, Row, RowError};

/// Which column types a Rust type is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    Bool,
    /// `integer` or `date` (days since 1970-01-01).
    Int32,
    /// `bigint` or a timestamp (microseconds since the epoch).
    Int64,
    Numeric,
    /// Text, or `jsonb` as its canonical text.
    Text,
    Float64,
}

impl Holds {
    /// Whether a column of type `ty` is written as this.
    pub const fn fits(self, ty: ColumnType) -> bool {
        match self {
            Holds::Bool => matches!(ty, ColumnType::Bool),
            Holds::Int32 => matches!(ty, ColumnType::Int32 | ColumnType::Date),
            Holds::Int64 => matches!(ty, ColumnType::Int64 | ColumnType::Timestamp | ColumnType::TimestampTz),
            Holds::Numeric => matches!(ty, ColumnType::Numeric { .. }),
            Holds::Text => matches!(ty, ColumnType::Text | ColumnType::Json),
            Holds::Float64 => matches!(ty, ColumnType::Float64),
        }
    }
}

/// A Rust type a column's values convert to and from. `ty` is always one of the
/// column types [`ColumnValue::HOLDS`] fits (the macro checks it at compile time), and
/// is a constant where the macro calls these: the match on it folds away.
pub trait ColumnValue: Sized {
    /// Which column types the type is written as.
    const HOLDS: Holds;
    /// Whether the type has NULL (`Option<T>`).
    const NULLABLE: bool = false;

    /// The value as a datum of a column of type `ty`.
    fn to_datum(&self, ty: ColumnType) -> Datum;
    /// As [`ColumnValue::to_datum`], moving a text into the datum.
    fn into_datum(self, ty: ColumnType) -> Datum {
        self.to_datum(ty)
    }
    /// The value `datum` holds as a value of a column of type `ty`; `None` if it holds none
    /// (NULL where the type has no NULL, or a datum of another type).
    fn from_datum_ref(datum: &Datum, ty: ColumnType) -> Option<Self>;
    /// As [`ColumnValue::from_datum_ref`], moving a text out of `datum`; the datum back if it holds none.
    fn from_datum(datum: Datum, ty: ColumnType) -> Result<Self, Datum> {
        Self::from_datum_ref(&datum, ty).ok_or(datum)
    }
}

fn is_timestamp(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::Timestamp | ColumnType::TimestampTz)
}

impl ColumnValue for bool {
    const HOLDS: Holds = Holds::Bool;
    #[inline]
    fn to_datum(&self, _ty: ColumnType) -> Datum {
        Datum::Bool(*self)
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, _ty: ColumnType) -> Option<bool> {
        match datum {
            Datum::Bool(v) => Some(*v),
            _ => None,
        }
    }
}

impl ColumnValue for i32 {
    const HOLDS: Holds = Holds::Int32;
    #[inline]
    fn to_datum(&self, ty: ColumnType) -> Datum {
        if matches!(ty, ColumnType::Date) { Datum::Date(*self) } else { Datum::Int32(*self) }
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, ty: ColumnType) -> Option<i32> {
        match (datum, ty) {
            (Datum::Int32(v), ColumnType::Int32) | (Datum::Date(v), ColumnType::Date) => Some(*v),
            _ => None,
        }
    }
}

impl ColumnValue for i64 {
    const HOLDS: Holds = Holds::Int64;
    #[inline]
    fn to_datum(&self, ty: ColumnType) -> Datum {
        if is_timestamp(ty) { Datum::Timestamp(*self) } else { Datum::Int64(*self) }
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, ty: ColumnType) -> Option<i64> {
        match datum {
            Datum::Int64(v) if ty == ColumnType::Int64 => Some(*v),
            Datum::Timestamp(v) if is_timestamp(ty) => Some(*v),
            _ => None,
        }
    }
}

impl ColumnValue for Decimal {
    const HOLDS: Holds = Holds::Numeric;
    #[inline]
    fn to_datum(&self, _ty: ColumnType) -> Datum {
        Datum::Numeric(*self)
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, _ty: ColumnType) -> Option<Decimal> {
        match datum {
            Datum::Numeric(v) => Some(*v),
            _ => None,
        }
    }
}

impl ColumnValue for F64 {
    const HOLDS: Holds = Holds::Float64;
    #[inline]
    fn to_datum(&self, _ty: ColumnType) -> Datum {
        Datum::Float64(*self)
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, _ty: ColumnType) -> Option<F64> {
        match datum {
            Datum::Float64(v) => Some(*v),
            _ => None,
        }
    }
}

impl ColumnValue for f64 {
    const HOLDS: Holds = Holds::Float64;
    #[inline]
    fn to_datum(&self, _ty: ColumnType) -> Datum {
        Datum::Float64(F64::new(*self))
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, _ty: ColumnType) -> Option<f64> {
        match datum {
            Datum::Float64(v) => Some(v.get()),
            _ => None,
        }
    }
}

impl ColumnValue for String {
    const HOLDS: Holds = Holds::Text;
    #[inline]
    fn to_datum(&self, ty: ColumnType) -> Datum {
        self.clone().into_datum(ty)
    }
    #[inline]
    fn into_datum(self, ty: ColumnType) -> Datum {
        if ty == ColumnType::Json { Datum::Json(self) } else { Datum::Text(self) }
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, ty: ColumnType) -> Option<String> {
        match (datum, ty) {
            (Datum::Text(s), ColumnType::Text) | (Datum::Json(s), ColumnType::Json) => Some(s.clone()),
            _ => None,
        }
    }
    #[inline]
    fn from_datum(datum: Datum, ty: ColumnType) -> Result<String, Datum> {
        match (datum, ty) {
            (Datum::Text(s), ColumnType::Text) | (Datum::Json(s), ColumnType::Json) => Ok(s),
            (other, _) => Err(other),
        }
    }
}

impl<T: ColumnValue> ColumnValue for Option<T> {
    const HOLDS: Holds = T::HOLDS;
    const NULLABLE: bool = true;
    #[inline]
    fn to_datum(&self, ty: ColumnType) -> Datum {
        self.as_ref().map_or(Datum::Null, |v| v.to_datum(ty))
    }
    #[inline]
    fn into_datum(self, ty: ColumnType) -> Datum {
        self.map_or(Datum::Null, |v| v.into_datum(ty))
    }
    #[inline]
    fn from_datum_ref(datum: &Datum, ty: ColumnType) -> Option<Option<T>> {
        match datum {
            Datum::Null => Some(None),
            other => T::from_datum_ref(other, ty).map(Some),
        }
    }
    #[inline]
    fn from_datum(datum: Datum, ty: ColumnType) -> Result<Option<T>, Datum> {
        match datum {
            Datum::Null => Ok(None),
            other => T::from_datum(other, ty).map(Some),
        }
    }
}

/// A row's columns, read in order, each once.
pub trait Cells {
    /// The next column, a column of type `ty`, as a `T`.
    fn next<T: ColumnValue>(&mut self, ty: ColumnType) -> Result<T, RowError>;
}

/// An owned row's columns: each value moves into the record that reads it.
pub struct OwnedCells<'a> {
    spec: &'a RelationSpec,
    cells: std::vec::IntoIter<Datum>,
    next: usize,
}

impl<'a> OwnedCells<'a> {
    pub fn new(spec: &'a RelationSpec, row: Row) -> Result<OwnedCells<'a>, RowError> {
        crate::datum::check_column_count(spec, row.len())?;
        Ok(OwnedCells { spec, cells: row.into_iter(), next: 0 })
    }
}

impl Cells for OwnedCells<'_> {
    #[inline]
    fn next<T: ColumnValue>(&mut self, ty: ColumnType) -> Result<T, RowError> {
        let i = self.next;
        self.next += 1;
        // The row has the spec's column count, and a record reads no more columns than that.
        let datum = self.cells.next().unwrap_or(Datum::Null);
        T::from_datum(datum, ty).map_err(|datum| crate::datum::column_error(self.spec, i, &datum))
    }
}

/// A group of columns, read and written in order: every [`relation!`] struct.
pub trait Columns: Sized {
    /// How many columns.
    const COUNT: usize;
    /// Appends the columns, each nullable as its Rust type is.
    fn columns(out: &mut Vec<Column>);
    /// Appends the values, moving texts.
    fn write(self, row: &mut Row);
    /// Appends the values, copying texts.
    fn write_ref(&self, row: &mut Row);
    /// Reads the values from the next [`Columns::COUNT`] columns.
    fn read(cells: &mut impl Cells) -> Result<Self, RowError>;
}

/// The spec `relation!` declares: a view's columns are all nullable. Panics on two
/// columns of one name (a group's column named again).
pub fn spec(name: &'static str, kind: RelationKind, mut columns: Vec<Column>) -> RelationSpec {
    for (i, column) in columns.iter().enumerate() {
        assert!(columns[..i].iter().all(|c| c.name != column.name), "{name}: two columns named {}", column.name);
    }
    if kind == RelationKind::View {
        for column in &mut columns {
            column.nullable = true;
        }
    }
    RelationSpec { name, kind, columns }
}

/// The index of the column `field` names (a key or event-time field).
pub fn column_of(relation: &str, columns: &[Column], field: &str) -> usize {
    columns
        .iter()
        .position(|c| c.name == field)
        .unwrap_or_else(|| panic!("{relation}: no column named {field} (key and event-time fields name their columns)"))
}

/// Declares a relation once: see [the module](self).
macro_rules! relation {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident : $kind:ident $relation:literal $(($($kind_args:tt)*))? {
            $( $(#[$field_attr:meta])* $field_vis:vis $field:ident $(as $column:literal)? : $field_ty:ty $(= $column_ty:expr)? ),* $(,)?
        }
    ) => {
        $crate::relation::relation! {
            $(#[$attr])*
            $vis struct $name {
                $( $(#[$field_attr])* $field_vis $field $(as $column)? : $field_ty $(= $column_ty)? ),*
            }
        }

        impl $crate::datum::Record for $name {
            fn spec() -> &'static $crate::datum::RelationSpec {
                static SPEC: std::sync::LazyLock<$crate::datum::RelationSpec> = std::sync::LazyLock::new(|| {
                    let mut columns = Vec::with_capacity(<$name as $crate::relation::Columns>::COUNT);
                    <$name as $crate::relation::Columns>::columns(&mut columns);
                    let kind = $crate::relation::relation!(@kind $relation, columns, $kind $(($($kind_args)*))?);
                    $crate::relation::spec($relation, kind, columns)
                });
                &SPEC
            }
            #[inline]
            fn to_row(&self) -> $crate::datum::Row {
                let mut row = Vec::with_capacity(<$name as $crate::relation::Columns>::COUNT);
                <$name as $crate::relation::Columns>::write_ref(self, &mut row);
                row
            }
            #[inline]
            fn into_row(self) -> $crate::datum::Row {
                let mut row = Vec::with_capacity(<$name as $crate::relation::Columns>::COUNT);
                <$name as $crate::relation::Columns>::write(self, &mut row);
                row
            }
            fn read(r: &$crate::datum::RowReader<'_>) -> Result<Self, $crate::datum::RowError> {
                <$name as $crate::relation::Columns>::read(&mut r.cells())
            }
            #[inline]
            fn from_owned_row(row: $crate::datum::Row) -> Result<Self, $crate::datum::RowError> {
                let spec = <$name as $crate::datum::Record>::spec();
                <$name as $crate::relation::Columns>::read(&mut $crate::relation::OwnedCells::new(spec, row)?)
            }
        }
    };

    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_attr:meta])* $field_vis:vis $field:ident $(as $column:literal)? : $field_ty:ty $(= $column_ty:expr)? ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $( $(#[$field_attr])* $field_vis $field: $field_ty, )*
        }

        $( $crate::relation::relation!(@check $name $field, $field_ty $(, $column_ty)?); )*

        impl $crate::relation::Columns for $name {
            const COUNT: usize = 0 $( + $crate::relation::relation!(@count $field_ty $(, $column_ty)?) )*;
            fn columns(out: &mut Vec<$crate::datum::Column>) {
                $( $crate::relation::relation!(@columns out, $field $($column)?, $field_ty $(, $column_ty)?); )*
            }
            #[inline]
            fn write(self, row: &mut $crate::datum::Row) {
                $( $crate::relation::relation!(@write row, self.$field, $field_ty $(, $column_ty)?); )*
            }
            #[inline]
            fn write_ref(&self, row: &mut $crate::datum::Row) {
                $( $crate::relation::relation!(@write_ref row, &self.$field, $field_ty $(, $column_ty)?); )*
            }
            #[inline]
            fn read(cells: &mut impl $crate::relation::Cells) -> Result<Self, $crate::datum::RowError> {
                Ok($name { $( $field: $crate::relation::relation!(@read cells, $field_ty $(, $column_ty)?), )* })
            }
        }
    };

    (@kind $relation:literal, $columns:ident, view) => {
        $crate::datum::RelationKind::View
    };
    (@kind $relation:literal, $columns:ident, source (event_time = $event_time:ident)) => {
        $crate::datum::RelationKind::Source {
            event_time_column: $crate::relation::column_of($relation, &$columns, stringify!($event_time)),
        }
    };
    (@kind $relation:literal, $columns:ident, table (primary_key = $($key:ident),+)) => {
        $crate::datum::RelationKind::Table {
            primary_key: vec![$($crate::relation::column_of($relation, &$columns, stringify!($key))),+],
        }
    };

    (@check $name:ident $field:ident, $ty:ty, $column_ty:expr) => {
        const _: () = assert!(
            <$ty as $crate::relation::ColumnValue>::HOLDS.fits($column_ty),
            concat!(stringify!($name), "::", stringify!($field), ": its Rust type cannot hold its column type"),
        );
    };
    (@check $name:ident $field:ident, $ty:ty) => {};

    (@count $ty:ty, $column_ty:expr) => {
        1
    };
    (@count $ty:ty) => {
        <$ty as $crate::relation::Columns>::COUNT
    };

    (@columns $out:ident, $field:ident, $ty:ty, $column_ty:expr) => {
        $crate::relation::relation!(@columns $out, $field stringify!($field), $ty, $column_ty)
    };
    (@columns $out:ident, $field:ident $column:expr, $ty:ty, $column_ty:expr) => {
        $out.push($crate::datum::Column {
            name: $column,
            ty: $column_ty,
            nullable: <$ty as $crate::relation::ColumnValue>::NULLABLE,
        })
    };
    (@columns $out:ident, $field:ident, $ty:ty) => {
        <$ty as $crate::relation::Columns>::columns($out)
    };

    (@write $row:ident, $value:expr, $ty:ty, $column_ty:expr) => {
        $row.push(<$ty as $crate::relation::ColumnValue>::into_datum($value, $column_ty))
    };
    (@write $row:ident, $value:expr, $ty:ty) => {
        <$ty as $crate::relation::Columns>::write($value, $row)
    };
    (@write_ref $row:ident, $value:expr, $ty:ty, $column_ty:expr) => {
        $row.push(<$ty as $crate::relation::ColumnValue>::to_datum($value, $column_ty))
    };
    (@write_ref $row:ident, $value:expr, $ty:ty) => {
        <$ty as $crate::relation::Columns>::write_ref($value, $row)
    };

    (@read $cells:ident, $ty:ty, $column_ty:expr) => {
        $crate::relation::Cells::next::<$ty>(&mut *$cells, $column_ty)?
    };
    (@read $cells:ident, $ty:ty) => {
        <$ty as $crate::relation::Columns>::read(&mut *$cells)?
    };
}

pub(crate) use relation;

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::datum::{ColumnType, Datum, Micros, Record, RelationKind, RowErrorKind, validate_row};
    use ColumnType::{Date, Int32, Json, Text, TimestampTz};

    relation! {
        /// Columns shared by the relations below.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct Who {
            pub user: String = Text,
            pub note: Option<String> = Json,
        }
    }

    relation! {
        /// A source with a group of columns in the middle.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct Visit: source "visits" (event_time = at) {
            pub day: i32 = Date,
            pub who: Who,
            pub at: Micros = TimestampTz,
            pub count as "count(*)": Option<i32> = Int32,
        }
    }

    relation! {
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct Account: table "accounts" (primary_key = id, who_else) {
            pub id: i32 = Int32,
            pub who_else: String = Text,
        }
    }

    relation! {
        /// A view made of another relation's row.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct VisitView: view "visit_view" {
            pub visit: Visit,
        }
    }

    fn visit(note: Option<&str>) -> Visit {
        Visit {
            day: 20_000,
            who: Who { user: "ann".into(), note: note.map(Into::into) },
            at: 1_700_000_000_000_000,
            count: None,
        }
    }

    #[test]
    fn declarations_give_specs() {
        let spec = Visit::spec();
        assert_eq!(spec.name, "visits");
        assert_eq!(spec.kind, RelationKind::Source { event_time_column: 3 });
        let columns: Vec<_> = spec.columns.iter().map(|c| (c.name, c.ty, c.nullable)).collect();
        assert_eq!(
            columns,
            [
                ("day", Date, false),
                ("user", Text, false),
                ("note", Json, true),
                ("at", TimestampTz, false),
                ("count(*)", Int32, true)
            ]
        );
        assert_eq!(Account::spec().kind, RelationKind::Table { primary_key: vec![0, 1] });
        let account = Account { id: 7, who_else: "bob".into() };
        assert_eq!(Account::from_row(&account.to_row()), Ok(account));
        let view = VisitView::spec();
        assert_eq!(view.kind, RelationKind::View);
        assert_eq!(view.columns.iter().map(|c| c.name).collect::<Vec<_>>(), ["day", "user", "note", "at", "count(*)"]);
        assert!(view.columns.iter().all(|c| c.nullable), "a view's columns are nullable");
    }

    #[test]
    fn rows_round_trip() {
        for v in [visit(Some(r#"{"a": 1}"#)), visit(None), Visit { count: Some(-3), ..visit(None) }] {
            let row = v.to_row();
            assert_eq!(
                row[..4],
                [
                    Datum::Date(20_000),
                    Datum::Text("ann".into()),
                    v.who.note.clone().map_or(Datum::Null, Datum::Json),
                    Datum::Timestamp(1_700_000_000_000_000)
                ]
            );
            validate_row(Visit::spec(), &row).unwrap();
            assert_eq!(v.clone().into_row(), row);
            assert_eq!(Visit::from_row(&row).unwrap(), v);
            assert_eq!(Visit::from_owned_row(row.clone()).unwrap(), v);
            let as_view = VisitView { visit: v.clone() };
            assert_eq!(as_view.to_row(), row);
            assert_eq!(VisitView::from_row(&row).unwrap(), as_view);
            assert_eq!(VisitView::from_owned_row(row).unwrap(), as_view);
        }
    }

    #[test]
    fn wrong_rows_are_refused_alike_borrowed_or_owned() {
        let mut row = visit(None).to_row();
        row[1] = Datum::Null;
        let error = Visit::from_row(&row).unwrap_err();
        assert_eq!(error, Visit::from_owned_row(row.clone()).unwrap_err());
        assert_eq!(error.0, "null value in column \"user\" of visits violates not-null constraint");
        assert_eq!((error.kind(), error.sqlstate()), (RowErrorKind::NotNull, "23502"));
        row[1] = Datum::Json("\"ann\"".into());
        let error = Visit::from_row(&row).unwrap_err();
        assert_eq!(error, Visit::from_owned_row(row.clone()).unwrap_err());
        assert_eq!(error.0, "column \"user\" of visits must be text, got Json(\"\\\"ann\\\"\")");
        assert_eq!(error.sqlstate(), "22P02");
        row.pop();
        assert_eq!(Visit::from_owned_row(row).unwrap_err().0, "visits expects 5 columns, got 4");
    }
}
