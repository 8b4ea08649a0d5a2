//! How upstream rows become rows of the mirrored tables, and how a transaction's
//! changes become one batch of retractions and insertions.

use diffmart_dataflows::datum::{Datum, RelationKind, RelationSpec, Row};

use super::pgoutput::{OldTuple, RelationMessage, Tuple, TupleValue};
use super::values;
use crate::compute::RelationId;
use crate::engine::{Op, Update};

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

    /// A new row from a pgoutput tuple; an unchanged TOASTed value is `None`.
    pub fn partial_row(&self, tuple: &Tuple) -> Result<Vec<Option<Datum>>, String> {
        self.check_width(tuple)?;
        let mut row = Vec::with_capacity(self.source.len());
        for (column, source) in self.table.spec.columns.iter().zip(&self.source) {
            row.push(match source.map(|at| &tuple[at]) {
                None | Some(TupleValue::Null) => Some(self.parse(column.name, column.ty, None)?),
                Some(TupleValue::Text(text)) => Some(self.parse(column.name, column.ty, Some(text))?),
                Some(TupleValue::UnchangedToast) => None,
            });
        }
        Ok(row)
    }

    /// A whole row from a pgoutput tuple (an insert's: it has no unchanged values).
    pub fn row(&self, tuple: &Tuple) -> Result<Row, String> {
        self.partial_row(tuple)?
            .into_iter()
            .zip(self.table.spec.columns.iter())
            .map(|(value, column)| {
                value.ok_or_else(|| {
                    format!("{}.{}: unchanged TOASTed value without a previous row", self.table.display(), column.name)
                })
            })
            .collect()
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

/// The changes of one upstream transaction, as updates for the engine's write
/// path, which applies them in one step. Upstream is the truth and CDC the tables'
/// only writer: an insert upserts its row, an update patches the row its old key
/// holds (unchanged TOASTed values keep what diffmart has), a delete removes
/// whatever its key holds.
#[derive(Default)]
pub struct Transaction {
    updates: Vec<Update>,
    /// Row changes seen (inserts, updates, deletes; a TRUNCATE counts one).
    pub changes: u64,
}

impl Transaction {
    pub fn insert(&mut self, table: &MirroredTable, row: Row) {
        self.changes += 1;
        self.updates.push(Update::upsert(table.id, row));
    }

    /// The row with primary key `old_key` becomes `row`; a `None` is an unchanged
    /// TOASTed value, kept from the row diffmart has.
    pub fn update(&mut self, table: &MirroredTable, old_key: Row, row: Vec<Option<Datum>>) {
        self.changes += 1;
        self.updates.push(Update { relation: table.id, op: Op::Patch { key: old_key, row } });
    }

    pub fn delete(&mut self, table: &MirroredTable, key: Row) {
        self.changes += 1;
        self.updates.push(Update::delete_key(table.id, key));
    }

    /// Removes the row with primary key `key` for a change counted already: an
    /// update whose new row diffmart cannot take.
    pub fn remove_old_row(&mut self, table: &MirroredTable, key: Row) {
        self.updates.push(Update::delete_key(table.id, key));
    }

    /// Empties the table (TRUNCATE, or before loading a snapshot).
    pub fn truncate(&mut self, table: &MirroredTable) {
        self.changes += 1;
        self.updates.push(Update::truncate(table.id));
    }

    pub fn into_updates(self) -> Vec<Update> {
        self.updates
    }
}
