//! The dashboard: one page at `/` with a tab per screen of the seeds (casino, pricing,
//! inventory) plus retail, e-commerce and the generator's controls, following the
//! store's change feed live over Server-Sent Events.
//!
//! | route | access | does |
//! |---|---|---|
//! | `GET /`, `GET /dashboard/{file}` | read | the page and its assets, embedded in the binary ([`assets`]) |
//! | `GET /api/relations` | read | every relation's name and kind |
//! | `GET /api/live?relations=a,b` | read | SSE: each relation's rows, then every change batch ([`live`]) |
//! | `POST /api/casino/redeem` | write | "Mark as redeemed": inserts a `redeemed_offers` row ([`casino`]) |
//! | `POST /api/casino/thresholds` | write | upserts the `casino_settings` row ([`casino`]) |
//!
//! Who may use them is [`access`]'s to say: HTTP Basic auth with a diffmart role when a
//! root password is set, loopback clients only when none is. Overrides and the
//! generator's control are the existing routes, behind the admin API key; the page
//! asks for the key and keeps it in the tab's `sessionStorage`.

pub mod access;
pub mod assets;
pub mod casino;
pub mod live;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};

use self::access::Guard;
use self::live::LiveGate;
use super::api::AppState;
use super::limits::WebSocketLimits;
use crate::pgwire::roles::Roles;

/// What the dashboard's handlers share beyond [`AppState`].
pub struct Dashboard {
    pub guard: Guard,
    pub live: LiveGate,
}

/// The dashboard's routes. `roles` are pgwire's, so a role logs in to both with one
/// password; live clients are bounded by the WebSocket limits (`--ws-*`).
pub fn routes(roles: Arc<Roles>, limits: &WebSocketLimits) -> Router<AppState> {
    let dashboard = Arc::new(Dashboard { guard: Guard::new(roles), live: LiveGate::new(limits.clone()) });
    Router::new()
        .route("/", get(assets::index))
        .route("/dashboard/{file}", get(assets::file))
        .route("/api/relations", get(live::relations))
        .route("/api/live", get(live::live))
        .route("/api/casino/redeem", post(casino::redeem))
        .route("/api/casino/thresholds", post(casino::thresholds))
        .layer(Extension(dashboard))
}
