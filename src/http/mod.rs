//! The HTTP API (axum): the pipelines' routes (`Pipeline::routes`, e.g. pricing's
//! spec §E, handed in by the server), `/metrics`, `/healthz` and `/readyz`, and the
//! embedded generator's control, and the dashboard ([`dashboard`], which the server
//! adds), all merged into [`router`], every route within [`HttpLimits`] (body size,
//! request time; WebSocket and live streams within [`limits::WebSocketLimits`], see
//! [`ws`]).
//!
//! Like pgwire it is a front end of `Engine`: reads take a snapshot, writes go
//! through the same table writer as SQL (keys enforced, visible when acknowledged).
//! Errors are JSON, `{"error": "..."}`.

pub mod api;
pub mod dashboard;
pub mod generator;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod ws;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

pub use self::api::{AdminAuth, ApiError, AppState, HttpConfig};
pub use self::limits::HttpLimits;

/// Every area's routes: the pipelines' (`pipelines::routes`), then the server's own;
/// `others` are areas the server adds (the generator's control, when it runs).
pub fn router(state: AppState, pipelines: Router<AppState>, others: Router<AppState>) -> Router {
    let limits = state.limits.clone();
    pipelines
        .merge(metrics::routes())
        .merge(health::routes())
        .merge(others)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(limits.clone(), limits::guard))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

/// Binds the HTTP listener; a port in use is a one-line error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} for HTTP: {e}"))
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    pipelines: Router<AppState>,
    others: Router<AppState>,
) -> anyhow::Result<()> {
    // The peer's address is known to handlers: the dashboard trusts loopback clients
    // when no root password is set.
    let app = router(state, pipelines, others).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
}

/// [`serve`] on a task of the current tokio runtime (spawned in the library for the
/// reason [`crate::pgwire::spawn`] gives).
pub fn spawn(
    listener: TcpListener,
    state: AppState,
    pipelines: Router<AppState>,
    others: Router<AppState>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(serve(listener, state, pipelines, others))
}
