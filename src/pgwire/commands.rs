//! Statements diffmart answers itself, before (or instead of) DataFusion.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use diffmart_dataflows::datum::RelationKind;
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};

use super::guard::StatementGuard;
use super::limits::{self, SqlLimits};
use crate::engine::Catalog;

/// `SHOW TABLES`, `SHOW SOURCES`, `SHOW [MATERIALIZED] VIEWS` (RisingWave's
/// spellings) become a plain SELECT over the catalog's names, so they work the
/// same in the simple and the extended protocol.
pub fn rewrite_show(sql: &str, catalog: &Catalog) -> Option<String> {
    let words: Vec<String> =
        sql.trim().trim_end_matches(';').split_whitespace().map(|w| w.to_ascii_uppercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let wanted: fn(&RelationKind) -> bool = match words.as_slice() {
        ["SHOW", "TABLES"] => |k| matches!(k, RelationKind::Table { .. }),
        ["SHOW", "SOURCES"] => |k| matches!(k, RelationKind::Source { .. }),
        ["SHOW", "MATERIALIZED", "VIEWS"] | ["SHOW", "VIEWS"] => |k| matches!(k, RelationKind::View),
        _ => return None,
    };
    let names: Vec<String> = catalog.of_kind(wanted).map(|spec| format!("('{}')", spec.name)).collect();
    Some(if names.is_empty() {
        "SELECT CAST(NULL AS VARCHAR) AS \"Name\" WHERE false".to_string()
    } else {
        format!("SELECT \"Name\" FROM (VALUES {}) AS relations(\"Name\") ORDER BY \"Name\"", names.join(", "))
    })
}

/// INSERT, UPDATE and DELETE: run through DataFusion (which calls our table
/// providers) and answer with the command tag psql prints, e.g. `UPDATE 3`.
/// An INSERT writes at most `max_rows` rows, or nothing.
pub struct WriteStatements {
    pub max_rows: u64,
}

fn command_of(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Insert(_) => Some("INSERT"),
        Statement::Update { .. } => Some("UPDATE"),
        Statement::Delete(_) => Some("DELETE"),
        _ => None,
    }
}

async fn affected_rows(frame: DataFrame, max_rows: u64) -> datafusion::common::Result<usize> {
    let task = Arc::new(frame.task_ctx());
    let plan = limits::write_rows::cap_written_rows(frame.create_physical_plan().await?, max_rows)?;
    let mut count = 0;
    for batch in datafusion::physical_plan::collect(plan, task).await? {
        if let Some(counts) = batch.columns().first().and_then(|c| c.as_any().downcast_ref::<UInt64Array>()) {
            count += counts.iter().flatten().sum::<u64>() as usize;
        }
    }
    Ok(count)
}

fn tag(command: &'static str, rows: usize) -> Response {
    let tag = Tag::new(command).with_rows(rows);
    Response::Execution(if command == "INSERT" { tag.with_oid(0) } else { tag })
}

fn api_error(e: datafusion::common::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

#[async_trait]
impl QueryHook for WriteStatements {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let command = command_of(statement)?;
        let run = async {
            let frame = session_context.sql(&statement.to_string()).await?;
            affected_rows(frame, self.max_rows).await
        };
        Some(run.await.map(|rows| tag(command, rows)).map_err(api_error))
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        logical_plan: &LogicalPlan,
        params: &ParamValues,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let command = command_of(statement)?;
        let run = async {
            let plan = logical_plan.clone().replace_params_with_values(params)?;
            let frame = session_context.execute_logical_plan(plan).await?;
            affected_rows(frame, self.max_rows).await
        };
        Some(run.await.map(|rows| tag(command, rows)).map_err(api_error))
    }
}

/// The hooks in the order they get a statement: the guard, then ours, then
/// datafusion-postgres's for cursors, SET/SHOW variables and transactions.
pub fn hooks(guard: StatementGuard, limits: &SqlLimits) -> Vec<Arc<dyn QueryHook>> {
    use datafusion_postgres::hooks::{
        cursor::CursorStatementHook, set_show::SetShowHook, transactions::TransactionStatementHook,
    };
    vec![
        Arc::new(guard),
        Arc::new(WriteStatements { max_rows: limits.max_write_rows }),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}
