//! WebSocket streams of the store's change feed, within [`WebSocketLimits`]: a cap on
//! clients at once (503 past it), a largest incoming message, pings and an idle
//! timeout, and a bounded change queue per client. A client that falls
//! `max_pending_changes` behind (it reads too slowly, or not at all) is closed with
//! code 1008 and the reason `client too slow: N changes behind`; the store drops its
//! feed rather than hold changes for it ([`crate::engine::ChangeFeed`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::{ApiError, AppState};
use super::limits::WebSocketLimits;
use crate::engine::store::LagWatch;
use crate::engine::{ChangeBatch, ChangeFeed, FeedEnd};

/// How long a close frame may take to leave; a client that reads nothing never gets it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Admits WebSocket clients up to the cap, and counts what happened to them.
pub struct WebSocketGate {
    pub limits: WebSocketLimits,
    clients: Arc<Semaphore>,
    /// Upgrades refused because the cap was reached.
    pub refused: AtomicU64,
    /// Clients closed for falling behind.
    pub too_slow: AtomicU64,
    /// Clients closed for not answering pings.
    pub idle: AtomicU64,
}

impl WebSocketGate {
    pub fn new(limits: WebSocketLimits) -> WebSocketGate {
        WebSocketGate {
            clients: Arc::new(Semaphore::new(limits.max_clients)),
            limits,
            refused: AtomicU64::new(0),
            too_slow: AtomicU64::new(0),
            idle: AtomicU64::new(0),
        }
    }

    /// Clients streaming now.
    pub fn clients(&self) -> usize {
        self.limits.max_clients - self.clients.available_permits()
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.clients.clone().try_acquire_owned().map_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many WebSocket clients: at most {} at once (--ws-max-clients)", self.limits.max_clients),
            )
        })
    }
}

/// Answers a WebSocket upgrade with a stream of the store's changes after this
/// moment (subscribed before the answer, so the client sees every change made after
/// its handshake completes), each batch turned into messages by `encode`. Refused
/// with 503 when the client cap is reached.
pub fn stream_changes<E>(state: &AppState, upgrade: WebSocketUpgrade, encode: E) -> Result<Response, ApiError>
where
    E: FnMut(&ChangeBatch, &mut Vec<Utf8Bytes>) + Send + 'static,
{
    let gate = state.websockets.clone();
    let permit = gate.admit()?;
    let (_snapshot, feed) = state.engine.store().subscribe_bounded(gate.limits.max_pending_changes);
    let max = gate.limits.max_message_bytes;
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| stream(socket, feed, gate, permit, encode)))
}

/// Why the server closes a stream.
fn close(code: u16, reason: String) -> Option<CloseFrame> {
    Some(CloseFrame { code, reason: Utf8Bytes::from(reason) })
}

/// How sending one message ended.
enum Sent {
    Done,
    /// The client has gone.
    Gone,
    /// The store dropped the feed meanwhile, this many changes behind.
    Lagged(usize),
    /// The client took nothing for the idle timeout.
    Stalled,
}

/// Sends one message, giving up when the store drops the feed or the client takes
/// nothing for `timeout`: a client that takes no data leaves a send waiting.
async fn send(
    sender: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
    lag: &LagWatch,
    timeout: Duration,
) -> Sent {
    tokio::select! {
        sent = tokio::time::timeout(timeout, sender.send(message)) => match sent {
            Ok(Ok(())) => Sent::Done,
            Ok(Err(_)) => Sent::Gone,
            Err(_) => Sent::Stalled,
        },
        lagged = lag.lagged() => Sent::Lagged(lagged.pending),
    }
}

async fn stream<E>(
    socket: WebSocket,
    mut feed: ChangeFeed,
    gate: Arc<WebSocketGate>,
    permit: OwnedSemaphorePermit,
    mut encode: E,
) where
    E: FnMut(&ChangeBatch, &mut Vec<Utf8Bytes>),
{
    let limits = &gate.limits;
    let lag = feed.lag_watch();
    let too_slow = |behind: usize| {
        gate.too_slow.fetch_add(1, Ordering::Relaxed);
        close(close_code::POLICY, format!("client too slow: {behind} changes behind"))
    };
    let (mut sender, mut receiver) = socket.split();
    let mut ping = tokio::time::interval(limits.idle_timeout / 3);
    ping.tick().await;
    let mut heard = Instant::now();
    let mut messages = Vec::new();
    let closing = 'stream: loop {
        let outgoing = tokio::select! {
            lagged = lag.lagged() => break too_slow(lagged.pending),
            batch = feed.recv() => match batch {
                Ok(batch) => {
                    encode(&batch, &mut messages);
                    messages.drain(..).map(Message::Text).collect::<Vec<_>>()
                }
                Err(FeedEnd::Lagged(lagged)) => break too_slow(lagged.pending),
                Err(FeedEnd::Closed) => break close(close_code::AWAY, "the server is shutting down".into()),
            },
            incoming = receiver.next() => match incoming {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Err(e)) => break close(close_code::POLICY, format!("invalid message: {e}")),
                Some(Ok(_)) => {
                    heard = Instant::now();
                    Vec::new()
                }
            },
            _ = ping.tick() => {
                if heard.elapsed() >= limits.idle_timeout {
                    gate.idle.fetch_add(1, Ordering::Relaxed);
                    break close(close_code::AWAY, format!("idle: nothing heard for {:?}", limits.idle_timeout));
                }
                vec![Message::Ping(Default::default())]
            }
        };
        for message in outgoing {
            match send(&mut sender, message, &lag, limits.idle_timeout).await {
                Sent::Done => {}
                Sent::Gone => break 'stream None,
                Sent::Lagged(behind) => break 'stream too_slow(behind),
                Sent::Stalled => break 'stream too_slow(feed.pending()),
            }
        }
    };
    // The feed goes first: the store stops sending to it whatever the close costs.
    drop(feed);
    drop(lag);
    if let Some(frame) = closing {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sender.send(Message::Close(Some(frame)))).await;
    }
    drop(permit);
}
