//! SUBSCRIBE, as Materialize defines it: a relation's (or a query's) rows at one
//! time, then every change after it, each row led by `mz_timestamp`, `mz_progressed`
//! (with `PROGRESS`) and `mz_diff`. Over `COPY (SUBSCRIBE …) TO STDOUT` (or a bare
//! `SUBSCRIBE`) the rows stream until the client cancels or disconnects; over
//! `DECLARE c CURSOR FOR SUBSCRIBE …` a client takes them with `FETCH`.
//!
//! Timestamps are the store's logical times, the ones every SELECT reads at
//! (`SELECT mz_now()`): the snapshot's rows are at the time of the snapshot, and the
//! changes of the store step that reaches upper `u` are at `u - 1`. Folding every
//! change at or before `t` gives what a SELECT at `t` reads.
//!
//! A relation is followed incrementally, through the store's change feed
//! ([`crate::engine::Subscription`], which completes the views completed at read
//! time). A query is evaluated again when a relation it reads changes ([`query`]).
//! Each subscription's queue is bounded (`--subscribe-max-pending-changes`): the store
//! drops a subscriber that falls that far behind, and the client gets an error (a
//! COPY client that stopped reading has its connection closed: nothing else reaches it).

pub mod cursors;
mod query;
pub mod statement;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, new_null_array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use diffmart_dataflows::Time;
use diffmart_dataflows::datum::Row;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyTextOptions, FieldInfo, Response};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyOutResponse};

use self::query::Evaluated;
use self::statement::{Subscribe, Target};
use crate::engine::{Engine, FeedEnd, Snapshot, SqlError, Subscription, arrow};
use crate::pgwire::closers::Closer;
use crate::pgwire::limits::statements::StatementStop;
use crate::pgwire::privileges::{self, SessionRole};
use crate::pgwire::roles::Access;

/// An error for the client, with its SQLSTATE.
pub(crate) fn api_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

/// What is subscribed to.
enum Followed {
    Relation { spec: &'static diffmart_dataflows::datum::RelationSpec },
    Query(Box<Evaluated>),
}

/// A running subscription: yields batches of output rows (`mz_timestamp`,
/// [`mz_progressed`], `mz_diff`, then the columns).
pub struct Running {
    followed: Followed,
    subscription: Subscription,
    progress: bool,
    /// The snapshot's rows are still to come (with SNAPSHOT).
    snapshot_due: bool,
    /// Nothing emitted yet.
    first: bool,
    /// The output's schema.
    pub schema: SchemaRef,
}

impl Running {
    /// Starts `subscribe` for `role`, queries planned in `context`. Checks the role's
    /// right to read what is followed; `AS OF` waits for its time.
    pub async fn start(
        engine: &Arc<Engine>,
        subscribe: &Subscribe,
        role: SessionRole,
        context: Arc<SessionContext>,
        max_pending: usize,
    ) -> PgWireResult<Running> {
        let catalog = engine.catalog();
        let (followed, relations, columns) = match &subscribe.target {
            Target::Relation(name) => {
                let (id, spec) = catalog
                    .lookup(name)
                    .ok_or_else(|| api_error(SqlError::new("42P01", format!("relation \"{name}\" does not exist"))))?;
                privileges::run_as(role.clone(), async { privileges::require(Access::Read, spec.name) })
                    .await
                    .map_err(api_error)?;
                (Followed::Relation { spec }, vec![id], arrow::schema(spec))
            }
            Target::Query(sql) => {
                let evaluated = Evaluated::plan(sql, context, role.clone(), catalog).await?;
                let reads = evaluated.reads.clone();
                let schema = evaluated.schema.clone();
                (Followed::Query(Box::new(evaluated)), reads, schema)
            }
        };
        if let Some(as_of) = subscribe.as_of {
            let now = time_of(&engine.snapshot());
            if as_of.time < now && !as_of.at_least {
                return Err(api_error(SqlError::new(
                    "22023",
                    format!(
                        "AS OF {}: diffmart keeps no history, the earliest time a subscription can start at is {now} \
                         (AS OF AT LEAST starts at the first time it can)",
                        as_of.time
                    ),
                )));
            }
            if as_of.time > now {
                engine.store().wait_visible(as_of.time).await;
            }
        }
        let subscription = Subscription::new(engine.store(), catalog, &relations, max_pending);
        Ok(Running {
            followed,
            subscription,
            progress: subscribe.progress,
            snapshot_due: subscribe.snapshot,
            first: true,
            schema: output_schema(&columns, subscribe.progress),
        })
    }

    /// The next output rows: the snapshot's first, then a store step's changes at
    /// their time, followed by a progress row with PROGRESS. Waits until there is
    /// something to emit. A relation's steps are each emitted at their own time, so a
    /// fold at any time is what a SELECT at that time reads. A query is evaluated at
    /// each changed time while it keeps up; times that pile up while it evaluates are
    /// taken together, at the newest (see [`query`]).
    pub async fn next(&mut self) -> PgWireResult<RecordBatch> {
        if self.first {
            let snapshot = self.subscription.snapshot().clone();
            let time = time_of(&snapshot);
            let rows = match &mut self.followed {
                Followed::Relation { spec } => {
                    let rows = self.subscription.snapshot_rows();
                    Some(relation_rows(spec, time, rows.into_iter().map(|(_, row, diff)| (row, diff))))
                }
                Followed::Query(query) => {
                    // Evaluated either way: later changes are differences from it.
                    query.changes_at(snapshot.clone()).await?.map(|(data, diffs)| (time, data, diffs))
                }
            };
            self.first = false;
            let data = if self.snapshot_due { rows } else { None };
            return self.output(data, snapshot.upper);
        }
        loop {
            let step = self.subscription.recv().await.map_err(feed_ended)?;
            let emitted = match &mut self.followed {
                Followed::Relation { spec } => relation_step(spec, self.progress, step)?,
                Followed::Query(query) => {
                    // Steps that piled up during the last evaluation are taken together:
                    // one evaluation at the newest, its changes at its time.
                    let (mut upper, mut changed, mut snapshot) = (step.upper, !step.changes.is_empty(), step.snapshot);
                    while let Some(more) = self.subscription.try_recv().map_err(feed_ended)? {
                        (upper, snapshot) = (more.upper, more.snapshot);
                        changed |= !more.changes.is_empty();
                    }
                    let upper = upper.ok_or_else(|| feed_ended(FeedEnd::Closed))?;
                    let data = match changed {
                        false => None,
                        true => query.changes_at(snapshot).await?.map(|(d, diffs)| (upper - 1, d, diffs)),
                    };
                    (data.is_some() || self.progress).then_some((data, upper))
                }
            };
            if let Some((data, upper)) = emitted {
                return self.output(data, upper);
            }
        }
    }

    /// For a relation, the output of the steps already waiting, without waiting
    /// (`None`: none waits, or a query is followed: its evaluation takes time).
    pub fn try_next(&mut self) -> PgWireResult<Option<RecordBatch>> {
        let Followed::Relation { spec } = &self.followed else { return Ok(None) };
        if self.first {
            return Ok(None);
        }
        let spec = *spec;
        let mut batches = Vec::new();
        while let Some(step) = self.subscription.try_recv().map_err(feed_ended)? {
            if let Some((data, upper)) = relation_step(spec, self.progress, step)? {
                batches.push(self.output(data, upper)?);
            }
        }
        match batches.is_empty() {
            true => Ok(None),
            false => Ok(Some(concat_batches(&self.schema, &batches).map_err(api_error)?)),
        }
    }

    /// A handle that tells when the store drops this subscription for falling behind.
    pub fn lag_watch(&self) -> crate::engine::store::LagWatch {
        self.subscription.lag_watch()
    }

    /// Output rows: `data` (its time, columns and differences), then a progress row
    /// at `upper` with PROGRESS.
    fn output(&self, data: Option<(Time, RecordBatch, Vec<i64>)>, upper: Time) -> PgWireResult<RecordBatch> {
        let mut batches = Vec::new();
        if let Some((time, data, diffs)) = data {
            let rows = data.num_rows();
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![time as i64; rows]))];
            if self.progress {
                columns.push(Arc::new(BooleanArray::from(vec![false; rows])));
            }
            columns.push(Arc::new(Int64Array::from(diffs)));
            columns.extend(data.columns().iter().cloned());
            batches.push(RecordBatch::try_new(self.schema.clone(), columns).map_err(api_error)?);
        }
        if self.progress {
            let mut columns: Vec<ArrayRef> =
                vec![Arc::new(Int64Array::from(vec![upper as i64])), Arc::new(BooleanArray::from(vec![true]))];
            columns.extend(self.schema.fields().iter().skip(2).map(|f| new_null_array(f.data_type(), 1)));
            batches.push(RecordBatch::try_new(self.schema.clone(), columns).map_err(api_error)?);
        }
        concat_batches(&self.schema, &batches).map_err(api_error)
    }
}

/// What a relation's subscription emits for `step`: its changes at their time and the
/// upper (`None`: nothing, without PROGRESS).
#[allow(clippy::type_complexity)]
fn relation_step(
    spec: &diffmart_dataflows::datum::RelationSpec,
    progress: bool,
    step: crate::engine::Step,
) -> PgWireResult<Option<(Option<(Time, RecordBatch, Vec<i64>)>, Time)>> {
    let upper = step.upper.ok_or_else(|| feed_ended(FeedEnd::Closed))?;
    let mut changes: Vec<(Row, isize)> = step.changes.into_iter().map(|(_, row, diff)| (row, diff)).collect();
    differential_dataflow::consolidation::consolidate(&mut changes);
    let data = (!changes.is_empty()).then(|| relation_rows(spec, upper - 1, changes.into_iter()));
    Ok((data.is_some() || progress).then_some((data, upper)))
}

/// The time a snapshot's rows are at: the last time it contains.
fn time_of(snapshot: &Snapshot) -> Time {
    snapshot.upper.saturating_sub(1)
}

/// A relation's rows with their differences, all at `time`.
fn relation_rows(
    spec: &diffmart_dataflows::datum::RelationSpec,
    time: Time,
    rows: impl Iterator<Item = (Row, isize)>,
) -> (Time, RecordBatch, Vec<i64>) {
    let (rows, diffs): (Vec<Row>, Vec<i64>) = rows.map(|(row, diff)| (row, diff as i64)).unzip();
    (time, arrow::rows_to_batch(spec, &rows), diffs)
}

/// `mz_timestamp`, `mz_progressed` (with PROGRESS), `mz_diff`, then `columns`, which
/// a progress row leaves NULL.
fn output_schema(columns: &SchemaRef, progress: bool) -> SchemaRef {
    let mut fields = vec![Field::new("mz_timestamp", DataType::Int64, false)];
    if progress {
        fields.push(Field::new("mz_progressed", DataType::Boolean, false));
    }
    fields.push(Field::new("mz_diff", DataType::Int64, progress));
    fields.extend(columns.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)));
    Arc::new(Schema::new(fields))
}

/// Why a subscription ended, for its client.
fn feed_ended(end: FeedEnd) -> PgWireError {
    match end {
        FeedEnd::Closed => api_error(SqlError::new("57P01", "the server is shutting down: the subscription ended")),
        FeedEnd::Lagged(lagged) => api_error(too_slow(lagged.pending, lagged.max_pending)),
    }
}

/// A subscriber the store dropped for falling behind.
pub fn too_slow(pending: usize, max_pending: usize) -> SqlError {
    SqlError::new(
        "53400",
        format!(
            "subscriber too slow: {pending} changes waited for it (at most {max_pending} may, \
             --subscribe-max-pending-changes); the subscription was dropped, SUBSCRIBE again to resume"
        ),
    )
}

/// The fields of `schema` as pgwire describes them, in `format`.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Arc<Vec<FieldInfo>>> {
    Ok(Arc::new(arrow_schema_to_pg_fields(schema, format, None)?))
}

/// Rows of `batch` as COPY text lines.
pub fn copy_lines(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<CopyData>> {
    let mut encoder = CopyEncoder::new_text(fields.clone(), CopyTextOptions::default());
    let schema = batch.schema();
    let mut lines = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (column, array) in batch.columns().iter().enumerate() {
            encode_value(&mut encoder, array, row, schema.field(column), &fields[column])?;
        }
        lines.push(encoder.take_copy());
    }
    Ok(lines)
}

/// Streams `running`'s rows to `client` as COPY text until the client cancels (`stop`)
/// or disconnects, or the subscription fails. A client that stops reading fills its
/// socket and then its subscription's queue: the store drops the subscription, and
/// `closer` closes the connection (an error could not reach it).
pub async fn copy_out<C>(
    client: &mut C,
    mut running: Running,
    stop: StatementStop,
    closer: Option<Closer>,
) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let fields = fields(&running.schema, &Format::UnifiedText)?;
    let columns = fields.len();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, columns as i16, vec![0; columns])))
        .await?;
    let lag = running.lag_watch();
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        let batch = tokio::select! {
            batch = running.next() => batch?,
            error = &mut stopped => return Err(error),
        };
        let lines = copy_lines(&batch, &fields)?;
        let send = async {
            for line in lines {
                client.feed(PgWireBackendMessage::CopyData(line)).await?;
            }
            client.flush().await
        };
        tokio::select! {
            sent = send => sent?,
            lagged = lag.lagged() => {
                let error = too_slow(lagged.pending, lagged.max_pending);
                tracing::warn!("closing a SUBSCRIBE client: {}", error.message);
                if let Some(closer) = &closer {
                    closer.close();
                }
                return Err(api_error(error));
            }
            error = &mut stopped => return Err(error),
        }
    }
}
