//! One COPY in progress: records become checked rows as the data arrives, and at the
//! end they are written in one step through the one write path, or not at all.
//!
//! Each row is checked where PostgreSQL checks it, so an error names its line: its
//! field count, each value against its column's type, NOT NULL and CHECK
//! (`validate_row`), and for tables its key, against the keys before it in the COPY
//! as they arrive and against the table once the data is complete. The engine checks
//! them all again when it applies the write (a key another writer took meanwhile
//! fails there, without a line). Rows are held until the end, at most
//! `--max-write-rows` of them.

use std::collections::HashSet;
use std::sync::Arc;

use diffmart_dataflows::datum::{Datum, Micros, RelationKind, RelationSpec, Row, validate_row};

use super::CopyError;
use super::format::{Decoder, Options, Record};
use super::values;
use crate::compute::RelationId;
use crate::engine::writes::duplicate_key;
use crate::engine::{Engine, Update};

/// A COPY into one relation, from its first `CopyData` to its `CopyDone`.
pub struct CopyLoad {
    decoder: Decoder,
    rows: Rows,
}

/// The rows decoded so far and what checks the next one.
struct Rows {
    relation: RelationId,
    spec: &'static RelationSpec,
    /// The column each field of a record fills, in order.
    targets: Vec<usize>,
    rows: Vec<Row>,
    /// The line each row came from.
    lines: Vec<u64>,
    /// A table's key columns and the keys of the rows so far.
    keys: Option<(&'static [usize], HashSet<Row>)>,
    max_rows: u64,
    /// For DEFAULTs of the rows (`fill_defaults`), as the statement's time.
    now: Micros,
}

impl CopyLoad {
    /// `targets`: the column of `relation` each field fills.
    pub fn new(
        relation: RelationId,
        spec: &'static RelationSpec,
        targets: Vec<usize>,
        options: Options,
        max_rows: u64,
    ) -> CopyLoad {
        let keys = match &spec.kind {
            RelationKind::Table { primary_key } => Some((primary_key.as_slice(), HashSet::new())),
            _ => None,
        };
        let rows = Rows {
            relation,
            spec,
            targets,
            rows: Vec::new(),
            lines: Vec::new(),
            keys,
            max_rows,
            now: wall_clock_micros(),
        };
        CopyLoad { decoder: Decoder::new(options), rows }
    }

    /// Decodes and checks the rows `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), CopyError> {
        let rows = &mut self.rows;
        self.decoder.feed(chunk, &mut |record| rows.add(record))
    }

    /// The end of the data: the last rows are checked, then all of them are written in
    /// one step and the call returns once they are visible. Returns how many.
    pub async fn finish(mut self, engine: &Arc<Engine>) -> Result<u64, CopyError> {
        let rows = &mut self.rows;
        self.decoder.finish(&mut |record| rows.add(record))?;
        let Rows { relation, spec, rows, lines, keys, .. } = self.rows;
        let count = rows.len() as u64;
        match keys {
            Some((primary_key, _)) => {
                let writer = engine.table_writer().await;
                engine.check_sql_writable(relation)?;
                // No other SQL write runs while the writer is held: this is the table now.
                let snapshot = writer.snapshot();
                let table = snapshot.relation(relation);
                for (row, line) in rows.iter().zip(&lines) {
                    let key = key_of(row, primary_key);
                    if table.get_by_key(&key).is_some() {
                        return Err(CopyError::from(duplicate_key(spec, primary_key, &key))
                            .with_context(format!("COPY {}, line {line}", spec.name)));
                    }
                }
                writer.replace(relation, Vec::new(), rows).await?;
            }
            None => {
                engine.check_sql_writable(relation)?;
                engine.apply(rows.into_iter().map(|row| Update::insert(relation, row)).collect()).await?;
            }
        }
        Ok(count)
    }
}

impl Rows {
    fn add(&mut self, record: Record<'_>) -> Result<(), CopyError> {
        let line = record.line;
        let at_line = || format!("COPY {}, line {line}", self.spec.name);
        if self.rows.len() as u64 >= self.max_rows {
            return Err(CopyError::new(
                "54000",
                format!(
                    "COPY writes more than {} rows (--max-write-rows); nothing was written. Copy in smaller statements.",
                    self.max_rows
                ),
            )
            .with_context(at_line()));
        }
        let row = self.row_of(&record)?;
        if let Some((primary_key, keys)) = &mut self.keys
            && !keys.insert(key_of(&row, primary_key))
        {
            let key = key_of(&row, primary_key);
            return Err(CopyError::from(duplicate_key(self.spec, primary_key, &key)).with_context(at_line()));
        }
        self.rows.push(row);
        self.lines.push(line);
        Ok(())
    }

    fn row_of(&self, record: &Record<'_>) -> Result<Row, CopyError> {
        let spec = self.spec;
        let at_line = || format!("COPY {}, line {}", spec.name, record.line);
        if record.len() < self.targets.len() {
            let missing = spec.columns[self.targets[record.len()]].name;
            return Err(
                CopyError::new("22P04", format!("missing data for column \"{missing}\"")).with_context(at_line())
            );
        }
        if record.len() > self.targets.len() {
            return Err(CopyError::new("22P04", "extra data after last expected column").with_context(at_line()));
        }
        let mut row = vec![Datum::Null; spec.columns.len()];
        for (field, &column) in self.targets.iter().enumerate() {
            let Some(bytes) = record.field(field) else { continue };
            let column = &spec.columns[column];
            let in_column = |value: &str| format!("{}, column {}: \"{value}\"", at_line(), column.name);
            let text = std::str::from_utf8(bytes).map_err(|_| {
                CopyError::new("22021", "invalid byte sequence for encoding \"UTF8\"")
                    .with_context(in_column(&String::from_utf8_lossy(bytes)))
            })?;
            row[self.targets[field]] = values::parse(column.ty, text)
                .map_err(|e| CopyError::new(e.sqlstate, e.message).with_context(in_column(text)))?;
        }
        if self.keys.is_some() {
            diffmart_dataflows::fill_defaults(spec, &mut row, self.now);
        }
        validate_row(spec, &row).map_err(|e| CopyError::new(e.sqlstate(), e.0).with_context(at_line()))?;
        Ok(row)
    }
}

fn key_of(row: &[Datum], primary_key: &[usize]) -> Row {
    primary_key.iter().map(|&i| row[i].clone()).collect()
}

fn wall_clock_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or(0)
}
