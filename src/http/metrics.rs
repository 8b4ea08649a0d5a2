//! `GET /metrics`: Prometheus text format, read from one snapshot.
//!
//! - `diffmart_relation_rows{relation, kind}`: rows of every relation;
//! - `diffmart_snapshot_time`: the snapshot's logical time, i.e. ingest batches applied;
//! - `diffmart_source_messages_total`, `diffmart_source_errors_total`, `diffmart_source_lag`
//!   `{kind, name, partition}`: what `diffmart_sources` reports for each stream;
//! - `diffmart_websocket_clients`: WebSocket clients streaming now;
//!   `diffmart_websocket_closed_total{reason}`: clients the server closed, `too_slow`
//!   (behind their change queue's bound) or `idle` (no pong); and
//!   `diffmart_websocket_refused_total`: upgrades refused at `--ws-max-clients`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use diffmart_dataflows::datum::{Record, RelationKind};
use diffmart_dataflows::system::SourceStatus;

use super::api::AppState;
use super::ws::WebSocketGate;
use crate::engine::Engine;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut page = render(&state.engine);
    render_websockets(&state.websockets, &mut page);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], page)
}

/// The WebSocket clients' figures.
fn render_websockets(gate: &WebSocketGate, out: &mut String) {
    out.push_str("# HELP diffmart_websocket_clients WebSocket clients streaming now.\n");
    out.push_str("# TYPE diffmart_websocket_clients gauge\n");
    let _ = writeln!(out, "diffmart_websocket_clients {}", gate.clients());
    out.push_str("# HELP diffmart_websocket_closed_total WebSocket clients the server closed, by reason.\n");
    out.push_str("# TYPE diffmart_websocket_closed_total counter\n");
    let _ = writeln!(out, "diffmart_websocket_closed_total{{reason=\"too_slow\"}} {}", gate.too_slow.load(Relaxed));
    let _ = writeln!(out, "diffmart_websocket_closed_total{{reason=\"idle\"}} {}", gate.idle.load(Relaxed));
    out.push_str("# HELP diffmart_websocket_refused_total WebSocket upgrades refused: too many clients.\n");
    out.push_str("# TYPE diffmart_websocket_refused_total counter\n");
    let _ = writeln!(out, "diffmart_websocket_refused_total {}", gate.refused.load(Relaxed));
}

/// A label value, escaped as the text format wants.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics page for the engine's current snapshot.
pub fn render(engine: &Engine) -> String {
    let snapshot = engine.snapshot();
    let mut out = String::new();
    out.push_str("# HELP diffmart_relation_rows Rows of each relation in the current snapshot.\n");
    out.push_str("# TYPE diffmart_relation_rows gauge\n");
    for (id, spec) in engine.catalog().iter() {
        let kind = match spec.kind {
            RelationKind::Table { .. } => "table",
            RelationKind::Source { .. } => "source",
            RelationKind::View => "view",
        };
        let rows = snapshot.len(id);
        let _ = writeln!(out, "diffmart_relation_rows{{relation=\"{}\",kind=\"{kind}\"}} {rows}", label(spec.name));
    }
    out.push_str("# HELP diffmart_snapshot_time Logical time of the current snapshot: ingest batches applied.\n");
    out.push_str("# TYPE diffmart_snapshot_time counter\n");
    let _ = writeln!(out, "diffmart_snapshot_time {}", snapshot.upper);

    let statuses: Vec<SourceStatus> = engine
        .catalog()
        .id(SourceStatus::spec().name)
        .map(|id| snapshot.relation(id).rows().filter_map(|row| SourceStatus::from_row(&row).ok()).collect())
        .unwrap_or_default();
    let stream = |s: &SourceStatus| {
        format!("kind=\"{}\",name=\"{}\",partition=\"{}\"", label(&s.kind), label(&s.name), s.partition)
    };
    out.push_str("# HELP diffmart_source_messages_total Messages a source stream has read (good and bad).\n");
    out.push_str("# TYPE diffmart_source_messages_total counter\n");
    for s in &statuses {
        let _ = writeln!(out, "diffmart_source_messages_total{{{}}} {}", stream(s), s.messages);
    }
    out.push_str("# HELP diffmart_source_errors_total Messages a source stream could not read.\n");
    out.push_str("# TYPE diffmart_source_errors_total counter\n");
    for s in &statuses {
        let _ = writeln!(out, "diffmart_source_errors_total{{{}}} {}", stream(s), s.errors);
    }
    out.push_str("# HELP diffmart_source_lag Messages (or WAL bytes) a source stream is behind.\n");
    out.push_str("# TYPE diffmart_source_lag gauge\n");
    for s in &statuses {
        if let Some(lag) = s.lag {
            let _ = writeln!(out, "diffmart_source_lag{{{}}} {lag}", stream(s));
        }
    }
    out
}
