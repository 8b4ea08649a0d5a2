//! `GET /healthz` and `GET /readyz`, for orchestrators' probes.
//!
//! - `/healthz`: 200 `{"status": "live"}` whenever the process answers.
//! - `/readyz`: 200 `{"ready": true, "visible_upper", "accepted_upper"}` once the views
//!   reflect every input accepted before the request (the replay of a restart
//!   included: it is accepted before the server listens); 503
//!   `{"ready": false, "reason", ...}` when the input log failed, compute has shut
//!   down, or the views are still behind those inputs after [`CATCH_UP_WAIT`].

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use diffmart_dataflows::Time;
use futures::FutureExt;
use serde_json::json;

use super::api::AppState;

/// How long `/readyz` waits for the views to reach the inputs accepted before it.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let engine = &state.engine;
    let accepted = engine.accepted_upper();
    let not_ready = |reason: String, visible: Option<Time>| {
        let body = json!({ "ready": false, "reason": reason, "visible_upper": visible, "accepted_upper": accepted });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    };
    if let Some(why) = engine.failure().now_or_never() {
        return not_ready(why, *engine.store().visible_upper().borrow());
    }
    let caught_up = accepted == 0 || {
        let waited = tokio::time::timeout(CATCH_UP_WAIT, engine.store().wait_visible(accepted - 1)).await;
        waited.unwrap_or(false)
    };
    let visible = *engine.store().visible_upper().borrow();
    match visible {
        None => not_ready("compute has shut down".into(), None),
        Some(upper) if !caught_up => not_ready(
            format!(
                "the views are behind the inputs: they show every time before {upper}, inputs were accepted \
                 through time {}",
                accepted - 1
            ),
            visible,
        ),
        Some(upper) => {
            Json(json!({ "ready": true, "visible_upper": upper, "accepted_upper": accepted })).into_response()
        }
    }
}
