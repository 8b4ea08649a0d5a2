//! How upstream rows become rows of the mirrored tables, and how a transaction's
//! changes become one batch of retractions and insertions.

use std::collections::BTreeMap;

use diffmart_dataflows::datum::{Datum, RelationKind, RelationSpec, Row};

use super::pgoutput::{OldTuple, RelationMessage, Tuple, TupleValue};
use super::values;
use crate::compute::RelationId;
use crate::serving::{Snapshot, Update};

/// One upstream table mirrored into the diffmart table of the same name.
#[derive(Clone, Debug)]
pub struct MirroredTable {
    pub schema: String,
    pub name: String,
    pub id: RelationId,
    pub spec: &'static RelationSpec,
}

impl MirroredTable {
    pub fn new(schema: &str, name: &str, id: RelationId, spec: &'static RelationSpec) -> Result<Self, String> {
        if !matches!(spec.kind, RelationKind::Table { .. }) {
            return Err(format!("\"{name}\" is not a diffmart table (CDC mirrors into tables)"));
        }
        Ok(MirroredTable { schema: schema.to_string(), name: name.to_string(), id, spec })
    }

    /// `schema.name`, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn primary_key(&self) -> &[usize] {
        match &self.spec.kind {
            RelationKind::Table { primary_key } => primary_key,
            _ => unreachable!("checked in new"),
        }
    }

    pub fn key_of(&self, row: &[Datum]) -> Row {
        self.primary_key().iter().map(|&i| row[i].clone()).collect()
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where each column of a mirrored table comes from upstream.
#[derive(Clone, Debug)]
pub struct ColumnMap {
    pub table: MirroredTable,
    /// Per diffmart column, the upstream column's position (`None`: absent upstream, always NULL).
    source: Vec<Option<usize>>,
    upstream_columns: usize,
}

impl ColumnMap {
    /// Matches columns by name and checks their types. `upstream`: (name, type OID) in upstream order.
    pub fn new(table: &MirroredTable, upstream: &[(String, u32)]) -> Result<ColumnMap, String> {
        let mut source = Vec::with_capacity(table.spec.columns.len());
        for column in &table.spec.columns {
            let found = upstream.iter().position(|(name, _)| name == column.name);
            match found {
                Some(at) if !values::compatible(upstream[at].1, column.ty) => {
                    return Err(format!(
                        "column {}.{} is {} upstream, which does not fit diffmart's {}",
                        table.display(),
                        column.name,
                        values::type_name(upstream[at].1),
                        column.ty.sql_name()
                    ));
                }
                None if !column.nullable => {
                    return Err(format!("{} has no column {} (diffmart needs it)", table.display(), column.name));
                }
                _ => source.push(found),
            }
        }
        Ok(ColumnMap { table: table.clone(), source, upstream_columns: upstream.len() })
    }

    /// The map for a pgoutput Relation message, which also says which columns
    /// updates and deletes identify their row by.
    pub fn for_relation(table: &MirroredTable, relation: &RelationMessage) -> Result<ColumnMap, String> {
        let upstream: Vec<(String, u32)> = relation.columns.iter().map(|c| (c.name.clone(), c.type_oid)).collect();
        let map = ColumnMap::new(table, &upstream)?;
        // With REPLICA IDENTITY DEFAULT or INDEX the old row of an update or delete
        // carries only the identity's columns: diffmart's key must be among them.
        if matches!(relation.replica_identity, b'd' | b'i') {
            for &i in table.primary_key() {
                let covered = map.source[i].is_some_and(|at| relation.columns[at].is_key);
                if !covered {
                    return Err(format!(
                        "the replica identity of {} does not include column {}, diffmart's primary key; \
                         use its primary key or REPLICA IDENTITY FULL",
                        table.display(),
                        table.spec.columns[i].name
                    ));
                }
            }
        }
        Ok(map)
    }

    /// The diffmart columns present upstream, in diffmart order, with their upstream names:
    /// what the snapshot query selects.
    pub fn selected_columns(&self) -> Vec<&'static str> {
        self.table.spec.columns.iter().zip(&self.source).filter(|(_, s)| s.is_some()).map(|(c, _)| c.name).collect()
    }

    /// A row from the snapshot query's values (those of [`ColumnMap::selected_columns`]).
    pub fn row_from_selected(&self, values: &[Option<&str>]) -> Result<Row, String> {
        let mut values = values.iter();
        let mut row = Row::with_capacity(self.source.len());
        for (column, source) in self.table.spec.columns.iter().zip(&self.source) {
            let value = if source.is_some() { values.next().copied().flatten() } else { None };
            row.push(self.parse(column.name, column.ty, value)?);
        }
        Ok(row)
    }

    /// A new row from a pgoutput tuple; unchanged TOASTed values come from `previous`.
    pub fn row(&self, tuple: &Tuple, previous: Option<&Row>) -> Result<Row, String> {
        self.check_width(tuple)?;
        let mut row = Row::with_capacity(self.source.len());
        for (i, (column, source)) in self.table.spec.columns.iter().zip(&self.source).enumerate() {
            row.push(match source.map(|at| &tuple[at]) {
                None | Some(TupleValue::Null) => self.parse(column.name, column.ty, None)?,
                Some(TupleValue::Text(text)) => self.parse(column.name, column.ty, Some(text))?,
                Some(TupleValue::UnchangedToast) => match previous {
                    Some(previous) => previous[i].clone(),
                    None => {
                        return Err(format!(
                            "{}.{}: unchanged TOASTed value without a previous row",
                            self.table.display(),
                            column.name
                        ));
                    }
                },
            });
        }
        Ok(row)
    }

    /// diffmart's primary key of the row an update or delete refers to.
    pub fn key_of_old(&self, old: &OldTuple) -> Result<Row, String> {
        let tuple = old.values();
        self.check_width(tuple)?;
        let mut key = Row::new();
        for &i in self.table.primary_key() {
            let column = &self.table.spec.columns[i];
            let value = match self.source[i].map(|at| &tuple[at]) {
                Some(TupleValue::Text(text)) => Some(text.as_str()),
                _ => None,
            };
            let value = value.ok_or_else(|| {
                format!("the old row sent for {} lacks key column {}", self.table.display(), column.name)
            })?;
            key.push(self.parse(column.name, column.ty, Some(value))?);
        }
        Ok(key)
    }

    fn check_width(&self, tuple: &Tuple) -> Result<(), String> {
        if tuple.len() != self.upstream_columns {
            return Err(format!(
                "a row of {} has {} columns, its relation message announced {}",
                self.table.display(),
                tuple.len(),
                self.upstream_columns
            ));
        }
        Ok(())
    }

    fn parse(
        &self,
        column: &str,
        ty: diffmart_dataflows::datum::ColumnType,
        text: Option<&str>,
    ) -> Result<diffmart_dataflows::datum::Datum, String> {
        match text {
            None => Ok(diffmart_dataflows::datum::Datum::Null),
            Some(text) => values::parse(ty, text).map_err(|e| format!("{}.{column}: {e}", self.table.display())),
        }
    }
}

/// The changes of one upstream transaction, net per primary key, on top of the
/// tables' contents before it (a diffmart snapshot: CDC is the tables' only writer
/// and applies one transaction at a time, so the snapshot is their current state).
pub struct Transaction<'a> {
    base: &'a Snapshot,
    /// (table, key) → the row it holds now (`None`: deleted).
    changed: BTreeMap<(RelationId, Row), Option<Row>>,
    /// Row changes seen (inserts, updates, deletes, truncated rows).
    pub changes: u64,
}

impl<'a> Transaction<'a> {
    pub fn new(base: &'a Snapshot) -> Transaction<'a> {
        Transaction { base, changed: BTreeMap::new(), changes: 0 }
    }

    fn current(&self, table: &MirroredTable, key: &Row) -> Option<Row> {
        match self.changed.get(&(table.id, key.clone())) {
            Some(now) => now.clone(),
            None => self.base.relation(table.id).get_by_key(key),
        }
    }

    pub fn insert(&mut self, table: &MirroredTable, row: Row) -> Result<(), String> {
        let key = table.key_of(&row);
        if self.current(table, &key).is_some() {
            return Err(format!("insert into {} of key {key:?}, which is already there", table.display()));
        }
        self.changes += 1;
        self.changed.insert((table.id, key), Some(row));
        Ok(())
    }

    /// Replaces the row with primary key `old_key` (its previous content is passed
    /// to `make_row` for unchanged TOASTed values).
    pub fn update(
        &mut self,
        table: &MirroredTable,
        old_key: Row,
        make_row: impl FnOnce(Option<&Row>) -> Result<Row, String>,
    ) -> Result<(), String> {
        let previous = self
            .current(table, &old_key)
            .ok_or_else(|| format!("update of {} key {old_key:?}, which diffmart does not have", table.display()))?;
        let row = make_row(Some(&previous))?;
        let new_key = table.key_of(&row);
        if new_key != old_key {
            if self.current(table, &new_key).is_some() {
                return Err(format!("update of {} moves key {old_key:?} onto existing {new_key:?}", table.display()));
            }
            self.changed.insert((table.id, old_key), None);
        }
        self.changes += 1;
        self.changed.insert((table.id, new_key), Some(row));
        Ok(())
    }

    pub fn delete(&mut self, table: &MirroredTable, key: Row) -> Result<(), String> {
        if self.current(table, &key).is_none() {
            return Err(format!("delete from {} of key {key:?}, which diffmart does not have", table.display()));
        }
        self.changes += 1;
        self.changed.insert((table.id, key), None);
        Ok(())
    }

    /// Empties the table (TRUNCATE, or before loading a snapshot).
    pub fn truncate(&mut self, table: &MirroredTable) {
        let base = self.base.relation(table.id);
        let keys: Vec<Row> = base
            .rows()
            .map(|row| table.key_of(&row))
            .chain(
                self.changed
                    .range((table.id, Row::new())..)
                    .take_while(|((id, _), _)| *id == table.id)
                    .map(|((_, k), _)| k.clone()),
            )
            .collect();
        for key in keys {
            if self.current(table, &key).is_some() {
                self.changes += 1;
            }
            self.changed.insert((table.id, key), None);
        }
    }

    /// The net change: per key, the old row retracted and the new one inserted
    /// (nothing where they are equal).
    pub fn into_updates(self) -> Vec<Update> {
        let mut updates = Vec::new();
        for ((table, key), now) in self.changed {
            let before = self.base.relation(table).get_by_key(&key);
            if before == now {
                continue;
            }
            if let Some(before) = before {
                updates.push(Update::delete(table, before));
            }
            if let Some(now) = now {
                updates.push(Update::insert(table, now));
            }
        }
        updates
    }
}
