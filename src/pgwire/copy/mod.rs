//! `COPY rel [(col, …)] FROM STDIN`: bulk loading over the Postgres wire protocol's
//! copy-in sub-protocol (psql's `\copy`, tokio-postgres' `copy_in`, psycopg's `copy`).
//!
//! The statement ([`statement`]) is answered with `CopyInResponse`; the client then
//! streams `CopyData` messages, decoded as they come ([`format`]: text or CSV) into
//! checked rows ([`load`], [`values`]), and ends with `CopyDone`, when the rows are
//! written in one step through the one write path and the command completes with
//! `COPY n` once they are visible; or with `CopyFail`, when nothing is written.
//! Into tables (keys checked) and into sources no Kafka topic or CDC slot owns (a
//! backfill of events, which the pipelines treat as events from any source: late or
//! expired ones as theirs). A bad row fails the whole statement with its line
//! (PostgreSQL's `CONTEXT: COPY rel, line N`), and nothing is written.
//!
//! Bounded like INSERT: the session's role needs write access, and one COPY takes at
//! most `--max-write-rows` rows (54000), each record at most
//! [`format::MAX_RECORD_BYTES`].

pub mod format;
pub mod load;
pub mod statement;
pub mod values;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use diffmart_dataflows::datum::{RelationKind, RelationSpec};
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::response::TransactionStatus;

pub use self::statement::CopyFromStdin;
use super::DATABASE;
use super::privileges::{self, SessionRole};
use super::roles::Access;
use super::session::PinnedSnapshot;
use crate::compute::RelationId;
use crate::engine::{Engine, SqlError};

/// An error of a COPY: its SQLSTATE, message, and where in the data it happened
/// (`COPY rel, line N[, column c: "value"]`, the `CONTEXT` psql prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyError {
    pub sqlstate: &'static str,
    pub message: String,
    pub context: Option<String>,
}

impl CopyError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> CopyError {
        CopyError { sqlstate, message: message.into(), context: None }
    }

    pub fn with_context(mut self, context: String) -> CopyError {
        self.context = Some(context);
        self
    }
}

impl From<SqlError> for CopyError {
    fn from(e: SqlError) -> CopyError {
        CopyError::new(e.sqlstate, e.message)
    }
}

impl From<CopyError> for PgWireError {
    fn from(e: CopyError) -> PgWireError {
        let mut info = ErrorInfo::new("ERROR".into(), e.sqlstate.into(), e.message);
        info.where_context = e.context;
        PgWireError::UserError(Box::new(info))
    }
}

/// The COPY a connection is receiving the data of, if any (in its session extensions).
#[derive(Default)]
struct InProgress(Mutex<Option<load::CopyLoad>>);

/// Starts COPYs and takes their data: pgwire's copy handler.
pub struct CopyIn {
    engine: Arc<Engine>,
    /// `--max-write-rows`: rows one COPY may write.
    max_rows: u64,
}

impl CopyIn {
    pub fn new(engine: Arc<Engine>, max_rows: u64) -> CopyIn {
        CopyIn { engine, max_rows }
    }

    /// Checks the statement and its rights as `role`, and answers `CopyInResponse`:
    /// the client sends its data next.
    pub async fn start<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        statement: Result<CopyFromStdin, CopyError>,
        role: SessionRole,
    ) -> PgWireResult<Response> {
        let statement = statement?;
        let (relation, spec) = self.relation(&statement.relation)?;
        privileges::run_as(role, async { privileges::require(Access::Write, spec.name) })
            .await
            .map_err(CopyError::from)?;
        match spec.kind {
            RelationKind::View => {
                return Err(CopyError::new(
                    "42809",
                    format!("cannot copy to \"{}\": it is a materialized view, maintained by diffmart", spec.name),
                )
                .into());
            }
            RelationKind::Table { .. } | RelationKind::Source { .. } => {
                self.engine.check_sql_writable(relation).map_err(CopyError::from)?
            }
        }
        let targets = targets(spec, &statement.columns)?;
        let columns = targets.len();
        let load = load::CopyLoad::new(relation, spec, targets, statement.options, self.max_rows);
        *client.session_extensions().get_or_insert_with(InProgress::default).0.lock().unwrap() = Some(load);
        Ok(Response::CopyIn(CopyResponse::new(0, columns, futures::stream::empty::<PgWireResult<CopyData>>())))
    }

    /// The catalog relation `parts` names: `rel`, `public.rel` or `dev.public.rel`.
    fn relation(&self, parts: &[String]) -> Result<(RelationId, &'static RelationSpec), CopyError> {
        let unknown = || CopyError::new("42P01", format!("relation \"{}\" does not exist", parts.join(".")));
        let (name, qualifiers) = parts.split_last().ok_or_else(unknown)?;
        let qualified_right = match qualifiers {
            [] => true,
            [schema] => schema == "public",
            [database, schema] => database == DATABASE && schema == "public",
            _ => false,
        };
        let id = qualified_right.then(|| self.engine.catalog().id(name)).flatten().ok_or_else(unknown)?;
        Ok((id, self.engine.catalog().spec(id)))
    }

    fn in_progress<C: ClientInfo + ?Sized>(client: &C) -> Arc<InProgress> {
        client.session_extensions().get_or_insert_with(InProgress::default)
    }
}

/// The column each field fills: the listed ones, or all of them in order.
fn targets(spec: &RelationSpec, columns: &[String]) -> Result<Vec<usize>, CopyError> {
    if columns.is_empty() {
        return Ok((0..spec.columns.len()).collect());
    }
    let mut targets = Vec::with_capacity(columns.len());
    for column in columns {
        let index = spec.column_index(column).ok_or_else(|| {
            CopyError::new("42703", format!("column \"{column}\" of relation \"{}\" does not exist", spec.name))
        })?;
        if targets.contains(&index) {
            return Err(CopyError::new("42701", format!("column \"{column}\" specified more than once")));
        }
        targets.push(index);
    }
    Ok(targets)
}

#[async_trait]
impl CopyHandler for CopyIn {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let in_progress = Self::in_progress(client);
        let mut slot = in_progress.0.lock().unwrap();
        let Some(load) = slot.as_mut() else { return Err(no_copy()) };
        if let Err(e) = load.feed(&copy_data.data) {
            // The statement fails now; pgwire drops the rest of the client's data.
            *slot = None;
            return Err(e.into());
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let load = Self::in_progress(client).0.lock().unwrap().take().ok_or_else(no_copy)?;
        let count = load.finish(&self.engine).await?;
        // Inside a transaction, its next statements read a snapshot with the rows.
        if client.transaction_status() != TransactionStatus::Idle
            && let Some(pinned) = client.session_extensions().get::<PinnedSnapshot>()
        {
            pinned.after_statement(self.engine.snapshot(), true);
        }
        let tag = Tag::new("COPY").with_rows(count as usize);
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Self::in_progress(client).0.lock().unwrap().take();
        CopyError::new("57014", format!("COPY from stdin failed: {}", fail.message)).into()
    }
}

fn no_copy() -> PgWireError {
    CopyError::new("08P01", "unexpected COPY data: no COPY FROM STDIN is in progress").into()
}
