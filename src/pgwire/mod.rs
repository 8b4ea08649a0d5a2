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
pub mod closers;
pub mod commands;
pub mod copy;
pub mod errors;
pub mod functions;
pub mod guard;
pub mod jsonb;
pub mod limits;
pub mod privileges;
pub mod role_statements;
pub mod roles;
pub mod session;
pub mod sql_text;
pub mod subscribe;
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
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, METADATA_USER, PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use tokio::net::TcpListener;

use self::auth::Authentication;
use self::closers::Closers;
use self::copy::{CopyFromStdin, CopyIn};
use self::limits::SqlLimits;
use self::limits::connections::{Admission, ConnectionSlots};
use self::limits::statements::{CancelRequests, Statements};
use self::privileges::SessionRole;
use self::role_statements::RoleStatement;
use self::roles::Roles;
use self::session::PinnedSnapshot;
use self::sql_text::StatementText;
use self::subscribe::cursors::SubscribeCursors;
use self::subscribe::statement::SubscribeStatement;
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
            let (socket, _registration) = match handlers.service.closers.register(socket, peer) {
                Ok(registered) => registered,
                Err(e) => return tracing::debug!(%peer, "connection dropped: {e}"),
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
    context.register_udf(functions::MzNow::udf());
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
                closers: Arc::new(Closers::default()),
                subscribe_max_pending: limits.subscribe_max_pending_changes,
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
        let context = Arc::new(SessionContext::new_with_state(state));
        let service = DfSessionService::new_with_hooks(context.clone(), self.hooks.clone());
        client.session_extensions().insert(SessionQueries(context));
        client.session_extensions().insert(service);
        Ok(client.session_extensions().get::<DfSessionService>().expect("just inserted"))
    }
}

/// The DataFusion context of a connection's session, for the queries diffmart runs
/// itself (`SUBSCRIBE (SELECT …)`).
struct SessionQueries(Arc<SessionContext>);

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
    /// `COPY … FROM STDIN`.
    copy: Arc<CopyIn>,
    /// A way to close each connection's socket from outside pgwire.
    closers: Arc<Closers>,
    /// `--subscribe-max-pending-changes`.
    subscribe_max_pending: usize,
}

/// The statements diffmart answers itself, before DataFusion.
enum OwnStatement {
    Role(Result<RoleStatement, crate::engine::SqlError>),
    Subscribe(Result<SubscribeStatement, crate::engine::SqlError>),
}

impl OwnStatement {
    /// `statement` if it is one of diffmart's own: FETCH and CLOSE only of a SUBSCRIBE
    /// cursor of `cursors`.
    fn parse(statement: &StatementText<'_>, cursors: &SubscribeCursors) -> Option<OwnStatement> {
        if let Some(role) = RoleStatement::parse_statement(statement) {
            return Some(OwnStatement::Role(role));
        }
        match SubscribeStatement::parse(statement)? {
            Ok(SubscribeStatement::Fetch(fetch)) if !cursors.contains(&fetch.cursor) => None,
            Ok(SubscribeStatement::Close { cursor: Some(cursor) }) if !cursors.contains(&cursor) => None,
            parsed => Some(OwnStatement::Subscribe(parsed)),
        }
    }
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

    /// The connection's SUBSCRIBE cursors; all closed once no transaction is open
    /// (cursors without HOLD end with their transaction).
    fn cursors_of<C: ClientInfo + ?Sized>(&self, client: &C) -> Arc<SubscribeCursors> {
        let cursors = client.session_extensions().get_or_insert_with(SubscribeCursors::default);
        if !in_transaction(client) {
            cursors.close(None);
        }
        cursors
    }

    /// Runs one of diffmart's own statements; results as `format` asks.
    async fn run_own<C>(
        &self,
        client: &mut C,
        statement: OwnStatement,
        role: &SessionRole,
        format: &Format,
        in_transaction: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = match statement {
            OwnStatement::Role(parsed) => return self.run_role_statement(parsed, role),
            OwnStatement::Subscribe(parsed) => parsed.map_err(|e| PgWireError::ApiError(Box::new(e)))?,
        };
        let cursors = client.session_extensions().get_or_insert_with(SubscribeCursors::default);
        let stop = self.statements.start(client);
        match statement {
            SubscribeStatement::Copy(subscribe) => {
                let running = stop.run(self.start_subscribe(client, &subscribe, role)).await?;
                let closer = self.closers.of(client.socket_addr());
                subscribe::copy_out(client, running, stop.without_deadline(), closer).await
            }
            SubscribeStatement::Declare { cursor, subscribe } => {
                if !in_transaction {
                    return Err(PgWireError::ApiError(Box::new(crate::engine::SqlError::new(
                        "25P01",
                        "DECLARE CURSOR can only be used in transaction blocks",
                    ))));
                }
                let running = stop.run(self.start_subscribe(client, &subscribe, role)).await?;
                cursors.declare(cursor, running).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            SubscribeStatement::Fetch(fetch) => {
                let batch = stop.run(cursors.fetch(&fetch.cursor, fetch.count, fetch.timeout)).await?;
                let fields = subscribe::fields(&batch.schema(), format)?;
                let rows = datafusion_postgres::arrow_pg::datatypes::encode_recordbatch(fields.clone(), batch);
                let mut response = QueryResponse::new(fields, futures::stream::iter(rows));
                response.set_command_tag("FETCH");
                Ok(Response::Query(response))
            }
            SubscribeStatement::Close { cursor } => {
                cursors.close(cursor.as_deref());
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
        }
    }

    async fn start_subscribe<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        subscribe: &subscribe::statement::Subscribe,
        role: &SessionRole,
    ) -> PgWireResult<subscribe::Running> {
        self.sessions.of(client)?;
        let context = client.session_extensions().get::<SessionQueries>().expect("made with the session").0.clone();
        subscribe::Running::start(&self.engine, subscribe, role.clone(), context, self.subscribe_max_pending).await
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

impl Service {
    /// The columns a FETCH from one of the session's SUBSCRIBE cursors returns (`None`:
    /// the statement is not one).
    fn fetch_fields<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        statement: &<DfSessionService as ExtendedQueryHandler>::Statement,
        format: &Format,
    ) -> PgWireResult<Option<Vec<FieldInfo>>> {
        let (sql, None) = statement else { return Ok(None) };
        let Some(text) = StatementText::new(sql) else { return Ok(None) };
        let cursors = self.cursors_of(client);
        match OwnStatement::parse(&text, &cursors) {
            Some(OwnStatement::Subscribe(Ok(SubscribeStatement::Fetch(fetch)))) => {
                match cursors.schema(&fetch.cursor) {
                    Some(schema) => Ok(Some(subscribe::fields(&schema, format)?.as_ref().clone())),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
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
        let statements = sql_text::split_statements(query);
        let cursors = self.cursors_of(client);
        let own: Vec<Option<OwnStatement>> =
            statements.iter().map(|statement| OwnStatement::parse(statement, &cursors)).collect();
        if own.iter().all(Option::is_none) {
            return self.run_sql(client, query, role).await;
        }
        // Some statements are diffmart's; the rest of the query is DataFusion's, in order.
        // pgwire learns of a BEGIN or COMMIT only from the responses, once all are made.
        let mut transaction = in_transaction(client);
        let mut responses = Vec::new();
        for (statement, own) in statements.iter().zip(own) {
            match own {
                Some(own) => responses.push(self.run_own(client, own, &role, &Format::UnifiedText, transaction).await?),
                None => {
                    responses.extend(self.run_sql(client, statement.text, role.clone()).await?);
                    transaction = match statement.keyword(0) {
                        Keyword::BEGIN | Keyword::START => true,
                        Keyword::COMMIT | Keyword::END | Keyword::ROLLBACK | Keyword::ABORT => false,
                        _ => transaction,
                    };
                }
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

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parser = self.query_parser();
        let fields = match self.fetch_fields(client, &target.statement, &Format::UnifiedBinary)? {
            Some(fields) => fields,
            None => parser.get_result_schema(&target.statement, None)?,
        };
        let declared = parser.get_parameter_types(&target.statement)?;
        let count = target.parameter_types.len().max(declared.len());
        let types = (0..count)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| declared.get(i).cloned())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect();
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &target.statement.statement;
        let fields = match self.fetch_fields(client, statement, &target.result_column_format)? {
            Some(fields) => fields,
            None => self.query_parser().get_result_schema(statement, Some(&target.result_column_format))?,
        };
        Ok(DescribePortalResponse::new(fields))
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
            && let Some(statement) = StatementText::new(sql)
            && let Some(own) = OwnStatement::parse(&statement, &self.cursors_of(client))
        {
            let transaction = in_transaction(client);
            return self.run_own(client, own, &role, &portal.result_column_format, transaction).await;
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
        let own = StatementText::new(sql).is_some_and(|statement| {
            OwnStatement::parse(&statement, &client.session_extensions().get_or_insert_with(SubscribeCursors::default))
                .is_some()
        });
        if own || CopyFromStdin::parse(sql).is_some() {
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
