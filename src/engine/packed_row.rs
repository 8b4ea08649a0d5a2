//! Rows as the store keeps them: packed into bytes that compare as the rows do.
//!
//! A row of datums costs 32 bytes a column plus a heap string per text; most of
//! the store's memory was that (docs/benchmarks.md, #where-the-memory-is). A [`PackedRow`] is
//! the row in memcomparable's encoding (MySQL's key format: big-endian integers
//! with the sign bit flipped, text in 9-byte groups, decimals as SQLite's
//! key encoding), a type tag before each datum. Byte order is [`Datum`]'s order,
//! so the store's maps keep rows in the order they always had, compare them with
//! `memcmp`, and find the rows that start with a datum by range.

use std::borrow::Borrow;

use diffmart_dataflows::datum::{Datum, F64, Row};
use memcomparable::{Deserializer, Serializer};
use serde::Serializer as _;
use serde::de::DeserializeOwned;
use triomphe::ThinArc;

/// A row of a view or table, packed, with how many times the relation holds it.
///
/// Behind a thin `Arc` (one pointer, no weak count): snapshots share the store's
/// map nodes, and copying a shared node then bumps reference counts instead of
/// copying rows; a node slot is 8 bytes, where an `Arc<[u8]>` and a separate
/// multiplicity took 24, and the B-tree leaves behind appends stay half empty.
///
/// Layout: the multiplicity (LEB128: one byte below 128), then the row as [`pack`]
/// writes it. Equality and order are the key's alone.
#[derive(Clone)]
pub struct PackedRow(ThinArc<(), u8>);

/// Type tags, in the order of [`Datum`]'s variants: a NULL sorts first, as a datum does.
mod tag {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT32: u8 = 2;
    pub const INT64: u8 = 3;
    pub const NUMERIC: u8 = 4;
    pub const TEXT: u8 = 5;
    pub const TIMESTAMP: u8 = 6;
    pub const FLOAT64: u8 = 7;
    pub const DATE: u8 = 8;
    pub const JSON: u8 = 9;
}

impl PackedRow {
    /// `row`, held `multiplicity` times.
    pub fn new(row: &[Datum], multiplicity: usize) -> PackedRow {
        let mut bytes = Vec::with_capacity(1 + 16 * row.len());
        write_multiplicity(multiplicity, &mut bytes);
        pack(row, &mut bytes);
        PackedRow(ThinArc::from_header_and_slice((), &bytes))
    }

    /// A row as [`pack`] wrote it, held `multiplicity` times.
    pub fn from_packed(packed: &[u8], multiplicity: usize) -> PackedRow {
        let mut bytes = Vec::with_capacity(2 + packed.len());
        write_multiplicity(multiplicity, &mut bytes);
        bytes.extend_from_slice(packed);
        PackedRow(ThinArc::from_header_and_slice((), &bytes))
    }

    /// The same row, held `multiplicity` times.
    pub fn with_multiplicity(&self, multiplicity: usize) -> PackedRow {
        PackedRow::from_packed(self.packed(), multiplicity)
    }

    pub fn multiplicity(&self) -> usize {
        self.split().0
    }

    /// The bytes equality and order are about (see [`encode_key`]).
    pub fn key(&self) -> &[u8] {
        key_of(self.packed())
    }

    /// The row's datums, as they were packed.
    pub fn unpack(&self) -> Row {
        unpack(self.packed())
    }

    /// The row as [`pack`] wrote it.
    pub fn packed(&self) -> &[u8] {
        self.split().1
    }

    fn split(&self) -> (usize, &[u8]) {
        let mut bytes = &self.0.slice[..];
        // Every comparison in the store's maps comes through here: a multiplicity below
        // 128 (nearly every row's) is its one byte, without the LEB128 reader.
        if let Some(&small) = bytes.first().filter(|&&b| b < 0x80) {
            return (small as usize, &bytes[1..]);
        }
        let multiplicity = leb128::read::unsigned(&mut bytes).expect("a packed row starts with its multiplicity");
        (multiplicity as usize, bytes)
    }
}

fn write_multiplicity(multiplicity: usize, bytes: &mut Vec<u8>) {
    leb128::write::unsigned(bytes, multiplicity as u64).expect("writing to a Vec cannot fail");
}

/// Appends `row`, packed, to `bytes`: how many numeric datums it has, the scale of
/// each in column order, then its key (see [`encode_key`]). The scales only restore
/// how a decimal was written: `1.5` and `1.50` are one key. They go first so that
/// finding the key reads only the row's first bytes: the store's searches compare
/// keys of rows behind pointers, and a second cache line per comparison showed in
/// its profile.
pub fn pack(row: &[Datum], bytes: &mut Vec<u8>) {
    let count_at = bytes.len();
    bytes.push(0);
    let mut count = 0u8;
    for datum in row {
        if let Datum::Numeric(value) = datum {
            bytes.push(value.scale() as u8);
            count = count.checked_add(1).expect("a row holds at most 255 numeric datums");
        }
    }
    bytes[count_at] = count;
    encode_key(row, bytes);
}

/// The key of a row [`pack`] wrote.
#[inline]
pub fn key_of(packed: &[u8]) -> &[u8] {
    let scales = *packed.first().expect("a packed row starts with its scale count") as usize;
    &packed[1 + scales..]
}

/// The datums of a row [`pack`] wrote.
pub fn unpack(packed: &[u8]) -> Row {
    let key = key_of(packed);
    let mut scales = packed[1..packed.len() - key.len()].iter();
    let mut input = Deserializer::new(key);
    let mut row = Row::new();
    while input.has_remaining() {
        row.push(decode_datum(&mut input, &mut scales));
    }
    row
}

/// Appends the key of `row` to `bytes`: what a lookup searches the store's maps for.
/// The key of a row's first datums is a prefix of the row's key, and no other
/// datum's key starts with it: the rows that start with a datum are one range.
pub fn encode_key(row: &[Datum], bytes: &mut Vec<u8>) {
    let mut output = Serializer::new(bytes);
    for datum in row {
        encode_datum(datum, &mut output).expect("every datum has a memcomparable encoding");
    }
}

fn encode_datum(datum: &Datum, output: &mut Serializer<&mut Vec<u8>>) -> memcomparable::Result<()> {
    match datum {
        Datum::Null => output.serialize_u8(tag::NULL),
        Datum::Bool(v) => {
            output.serialize_u8(tag::BOOL)?;
            output.serialize_bool(*v)
        }
        Datum::Int32(v) => {
            output.serialize_u8(tag::INT32)?;
            output.serialize_i32(*v)
        }
        Datum::Int64(v) => {
            output.serialize_u8(tag::INT64)?;
            output.serialize_i64(*v)
        }
        Datum::Numeric(v) => {
            output.serialize_u8(tag::NUMERIC)?;
            // Normalized, so that equal values have one encoding whatever their scale.
            output.serialize_decimal(memcomparable::Decimal::Normalized(v.normalize()))
        }
        Datum::Text(v) => {
            output.serialize_u8(tag::TEXT)?;
            output.serialize_str(v)
        }
        Datum::Timestamp(v) => {
            output.serialize_u8(tag::TIMESTAMP)?;
            output.serialize_i64(*v)
        }
        Datum::Float64(v) => {
            output.serialize_u8(tag::FLOAT64)?;
            output.serialize_f64(v.get())
        }
        Datum::Date(v) => {
            output.serialize_u8(tag::DATE)?;
            output.serialize_i32(*v)
        }
        Datum::Json(v) => {
            output.serialize_u8(tag::JSON)?;
            output.serialize_str(v)
        }
    }
}

/// One datum from `input`; a numeric takes the next of `scales`.
fn decode_datum<'a>(input: &mut Deserializer<&[u8]>, scales: &mut impl Iterator<Item = &'a u8>) -> Datum {
    fn read<T: DeserializeOwned>(input: &mut Deserializer<&[u8]>) -> T {
        T::deserialize(input).unwrap_or_else(|e| panic!("the store's packed row is corrupt: {e}"))
    }
    match read::<u8>(input) {
        tag::NULL => Datum::Null,
        tag::BOOL => Datum::Bool(read(input)),
        tag::INT32 => Datum::Int32(read(input)),
        tag::INT64 => Datum::Int64(read(input)),
        tag::NUMERIC => {
            let memcomparable::Decimal::Normalized(mut value) =
                input.deserialize_decimal().unwrap_or_else(|e| panic!("the store's packed row is corrupt: {e}"))
            else {
                unreachable!("diffmart packs no infinite or NaN decimal")
            };
            // Packed normalized: back to the scale it was written with.
            value.rescale(u32::from(*scales.next().expect("a scale for every numeric datum")));
            Datum::Numeric(value)
        }
        tag::TEXT => Datum::Text(read(input)),
        tag::TIMESTAMP => Datum::Timestamp(read(input)),
        tag::FLOAT64 => Datum::Float64(F64::new(read(input))),
        tag::DATE => Datum::Date(read(input)),
        tag::JSON => Datum::Json(read(input)),
        other => panic!("the store's packed row is corrupt: unknown type tag {other}"),
    }
}

impl PartialEq for PackedRow {
    fn eq(&self, other: &PackedRow) -> bool {
        self.key() == other.key()
    }
}
impl Eq for PackedRow {}
impl PartialOrd for PackedRow {
    fn partial_cmp(&self, other: &PackedRow) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PackedRow {
    fn cmp(&self, other: &PackedRow) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}
/// Maps keyed by packed rows are searched by key bytes: equal and ordered alike.
impl Borrow<[u8]> for PackedRow {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}
impl std::fmt::Debug for PackedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unpack().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn datum() -> impl Strategy<Value = Datum> {
        prop_oneof![
            Just(Datum::Null),
            any::<bool>().prop_map(Datum::Bool),
            any::<i32>().prop_map(Datum::Int32),
            any::<i64>().prop_map(Datum::Int64),
            (any::<i64>(), 0u32..12).prop_map(|(m, s)| Datum::Numeric(Decimal::new(m, s))),
            ".{0,20}".prop_map(Datum::Text),
            any::<i64>().prop_map(Datum::Timestamp),
            any::<f64>().prop_map(|v| Datum::Float64(F64::new(v))),
            any::<i32>().prop_map(Datum::Date),
            ".{0,12}".prop_map(Datum::Json),
        ]
    }

    fn row() -> impl Strategy<Value = Row> {
        proptest::collection::vec(datum(), 0..6)
    }

    /// A datum as it must come back: what it is, with its scale and its float's bits.
    fn exactly(row: &[Datum]) -> Vec<String> {
        row.iter()
            .map(|d| match d {
                Datum::Float64(v) => format!("f{:x}", v.get().to_bits()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn unpacks_what_was_packed(row in row(), multiplicity in 1usize..1 << 40, changed in 1usize..300) {
            let packed = PackedRow::new(&row, multiplicity);
            prop_assert_eq!(exactly(&packed.unpack()), exactly(&row));
            prop_assert_eq!(packed.multiplicity(), multiplicity);
            let recounted = packed.with_multiplicity(changed);
            prop_assert_eq!(recounted.multiplicity(), changed);
            prop_assert_eq!(exactly(&recounted.unpack()), exactly(&row));
            prop_assert_eq!(recounted.key(), packed.key());
        }

        #[test]
        fn orders_as_rows_do(a in row(), b in row()) {
            prop_assert_eq!(PackedRow::new(&a, 1).cmp(&PackedRow::new(&b, 7)), a.cmp(&b));
        }

        #[test]
        fn a_first_datum_is_a_prefix_of_exactly_its_rows(a in row(), b in row()) {
            if let Some(first) = a.first() {
                let mut prefix = Vec::new();
                encode_key(std::slice::from_ref(first), &mut prefix);
                prop_assert_eq!(PackedRow::new(&b, 1).key().starts_with(&prefix), b.first() == Some(first));
            }
        }
    }

    #[test]
    fn equal_decimals_of_other_scales_are_one_key_and_keep_their_scale() {
        let a = PackedRow::new(&[Datum::Numeric(Decimal::new(150, 2))], 1);
        let b = PackedRow::new(&[Datum::Numeric(Decimal::new(15, 1))], 1);
        assert_eq!(a, b);
        assert_eq!(a.unpack(), vec![Datum::Numeric(Decimal::new(150, 2))]);
        assert_eq!(format!("{:?}", a.unpack()), "[Numeric(1.50)]");
        assert_eq!(format!("{:?}", b.unpack()), "[Numeric(1.5)]");
    }
}
