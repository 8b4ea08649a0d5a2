//! The pricing routes of spec §E:
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /price/{id}` | none | `{"product_id", "price", "demand", "price_source"}` |
//! | `GET /ws/prices` | none | WebSocket: `{"type": "price_update", "product_id", "new_price", "timestamp"}` per change |
//! | `POST /override` | API key | upserts `price_overrides`, `{"product_id", "override_price", "reason", "status": "upserted"}` |
//! | `DELETE /override/{id}` | API key | deletes the override, `{"product_id", "deleted": true}` |
//! | `GET /history/{id}?limit=N` | API key | `price_history` rows, newest first (default 50, at most 500) |
//!
//! Product ids must match `^[A-Za-z0-9_-]+$` (400 otherwise); a product is known when
//! it has a price (`product_prices`) or a catalog row (`pricing_products`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, extract::ws::Utf8Bytes};
use diffmart_dataflows::datum::{Datum, F64, Micros, Record, RelationSpec, Row};
use diffmart_dataflows::pricing::{
    CatalogProduct, DEFAULT_OVERRIDE_REASON, PriceHistoryRow, PriceOverride, PriceUpdate, ProductPrice,
    is_valid_product_id,
};
use serde_json::{Value, json};

use crate::compute::RelationId;
use crate::engine::{ChangeBatch, Engine, Op, Snapshot, Update};
use crate::http::api::{ApiError, AppState};
use crate::json::datum_to_json;

/// `GET /history` without `limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
/// Larger limits are clamped to this.
pub const MAX_HISTORY_LIMIT: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/price/{id}", get(get_price))
        .route("/ws/prices", get(ws_prices))
        .route("/override", post(post_override))
        .route("/override/{id}", delete(delete_override))
        .route("/history/{id}", get(get_history))
}

fn relation(engine: &Engine, spec: &RelationSpec) -> RelationId {
    engine.catalog().id(spec.name).expect("the pricing relations are in the catalog")
}

/// The product id of a path, checked against `^[A-Za-z0-9_-]+$`.
fn product_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad_request(format!("invalid product id: {e}")))?;
    check_product_id(&id)?;
    Ok(id)
}

fn check_product_id(id: &str) -> Result<(), ApiError> {
    if is_valid_product_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("invalid product id {id:?}: it must match ^[A-Za-z0-9_-]+$")))
    }
}

/// The rows of a view whose first column is `product_id`, found by range (views are
/// ordered by row, so a product's rows are adjacent).
fn rows_of_product(snapshot: &Snapshot, relation: RelationId, product_id: &str) -> Vec<Row> {
    let key = Datum::text(product_id);
    snapshot.relation(relation).with_first_column(&key).collect()
}

fn current_price(engine: &Engine, snapshot: &Snapshot, product_id: &str) -> Option<ProductPrice> {
    let rows = rows_of_product(snapshot, relation(engine, ProductPrice::spec()), product_id);
    rows.first().map(|row| ProductPrice::from_row(row).expect("product_prices rows are prices"))
}

/// Whether the product has a price or a catalog row.
fn is_known(engine: &Engine, snapshot: &Snapshot, product_id: &str) -> bool {
    let catalog = snapshot.relation(relation(engine, CatalogProduct::spec()));
    current_price(engine, snapshot, product_id).is_some() || catalog.get_by_key(&[Datum::text(product_id)]).is_some()
}

fn unknown_product(product_id: &str) -> ApiError {
    ApiError::not_found(format!("unknown product {product_id:?}"))
}

/// `GET /price/{id}`.
async fn get_price(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = product_id(path)?;
    let snapshot = state.engine.snapshot();
    let price = current_price(&state.engine, &snapshot, &id).ok_or_else(|| unknown_product(&id))?;
    Ok(Json(json!({
        "product_id": price.product_id,
        "price": price.price.get(),
        "demand": price.demand,
        "price_source": price.price_source,
    }))
    .into_response())
}

/// The fields of a `POST /override` body.
fn parse_override_body(body: &[u8]) -> Result<(String, f64, String), ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let product_id = match fields.get("product_id") {
        Some(Value::String(id)) => id.clone(),
        _ => return Err(ApiError::bad_request("product_id is required and must be a string")),
    };
    check_product_id(&product_id)?;
    let price = match fields.get("override_price") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        _ => return Err(ApiError::bad_request("override_price is required and must be a number")),
    };
    if !(price.is_finite() && price > 0.0) {
        return Err(ApiError::bad_request(format!("override_price must be greater than 0, got {price}")));
    }
    let reason = match fields.get("reason") {
        None | Some(Value::Null) => DEFAULT_OVERRIDE_REASON.to_string(),
        Some(Value::String(r)) if r.trim().is_empty() => DEFAULT_OVERRIDE_REASON.to_string(),
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err(ApiError::bad_request("reason must be a string")),
    };
    Ok((product_id, price, reason))
}

fn now_micros() -> Micros {
    crate::sources::clock::now_micros()
}

/// `POST /override`: upserts the product's `price_overrides` row (set_time = now).
async fn post_override(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.auth.check(&headers)?;
    let (product_id, price, reason) = parse_override_body(&body)?;
    let engine = &state.engine;
    let table = relation(engine, PriceOverride::spec());
    if !is_known(engine, &engine.snapshot(), &product_id) {
        return Err(unknown_product(&product_id));
    }
    let row = PriceOverride {
        product_id: product_id.clone(),
        override_price: F64::new(price),
        reason: Some(reason.clone()),
        set_time: Some(now_micros()),
    };
    engine.write(table, vec![Update::upsert(table, row.to_row())]).await?;
    Ok(Json(json!({
        "product_id": product_id,
        "override_price": price,
        "reason": reason,
        "status": "upserted",
    }))
    .into_response())
}

/// `DELETE /override/{id}`: removes the override (the engine records the removal time).
async fn delete_override(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers)?;
    let product_id = product_id(path)?;
    let engine = &state.engine;
    let table = relation(engine, PriceOverride::spec());
    let delete =
        Update { relation: table, op: Op::DeleteKey { key: vec![Datum::text(product_id.as_str())], must_exist: true } };
    match engine.write(table, vec![delete]).await {
        Err(e) if e.sqlstate == "02000" => {
            return Err(ApiError::not_found(format!("no override for product {product_id:?}")));
        }
        written => written?,
    };
    Ok(Json(json!({ "product_id": product_id, "deleted": true })).into_response())
}

/// The `limit` of a query string: default 50, larger than 500 clamped to 500.
pub fn history_limit(query: Option<&str>) -> Result<usize, ApiError> {
    let mut limit = DEFAULT_HISTORY_LIMIT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "limit" {
            continue;
        }
        limit = match value.parse::<u64>() {
            Ok(n) if n >= 1 => n.min(MAX_HISTORY_LIMIT as u64) as usize,
            _ => return Err(ApiError::bad_request(format!("limit must be a positive integer, got {value:?}"))),
        };
    }
    Ok(limit)
}

/// `GET /history/{id}?limit=N`: the product's `price_history`, newest first.
async fn get_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    state.auth.check(&headers)?;
    let product_id = product_id(path)?;
    let limit = history_limit(query.as_deref())?;
    let engine = &state.engine;
    let snapshot = engine.snapshot();
    if !is_known(engine, &snapshot, &product_id) {
        return Err(unknown_product(&product_id));
    }
    let mut rows: Vec<PriceHistoryRow> =
        rows_of_product(&snapshot, relation(engine, PriceHistoryRow::spec()), &product_id)
            .into_iter()
            .map(|row| PriceHistoryRow::from_row(&row).expect("price_history rows are history rows"))
            .collect();
    // Newest first: by event time, then by change number.
    rows.sort_by_key(|h| std::cmp::Reverse((h.event_time, h.seq)));
    rows.truncate(limit);
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|h| {
            json!({
                "product_id": h.product_id,
                "price": h.price.get(),
                "price_source": h.price_source,
                "event_time": datum_to_json(&h.event_time.map_or(Datum::Null, Datum::Timestamp)),
                "seq": h.seq,
            })
        })
        .collect();
    Ok(Json(Value::Array(entries)).into_response())
}

/// `GET /ws/prices`: every new `price_updates` row, batch after batch; inside a batch,
/// each product's changes in order. Within the server's WebSocket limits
/// ([`crate::http::ws`]): 503 past the client cap, closed when too far behind.
async fn ws_prices(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Result<Response, ApiError> {
    let updates = relation(&state.engine, PriceUpdate::spec());
    crate::http::ws::stream_changes(&state, upgrade, move |batch, messages| {
        price_update_messages(batch, updates, messages)
    })
}

/// The WebSocket message of a `price_updates` row.
pub fn price_update_message(update: &PriceUpdate) -> Value {
    let mut message = update.to_json();
    if let Value::Object(fields) = &mut message {
        fields.insert("type".into(), Value::from("price_update"));
    }
    message
}

/// The messages of a change batch: one per new `price_updates` row copy.
fn price_update_messages(batch: &ChangeBatch, updates: RelationId, messages: &mut Vec<Utf8Bytes>) {
    for (relation, row, diff) in &batch.changes {
        // Deletions are retention dropping old changes: not news.
        if *relation != updates || *diff <= 0 {
            continue;
        }
        let update = PriceUpdate::from_row(row).expect("price_updates rows are updates");
        let text = Utf8Bytes::from(price_update_message(&update).to_string());
        messages.extend(std::iter::repeat_n(text, *diff as usize));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_limits() {
        assert_eq!(history_limit(None), Ok(50));
        assert_eq!(history_limit(Some("limit=7")), Ok(7));
        assert_eq!(history_limit(Some("x=1&limit=9999")), Ok(500));
        for bad in ["limit=0", "limit=-1", "limit=abc", "limit=", "limit=1.5"] {
            assert_eq!(history_limit(Some(bad)).unwrap_err().status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn override_bodies() {
        assert_eq!(
            parse_override_body(br#"{"product_id": "PA", "override_price": 12.5}"#),
            Ok(("PA".into(), 12.5, DEFAULT_OVERRIDE_REASON.into()))
        );
        assert_eq!(
            parse_override_body(br#"{"product_id": "PA", "override_price": 3, "reason": "promo"}"#),
            Ok(("PA".into(), 3.0, "promo".into()))
        );
        let message = |body: &str| parse_override_body(body.as_bytes()).unwrap_err().message;
        assert!(message("{").starts_with("invalid JSON body"));
        assert_eq!(message("[]"), "the body must be a JSON object");
        assert_eq!(message(r#"{"override_price": 1}"#), "product_id is required and must be a string");
        assert!(message(r#"{"product_id": "P A", "override_price": 1}"#).starts_with("invalid product id"));
        assert_eq!(
            message(r#"{"product_id": "PA", "override_price": "1"}"#),
            "override_price is required and must be a number"
        );
        assert_eq!(
            message(r#"{"product_id": "PA", "override_price": 0}"#),
            "override_price must be greater than 0, got 0"
        );
        assert_eq!(message(r#"{"product_id": "PA", "override_price": 1, "reason": 5}"#), "reason must be a string");
    }
}
