//! The HTTP front end (axum): one router composed from per-area modules, each
//! talking only to what it serves (the generator's control handle, the engine).

pub mod generator;

use axum::Router;
use tokio::net::TcpListener;

/// Serves `router` until the process ends.
pub async fn serve(listener: TcpListener, router: Router) -> anyhow::Result<()> {
    axum::serve(listener, router).await?;
    Ok(())
}
