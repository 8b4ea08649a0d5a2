//! The one write path. Every change to an input relation, whoever makes it (SQL,
//! HTTP, a Kafka upsert, CDC, the generator, status reports), is an [`Update`]:
//! a relation and what to do to it. Ingest resolves updates here, one request at
//! a time, in the order it accepted them, against the tables' keys as every
//! earlier accepted request left them, whether the store shows those yet or not.
//! What comes out is plain row changes (`+1` / `-1`) at the request's logical time.
//!
//! So no writer reads the store to decide what to retract: two writers of one key
//! (a SQL client and the generator, two Kafka readers of one upsert key) are put
//! in one order, here, and a table never holds two rows for one key.
//!
//! Tables are resolved against [`SettledTables`] (the store's latest snapshot) plus
//! the rows written in times the snapshot does not show yet ([`KeyedWrites::unsettled`]);
//! sources are append-only and pass through untouched.

use std::collections::HashMap;

use diffmart_dataflows::Time;
use diffmart_dataflows::datum::{Datum, Micros, RelationKind, RelationSpec, Row, validate_row};

use super::SqlError;
use crate::compute::RelationId;

/// One change a writer asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A source: adds the event. A table: adds the row, whose key must be free (23505).
    Insert(Row),
    /// A source: retracts the event. A table: removes exactly this row; if its key
    /// holds another row, or none, the whole request fails (40001).
    Delete(Row),
    /// A table: adds the row unless its key holds one, else does nothing (the
    /// generator's writes: a row a client wrote first wins).
    InsertIfAbsent(Row),
    /// A table: the row replaces whatever its key holds (Kafka upserts, CDC, status rows).
    Upsert(Row),
    /// A table: removes whatever `key` holds. With `must_exist`, a key that holds
    /// nothing fails the request (02000).
    DeleteKey { key: Row, must_exist: bool },
    /// A table: the row `key` holds becomes `row`, where a `None` keeps the current
    /// value of that column (CDC's unchanged TOASTed values). The new row may have
    /// another key: then `key` is emptied and the new key's row replaced. A `None`
    /// with nothing at `key` fails the request (02000).
    Patch { key: Row, row: Vec<Option<Datum>> },
    /// A table: removes every row (CDC's TRUNCATE, a fresh CDC snapshot).
    Truncate,
}

/// A change to one input relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub relation: RelationId,
    pub op: Op,
}

impl Update {
    pub fn insert(relation: RelationId, row: Row) -> Update {
        Update { relation, op: Op::Insert(row) }
    }
    pub fn delete(relation: RelationId, row: Row) -> Update {
        Update { relation, op: Op::Delete(row) }
    }
    pub fn insert_if_absent(relation: RelationId, row: Row) -> Update {
        Update { relation, op: Op::InsertIfAbsent(row) }
    }
    pub fn upsert(relation: RelationId, row: Row) -> Update {
        Update { relation, op: Op::Upsert(row) }
    }
    pub fn delete_key(relation: RelationId, key: Row) -> Update {
        Update { relation, op: Op::DeleteKey { key, must_exist: false } }
    }
    pub fn truncate(relation: RelationId) -> Update {
        Update { relation, op: Op::Truncate }
    }

    /// The whole row this update carries, if it carries one.
    pub fn row(&self) -> Option<&Row> {
        match &self.op {
            Op::Insert(row) | Op::Delete(row) | Op::InsertIfAbsent(row) | Op::Upsert(row) => Some(row),
            Op::DeleteKey { .. } | Op::Patch { .. } | Op::Truncate => None,
        }
    }
}

/// Plain inserts and deletes of table rows as a set of changes at one time: netted
/// out per row, deletes first, so that "insert a row, delete it" or "insert the
/// new row, delete the old one" apply whatever order they are listed in. A
/// request with any keyed update (upserts, deletes by key, patches, truncates,
/// inserts if absent) is left in its order: that order is its meaning.
pub fn as_one_step(catalog: &super::Catalog, updates: Vec<Update>) -> Vec<Update> {
    let is_table = |relation: RelationId| matches!(catalog.spec(relation).kind, RelationKind::Table { .. });
    let keyed = |u: &Update| !matches!(u.op, Op::Insert(_) | Op::Delete(_));
    if updates.iter().any(keyed) || !updates.iter().any(|u| is_table(u.relation)) {
        return updates;
    }
    let (tables, mut rest): (Vec<Update>, Vec<Update>) = updates.into_iter().partition(|u| is_table(u.relation));
    let mut net: HashMap<(RelationId, Row), isize> = HashMap::new();
    for Update { relation, op } in tables {
        match op {
            Op::Insert(row) => *net.entry((relation, row)).or_default() += 1,
            Op::Delete(row) => *net.entry((relation, row)).or_default() -= 1,
            _ => unreachable!("keyed requests return above"),
        }
    }
    let mut deletes = Vec::new();
    let mut inserts = Vec::new();
    for ((relation, row), diff) in net {
        for _ in 0..diff.unsigned_abs() {
            if diff < 0 {
                deletes.push(Update::delete(relation, row.clone()));
            } else {
                inserts.push(Update::insert(relation, row.clone()));
            }
        }
    }
    deletes.append(&mut inserts);
    deletes.append(&mut rest);
    deletes
}

/// A row change at a logical time's batch: relation, row, `+1` or `-1`.
pub type RowChange = (RelationId, Row, isize);

/// What the tables hold in the store's latest snapshot, which shows every time
/// before [`SettledTables::upper`].
pub trait SettledTables {
    fn upper(&mut self) -> Time;
    /// The row `key` holds in `relation`, a table.
    fn get(&mut self, relation: RelationId, key: &[Datum]) -> Option<Row>;
    /// Every key of `relation`, a table.
    fn keys(&mut self, relation: RelationId) -> Vec<Row>;
}

/// The tables' keys as the accepted writes leave them.
pub struct KeyedWrites {
    specs: Vec<&'static RelationSpec>,
    /// Rows of tables written at times the settled tables may not show yet: (relation,
    /// key) → the row the key holds after them (`None`: deleted) and the latest such time.
    unsettled: HashMap<(RelationId, Row), (Option<Row>, Time)>,
    /// Entries `unsettled` held after it was last pruned.
    pruned_to: usize,
}

/// Prune `unsettled` once it has grown by this many entries since the last time.
const PRUNE_AFTER: usize = 4096;

impl KeyedWrites {
    /// For the input relations `specs`, by relation id.
    pub fn new(specs: Vec<&'static RelationSpec>) -> KeyedWrites {
        KeyedWrites { specs, unsettled: HashMap::new(), pruned_to: 0 }
    }

    /// Resolves one request, made at logical time `time`, all or nothing: on success
    /// its row changes are appended to `out`; on failure nothing changes.
    /// With `table_rules` (a client's write, at that wall-clock time), a row deleted
    /// for good adds the rows it implies (`diffmart_dataflows::rows_implied_by_delete`).
    pub fn resolve(
        &mut self,
        updates: Vec<Update>,
        time: Time,
        table_rules: Option<Micros>,
        settled: &mut dyn SettledTables,
        out: &mut Vec<RowChange>,
    ) -> Result<(), SqlError> {
        let mut request = Request { writes: self, settled, changed: HashMap::new() };
        let events_from = out.len();
        for Update { relation, op } in updates {
            let result = request.writes.spec(relation).and_then(|spec| match &spec.kind {
                RelationKind::Table { primary_key } => request.apply(relation, spec, primary_key, op),
                RelationKind::Source { .. } => match op {
                    Op::Insert(row) => {
                        out.push((relation, row, 1));
                        Ok(())
                    }
                    Op::Delete(row) => {
                        out.push((relation, row, -1));
                        Ok(())
                    }
                    _ => Err(SqlError::new(
                        "42809",
                        format!("\"{}\" is a source: its events are inserted or retracted, not keyed", spec.name),
                    )),
                },
                RelationKind::View => {
                    Err(SqlError::new("42809", format!("\"{}\" is a view and cannot be written", spec.name)))
                }
            });
            if let Err(e) = result {
                out.truncate(events_from);
                return Err(e);
            }
        }
        if let Some(now) = table_rules {
            request.imply_deletes(now)?;
        }
        let Request { writes, settled, changed } = request;
        // Retractions first, then insertions.
        let mut inserts = Vec::new();
        for ((relation, key), now) in changed {
            let before = writes.before(relation, &key, settled);
            if before == now {
                continue;
            }
            if let Some(before) = before {
                out.push((relation, before, -1));
            }
            if let Some(now) = &now {
                inserts.push((relation, now.clone(), 1));
            }
            writes.unsettled.insert((relation, key), (now, time));
        }
        out.extend(inserts);
        writes.prune(settled);
        Ok(())
    }

    fn spec(&self, relation: RelationId) -> Result<&'static RelationSpec, SqlError> {
        self.specs
            .get(relation)
            .copied()
            .ok_or_else(|| SqlError::new("42809", format!("relation {relation} is a view")))
    }

    /// The row `key` held before the request being resolved.
    fn before(&self, relation: RelationId, key: &[Datum], settled: &mut dyn SettledTables) -> Option<Row> {
        match self.unsettled.get(&(relation, key.to_vec())) {
            Some((row, _)) => row.clone(),
            None => settled.get(relation, key),
        }
    }

    /// Forgets what the settled tables show now, once in a while: amortised, a
    /// write pays O(1) for it.
    fn prune(&mut self, settled: &mut dyn SettledTables) {
        if self.unsettled.len() < self.pruned_to + PRUNE_AFTER {
            return;
        }
        let upper = settled.upper();
        self.unsettled.retain(|_, (_, time)| *time >= upper);
        self.pruned_to = self.unsettled.len();
    }

    /// How many table keys are remembered until the store shows them.
    pub fn unsettled_len(&self) -> usize {
        self.unsettled.len()
    }
}

/// One request being resolved: what it has done to each table key so far.
struct Request<'a> {
    writes: &'a mut KeyedWrites,
    settled: &'a mut dyn SettledTables,
    /// (relation, key) → the row it holds after the request's updates so far.
    changed: HashMap<(RelationId, Row), Option<Row>>,
}

impl Request<'_> {
    fn current(&mut self, relation: RelationId, key: &Row) -> Option<Row> {
        match self.changed.get(&(relation, key.clone())) {
            Some(row) => row.clone(),
            None => self.writes.before(relation, key, self.settled),
        }
    }

    fn set(&mut self, relation: RelationId, key: Row, row: Option<Row>) {
        self.changed.insert((relation, key), row);
    }

    fn apply(
        &mut self,
        relation: RelationId,
        spec: &RelationSpec,
        primary_key: &[usize],
        op: Op,
    ) -> Result<(), SqlError> {
        let key_of = |row: &Row| -> Result<Row, SqlError> {
            let key: Row = primary_key.iter().map(|&i| row[i].clone()).collect();
            if key.iter().any(Datum::is_null) {
                return Err(SqlError::new("23502", format!("null value in primary key of relation \"{}\"", spec.name)));
            }
            Ok(key)
        };
        match op {
            Op::Insert(row) => {
                let key = key_of(&row)?;
                if self.current(relation, &key).is_some() {
                    return Err(duplicate_key(spec, primary_key, &key));
                }
                self.set(relation, key, Some(row));
            }
            Op::Delete(row) => {
                let key = key_of(&row)?;
                if self.current(relation, &key).as_ref() != Some(&row) {
                    return Err(SqlError::new(
                        "40001",
                        format!("could not serialize access: a row of \"{}\" changed while being written", spec.name),
                    ));
                }
                self.set(relation, key, None);
            }
            Op::InsertIfAbsent(row) => {
                let key = key_of(&row)?;
                if self.current(relation, &key).is_none() {
                    self.set(relation, key, Some(row));
                }
            }
            Op::Upsert(row) => {
                let key = key_of(&row)?;
                self.set(relation, key, Some(row));
            }
            Op::DeleteKey { key, must_exist } => {
                if must_exist && self.current(relation, &key).is_none() {
                    return Err(no_row(spec, primary_key, &key));
                }
                self.set(relation, key, None);
            }
            Op::Patch { key, row } => {
                let current = self.current(relation, &key);
                let mut merged = Row::with_capacity(row.len());
                for (i, value) in row.into_iter().enumerate() {
                    merged.push(match (value, &current) {
                        (Some(value), _) => value,
                        (None, Some(current)) => current[i].clone(),
                        (None, None) => return Err(no_row(spec, primary_key, &key)),
                    });
                }
                validate_row(spec, &merged).map_err(|e| SqlError::new("22P02", e.to_string()))?;
                let new_key = key_of(&merged)?;
                if new_key != key {
                    self.set(relation, key, None);
                }
                self.set(relation, new_key, Some(merged));
            }
            Op::Truncate => {
                let mut keys = self.settled.keys(relation);
                keys.extend(self.writes.unsettled.keys().filter(|(r, _)| *r == relation).map(|(_, k)| k.clone()));
                keys.extend(self.changed.keys().filter(|(r, _)| *r == relation).map(|(_, k)| k.clone()));
                for key in keys {
                    self.set(relation, key, None);
                }
            }
        }
        Ok(())
    }

    /// Upserts the rows other tables gain when a table's row is deleted for good
    /// (deleted, and its key left empty by the request).
    fn imply_deletes(&mut self, now: Micros) -> Result<(), SqlError> {
        let deleted: Vec<(RelationId, Row)> = self
            .changed
            .iter()
            .filter(|(_, row)| row.is_none())
            .map(|((relation, key), _)| (*relation, key.clone()))
            .collect();
        for (relation, key) in deleted {
            let Some(old) = self.writes.before(relation, &key, self.settled) else { continue };
            let spec = self.writes.specs[relation];
            for (implied_spec, row) in diffmart_dataflows::rows_implied_by_delete(spec, &old, now) {
                let implied = self.writes.specs.iter().position(|s| std::ptr::eq(*s, implied_spec));
                let implied = implied.expect("implied rows go to input tables");
                let RelationKind::Table { primary_key } = &implied_spec.kind else {
                    unreachable!("implied rows go to tables")
                };
                let primary_key = primary_key.clone();
                self.apply(implied, implied_spec, &primary_key, Op::Upsert(row))?;
            }
        }
        Ok(())
    }
}

fn key_text(key: &[Datum]) -> String {
    key.iter().map(display_datum).collect::<Vec<_>>().join(", ")
}

fn key_columns(spec: &RelationSpec, primary_key: &[usize]) -> String {
    primary_key.iter().map(|&i| spec.columns[i].name).collect::<Vec<_>>().join(", ")
}

/// A key taken (23505), worded as PostgreSQL words it; COPY adds the line it was on.
pub fn duplicate_key(spec: &RelationSpec, primary_key: &[usize], key: &[Datum]) -> SqlError {
    SqlError::new(
        "23505",
        format!(
            "duplicate key value violates unique constraint \"{}_pkey\": Key ({})=({}) already exists.",
            spec.name,
            key_columns(spec, primary_key),
            key_text(key)
        ),
    )
}

fn no_row(spec: &RelationSpec, primary_key: &[usize], key: &[Datum]) -> SqlError {
    SqlError::new(
        "02000",
        format!("\"{}\" has no row with ({})=({})", spec.name, key_columns(spec, primary_key), key_text(key)),
    )
}

fn display_datum(d: &Datum) -> String {
    match d {
        Datum::Null => "null".into(),
        Datum::Bool(b) => b.to_string(),
        Datum::Int32(v) => v.to_string(),
        Datum::Int64(v) => v.to_string(),
        Datum::Numeric(v) => v.to_string(),
        Datum::Text(v) => v.clone(),
        Datum::Timestamp(v) => v.to_string(),
        Datum::Float64(v) => v.get().to_string(),
        Datum::Date(v) => v.to_string(),
        Datum::Json(v) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::LazyLock;

    use diffmart_dataflows::datum::{ColumnType, col, col_not_null};

    use super::*;

    static ITEMS: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
        name: "items",
        kind: RelationKind::Table { primary_key: vec![0] },
        columns: vec![col_not_null("id", ColumnType::Int32), col("label", ColumnType::Text)],
    });
    static CLICKS: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
        name: "clicks",
        kind: RelationKind::Source { event_time_column: 0 },
        columns: vec![col_not_null("at", ColumnType::TimestampTz)],
    });
    const ITEMS_ID: RelationId = 0;
    const CLICKS_ID: RelationId = 1;

    /// The store, played by a map that a test makes "visible" up to a time.
    #[derive(Default)]
    struct Tables {
        rows: BTreeMap<Row, Row>,
        upper: Time,
    }

    impl SettledTables for Tables {
        fn upper(&mut self) -> Time {
            self.upper
        }
        fn get(&mut self, _relation: RelationId, key: &[Datum]) -> Option<Row> {
            self.rows.get(key).cloned()
        }
        fn keys(&mut self, _relation: RelationId) -> Vec<Row> {
            self.rows.keys().cloned().collect()
        }
    }

    impl Tables {
        /// Applies resolved changes, as the store would once they are visible.
        fn show(&mut self, changes: &[RowChange], upper: Time) {
            for (relation, row, diff) in changes {
                if *relation == ITEMS_ID {
                    if *diff > 0 {
                        assert!(self.rows.insert(vec![row[0].clone()], row.clone()).is_none(), "two rows for one key");
                    } else {
                        assert_eq!(
                            self.rows.remove(&vec![row[0].clone()]).as_ref(),
                            Some(row),
                            "retracted a row not held"
                        );
                    }
                }
            }
            self.upper = upper;
        }
    }

    fn item(id: i32, label: &str) -> Row {
        vec![Datum::Int32(id), Datum::text(label)]
    }

    fn writes() -> KeyedWrites {
        KeyedWrites::new(vec![&ITEMS, &CLICKS])
    }

    fn resolve(
        writes: &mut KeyedWrites,
        tables: &mut Tables,
        time: Time,
        updates: Vec<Update>,
    ) -> Result<Vec<RowChange>, SqlError> {
        let mut out = Vec::new();
        writes.resolve(updates, time, None, tables, &mut out).map(|()| out)
    }

    #[test]
    fn an_insert_sees_writes_the_store_does_not_show_yet() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        resolve(&mut writes, &mut tables, 0, vec![Update::insert(ITEMS_ID, item(1, "a"))]).unwrap();
        let error = resolve(&mut writes, &mut tables, 1, vec![Update::insert(ITEMS_ID, item(1, "b"))]).unwrap_err();
        assert_eq!(error.sqlstate, "23505");
        // The generator's row for a taken key is skipped, not a second row.
        let skipped = resolve(&mut writes, &mut tables, 1, vec![Update::insert_if_absent(ITEMS_ID, item(1, "g"))]);
        assert_eq!(skipped.unwrap(), vec![]);
    }

    #[test]
    fn upserts_from_two_writers_retract_what_the_other_wrote() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        let first = resolve(&mut writes, &mut tables, 0, vec![Update::upsert(ITEMS_ID, item(7, "a"))]).unwrap();
        let second = resolve(&mut writes, &mut tables, 0, vec![Update::upsert(ITEMS_ID, item(7, "b"))]).unwrap();
        assert_eq!(first, vec![(ITEMS_ID, item(7, "a"), 1)]);
        assert_eq!(second, vec![(ITEMS_ID, item(7, "a"), -1), (ITEMS_ID, item(7, "b"), 1)]);
        let mut all = first;
        all.extend(second);
        tables.show(&all, 1);
        let third = resolve(&mut writes, &mut tables, 1, vec![Update::upsert(ITEMS_ID, item(7, "b"))]).unwrap();
        assert_eq!(third, vec![], "the same row again changes nothing");
    }

    #[test]
    fn a_failed_request_changes_nothing() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        resolve(&mut writes, &mut tables, 0, vec![Update::insert(ITEMS_ID, item(1, "a"))]).unwrap();
        let failed = resolve(
            &mut writes,
            &mut tables,
            1,
            vec![
                Update::insert(CLICKS_ID, vec![Datum::Timestamp(5)]),
                Update::insert(ITEMS_ID, item(2, "b")),
                Update::insert(ITEMS_ID, item(1, "again")),
            ],
        );
        assert_eq!(failed.unwrap_err().sqlstate, "23505");
        // Key 2 is still free: the failed request left no trace.
        let out = resolve(&mut writes, &mut tables, 1, vec![Update::insert(ITEMS_ID, item(2, "b"))]).unwrap();
        assert_eq!(out, vec![(ITEMS_ID, item(2, "b"), 1)]);
    }

    #[test]
    fn a_delete_of_a_row_that_changed_fails() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        resolve(&mut writes, &mut tables, 0, vec![Update::upsert(ITEMS_ID, item(1, "a"))]).unwrap();
        resolve(&mut writes, &mut tables, 0, vec![Update::upsert(ITEMS_ID, item(1, "b"))]).unwrap();
        let stale = resolve(&mut writes, &mut tables, 1, vec![Update::delete(ITEMS_ID, item(1, "a"))]);
        assert_eq!(stale.unwrap_err().sqlstate, "40001");
        let missing = Update { relation: ITEMS_ID, op: Op::DeleteKey { key: vec![Datum::Int32(9)], must_exist: true } };
        assert_eq!(resolve(&mut writes, &mut tables, 1, vec![missing]).unwrap_err().sqlstate, "02000");
    }

    #[test]
    fn a_patch_keeps_the_columns_it_leaves_out_and_may_move_the_key() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        let first = resolve(&mut writes, &mut tables, 0, vec![Update::insert(ITEMS_ID, item(1, "kept"))]).unwrap();
        tables.show(&first, 1);
        let patch = Update {
            relation: ITEMS_ID,
            op: Op::Patch { key: vec![Datum::Int32(1)], row: vec![Some(Datum::Int32(2)), None] },
        };
        let out = resolve(&mut writes, &mut tables, 1, vec![patch]).unwrap();
        assert_eq!(out, vec![(ITEMS_ID, item(1, "kept"), -1), (ITEMS_ID, item(2, "kept"), 1)]);
    }

    #[test]
    fn truncate_empties_settled_and_unsettled_rows() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        let first = resolve(&mut writes, &mut tables, 0, vec![Update::insert(ITEMS_ID, item(1, "a"))]).unwrap();
        tables.show(&first, 1);
        resolve(&mut writes, &mut tables, 1, vec![Update::insert(ITEMS_ID, item(2, "b"))]).unwrap();
        let mut out = resolve(
            &mut writes,
            &mut tables,
            2,
            vec![Update::truncate(ITEMS_ID), Update::insert(ITEMS_ID, item(3, "c"))],
        )
        .unwrap();
        out.sort();
        assert_eq!(out, vec![(ITEMS_ID, item(1, "a"), -1), (ITEMS_ID, item(2, "b"), -1), (ITEMS_ID, item(3, "c"), 1)]);
    }

    #[test]
    fn what_the_store_shows_is_forgotten_and_read_from_it() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        let mut time = 0;
        for round in 0..3 {
            let mut shown = Vec::new();
            for id in 0..PRUNE_AFTER as i32 {
                let row = item(round * PRUNE_AFTER as i32 + id, "r");
                shown.extend(resolve(&mut writes, &mut tables, time, vec![Update::upsert(ITEMS_ID, row)]).unwrap());
            }
            time += 1;
            tables.show(&shown, time);
        }
        // Three rounds of keys were written; the first two are shown and forgotten.
        assert!(writes.unsettled_len() <= PRUNE_AFTER, "{} keys remembered", writes.unsettled_len());
        let out = resolve(&mut writes, &mut tables, time, vec![Update::upsert(ITEMS_ID, item(0, "last"))]).unwrap();
        assert_eq!(out, vec![(ITEMS_ID, item(0, "r"), -1), (ITEMS_ID, item(0, "last"), 1)]);
    }

    #[test]
    fn sources_pass_through_and_refuse_keyed_changes() {
        let (mut writes, mut tables) = (writes(), Tables::default());
        let event = vec![Datum::Timestamp(1)];
        let out = resolve(
            &mut writes,
            &mut tables,
            0,
            vec![Update::insert(CLICKS_ID, event.clone()), Update::insert(CLICKS_ID, event.clone())],
        )
        .unwrap();
        assert_eq!(out, vec![(CLICKS_ID, event.clone(), 1), (CLICKS_ID, event.clone(), 1)]);
        assert_eq!(
            resolve(&mut writes, &mut tables, 0, vec![Update::upsert(CLICKS_ID, event)]).unwrap_err().sqlstate,
            "42809"
        );
    }
}
