//! Control of the embedded generator over HTTP, like the original casino demo's
//! generator service, here under `/generator/`. Reads are open; what changes the
//! generator needs the admin API key (as the override routes do) and `POST`:
//!
//! | route | auth | does | answer |
//! |---|---|---|---|
//! | `POST /generator/start` | API key | resumes emitting | the status |
//! | `POST /generator/stop` | API key | pauses (the simulation resumes where it stopped) | the status |
//! | `GET /generator/rate` | none | | `{"pace": "natural" \| "fixed", "rate": R \| null}` |
//! | `POST /generator/rate/{rate}` | API key | sets events per second, above 0 and at most [`MAX_RATE`]; `natural` follows the wall clock again | the new rate; 400 on a bad rate |
//! | `GET /generator/status` | none | | `{"running", "finished", "pace", "rate", "events_emitted", "event_limit", "event_time"}` |
//!
//! Errors are `{"error": "..."}`: 401 without the key, 405 for `GET` on a route that
//! changes state, 400 for a bad rate.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::api::{ApiError, AppState};
use crate::sources::control::{GeneratorControl, GeneratorState, Pace};

/// The highest rate `POST /generator/rate/{rate}` takes, in events per second: far
/// above what one server ingests (see docs/benchmarks.md), low enough that a typo
/// cannot ask for a rate the generator would spend itself on.
pub const MAX_RATE: f64 = 1_000_000.0;

/// The generator's routes, bound to its control handle.
pub fn routes(control: Arc<GeneratorControl>) -> Router<AppState> {
    Router::new()
        .route("/generator/start", post(start))
        .route("/generator/stop", post(stop))
        .route("/generator/status", get(status))
        .route("/generator/rate", get(rate))
        .route("/generator/rate/{rate}", post(set_rate))
        .layer(Extension(control))
}

type Control = Extension<Arc<GeneratorControl>>;

async fn start(
    State(state): State<AppState>,
    Extension(control): Control,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.auth.check(&headers)?;
    control.start();
    Ok(Json(status_json(&control.state())))
}

async fn stop(
    State(state): State<AppState>,
    Extension(control): Control,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.auth.check(&headers)?;
    control.stop();
    Ok(Json(status_json(&control.state())))
}

async fn status(Extension(control): Control) -> Json<Value> {
    Json(status_json(&control.state()))
}

async fn rate(Extension(control): Control) -> Json<Value> {
    Json(pace_json(control.state().pace))
}

async fn set_rate(
    State(state): State<AppState>,
    Extension(control): Control,
    headers: HeaderMap,
    Path(rate): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.auth.check(&headers)?;
    let pace = parse_pace(&rate)?;
    control.set_pace(pace).map_err(ApiError::bad_request)?;
    Ok(Json(pace_json(control.state().pace)))
}

/// A rate of the path: `natural`, or events per second above 0 and at most [`MAX_RATE`].
pub fn parse_pace(text: &str) -> Result<Pace, ApiError> {
    if text.eq_ignore_ascii_case("natural") {
        return Ok(Pace::Natural);
    }
    let rate: f64 = text.parse().map_err(|_| {
        ApiError::bad_request(format!("rate must be a number of events per second or \"natural\", got {text:?}"))
    })?;
    if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
        return Err(ApiError::bad_request(format!(
            "rate must be above 0 and at most {MAX_RATE} events per second, got {text}"
        )));
    }
    Ok(Pace::Fixed(rate))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert!(matches!(parse_pace("natural"), Ok(Pace::Natural)));
        assert!(matches!(parse_pace("NATURAL"), Ok(Pace::Natural)));
        assert!(matches!(parse_pace("2500"), Ok(Pace::Fixed(r)) if r == 2500.0));
        assert!(matches!(parse_pace("1e6"), Ok(Pace::Fixed(r)) if r == MAX_RATE));
        for bad in ["fast", "", "0", "-5", "1e12", "NaN", "nan", "inf", "-inf", "1000000.5"] {
            let error = parse_pace(bad).expect_err(bad);
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(error.message.starts_with("rate must be"), "{bad}: {}", error.message);
        }
    }
}
