//! The HTTP API (axum): the pipelines' routes (`Pipeline::routes`, e.g. pricing's
//! spec §E, handed in by the server), `/metrics` and the embedded generator's control,
//! all merged into [`router`].
//!
//! Like pgwire it is a front end of `Engine`: reads take a snapshot, writes go
//! through the same table writer as SQL (keys enforced, visible when acknowledged).
//! Errors are JSON, `{"error": "..."}`.

pub mod api;
pub mod generator;
pub mod metrics;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

pub use self::api::{AdminAuth, ApiError, AppState, HttpConfig};

/// Every area's routes: the pipelines' (`pipelines::routes`), then the server's own;
/// `others` are areas with their own state (the generator's control, when it runs).
pub fn router(state: AppState, pipelines: Router<AppState>, others: Router) -> Router {
    pipelines
        .merge(metrics::routes())
        .with_state(state)
        .merge(others)
        .fallback(|| async { ApiError::not_found("no such route") })
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
    others: Router,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state, pipelines, others)).await.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
}

/// [`serve`] on a task of the current tokio runtime (spawned in the library for the
/// reason [`crate::pgwire::spawn`] gives).
pub fn spawn(
    listener: TcpListener,
    state: AppState,
    pipelines: Router<AppState>,
    others: Router,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(serve(listener, state, pipelines, others))
}
