//! The Postgres wire protocol front end: psql, tokio-postgres, psycopg and the rest.
//!
//! SQL runs on DataFusion over snapshots of the store (see [`tables`]), with
//! datafusion-postgres providing `pg_catalog`, type mapping and the protocol
//! plumbing. This module adds what is diffmart's own: one snapshot per statement
//! or transaction ([`session`]), writes with command tags and `SHOW` commands
//! ([`commands`]), SQLSTATE codes on errors ([`errors`]), the statements a session may
//! run ([`guard`]) and what one client may take ([`limits`]). Each connection has its
//! own DataFusion session over the shared relations, so its settings and memory are
//! its own.

pub mod auth;
pub mod commands;
pub mod copy;
pub mod errors;
pub mod guard;
pub mod jsonb;
pub mod limits;
pub mod privileges;
pub mod role_statements;
pub mod roles;
pub mod session;
pub mod tables;
pub mod tls;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::planner::ExprPlanner;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, METADATA_USER, PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use tokio::net::TcpListener;

use self::auth::Authentication;
use self::copy::{CopyFromStdin, CopyIn};
use self::limits::SqlLimits;
use self::limits::connections::{Admission, ConnectionSlots};
use self::limits::statements::{CancelRequests, Statements};
use self::privileges::SessionRole;
use self::role_statements::RoleStatement;
use self::roles::Roles;
use self::session::PinnedSnapshot;
use self::tables::RelationTable;
use self::tls::Tls;
use crate::engine::Engine;

/// The database name clients connect to (`psql -d dev`, RisingWave's default).
pub const DATABASE: &str = "dev";

/// Who may connect and how: the roles, and TLS if configured.
pub struct Security {
    pub roles: Arc<Roles>,
    pub tls: Option<Tls>,
}

impl Security {
    /// In-memory roles with no root password (trust), no TLS: for embedders and
    /// tests on a loopback address.
    pub fn loopback_trust() -> Security {
        Security { roles: Arc::new(Roles::open(None, None).expect("in-memory roles")), tls: None }
    }
}

/// Accepts connections until the listener fails: clients log in as `security`
/// says and get no more than `limits`.
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    security: Security,
    limits: SqlLimits,
) -> anyhow::Result<()> {
    let slots = ConnectionSlots::new(limits.max_connections);
    let acceptor = security.tls.as_ref().map(|tls| tls.acceptor.clone());
    let handlers = Arc::new(Handlers::new(engine, security, &limits)?);
    loop {
        let (socket, peer) = listener.accept().await.context("accepting a connection")?;
        let (handlers, slots, acceptor) = (handlers.clone(), slots.clone(), acceptor.clone());
        tokio::spawn(async move {
            let slot = match slots.admit(&socket).await {
                Admission::Refused => return limits::connections::refuse(socket).await,
                Admission::Served(slot) => Some(slot),
                Admission::CancelRequest => None,
            };
            if let Err(e) = pgwire::tokio::process_socket(socket, acceptor, handlers).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(slot);
        });
    }
}

/// [`serve`] on a task of the current tokio runtime. Spawned here, in the library,
/// so that callers (tests, embedders) do not instantiate pgwire's and DataFusion's
/// generic code again: a crate that spawns the `serve` future itself compiles its
/// whole state machine, which costs a test binary about a minute and a half.
///
/// Clients log in as in [`Security::loopback_trust`], with the default [`SqlLimits`].
pub fn spawn(engine: Arc<Engine>, listener: TcpListener) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(serve(engine, listener, Security::loopback_trust(), SqlLimits::default()))
}

/// A DataFusion context with every relation and PostgreSQL's catalog.
fn session_context(engine: &Arc<Engine>, roles: &Arc<Roles>) -> anyhow::Result<SessionContext> {
    // datafusion-postgres parses with PostgreSQL's grammar, then hands DataFusion the statement re-printed
    // as text; re-parsing that with the generic dialect would change operator precedence
    // (`j->>'k' IS NOT NULL` would become `j->>('k' IS NOT NULL)`).
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(DATABASE, "public")
        .with_information_schema(true)
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
    let mut context = SessionContext::new_with_config(config);
    for (id, spec) in engine.catalog().iter() {
        context.register_table(spec.name, Arc::new(RelationTable::new(engine.clone(), id)))?;
    }
    setup_pg_catalog(&context, DATABASE, roles::CatalogRoles(roles.clone()))
        .map_err(|e| anyhow::anyhow!("pg_catalog: {e}"))?;
    datafusion_postgres::datafusion_pg_functions::register_all(&mut context);
    // `->`, `->>`, `?` and json_get…() on jsonb columns (held as their canonical text).
    datafusion_functions_json::register_all(&mut context).map_err(|e| anyhow::anyhow!("JSON functions: {e}"))?;
    // Planners are tried in order: ours must see `->` before the JSON crate's.
    let json_get_json = context.udf("json_get_json")?;
    let mut planners = vec![Arc::new(jsonb::JsonbArrow::new(json_get_json)) as Arc<dyn ExprPlanner>];
    planners.extend(context.state().expr_planners().iter().cloned());
    context = context.into_state_builder().with_expr_planners(planners).build().into();
    Ok(context)
}

struct Handlers {
    service: Arc<Service>,
    authentication: Authentication,
    cancel: Arc<CancelRequests>,
}

impl Handlers {
    fn new(engine: Arc<Engine>, security: Security, limits: &SqlLimits) -> anyhow::Result<Handlers> {
        let context = session_context(&engine, &security.roles)?;
        let cancel = Arc::new(CancelRequests::default());
        let statements = Arc::new(Statements::new(cancel.clone(), limits.statement_timeout));
        let guard = guard::StatementGuard::new(engine.catalog(), statements.clone());
        let sessions = Arc::new(Sessions {
            runtime: limits::server_runtime(context.runtime_env().as_ref())?,
            state: SessionStateBuilder::new_from_existing(context.state())
                .with_physical_optimizer_rule(Arc::new(limits::statements::YieldingJoins))
                .build(),
            memory_limit: limits.query_memory_limit,
            hooks: commands::hooks(guard, limits),
        });
        // Describing a parsed statement reads only its plan, so any session's parser does.
        let describer = DfSessionService::new_with_hooks(Arc::new(context), Vec::new());
        let parser = Arc::new(ShowAwareParser {
            describer: ExtendedQueryHandler::query_parser(&describer),
            sessions: sessions.clone(),
            engine: engine.clone(),
        });
        let connections = Arc::new(ConnectionManager::new());
        Ok(Handlers {
            service: Arc::new(Service {
                copy: Arc::new(CopyIn::new(engine.clone(), limits.max_write_rows)),
                engine,
                sessions,
                statements,
                parser,
                roles: security.roles.clone(),
            }),
            authentication: Authentication::new(security.roles, connections, security.tls.as_ref()),
            cancel,
        })
    }
}

/// Each connection's own DataFusion session: the server's relations, functions and
/// settings, with a memory pool of its own; what a session changes stays in it.
struct Sessions {
    state: SessionState,
    runtime: Arc<RuntimeEnv>,
    memory_limit: Option<usize>,
    hooks: Vec<Arc<dyn QueryHook>>,
}

impl Sessions {
    fn of<C: ClientInfo + ?Sized>(&self, client: &C) -> PgWireResult<Arc<DfSessionService>> {
        if let Some(service) = client.session_extensions().get::<DfSessionService>() {
            return Ok(service);
        }
        let runtime = limits::session_runtime(&self.runtime, self.memory_limit)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let state = SessionStateBuilder::new_from_existing(self.state.clone()).with_runtime_env(runtime).build();
        let service =
            DfSessionService::new_with_hooks(Arc::new(SessionContext::new_with_state(state)), self.hooks.clone());
        client.session_extensions().insert(service);
        Ok(client.session_extensions().get::<DfSessionService>().expect("just inserted"))
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.authentication.for_connection()
    }
    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(ClientErrors)
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.service.copy.clone()
    }
}

struct ClientErrors;

impl ErrorHandler for ClientErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        errors::to_client_error(error);
        tracing::debug!("statement failed: {error}");
    }
}

/// datafusion-postgres's service, with every statement run against one snapshot,
/// in the connection's own session, until it ends or must stop.
struct Service {
    engine: Arc<Engine>,
    sessions: Arc<Sessions>,
    statements: Arc<Statements>,
    parser: Arc<ShowAwareParser>,
    roles: Arc<Roles>,
    copy: Arc<CopyIn>,
}

impl Service {
    /// The role this connection logged in as.
    fn role_of<C: ClientInfo + ?Sized>(&self, client: &C) -> SessionRole {
        let name = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
        SessionRole { name, roles: self.roles.clone() }
    }

    fn run_role_statement(
        &self,
        statement: Result<RoleStatement, crate::engine::SqlError>,
        role: &SessionRole,
    ) -> PgWireResult<Response> {
        statement
            .and_then(|statement| statement.run(&self.roles, &role.name))
            .map(Response::Execution)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))
    }

    /// SQL for DataFusion, in the connection's session, on this statement's snapshot,
    /// as `role`, until it ends or must stop.
    async fn run_sql<C>(&self, client: &mut C, query: &str, role: SessionRole) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stop = self.statements.start(client);
        let inner = self.sessions.of(client)?;
        let query = commands::rewrite_show(query, self.engine.catalog()).unwrap_or_else(|| query.to_string());
        let pinned = client.session_extensions().get_or_insert_with(PinnedSnapshot::default);
        let snapshot = pinned.for_statement(&self.engine, in_transaction(client));
        let work = stop.run(SimpleQueryHandler::do_query(inner.as_ref(), client, &query));
        let (output, last_read) = privileges::run_as(role, session::with_snapshot(snapshot, work)).await;
        pinned.after_statement(last_read, in_transaction(client));
        Ok(output?.into_iter().map(|response| stop.limit(response)).collect())
    }
}

fn in_transaction<C: ClientInfo + ?Sized>(client: &C) -> bool {
    client.transaction_status() != TransactionStatus::Idle
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let role = self.role_of(client);
        if let Some(copy) = CopyFromStdin::parse(query) {
            return Ok(vec![self.copy.start(client, copy, role).await?]);
        }
        let statements = role_statements::split_statements(query);
        if !statements.iter().any(|statement| RoleStatement::parse(statement).is_some()) {
            return self.run_sql(client, query, role).await;
        }
        // Role statements are diffmart's; the rest of the query is DataFusion's, in order.
        let mut responses = Vec::new();
        for statement in statements {
            match RoleStatement::parse(statement) {
                Some(parsed) => responses.push(self.run_role_statement(parsed, &role)?),
                None => responses.extend(self.run_sql(client, statement, role.clone()).await?),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = ShowAwareParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let role = self.role_of(client);
        if let (sql, None) = &portal.statement.statement
            && let Some(statement) = RoleStatement::parse(sql)
        {
            return self.run_role_statement(statement, &role);
        }
        if let (sql, None) = &portal.statement.statement
            && let Some(copy) = CopyFromStdin::parse(sql)
        {
            return self.copy.start(client, copy, role).await;
        }
        let stop = self.statements.start(client);
        let inner = self.sessions.of(client)?;
        let pinned = client.session_extensions().get_or_insert_with(PinnedSnapshot::default);
        let snapshot = pinned.for_statement(&self.engine, in_transaction(client));
        let work = stop.run(ExtendedQueryHandler::do_query(inner.as_ref(), client, portal, max_rows));
        let (output, last_read) = privileges::run_as(role, session::with_snapshot(snapshot, work)).await;
        pinned.after_statement(last_read, in_transaction(client));
        Ok(stop.limit(output?))
    }
}

/// The connection's session's parser, after turning `SHOW` commands into SELECTs.
struct ShowAwareParser {
    describer: Arc<Parser>,
    sessions: Arc<Sessions>,
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for ShowAwareParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if RoleStatement::parse(sql).is_some() || CopyFromStdin::parse(sql).is_some() {
            // Run (or refused) by the service when executed; DataFusion cannot plan it.
            return Ok(Some((sql.to_string(), None)));
        }
        let parser = ExtendedQueryHandler::query_parser(self.sessions.of(client)?.as_ref());
        match commands::rewrite_show(sql, self.engine.catalog()) {
            Some(select) => parser.parse_sql(client, &select, types).await,
            None => parser.parse_sql(client, sql, types).await,
        }
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.describer.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describer.get_result_schema(stmt, column_format)
    }
}
