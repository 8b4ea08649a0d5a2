//! The HTTP API (axum): each pipeline's routes (`Pipeline::routes`, e.g. pricing's
//! spec §E), `/metrics` and the embedded generator's control, all merged into [`router`].
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
use crate::pipelines::PIPELINES;

/// Every area's routes: each pipeline's, then the server's own; `others` are areas
/// with their own state (the generator's control, when it runs).
pub fn router(state: AppState, others: Router) -> Router {
    PIPELINES
        .iter()
        .fold(Router::new(), |router, pipeline| router.merge(pipeline.routes()))
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
pub async fn serve(listener: TcpListener, state: AppState, others: Router) -> anyhow::Result<()> {
    axum::serve(listener, router(state, others)).await.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
}

/// [`serve`] on a task of the current tokio runtime (spawned in the library for the
/// reason [`crate::pgwire::spawn`] gives).
pub fn spawn(listener: TcpListener, state: AppState, others: Router) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(serve(listener, state, others))
}
