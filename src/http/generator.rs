//! Control of the embedded generator over HTTP, like the original casino demo's
//! generator service (`POST /start`, `POST /stop`, `GET /rate`, `GET /rate/{n}`,
//! `GET /status`), here under `/generator/`:
//!
//! | route | does | answer |
//! |---|---|---|
//! | `POST /generator/start` | resumes emitting | the status |
//! | `POST /generator/stop` | pauses (the simulation resumes where it stopped) | the status |
//! | `GET /generator/rate` | | `{"pace": "natural" \| "fixed", "rate": R \| null}` |
//! | `GET` or `POST /generator/rate/{rate}` | sets events per second; `natural` follows the wall clock again | the new rate; 400 on a bad rate |
//! | `GET /generator/status` | | `{"running", "finished", "pace", "rate", "events_emitted", "event_limit", "event_time"}` |
//!
//! Errors are `{"error": "..."}`. Like the original, these routes need no API key.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::sources::control::{GeneratorControl, GeneratorState, Pace};

/// The generator's routes, bound to its control handle.
pub fn routes(control: Arc<GeneratorControl>) -> Router {
    Router::new()
        .route("/generator/start", post(start))
        .route("/generator/stop", post(stop))
        .route("/generator/status", get(status))
        .route("/generator/rate", get(rate))
        .route("/generator/rate/{rate}", get(set_rate).post(set_rate))
        .with_state(control)
}

type Control = State<Arc<GeneratorControl>>;

async fn start(State(control): Control) -> Json<Value> {
    control.start();
    Json(status_json(&control.state()))
}

async fn stop(State(control): Control) -> Json<Value> {
    control.stop();
    Json(status_json(&control.state()))
}

async fn status(State(control): Control) -> Json<Value> {
    Json(status_json(&control.state()))
}

async fn rate(State(control): Control) -> Json<Value> {
    Json(pace_json(control.state().pace))
}

async fn set_rate(State(control): Control, Path(rate): Path<String>) -> Response {
    let pace = if rate.eq_ignore_ascii_case("natural") {
        Pace::Natural
    } else {
        match rate.parse::<f64>() {
            Ok(rate) => Pace::Fixed(rate),
            Err(_) => {
                return bad_request(format!("rate must be a number of events per second or \"natural\", got {rate:?}"));
            }
        }
    };
    match control.set_pace(pace) {
        Ok(()) => Json(pace_json(control.state().pace)).into_response(),
        Err(e) => bad_request(e),
    }
}

fn bad_request(error: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

fn pace_json(pace: Pace) -> Value {
    match pace {
        Pace::Natural => json!({ "pace": "natural", "rate": null }),
        Pace::Fixed(rate) => json!({ "pace": "fixed", "rate": rate }),
    }
}

fn status_json(state: &GeneratorState) -> Value {
    let event_time = state.event_time.and_then(chrono::DateTime::from_timestamp_micros).map(|t| t.to_rfc3339());
    let mut status = json!({
        "running": state.running,
        "finished": state.finished,
        "events_emitted": state.emitted,
        "event_limit": state.limit,
        "event_time": event_time,
    });
    if let (Value::Object(status), Value::Object(pace)) = (&mut status, pace_json(state.pace)) {
        status.extend(pace);
    }
    status
}
