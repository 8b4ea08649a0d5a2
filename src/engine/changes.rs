//! A batch of changes as the store applies them: every row packed once.
//!
//! The store receives compute's view changes as rows of datums and ingest's input
//! changes already packed. It used to unpack the inputs, sort and consolidate
//! everything as rows (comparing datum by datum), then pack each row again, once
//! to search its relation and once more to keep it: two encodings and a sort of
//! enum comparisons per change, on the one thread every change passes through
//! (docs/benchmarks.md, #handshakes-and-turn-taking). Here each row is packed once into one buffer,
//! sorted and consolidated by its packed key (`memcmp`), and applied from those
//! same bytes.

use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, Micros, Row};

use crate::compute::RelationId;
use crate::engine::packed_row::{key_of, pack, unpack};

/// One change in a [`PackedChanges`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    relation: RelationId,
    diff: isize,
    /// The row's event time if its relation is a source (NULL sorts first, as
    /// `Micros::MIN`); 0 for other relations.
    event_time: Micros,
    /// Where the packed row lies in the buffer.
    start: usize,
    end: usize,
}

/// Changes to any relations, each row packed once into one buffer.
#[derive(Debug, Default)]
pub struct PackedChanges {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

/// One change, as [`PackedChanges::iter`] yields it.
#[derive(Clone, Copy, Debug)]
pub struct PackedChange<'a> {
    pub relation: RelationId,
    /// The row as `packed_row::pack` wrote it.
    pub packed: &'a [u8],
    pub diff: isize,
    pub event_time: Micros,
}

impl PackedChange<'_> {
    pub fn row(&self) -> Row {
        unpack(self.packed)
    }
}

impl PackedChanges {
    /// Room for about `rows` rows of about 64 bytes.
    pub fn with_capacity(rows: usize) -> PackedChanges {
        PackedChanges { bytes: Vec::with_capacity(64 * rows), entries: Vec::with_capacity(rows) }
    }

    /// Packs `row` and adds it with `diff`; `event_time` as [`PackedChange::event_time`].
    pub fn push(&mut self, relation: RelationId, row: &[Datum], diff: isize, event_time: Micros) {
        let start = self.bytes.len();
        pack(row, &mut self.bytes);
        self.entries.push(Entry { relation, diff, event_time, start, end: self.bytes.len() });
    }

    /// Adds a row as `packed_row::pack` wrote it, with `diff`.
    pub fn push_packed(&mut self, relation: RelationId, packed: &[u8], diff: isize, event_time: Micros) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packed);
        self.entries.push(Entry { relation, diff, event_time, start, end: self.bytes.len() });
    }

    /// Moves every change of `other` to the end of these.
    pub fn append(&mut self, other: PackedChanges) {
        if self.entries.is_empty() {
            *self = other;
            return;
        }
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.entries.extend(other.entries.into_iter().map(|e| Entry {
            start: e.start + offset,
            end: e.end + offset,
            ..e
        }));
    }

    /// Sums the differences of equal rows (equal keys: `1.5` and `1.50` are one row,
    /// as they are one datum) and drops those that cancel, then orders retractions
    /// first: in a net change between two states a table key loses its old row
    /// before it gains the new one. A source's changes go in event-time order, so
    /// its new events append; rows with one event time in row order.
    pub fn consolidate(&mut self) {
        let bytes = &self.bytes;
        let key = |e: &Entry| key_of(&bytes[e.start..e.end]);
        self.entries.sort_unstable_by(|a, b| a.relation.cmp(&b.relation).then_with(|| key(a).cmp(key(b))));
        self.entries.dedup_by(|later, earlier| {
            let same = later.relation == earlier.relation && key(later) == key(earlier);
            if same {
                earlier.diff += later.diff;
            }
            same
        });
        self.entries.retain(|e| e.diff != 0);
        // Stable: rows of one relation with one event time stay in row order.
        self.entries.sort_by_key(|e| (e.diff > 0, e.relation, e.event_time));
    }

    /// How many changes there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends these changes to `out` as the input log keeps them: the count, then
    /// per change its relation (u32), difference and event time (i64) and packed
    /// length (u32), then the packed rows one after another; little-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(4 + self.entries.len() * ENCODED_ENTRY + self.bytes.len());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.relation as u32).to_le_bytes());
            out.extend_from_slice(&(e.diff as i64).to_le_bytes());
            out.extend_from_slice(&e.event_time.to_le_bytes());
            out.extend_from_slice(&((e.end - e.start) as u32).to_le_bytes());
        }
        for e in &self.entries {
            out.extend_from_slice(&self.bytes[e.start..e.end]);
        }
    }

    /// Reads what [`PackedChanges::encode`] wrote at the start of `bytes`; returns the
    /// changes and the bytes that follow them. `relations` bounds the relation ids.
    pub fn decode(bytes: &[u8], relations: usize) -> Result<(PackedChanges, &[u8]), String> {
        let (count, mut rest) = take_u32(bytes)?;
        let count = count as usize;
        if count.saturating_mul(ENCODED_ENTRY) > rest.len() {
            return Err(format!("{count} changes do not fit in {} bytes", rest.len()));
        }
        let mut entries = Vec::with_capacity(count);
        let mut total = 0usize;
        for _ in 0..count {
            let (relation, r) = take_u32(rest)?;
            let (diff, r) = take_i64(r)?;
            let (event_time, r) = take_i64(r)?;
            let (len, r) = take_u32(r)?;
            rest = r;
            let relation = relation as usize;
            if relation >= relations {
                return Err(format!("relation id {relation} is not in the catalog ({relations} relations)"));
            }
            let start = total;
            total += len as usize;
            entries.push(Entry { relation, diff: diff as isize, event_time, start, end: total });
        }
        if total > rest.len() {
            return Err(format!("{total} bytes of rows do not fit in {} bytes", rest.len()));
        }
        let (rows, rest) = rest.split_at(total);
        Ok((PackedChanges { bytes: rows.to_vec(), entries }, rest))
    }

    pub fn iter(&self) -> impl Iterator<Item = PackedChange<'_>> + '_ {
        self.entries.iter().map(|e| PackedChange {
            relation: e.relation,
            packed: &self.bytes[e.start..e.end],
            diff: e.diff,
            event_time: e.event_time,
        })
    }
}

/// Bytes of one change's header in [`PackedChanges::encode`].
const ENCODED_ENTRY: usize = 4 + 8 + 8 + 4;

/// The little-endian `u32` at the start of `bytes`, and the bytes after it.
pub fn take_u32(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes.split_first_chunk::<4>() {
        Some((head, rest)) => Ok((u32::from_le_bytes(*head), rest)),
        None => Err("cut short".into()),
    }
}

/// The little-endian `i64` at the start of `bytes`, and the bytes after it.
pub fn take_i64(bytes: &[u8]) -> Result<(i64, &[u8]), String> {
    match bytes.split_first_chunk::<8>() {
        Some((head, rest)) => Ok((i64::from_le_bytes(*head), rest)),
        None => Err("cut short".into()),
    }
}

/// An input batch as the store holds it until compute's outputs reach its time.
///
/// Ingest sends the store its copy of a batch before compute sees it, and a bulk
/// load keeps several batches in flight: as rows (32 bytes a datum, a heap string
/// per text) those copies were its largest transient (docs/benchmarks.md, #memory-for-24-hours-of-events).
/// Packed they take about a third of that, and the store applies them as they are.
#[derive(Debug)]
pub struct PackedInputs {
    pub time: Time,
    pub changes: PackedChanges,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn rows(changes: &PackedChanges) -> Vec<(RelationId, Row, isize)> {
        changes.iter().map(|c| (c.relation, c.row(), c.diff)).collect()
    }

    /// A batch's source events go in event-time order, retractions first, whatever
    /// column the event time is in; other relations keep row order; equal rows
    /// merge, and those that cancel go.
    #[test]
    fn consolidate_orders_source_events_by_event_time() {
        let source: RelationId = 0;
        let view: RelationId = 1;
        let event = |id: i32, time: Micros| vec![Datum::Int32(id), Datum::Timestamp(time)];
        let mut changes = PackedChanges::default();
        changes.push(source, &event(1, 30), 1, 30);
        changes.push(view, &[Datum::Int32(2)], 1, 0);
        let mut later = PackedChanges::default();
        later.push(source, &event(2, 10), 1, 10);
        later.push(view, &[Datum::Int32(1)], 1, 0);
        later.push(source, &event(3, 20), -1, 20);
        later.push(source, &event(1, 30), 1, 30);
        later.push(view, &[Datum::Int32(5)], 1, 0);
        later.push(view, &[Datum::Int32(5)], -1, 0);
        changes.append(later);
        changes.consolidate();
        assert_eq!(
            rows(&changes),
            vec![
                (source, event(3, 20), -1),
                (source, event(2, 10), 1),
                (source, event(1, 30), 2),
                (view, vec![Datum::Int32(1)], 1),
                (view, vec![Datum::Int32(2)], 1),
            ]
        );
    }

    /// What the input log keeps reads back as the same changes.
    #[test]
    fn encoded_changes_decode_to_the_same_changes() {
        let mut changes = PackedChanges::default();
        changes.push(2, &[Datum::Int32(7), Datum::Text("seven".into()), Datum::Null], 1, 40);
        changes.push(0, &[Datum::Numeric(Decimal::new(-1205, 2))], -3, 0);
        let mut bytes = Vec::new();
        changes.encode(&mut bytes);
        bytes.extend_from_slice(b"after");
        let (decoded, rest) = PackedChanges::decode(&bytes, 3).unwrap();
        assert_eq!(rest, b"after");
        assert_eq!(rows(&decoded), rows(&changes));
        assert_eq!(decoded.iter().map(|c| c.event_time).collect::<Vec<_>>(), vec![40, 0]);
        assert!(PackedChanges::decode(&bytes, 2).unwrap_err().contains("relation id 2"));
        assert!(PackedChanges::decode(&bytes[..bytes.len() - 12], 3).is_err());
    }

    /// Rows equal as datums are one row whatever their decimals' scales, as in a
    /// consolidation of rows (one of their encodings stays).
    #[test]
    fn equal_decimals_of_different_scales_consolidate() {
        let mut changes = PackedChanges::default();
        changes.push(0, &[Datum::Numeric(Decimal::new(150, 2))], 1, 0);
        changes.push(0, &[Datum::Numeric(Decimal::new(15, 1))], 1, 0);
        changes.push(0, &[Datum::Numeric(Decimal::new(2, 0))], 1, 0);
        changes.push(0, &[Datum::Numeric(Decimal::new(200, 2))], -1, 0);
        changes.consolidate();
        let held = rows(&changes);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].1, vec![Datum::Numeric(Decimal::new(15, 1))]);
        assert_eq!(held[0].2, 2);
    }
}
