//! Statements one session may run. Every session reads the same relations, functions
//! and configuration, so a statement that would change what another session sees is
//! refused before DataFusion handles it: DDL of any kind, writes outside diffmart's
//! tables, `COPY` to or from the server's files, and settings other than the
//! per-session ones PostgreSQL clients send. What is allowed is listed; anything
//! else is refused with SQLSTATE 0A000 (feature_not_supported), or 42501
//! (insufficient_privilege) when it names one of the server's relations, its
//! configuration, its files or its roles.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CopyTarget, Expr, FromTable, ObjectName, ObjectType, Query, Reset, ResetStatement, Set, SetExpr, Statement,
    TableFactor, TableObject, TableWithJoins,
};
use datafusion_postgres::hooks::{HookClient, QueryHook};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use super::DATABASE;
use super::limits::parse_timeout;
use super::limits::statements::Statements;
use crate::engine::Catalog;

/// Settings a session may `SET`, `SHOW` and `RESET`: PostgreSQL's per-session
/// parameters that clients send (psql, libpq, JDBC, psycopg, tokio-postgres). Each
/// lands in the connection's own metadata or configuration, or is accepted and
/// ignored; none reaches another session.
const SESSION_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "escape_string_warning",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "lock_timeout",
    "row_security",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "synchronous_commit",
    "timezone",
    "transaction_isolation",
    "transaction_read_only",
];

/// The session settings datafusion-postgres keeps in the connection's metadata under
/// their own names, so `RESET` removes them there.
const METADATA_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "timezone",
];

/// The first hook a statement meets after role management's.
pub struct StatementGuard {
    relations: HashSet<&'static str>,
    statements: Arc<Statements>,
}

/// What the guard does with a statement.
enum Verdict {
    /// DataFusion and the other hooks handle it.
    Pass,
    /// The guard answers it itself.
    SetTimeout(Option<std::time::Duration>),
    ResetTimeout,
    Reset(Vec<String>),
    Refuse(PgWireError),
}

impl StatementGuard {
    pub fn new(catalog: &Catalog, statements: Arc<Statements>) -> StatementGuard {
        StatementGuard { relations: catalog.iter().map(|(_, spec)| spec.name).collect(), statements }
    }

    fn judge(&self, statement: &Statement) -> Verdict {
        match statement {
            Statement::Query(query) => self.read_only(query),
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => self.writable(name),
                _ => Verdict::Refuse(not_supported("INSERT into a table function")),
            },
            Statement::Update(update) => self.writable_relation(std::slice::from_ref(&update.table)),
            Statement::Delete(delete) => match &delete.from {
                _ if !delete.tables.is_empty() => Verdict::Refuse(not_supported("DELETE from several tables")),
                FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => self.writable_relation(from),
            },
            Statement::Explain { statement, analyze, .. } => match self.judge(statement) {
                // EXPLAIN ANALYZE runs the statement outside the hooks that count a write's rows.
                Verdict::Pass if *analyze && !matches!(statement.as_ref(), Statement::Query(_)) => {
                    Verdict::Refuse(not_supported("EXPLAIN ANALYZE of a write"))
                }
                Verdict::Pass => Verdict::Pass,
                _ => Verdict::Refuse(not_supported("EXPLAIN of this statement")),
            },
            Statement::Declare { stmts } => {
                match stmts.iter().filter_map(|declare| declare.for_query.as_deref()).find_map(|q| self.refusal(q)) {
                    Some(refusal) => Verdict::Refuse(refusal),
                    None => Verdict::Pass,
                }
            }
            Statement::Prepare { statement, .. } => match statement.as_ref() {
                Statement::Query(query) => self.read_only(query),
                // A prepared write would run, at EXECUTE, outside the hooks that count its rows.
                _ => Verdict::Refuse(not_supported("PREPARE of anything but a query; use the extended protocol")),
            },
            Statement::ExplainTable { .. }
            | Statement::Execute { .. }
            | Statement::Deallocate { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowFunctions { .. } => Verdict::Pass,
            Statement::Set(set) => judge_set(set),
            Statement::Reset(ResetStatement { reset }) => match reset {
                Reset::ALL => Verdict::Reset(SESSION_SETTINGS.iter().map(|s| s.to_string()).collect()),
                Reset::ConfigurationParameter(name) => match setting(name) {
                    Ok(name) if name == "statement_timeout" => Verdict::ResetTimeout,
                    Ok(name) => Verdict::Reset(vec![name]),
                    Err(refusal) => Verdict::Refuse(refusal),
                },
            },
            // Alone in its query, the service runs it (`copy`) before DataFusion sees it.
            Statement::Copy { target: CopyTarget::Stdin, to: false, .. } => {
                Verdict::Refuse(user_error("0A000", "COPY FROM STDIN must be the only statement of its query".into()))
            }
            Statement::Copy { target: CopyTarget::File { .. } | CopyTarget::Program { .. }, .. } => {
                Verdict::Refuse(insufficient_privilege(
                    "COPY to or from a file or program is not allowed: the server's files are not the session's".into(),
                ))
            }
            Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::Grant(_)
            | Statement::Deny(_)
            | Statement::Revoke(_)
            | Statement::CreateUser(_)
            | Statement::AlterUser(_)
            | Statement::Drop { object_type: ObjectType::Role | ObjectType::User, .. } => {
                Verdict::Refuse(insufficient_privilege("permission denied to manage roles over this connection".into()))
            }
            other => Verdict::Refuse(self.ddl_refusal(other)),
        }
    }

    /// A query that only reads: no `SELECT … INTO`, no data-modifying `WITH`.
    fn read_only(&self, query: &Query) -> Verdict {
        match self.refusal(query) {
            Some(refusal) => Verdict::Refuse(refusal),
            None => Verdict::Pass,
        }
    }

    fn refusal(&self, query: &Query) -> Option<PgWireError> {
        let ctes = query.with.iter().flat_map(|with| with.cte_tables.iter());
        let all_read = ctes.map(|cte| cte.query.as_ref()).all(|q| self.refusal(q).is_none());
        if !all_read || !body_reads_only(&query.body) {
            return Some(not_supported("SELECT … INTO and data-modifying WITH"));
        }
        None
    }

    fn writable_relation(&self, from: &[TableWithJoins]) -> Verdict {
        match from {
            [TableWithJoins { relation: TableFactor::Table { name, .. }, joins }] if joins.is_empty() => {
                self.writable(name)
            }
            _ => Verdict::Refuse(not_supported("writes to anything but one of diffmart's tables")),
        }
    }

    /// Writes go to the server's tables only; whether a relation takes them (a table
    /// does, a view or a source does not) is the table provider's to say.
    fn writable(&self, name: &ObjectName) -> Verdict {
        if self.server_relation(name).is_some() {
            return Verdict::Pass;
        }
        Verdict::Refuse(insufficient_privilege(format!(
            "cannot write to \"{name}\": only diffmart's tables take writes (SHOW TABLES)"
        )))
    }

    /// The catalog relation `name` is, if any: `name`, `public.name` or `dev.public.name`.
    fn server_relation(&self, name: &ObjectName) -> Option<&'static str> {
        let parts: Vec<String> =
            name.0.iter().map(|part| part.as_ident().map(normalized).unwrap_or_else(|| part.to_string())).collect();
        let (relation, qualifiers) = parts.split_last()?;
        let qualified_right = match qualifiers {
            [] => true,
            [schema] => schema == "public",
            [catalog, schema] => catalog == DATABASE && schema == "public",
            _ => false,
        };
        if !qualified_right {
            return None;
        }
        self.relations.get(relation.as_str()).copied()
    }

    /// Why a statement that is not on the list is refused: 42501 when it would change
    /// one of the server's relations, 0A000 otherwise.
    fn ddl_refusal(&self, statement: &Statement) -> PgWireError {
        let command = command_of(statement);
        let named: Vec<&ObjectName> = match statement {
            Statement::Drop { names, .. } => names.iter().collect(),
            Statement::Truncate(truncate) => truncate.table_names.iter().map(|t| &t.name).collect(),
            Statement::AlterTable(alter) => vec![&alter.name],
            Statement::AlterView { name, .. } => vec![name],
            Statement::CreateView(create) => vec![&create.name],
            Statement::CreateTable(create) => vec![&create.name],
            Statement::CreateIndex(create) => vec![&create.table_name],
            Statement::RenameTable(renames) => renames.iter().map(|r| &r.old_name).collect(),
            _ => Vec::new(),
        };
        match named.into_iter().find_map(|name| self.server_relation(name)) {
            Some(relation) => insufficient_privilege(format!(
                "{command} is not allowed on \"{relation}\": diffmart's relations are defined by the server"
            )),
            None => user_error(
                "0A000",
                format!("{command} is not supported: sessions share the server's catalog and cannot change it"),
            ),
        }
    }

    fn answer(&self, verdict: Verdict, client: &mut dyn HookClient) -> Option<PgWireResult<Response>> {
        match verdict {
            Verdict::Pass => None,
            Verdict::Refuse(refusal) => Some(Err(refusal)),
            Verdict::SetTimeout(timeout) => {
                Statements::set_timeout(client, timeout);
                Some(Ok(Response::Execution(Tag::new("SET"))))
            }
            Verdict::ResetTimeout => {
                self.statements.reset_timeout(client);
                Some(Ok(Response::Execution(Tag::new("RESET"))))
            }
            Verdict::Reset(names) => {
                for name in names {
                    if name == "statement_timeout" {
                        self.statements.reset_timeout(client);
                    } else if METADATA_SETTINGS.contains(&name.as_str()) {
                        client.metadata_mut().remove(&name);
                    }
                }
                Some(Ok(Response::Execution(Tag::new("RESET"))))
            }
        }
    }
}

fn body_reads_only(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_none(),
        SetExpr::Query(query) => query.with.is_none() && body_reads_only(&query.body),
        SetExpr::SetOperation { left, right, .. } => body_reads_only(left) && body_reads_only(right),
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        _ => false,
    }
}

fn judge_set(set: &Set) -> Verdict {
    match set {
        Set::SingleAssignment { variable, values, .. } => match setting(variable) {
            Ok(name) if name == "statement_timeout" => {
                let value = values.first().map(expr_text).unwrap_or_default();
                if value.eq_ignore_ascii_case("default") {
                    return Verdict::ResetTimeout;
                }
                match parse_timeout(&value) {
                    Ok(timeout) => Verdict::SetTimeout(timeout),
                    Err(message) => Verdict::Refuse(user_error("22023", message)),
                }
            }
            Ok(_) => Verdict::Pass,
            Err(refusal) => Verdict::Refuse(refusal),
        },
        Set::SetTimeZone { .. } | Set::SetNames { .. } | Set::SetNamesDefault { .. } | Set::SetTransaction { .. } => {
            Verdict::Pass
        }
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            Verdict::Refuse(insufficient_privilege("permission denied to change roles over this connection".into()))
        }
        _ => Verdict::Refuse(not_supported("this form of SET; set one parameter at a time")),
    }
}

/// A setting's name if sessions may change it, or why not.
fn setting(name: &ObjectName) -> Result<String, PgWireError> {
    let name = name.to_string().to_ascii_lowercase();
    let bare = name.trim_matches('"');
    if SESSION_SETTINGS.contains(&bare) {
        return Ok(bare.to_string());
    }
    if bare.starts_with("datafusion.") {
        return Err(insufficient_privilege(format!(
            "{bare} is a server-wide setting: sessions share the query engine, so it cannot be changed over SQL"
        )));
    }
    Err(user_error(
        "0A000",
        format!("setting \"{bare}\" is not supported; sessions can set {}", SESSION_SETTINGS.join(", ")),
    ))
}

/// A SET value as written, without its quotes.
fn expr_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(value) => value.clone().into_string().unwrap_or_else(|| value.to_string()),
        other => other.to_string(),
    }
}

/// An identifier as DataFusion resolves it: unquoted ones fold to lower case.
fn normalized(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// `CREATE VIEW`, `DROP TABLE`, `TRUNCATE`: what the client typed, for messages.
fn command_of(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace().map(|w| w.to_ascii_uppercase());
    let first = words.next().unwrap_or_default();
    if !matches!(first.as_str(), "CREATE" | "DROP" | "ALTER") {
        return first;
    }
    let object = words
        .find(|w| !matches!(w.as_str(), "OR" | "REPLACE" | "TEMP" | "TEMPORARY" | "UNIQUE" | "EXTERNAL" | "UNLOGGED"));
    match object {
        Some(object) => format!("{first} {object}"),
        None => first,
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)))
}

fn not_supported(what: &str) -> PgWireError {
    user_error("0A000", format!("{what} is not supported"))
}

fn insufficient_privilege(message: String) -> PgWireError {
    user_error("42501", message)
}

/// A plan with no rows and no columns: what SET and RESET describe as in the extended protocol.
fn no_rows() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(DFSchema::empty()) })
}

#[async_trait]
impl QueryHook for StatementGuard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(self.judge(statement), client)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match self.judge(statement) {
            Verdict::Pass => None,
            Verdict::Refuse(refusal) => Some(Err(refusal)),
            Verdict::SetTimeout(_) | Verdict::ResetTimeout | Verdict::Reset(_) => Some(Ok(no_rows())),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(self.judge(statement), client)
    }
}
