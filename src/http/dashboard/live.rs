//! `GET /api/live?relations=a,b`: Server-Sent Events following the store's change
//! feed (not polling). First one `rows` event per relation (`{"relation", "time",
//! "columns", "rows"}`, rows as objects by column name, `src/json`), then `ready`,
//! then one `changes` event per change batch touching those relations (`{"time",
//! "changes": [{"relation", "row", "diff"}]}`, retractions first; `time` is the
//! snapshot's upper the batch leads to, the logical time SQL reads at).
//!
//! Bounded like `/ws/prices` (`--ws-*`, [`WebSocketLimits`]): at most `max_clients`
//! streams at once (503 past it); the first rows count against
//! `max_pending_changes` (400 past it: follow fewer relations); a client whose feed falls
//! `max_pending_changes` behind, or that takes no event for `idle_timeout`, gets an
//! `end` event (`{"error": "client too slow: N changes behind"}`) and the stream
//! ends: the store drops its feed rather than hold changes for it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use diffmart_dataflows::datum::{RelationKind, RelationSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Dashboard;
use super::access::Refusal;
use crate::compute::RelationId;
use crate::engine::store::LagWatch;
use crate::engine::{Catalog, Engine, FeedEnd, Snapshot, Step, Subscription};
use crate::http::api::{ApiError, AppState};
use crate::http::limits::WebSocketLimits;
use crate::json::row_to_object;
use crate::pgwire::roles::Access;

/// Events encoded and not yet written to the client; a few, since one batch is one event.
const QUEUED_EVENTS: usize = 16;
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Admits live clients up to the cap.
pub struct LiveGate {
    limits: WebSocketLimits,
    clients: Arc<Semaphore>,
}

impl LiveGate {
    pub fn new(limits: WebSocketLimits) -> LiveGate {
        LiveGate { clients: Arc::new(Semaphore::new(limits.max_clients)), limits }
    }

    /// Live streams now.
    pub fn clients(&self) -> usize {
        self.limits.max_clients - self.clients.available_permits()
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.clients.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many live clients: at most {} at once (--ws-max-clients)", self.limits.max_clients),
            )
        })
    }
}

#[derive(Deserialize)]
pub struct LiveQuery {
    relations: String,
}

/// The snapshot a live client starts from and every change of the `wanted` relations
/// after it, with views completed at read time (`dynamic_pricing_enriched`) completed
/// and expired source rows retracted: the feed SUBSCRIBE reads.
fn follow(engine: &Engine, wanted: &Wanted, max_pending: usize) -> Subscription {
    let relations: Vec<RelationId> = (0..wanted.len()).filter(|&id| wanted[id].is_some()).collect();
    Subscription::new(engine.store(), engine.catalog(), &relations, max_pending)
}

/// The relations a client asked for, by id (`None`: not asked for).
type Wanted = Vec<Option<&'static RelationSpec>>;

fn wanted(catalog: &Catalog, names: &str) -> Result<Wanted, ApiError> {
    let mut wanted = vec![None; catalog.len()];
    for name in names.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let (id, spec) =
            catalog.lookup(name).ok_or_else(|| ApiError::not_found(format!("no relation named {name:?}")))?;
        wanted[id] = Some(spec);
    }
    if wanted.iter().all(Option::is_none) {
        return Err(ApiError::bad_request("name the relations to follow: /api/live?relations=a,b"));
    }
    Ok(wanted)
}

/// `GET /api/relations`: every relation's name and kind, so the page follows only
/// relations this server has.
pub async fn relations(
    Extension(dashboard): Extension<Arc<Dashboard>>,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    dashboard.guard.check(peer, &headers, Access::Read)?;
    let relations: Vec<Value> = state
        .engine
        .catalog()
        .iter()
        .map(|(_, spec)| {
            let kind = match spec.kind {
                RelationKind::Table { .. } => "table",
                RelationKind::Source { .. } => "source",
                RelationKind::View => "view",
            };
            json!({ "name": spec.name, "kind": kind })
        })
        .collect();
    Ok(Json(Value::Array(relations)))
}

/// `GET /api/live`.
pub async fn live(
    Extension(dashboard): Extension<Arc<Dashboard>>,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    dashboard.guard.check(peer, &headers, Access::Read)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let wanted = wanted(state.engine.catalog(), &query.relations)?;
    let limits = &dashboard.live.limits;
    let permit = dashboard.live.admit()?;
    let feed = follow(&state.engine, &wanted, limits.max_pending_changes);
    let snapshot = feed.snapshot().clone();
    let rows: usize = (0..wanted.len()).filter(|&id| wanted[id].is_some()).map(|id| snapshot.len(id)).sum();
    if rows > limits.max_pending_changes {
        return Err(ApiError::bad_request(format!(
            "those relations hold {rows} rows, more than the {} a live client may be sent at once \
                 (--ws-max-pending-changes): follow fewer",
            limits.max_pending_changes
        ))
        .into());
    }
    let (events, queue) = mpsc::channel(QUEUED_EVENTS);
    tokio::spawn(pump(snapshot, feed, wanted, events, limits.idle_timeout, permit));
    let stream = futures::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|event| (Ok::<Event, Infallible>(event), queue))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// How handing one event to the client's queue ended.
enum Sent {
    Done,
    /// The client has gone.
    Gone,
    /// The store dropped the feed meanwhile, this many changes behind.
    Lagged(usize),
    /// The client took nothing for the idle timeout.
    Stalled,
}

async fn send(events: &mpsc::Sender<Event>, event: Event, lag: &LagWatch, timeout: Duration) -> Sent {
    tokio::select! {
        sent = tokio::time::timeout(timeout, events.send(event)) => match sent {
            Ok(Ok(())) => Sent::Done,
            Ok(Err(_)) => Sent::Gone,
            Err(_) => Sent::Stalled,
        },
        lagged = lag.lagged() => Sent::Lagged(lagged.pending),
    }
}

/// Moves the snapshot, then every change batch, into the client's queue until the
/// client goes, falls behind or the server stops. Holds the client's permit.
async fn pump(
    snapshot: Arc<Snapshot>,
    mut feed: Subscription,
    wanted: Wanted,
    events: mpsc::Sender<Event>,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) {
    let lag = feed.lag_watch();
    let mut outgoing: Vec<Event> = rows_events(&snapshot, &wanted);
    drop(snapshot);
    outgoing.push(Event::default().event("ready").data("{}"));
    let ending = 'stream: loop {
        for event in outgoing.drain(..) {
            match send(&events, event, &lag, timeout).await {
                Sent::Done => {}
                Sent::Gone => break 'stream None,
                Sent::Lagged(behind) => break 'stream Some(too_slow(behind)),
                Sent::Stalled => break 'stream Some(too_slow(feed.pending())),
            }
        }
        tokio::select! {
            lagged = lag.lagged() => break Some(too_slow(lagged.pending)),
            _ = events.closed() => break None,
            batch = feed.recv() => match batch {
                Ok(step) => outgoing.extend(changes_event(&step, &wanted)),
                Err(FeedEnd::Lagged(lagged)) => break Some(too_slow(lagged.pending)),
                Err(FeedEnd::Closed) => break Some("the server is shutting down".to_string()),
            },
        }
    };
    // The feed goes first: the store stops sending to it whatever the end costs.
    drop(feed);
    drop(lag);
    if let Some(error) = ending {
        // A client that takes nothing does not get it; its queue is full.
        let _ = events.try_send(Event::default().event("end").data(json!({ "error": error }).to_string()));
    }
    drop(permit);
}

fn too_slow(behind: usize) -> String {
    format!("client too slow: {behind} changes behind")
}

fn rows_events(snapshot: &Snapshot, wanted: &Wanted) -> Vec<Event> {
    wanted
        .iter()
        .enumerate()
        .filter_map(|(id, spec)| spec.map(|spec| (id, spec)))
        .map(|(id, spec)| {
            let rows: Vec<Value> =
                snapshot.relation(id).rows().map(|row| Value::Object(row_to_object(spec, &row))).collect();
            let columns: Vec<&str> = spec.columns.iter().map(|column| column.name).collect();
            let data = json!({ "relation": spec.name, "time": snapshot.upper, "columns": columns, "rows": rows });
            Event::default().event("rows").data(data.to_string())
        })
        .collect()
}

/// The batch's changes of the wanted relations as one event; none when it has none.
fn changes_event(step: &Step, wanted: &Wanted) -> Option<Event> {
    // Completed views' and expiry's changes come after the store's: retractions first again.
    let mut ordered: Vec<&(RelationId, diffmart_dataflows::datum::Row, isize)> = step.changes.iter().collect();
    ordered.sort_by_key(|(_, _, diff)| *diff > 0);
    let changes: Vec<Value> = ordered
        .into_iter()
        .filter_map(|(id, row, diff)| {
            let spec = wanted[*id]?;
            Some(json!({ "relation": spec.name, "row": row_to_object(spec, row), "diff": diff }))
        })
        .collect();
    (!changes.is_empty())
        .then(|| Event::default().event("changes").data(json!({ "time": step.upper, "changes": changes }).to_string()))
}
