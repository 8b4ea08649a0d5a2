//! Relations as Arrow, the query layer's format, and back.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use diffmart_dataflows::datum::{ColumnType, Datum, RelationSpec, Row};

use super::store::RelationRows;
use rust_decimal::Decimal;

/// Time zone of every `timestamptz` column.
pub const UTC: &str = "+00:00";

/// Largest precision Arrow's 128-bit decimals hold.
const NUMERIC_PRECISION: u8 = 38;

pub fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Numeric { scale } => DataType::Decimal128(NUMERIC_PRECISION, scale as i8),
        ColumnType::Text => DataType::Utf8,
        ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Date => DataType::Date32,
        // jsonb travels as its canonical text; the JSON operators work on text.
        ColumnType::Json => DataType::Utf8,
    }
}

pub fn schema(spec: &RelationSpec) -> SchemaRef {
    Arc::new(Schema::new(
        spec.columns.iter().map(|c| Field::new(c.name, data_type(c.ty), c.nullable)).collect::<Vec<_>>(),
    ))
}

/// Builds one Arrow batch of a relation's rows.
pub fn to_batch(spec: &RelationSpec, rows: &RelationRows) -> RecordBatch {
    // Unpacked once, then read column by column.
    let rows: Vec<_> = rows.rows().collect();
    rows_to_batch(spec, &rows)
}

/// Builds one Arrow batch from rows that fit `spec` (the store only holds such rows).
pub fn rows_to_batch<R: AsRef<[Datum]>>(spec: &RelationSpec, rows: &[R]) -> RecordBatch {
    let columns: Vec<ArrayRef> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let values = rows.iter().map(move |row| &row.as_ref()[i]);
            let array: ArrayRef = match column.ty {
                ColumnType::Bool => {
                    let mut b = BooleanBuilder::new();
                    values.for_each(|d| b.append_option(if let Datum::Bool(v) = d { Some(*v) } else { None }));
                    Arc::new(b.finish())
                }
                ColumnType::Int32 => {
                    let mut b = Int32Builder::new();
                    values.for_each(|d| b.append_option(if let Datum::Int32(v) = d { Some(*v) } else { None }));
                    Arc::new(b.finish())
                }
                ColumnType::Int64 => {
                    let mut b = Int64Builder::new();
                    values.for_each(|d| b.append_option(if let Datum::Int64(v) = d { Some(*v) } else { None }));
                    Arc::new(b.finish())
                }
                ColumnType::Numeric { scale } => {
                    let mut b = Decimal128Builder::new();
                    values.for_each(|d| {
                        b.append_option(if let Datum::Numeric(v) = d { Some(mantissa_at(*v, scale)) } else { None })
                    });
                    Arc::new(b.finish().with_precision_and_scale(NUMERIC_PRECISION, scale as i8).expect("valid scale"))
                }
                ColumnType::Text => {
                    let mut b = StringBuilder::new();
                    values.for_each(|d| b.append_option(if let Datum::Text(v) = d { Some(v) } else { None }));
                    Arc::new(b.finish())
                }
                ColumnType::TimestampTz | ColumnType::Timestamp => {
                    let mut b = TimestampMicrosecondBuilder::new();
                    values.for_each(|d| b.append_option(if let Datum::Timestamp(v) = d { Some(*v) } else { None }));
                    let array = b.finish();
                    match column.ty {
                        ColumnType::TimestampTz => Arc::new(array.with_timezone(UTC)),
                        _ => Arc::new(array),
                    }
                }
                ColumnType::Float64 => {
                    let mut b = Float64Builder::new();
                    values.for_each(|d| b.append_option(if let Datum::Float64(v) = d { Some(v.get()) } else { None }));
                    Arc::new(b.finish())
                }
                ColumnType::Date => {
                    let mut b = Date32Builder::new();
                    values.for_each(|d| b.append_option(if let Datum::Date(v) = d { Some(*v) } else { None }));
                    Arc::new(b.finish())
                }
                ColumnType::Json => {
                    let mut b = StringBuilder::new();
                    values.for_each(|d| b.append_option(if let Datum::Json(v) = d { Some(v) } else { None }));
                    Arc::new(b.finish())
                }
            };
            array
        })
        .collect();
    RecordBatch::try_new(schema(spec), columns).expect("columns built from the spec")
}

fn mantissa_at(value: Decimal, scale: u32) -> i128 {
    let mut v = value;
    v.rescale(scale);
    v.mantissa()
}

/// Reads rows of `spec` out of a batch whose columns are, by position, the
/// relation's columns in any type Arrow can hold them in.
pub fn from_batch(spec: &RelationSpec, batch: &RecordBatch) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Row> = (0..batch.num_rows()).map(|_| Vec::with_capacity(spec.columns.len())).collect();
    for (i, column) in spec.columns.iter().enumerate() {
        let array = batch.column(i);
        for (r, row) in rows.iter_mut().enumerate() {
            row.push(datum_at(array, r, column.ty).map_err(|e| format!("column \"{}\": {e}", column.name))?);
        }
    }
    Ok(rows)
}

/// Value `i` of `array` as a datum of column type `ty`, converted as storing it
/// into such a column would (an integer to a wider one, a numeric rounded to the
/// column's scale).
pub fn datum_at(array: &ArrayRef, i: usize, ty: ColumnType) -> Result<Datum, String> {
    if array.is_null(i) {
        return Ok(Datum::Null);
    }
    let wrong = || format!("cannot store a value of type {} as {}", array.data_type(), ty.sql_name());
    Ok(match (ty, array.data_type()) {
        (ColumnType::Bool, DataType::Boolean) => Datum::Bool(array.as_boolean().value(i)),
        (ColumnType::Int32, DataType::Int32) => Datum::Int32(array.as_primitive::<Int32Type>().value(i)),
        (ColumnType::Int32, DataType::Int16) => Datum::Int32(array.as_primitive::<Int16Type>().value(i).into()),
        (ColumnType::Int32, DataType::Int8) => Datum::Int32(array.as_primitive::<Int8Type>().value(i).into()),
        (ColumnType::Int32, DataType::Int64) => {
            let v = array.as_primitive::<Int64Type>().value(i);
            Datum::Int32(i32::try_from(v).map_err(|_| format!("integer out of range: {v}"))?)
        }
        (ColumnType::Int64, DataType::Int64) => Datum::Int64(array.as_primitive::<Int64Type>().value(i)),
        (ColumnType::Int64, DataType::Int32) => Datum::Int64(array.as_primitive::<Int32Type>().value(i).into()),
        (ColumnType::Numeric { scale }, DataType::Decimal128(_, s)) => {
            let mantissa = array.as_primitive::<datafusion::arrow::datatypes::Decimal128Type>().value(i);
            let value = Decimal::try_from_i128_with_scale(mantissa, *s as u32).map_err(|e| e.to_string())?;
            Datum::Numeric(round_to_scale(value, scale))
        }
        (ColumnType::Text, DataType::Utf8) => Datum::Text(array.as_string::<i32>().value(i).to_string()),
        (ColumnType::Text, DataType::LargeUtf8) => Datum::Text(array.as_string::<i64>().value(i).to_string()),
        (ColumnType::Text, DataType::Utf8View) => Datum::Text(array.as_string_view().value(i).to_string()),
        (ColumnType::Float64, DataType::Float64) => Datum::from(array.as_primitive::<Float64Type>().value(i)),
        (ColumnType::Float64, DataType::Float32) => {
            Datum::from(f64::from(array.as_primitive::<Float32Type>().value(i)))
        }
        (ColumnType::Float64, DataType::Int64) => Datum::from(array.as_primitive::<Int64Type>().value(i) as f64),
        (ColumnType::Float64, DataType::Int32) => Datum::from(f64::from(array.as_primitive::<Int32Type>().value(i))),
        (ColumnType::Float64, DataType::Decimal128(_, s)) => {
            let mantissa = array.as_primitive::<datafusion::arrow::datatypes::Decimal128Type>().value(i);
            let value = Decimal::try_from_i128_with_scale(mantissa, *s as u32).map_err(|e| e.to_string())?;
            Datum::from(rust_decimal::prelude::ToPrimitive::to_f64(&value).ok_or_else(wrong)?)
        }
        (ColumnType::Date, DataType::Date32) => Datum::Date(array.as_primitive::<Date32Type>().value(i)),
        (ColumnType::Date, DataType::Timestamp(..)) => {
            let micros = timestamp_micros(array, i);
            Datum::Date(i32::try_from(micros.div_euclid(86_400_000_000)).map_err(|_| wrong())?)
        }
        (ColumnType::Json, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            let text = match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().value(i),
                DataType::LargeUtf8 => array.as_string::<i64>().value(i),
                _ => array.as_string_view().value(i),
            };
            Datum::Json(diffmart_dataflows::datum::parse_json(text).map_err(|e| e.0)?)
        }
        (ColumnType::TimestampTz | ColumnType::Timestamp, DataType::Timestamp(..)) => {
            Datum::Timestamp(timestamp_micros(array, i))
        }
        _ => return Err(wrong()),
    })
}

/// A timestamp array's value as microseconds, whatever its unit.
fn timestamp_micros(array: &ArrayRef, i: usize) -> i64 {
    let DataType::Timestamp(unit, _) = array.data_type() else { unreachable!("checked by the caller") };
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(i) * 1_000_000,
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i) * 1_000,
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(i).div_euclid(1_000),
    }
}

/// Storing into `numeric(p, s)` rounds to `s` places, half away from zero, as PostgreSQL does.
pub fn round_to_scale(value: Decimal, scale: u32) -> Decimal {
    let mut v = value.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    v.rescale(scale);
    v
}
