//! What one client may ask of the HTTP server: request bodies, request time, and
//! WebSocket clients ([`WebSocketLimits`]). Set by the `--http-*` and `--ws-*` flags.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;

#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Larger request bodies are refused with 413, on every route.
    pub max_body_bytes: usize,
    /// A request not answered in this time (a body sent too slowly, a handler that
    /// waits) gets 408. WebSocket streams are not requests once upgraded.
    pub request_timeout: Duration,
    pub websocket: WebSocketLimits,
}

#[derive(Clone, Debug)]
pub struct WebSocketLimits {
    /// Clients streaming at once; past it the upgrade is refused with 503.
    pub max_clients: usize,
    /// Largest message (and frame) a client may send.
    pub max_message_bytes: usize,
    /// The server pings every third of it; a client heard from neither message nor
    /// pong for this long, or that takes this long to take one message, is closed.
    pub idle_timeout: Duration,
    /// Changes a client may be behind the store; past it the client is closed
    /// ("client too slow"), never buffered for.
    pub max_pending_changes: usize,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_WS_MAX_CLIENTS: usize = 1024;
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 64 << 10;
pub const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_WS_MAX_PENDING_CHANGES: usize = 100_000;

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            websocket: WebSocketLimits::default(),
        }
    }
}

impl Default for WebSocketLimits {
    fn default() -> WebSocketLimits {
        WebSocketLimits {
            max_clients: DEFAULT_WS_MAX_CLIENTS,
            max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
            idle_timeout: DEFAULT_WS_IDLE_TIMEOUT,
            max_pending_changes: DEFAULT_WS_MAX_PENDING_CHANGES,
        }
    }
}

/// Middleware of every route: refuses a declared body over the limit before the
/// handler runs (a body without a length is cut at the limit by
/// `DefaultBodyLimit`, also 413), and bounds the time to answer.
pub async fn guard(State(limits): State<Arc<HttpLimits>>, request: Request, next: Next) -> Response {
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limits.max_body_bytes as u64
    {
        return too_large(limits.max_body_bytes, Some(length)).into_response();
    }
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) if response.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            // axum's own answer (a body without a length, cut at the limit) is plain text.
            too_large(limits.max_body_bytes, None).into_response()
        }
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request was not answered within {:?} (--http-request-timeout)", limits.request_timeout),
        )
        .into_response(),
    }
}

fn too_large(limit: usize, length: Option<u64>) -> ApiError {
    let size = length.map_or("the request body is".to_string(), |n| format!("a request body of {n} bytes is"));
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{size} over the limit of {limit} bytes (--http-max-body-bytes)"),
    )
}
