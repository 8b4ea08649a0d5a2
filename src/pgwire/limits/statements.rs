//! Statement timeouts and cancel requests. Both stop the statement's work, not only
//! its answer: the statement's future and its row stream are dropped, and dropping a
//! DataFusion stream aborts the tasks it spawned.
//!
//! pgwire races a cancel request only against `do_query`, which for a SELECT returns
//! as soon as the plan is ready; the rows are computed while they are sent, after it.
//! So cancel requests are routed here ([`CancelRequests`]) and each statement carries
//! a [`StatementStop`] into its row stream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::Result as DataFusionResult;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::SchedulingType;
use futures::Stream;
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::{Response, SendableRowStream};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where datafusion-postgres keeps a session's `statement_timeout`, in milliseconds
/// (absent: none); `SHOW statement_timeout` reads it there.
pub const TIMEOUT_METADATA_KEY: &str = "statement_timeout_ms";

/// A connection's identity in cancel requests: its process id and secret key.
type CancelKey = (i32, Vec<u8>);

/// Cancel requests, routed to the session they name. A request naming no session,
/// or the wrong secret, is ignored, as PostgreSQL does.
#[derive(Default)]
pub struct CancelRequests {
    sessions: Mutex<HashMap<CancelKey, Arc<watch::Sender<u64>>>>,
}

impl CancelRequests {
    fn register(self: &Arc<Self>, key: CancelKey) -> SessionStatements {
        let cancels = Arc::new(watch::Sender::new(0));
        self.sessions.lock().unwrap().insert(key.clone(), cancels.clone());
        SessionStatements { cancels, _registration: Registration { requests: self.clone(), key } }
    }

    /// Stops the statement running on the session `pid` with `secret`, if any.
    pub fn cancel(&self, pid: i32, secret: &[u8]) {
        if let Some(cancels) = self.sessions.lock().unwrap().get(&(pid, secret.to_vec())) {
            cancels.send_modify(|generation| *generation += 1);
        }
    }
}

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.cancel(request.pid, &request.secret_key.to_bytes());
    }
}

/// Removes a session from [`CancelRequests`] when its connection ends.
struct Registration {
    requests: Arc<CancelRequests>,
    key: CancelKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.requests.sessions.lock().unwrap().remove(&self.key);
    }
}

/// A session's cancel requests, counted: a statement stops when the count moves
/// past what it was when the statement started, so a request that arrives between
/// statements stops nothing.
pub struct SessionStatements {
    cancels: Arc<watch::Sender<u64>>,
    _registration: Registration,
}

/// The statement limits of every session of one server.
pub struct Statements {
    requests: Arc<CancelRequests>,
    default_timeout: Option<Duration>,
}

impl Statements {
    pub fn new(requests: Arc<CancelRequests>, default_timeout: Option<Duration>) -> Statements {
        Statements { requests, default_timeout }
    }

    /// A statement begins on `client`'s session: what stops it. The session's first
    /// statement registers it for cancel requests and gives it the server's timeout.
    pub fn start<C: ClientInfo + ?Sized>(&self, client: &mut C) -> StatementStop {
        let session = match client.session_extensions().get::<SessionStatements>() {
            Some(session) => session,
            None => {
                if let Some(timeout) = self.default_timeout {
                    client.metadata_mut().insert(TIMEOUT_METADATA_KEY.into(), timeout.as_millis().to_string());
                }
                let (pid, secret) = client.pid_and_secret_key();
                let session = self.requests.register((pid, secret.to_bytes().to_vec()));
                client.session_extensions().insert(session);
                client.session_extensions().get::<SessionStatements>().expect("just inserted")
            }
        };
        let timeout = session_timeout(client);
        StatementStop { deadline: timeout.map(|t| Instant::now() + t), cancels: session.cancels.subscribe() }
    }

    /// `SET statement_timeout`: `None` turns it off for the session.
    pub fn set_timeout<C: ClientInfo + ?Sized>(client: &mut C, timeout: Option<Duration>) {
        match timeout {
            Some(t) => client.metadata_mut().insert(TIMEOUT_METADATA_KEY.into(), t.as_millis().to_string()),
            None => client.metadata_mut().remove(TIMEOUT_METADATA_KEY),
        };
    }

    /// `RESET statement_timeout`: back to the server's.
    pub fn reset_timeout<C: ClientInfo + ?Sized>(&self, client: &mut C) {
        Self::set_timeout(client, self.default_timeout);
    }
}

fn session_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    let millis: u64 = client.metadata().get(TIMEOUT_METADATA_KEY)?.parse().ok()?;
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// What ends one statement early: its deadline, or a cancel request.
#[derive(Clone)]
pub struct StatementStop {
    deadline: Option<Instant>,
    cancels: watch::Receiver<u64>,
}

impl StatementStop {
    /// Resolves when the statement must stop, with the error its client gets.
    async fn reached(mut self) -> PgWireError {
        let canceled = async {
            if self.cancels.changed().await.is_err() {
                // The session is gone; nobody can cancel this statement any more.
                std::future::pending::<()>().await;
            }
        };
        let timed_out = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = canceled => query_canceled("canceling statement due to user request"),
            _ = timed_out => query_canceled("canceling statement due to statement timeout"),
        }
    }

    /// The same stop without its deadline: cancel requests only. For SUBSCRIBE, whose
    /// rows stream until the client stops them.
    pub fn without_deadline(self) -> StatementStop {
        StatementStop { deadline: None, ..self }
    }

    /// Resolves when the statement must stop, with the error its client gets.
    pub async fn stopped(self) -> PgWireError {
        self.reached().await
    }

    /// Runs `work` (planning, or a statement answered in full, such as an INSERT)
    /// until it finishes or must stop.
    pub async fn run<T>(&self, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        tokio::select! {
            biased;
            output = work => output,
            error = self.clone().reached() => Err(error),
        }
    }

    /// The response with its rows, if any, produced only until the statement must stop.
    pub fn limit(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
                query.data_rows = Box::pin(StoppableRows { rows: Some(rows), stop: Box::pin(self.clone().reached()) });
                Response::Query(query)
            }
            other => other,
        }
    }
}

fn query_canceled(message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), "57014".into(), message.into())))
}

/// Rows until the statement must stop; then one error, and the row stream (with
/// the DataFusion plan under it) is dropped at once.
struct StoppableRows {
    rows: Option<SendableRowStream>,
    stop: Pin<Box<dyn Future<Output = PgWireError> + Send>>,
}

impl Stream for StoppableRows {
    type Item = PgWireResult<DataRow>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(rows) = this.rows.as_mut() else { return Poll::Ready(None) };
        if let Poll::Ready(error) = this.stop.as_mut().poll(cx) {
            this.rows = None;
            return Poll::Ready(Some(Err(error)));
        }
        let next = rows.as_mut().poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            this.rows = None;
        }
        next
    }
}

/// Makes joins and unnesting give the thread back now and then. An operator that
/// turns one input batch into many (a cross join: every left row for each right
/// batch) never waits on its input, so without this its task runs until the join
/// is done: a stopped statement's spawned tasks would not see their abort, and the
/// connection's own task could not run to notice the deadline. Wrapped, each of
/// their output batches spends tokio's cooperative budget and they yield when it
/// runs out.
#[derive(Debug)]
pub struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let wrapped = plan.transform_up(|node| {
            let amplifies = node.children().len() >= 2 || node.name() == "UnnestExec";
            if amplifies && node.properties().scheduling_type == SchedulingType::NonCooperative {
                Ok(Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>))
            } else {
                Ok(Transformed::no(node))
            }
        })?;
        Ok(wrapped.data)
    }

    fn name(&self) -> &str {
        "yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
