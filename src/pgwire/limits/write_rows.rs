//! The cap on rows one INSERT writes. The table sink collects its input before it
//! writes, so the cap sits between the two: past it the input fails, the sink returns
//! that error before writing anything, and the rows collected so far are dropped.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::pgwire::tables::sql_error;

/// Puts a [`WriteRowsCap`] of `max` rows under every sink of `plan`.
pub fn cap_written_rows(plan: Arc<dyn ExecutionPlan>, max: u64) -> Result<Arc<dyn ExecutionPlan>> {
    let capped = plan.transform_down(|node| {
        if !node.is::<DataSinkExec>() {
            return Ok(Transformed::no(node));
        }
        let inputs: Vec<Arc<dyn ExecutionPlan>> =
            node.children().into_iter().map(|input| Arc::new(WriteRowsCap::new(input.clone(), max)) as _).collect();
        let node = node.replace_children(inputs, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))?;
        Ok(Transformed::new(node, true, TreeNodeRecursion::Jump))
    })?;
    Ok(capped.data)
}

/// Passes its input's rows on until more than `max` have gone by, then fails
/// with 54000 (program_limit_exceeded).
#[derive(Debug)]
pub struct WriteRowsCap {
    input: Arc<dyn ExecutionPlan>,
    max: u64,
    /// Rows passed on, over every partition.
    passed: Arc<AtomicU64>,
}

impl WriteRowsCap {
    pub fn new(input: Arc<dyn ExecutionPlan>, max: u64) -> WriteRowsCap {
        WriteRowsCap { input, max, passed: Arc::new(AtomicU64::new(0)) }
    }
}

impl DisplayAs for WriteRowsCap {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteRowsCap: max={}", self.max)
    }
}

impl ExecutionPlan for WriteRowsCap {
    fn name(&self) -> &str {
        "WriteRowsCap"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(WriteRowsCap::new(children.swap_remove(0), self.max)))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let (max, passed) = (self.max, self.passed.clone());
        let capped = input.map(move |batch| {
            let batch = batch?;
            let total = passed.fetch_add(batch.num_rows() as u64, Ordering::Relaxed) + batch.num_rows() as u64;
            if total > max {
                return Err(sql_error(
                    "54000",
                    format!(
                        "INSERT writes more than {max} rows (--max-write-rows); nothing was written. \
                         Insert in smaller statements."
                    ),
                ));
            }
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, capped)))
    }
}
