//! `SUBSCRIBE (SELECT …)`: the query is evaluated again at each time a relation it
//! reads has changed, and its changes are the difference between two answers.
//!
//! Why not incrementally: a query over the store is DataFusion's, not a dataflow, and
//! turning any SELECT into a dataflow is a compiler of its own. Evaluating again costs
//! one run of the query per changed time, so a SELECT over a small view (the usual
//! subscription) costs little, and one over many rows what that SELECT costs, each
//! time. Times that pile up while an evaluation runs are taken together: the next
//! evaluation is at the newest of them and its changes are at that time, so the
//! subscription keeps up with the store at the cost of skipping those times (its
//! folds match a SELECT at every time it emits; progress rows say how far it got).
//! Subscribing to the relation itself is incremental and skips no time.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use crate::compute::RelationId;
use pgwire::error::{PgWireError, PgWireResult};

use super::api_error;
use crate::engine::{Catalog, Snapshot, SqlError};
use crate::pgwire::privileges::{self, SessionRole};
use crate::pgwire::session;

/// A query a subscription evaluates, with its last answer.
pub struct Evaluated {
    sql: String,
    context: Arc<SessionContext>,
    role: SessionRole,
    pub schema: SchemaRef,
    /// The catalog's relations it reads.
    pub reads: Vec<RelationId>,
    /// The last answer: its batches, and per distinct row its count and where it is.
    answer: Answer,
}

#[derive(Default)]
struct Answer {
    batches: Vec<RecordBatch>,
    rows: RowCounts,
}

/// Per distinct row (Arrow's row format): how many times, and where one is (batch, row).
type RowCounts = HashMap<Box<[u8]>, (i64, (usize, usize))>;

impl Evaluated {
    /// Plans `sql` in the connection's session: a query (not a write or DDL) and the
    /// relations it reads. Evaluates nothing yet.
    pub async fn plan(
        sql: &str,
        context: Arc<SessionContext>,
        role: SessionRole,
        catalog: &Catalog,
    ) -> PgWireResult<Evaluated> {
        let plan = context.state().create_logical_plan(sql).await.map_err(api_error)?;
        if matches!(
            plan,
            LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::DescribeTable(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
        ) {
            return Err(api_error(SqlError::new(
                "42601",
                "SUBSCRIBE (…) takes a query (SELECT, VALUES, WITH … SELECT)",
            )));
        }
        let mut reads = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Some(id) = catalog.id(scan.table_name.table())
            {
                reads.push(id);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(api_error)?;
        // Subqueries are plans of their own inside expressions.
        plan.apply_subqueries(|subquery| {
            subquery.apply(|node| {
                if let LogicalPlan::TableScan(scan) = node
                    && let Some(id) = catalog.id(scan.table_name.table())
                {
                    reads.push(id);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
        .map_err(api_error)?;
        reads.sort_unstable();
        reads.dedup();
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(Evaluated { sql: sql.to_string(), context, role, schema, reads, answer: Answer::default() })
    }

    /// Evaluates the query on `snapshot`: the rows its answer gained and lost since
    /// the last evaluation (all of it, the first time), and each row's difference.
    pub async fn changes_at(&mut self, snapshot: Arc<Snapshot>) -> PgWireResult<Option<(RecordBatch, Vec<i64>)>> {
        let (context, sql) = (self.context.clone(), self.sql.clone());
        let started = std::time::Instant::now();
        let work = async move { context.sql(&sql).await?.collect().await };
        let (batches, _) = privileges::run_as(self.role.clone(), session::with_snapshot(snapshot, work)).await;
        let batches = batches.map_err(api_error)?;
        let answer = self.count(batches)?;
        tracing::debug!(
            micros = started.elapsed().as_micros() as u64,
            rows = answer.batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            "SUBSCRIBE evaluated its query"
        );
        let previous = std::mem::replace(&mut self.answer, answer);
        self.difference(&previous)
    }

    /// The answer's rows counted by value (as Arrow's row format, which orders and
    /// compares every type the same way).
    fn count(&self, batches: Vec<RecordBatch>) -> PgWireResult<Answer> {
        let converter = self.converter()?;
        let mut rows = RowCounts::new();
        for (b, batch) in batches.iter().enumerate() {
            let converted = converter.convert_columns(batch.columns()).map_err(arrow_error)?;
            for (r, row) in converted.iter().enumerate() {
                rows.entry(row.as_ref().into()).or_insert((0, (b, r))).0 += 1;
            }
        }
        Ok(Answer { batches, rows })
    }

    fn converter(&self) -> PgWireResult<RowConverter> {
        RowConverter::new(self.schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())
            .map_err(arrow_error)
    }

    /// The rows of the current answer minus `previous`, with their differences;
    /// `None` if nothing changed.
    fn difference(&self, previous: &Answer) -> PgWireResult<Option<(RecordBatch, Vec<i64>)>> {
        // Indexes into previous's batches, then the current answer's.
        let offset = previous.batches.len();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut diffs: Vec<i64> = Vec::new();
        for (row, &(count, (b, r))) in &previous.rows {
            let now = self.answer.rows.get(row).map_or(0, |(count, _)| *count);
            if now < count {
                picks.push((b, r));
                diffs.push(now - count);
            }
        }
        for (row, &(count, (b, r))) in &self.answer.rows {
            let before = previous.rows.get(row).map_or(0, |(count, _)| *count);
            if count > before {
                picks.push((offset + b, r));
                diffs.push(count - before);
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let all: Vec<&RecordBatch> = previous.batches.iter().chain(&self.answer.batches).collect();
        let columns: Vec<ArrayRef> = (0..self.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn datafusion::arrow::array::Array> =
                    all.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &picks).map_err(arrow_error)
            })
            .collect::<Result<_, _>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_error)?;
        Ok(Some((batch, diffs)))
    }
}

fn arrow_error(e: datafusion::arrow::error::ArrowError) -> PgWireError {
    api_error(e)
}
