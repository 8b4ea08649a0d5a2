//! PostgreSQL's `->` on jsonb columns.
//!
//! diffmart holds a jsonb value as its canonical JSON text. datafusion-functions-json plans `->` as
//! `json_get`, whose result is an Arrow union no Postgres type describes, so the wire encoder
//! refuses it. In PostgreSQL `->` yields jsonb, so here it yields the selected value's JSON text
//! (`json_get_json`), which is a jsonb column again: it prints like PostgreSQL's
//! (`"ORD005"`, `{"a": 1}`), compares as text, and chains (`data->'a'->>'b'`).

use std::sync::Arc;

use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::sql::sqlparser::ast::BinaryOperator;

#[derive(Debug)]
pub struct JsonbArrow {
    json_get_json: Arc<ScalarUDF>,
}

impl JsonbArrow {
    /// Needs `json_get_json`, registered by `datafusion_functions_json::register_all`.
    pub fn new(json_get_json: Arc<ScalarUDF>) -> JsonbArrow {
        JsonbArrow { json_get_json }
    }
}

impl ExprPlanner for JsonbArrow {
    fn plan_binary_op(&self, expr: RawBinaryExpr, _schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::Arrow {
            return Ok(PlannerResult::Original(expr));
        }
        // The column title PostgreSQL clients see, like the JSON crate's own `->>` titles.
        let title = format!("{} -> {}", expr.left.schema_name(), expr.right.schema_name());
        let call =
            Expr::ScalarFunction(ScalarFunction::new_udf(self.json_get_json.clone(), vec![expr.left, expr.right]));
        Ok(PlannerResult::Planned(call.alias(title)))
    }
}
