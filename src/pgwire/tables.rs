//! Every relation as a DataFusion table: scans read the query's snapshot, and
//! INSERT / UPDATE / DELETE on tables go through the engine's [`TableWriter`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{and, cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use diffmart_dataflows::datum::{ColumnType, Datum, RelationKind, RelationSpec, Row, validate_row};
use futures::StreamExt;

use super::privileges;
use super::roles::Access;
use super::session;
use crate::compute::RelationId;
use crate::engine::{Engine, SqlError, arrow};

/// A relation of the catalog, seen by DataFusion.
pub struct RelationTable {
    engine: Arc<Engine>,
    id: RelationId,
    spec: &'static RelationSpec,
    schema: SchemaRef,
}

impl fmt::Debug for RelationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelationTable({})", self.spec.name)
    }
}

impl RelationTable {
    pub fn new(engine: Arc<Engine>, id: RelationId) -> RelationTable {
        let spec = engine.catalog().spec(id);
        RelationTable { schema: arrow::schema(spec), engine, id, spec }
    }

    /// The relation as Arrow, at the snapshot this query reads.
    fn batch(&self) -> RecordBatch {
        let snapshot = session::current_snapshot(&self.engine);
        snapshot.batch(self.id, |rows| arrow::to_batch(self.spec, rows))
    }

    /// The value a filter pins a view's first column to: `first = literal`, either
    /// way round, with a literal of the column's own type (DataFusion has coerced
    /// it by now; a cast or any other shape is left to DataFusion). A view's rows are
    /// ordered by their first column, so those rows are one range of the snapshot:
    /// a lookup by it reads the range instead of converting the whole view.
    fn first_column_value(&self, filter: &Expr) -> Option<Datum> {
        if self.spec.kind != RelationKind::View {
            return None;
        }
        let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = filter else { return None };
        let (column, value) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(column), Expr::Literal(value, _)) | (Expr::Literal(value, _), Expr::Column(column)) => {
                (column, value)
            }
            _ => return None,
        };
        let first = self.spec.columns.first()?;
        if column.name != first.name || value.is_null() {
            return None;
        }
        let literal = value.to_array().ok()?;
        let same_type = match literal.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => first.ty == ColumnType::Text,
            other => *other == arrow::data_type(first.ty),
        };
        if !same_type {
            return None;
        }
        arrow::datum_at(&literal, 0, first.ty).ok()
    }

    fn writable(&self) -> Result<()> {
        privileges::require(Access::Write, self.spec.name).map_err(external)?;
        match self.spec.kind {
            RelationKind::Table { .. } => self.engine.check_sql_writable(self.id).map_err(external),
            RelationKind::View => Err(sql_error(
                "42809",
                format!("cannot write to \"{}\": it is a materialized view, maintained by diffmart", self.spec.name),
            )),
            RelationKind::Source { .. } => Err(sql_error(
                "42809",
                format!("cannot write to \"{}\": it is a source, fed by its event stream", self.spec.name),
            )),
        }
    }

    /// Rows that satisfy every filter (SQL semantics: NULL is not true).
    fn select(&self, state: &dyn Session, batch: &RecordBatch, filters: &[Expr]) -> Result<BooleanArray> {
        let df_schema = DFSchema::try_from_qualified_schema(self.spec.name, &self.schema)?;
        let mut mask = BooleanArray::from(vec![true; batch.num_rows()]);
        for filter in filters {
            let predicate =
                create_physical_expr(filter, &df_schema, state.execution_props(), &PhysicalPlanningContext::default())?;
            let values = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
            let values = values.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(|| {
                sql_error("42804", format!("argument of WHERE must be type boolean, not {}", values.data_type()))
            })?;
            // NULL → false.
            let values: BooleanArray = values.iter().map(|v| Some(v == Some(true))).collect();
            mask = and(&mask, &values)?;
        }
        Ok(mask)
    }

    fn rows_of(&self, batch: &RecordBatch) -> Result<Vec<Row>> {
        let rows = arrow::from_batch(self.spec, batch).map_err(|e| sql_error("42804", e))?;
        for row in &rows {
            validate_row(self.spec, row).map_err(|e| sql_error(e.sqlstate(), e.0))?;
        }
        Ok(rows)
    }
}

/// A DataFusion error that carries a SQLSTATE to the client.
pub fn sql_error(sqlstate: &'static str, message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(SqlError::new(sqlstate, message)))
}

fn count_plan(count: u64) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![count]))])?;
    Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?)
}

#[async_trait]
impl TableProvider for RelationTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        match self.spec.kind {
            RelationKind::View => TableType::View,
            _ => TableType::Base,
        }
    }

    /// `first_column = literal` on a view narrows the scan to that range; DataFusion
    /// still applies every filter to what the scan returns (`Inexact`).
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| match self.first_column_value(filter) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        privileges::require(Access::Read, self.spec.name).map_err(external)?;
        let batch = match filters.iter().find_map(|filter| self.first_column_value(filter)) {
            Some(first) => {
                let snapshot = session::current_snapshot(&self.engine);
                arrow::rows_to_batch(self.spec, &snapshot.with_first_column(self.id, &first))
            }
            None => self.batch(),
        };
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())?)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        if insert_op != InsertOp::Append {
            return Err(sql_error("0A000", format!("{insert_op} is not supported; use INSERT, UPDATE or DELETE")));
        }
        let sink = TableSink { table: RelationTable::new(self.engine.clone(), self.id) };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        let writer = self.engine.table_writer().await;
        let batch = writer.snapshot().batch(self.id, |rows| arrow::to_batch(self.spec, rows));
        let doomed = filter_record_batch(&batch, &self.select(state, &batch, &filters)?)?;
        let rows = self.rows_of(&doomed)?;
        let count = rows.len() as u64;
        if count > 0 {
            writer.replace(self.id, rows, Vec::new()).await.map_err(external)?;
            session::saw_write(&self.engine);
        }
        count_plan(count)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        for (column, _) in &assignments {
            if self.spec.column_index(column).is_none() {
                return Err(sql_error(
                    "42703",
                    format!("column \"{column}\" of relation \"{}\" does not exist", self.spec.name),
                ));
            }
        }
        let writer = self.engine.table_writer().await;
        let batch = writer.snapshot().batch(self.id, |rows| arrow::to_batch(self.spec, rows));
        let old = filter_record_batch(&batch, &self.select(state, &batch, &filters)?)?;
        let df_schema = DFSchema::try_from_qualified_schema(self.spec.name, &self.schema)?;
        let mut columns: Vec<ArrayRef> = old.columns().to_vec();
        for (column, expr) in &assignments {
            let index = self.spec.column_index(column).expect("checked above");
            let value =
                create_physical_expr(expr, &df_schema, state.execution_props(), &PhysicalPlanningContext::default())?
                    .evaluate(&old)?
                    .into_array(old.num_rows())?;
            columns[index] = cast(&value, self.schema.field(index).data_type())
                .map_err(|e| sql_error("42804", format!("column \"{column}\": {e}")))?;
        }
        let new = RecordBatch::try_new(self.schema.clone(), columns)?;
        let (old_rows, new_rows) = (self.rows_of(&old)?, self.rows_of(&new)?);
        let count = old_rows.len() as u64;
        if count > 0 {
            writer.replace(self.id, old_rows, new_rows).await.map_err(external)?;
            session::saw_write(&self.engine);
        }
        count_plan(count)
    }
}

fn external(e: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Where INSERT's rows go: converted, checked, and written in one step.
struct TableSink {
    table: RelationTable,
}

impl fmt::Debug for TableSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableSink({})", self.table.spec.name)
    }
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableSink: {}", self.table.spec.name)
    }
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.table.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let mut rows = Vec::new();
        while let Some(batch) = data.next().await {
            rows.extend(self.table.rows_of(&batch?)?);
        }
        let count = rows.len() as u64;
        let writer = self.table.engine.table_writer().await;
        writer.replace(self.table.id, Vec::new(), rows).await.map_err(external)?;
        session::saw_write(&self.table.engine);
        Ok(count)
    }
}
