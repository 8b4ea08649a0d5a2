//! The casino tab's writes, through the one write path (`Engine::write`, as SQL's):
//!
//! - `POST /api/casino/redeem` `{"member_id", "member_name", "offer_type", "window_start"}`:
//!   "Mark as redeemed". Inserts a `redeemed_offers` row dated like `pending_offers`
//!   reads it, the UTC date of the qualifying window's start; its key is the
//!   one-per-member-per-day-per-type policy, so a second one is refused (409, from
//!   SQLSTATE 23505) and the page shows why.
//! - `POST /api/casino/thresholds` `{"hotel_threshold"?, "drink_threshold"?}`: upserts
//!   the one row of `casino_settings`, which the offer views read inside the
//!   dataflow; a threshold left out keeps its value.
//!
//! Both need [`Access::Write`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use diffmart_dataflows::casino::{DRINK_OFFER, HOTEL_OFFER, RedeemedOffer, utc_date};
use diffmart_dataflows::datum::{Datum, Record};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Dashboard;
use super::access::Refusal;
use crate::engine::Update;
use crate::http::api::{ApiError, AppState};
use crate::json::{parse_timestamp, row_from_object, row_to_object};
use crate::pgwire::roles::Access;

/// The settings table's name: it is looked up when a request comes, not at build time.
const SETTINGS: &str = "casino_settings";

#[derive(Deserialize)]
pub struct Redemption {
    member_id: i64,
    member_name: Option<String>,
    offer_type: String,
    /// The qualifying window's start (RFC 3339): its UTC date is the redemption date.
    window_start: String,
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(body)| body).map_err(|e| ApiError::bad_request(format!("invalid body: {}", e.body_text())))
}

/// `POST /api/casino/redeem`.
pub async fn redeem(
    Extension(dashboard): Extension<Arc<Dashboard>>,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    redemption: Result<Json<Redemption>, JsonRejection>,
) -> Result<Json<Value>, Refusal> {
    dashboard.guard.check(peer, &headers, Access::Write)?;
    let redemption = body(redemption)?;
    if ![HOTEL_OFFER, DRINK_OFFER].contains(&redemption.offer_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "offer_type must be \"{HOTEL_OFFER}\" or \"{DRINK_OFFER}\", got {:?}",
            redemption.offer_type
        ))
        .into());
    }
    let window_start = parse_timestamp(&redemption.window_start)
        .map_err(|e| ApiError::bad_request(format!("invalid window_start: {e}")))?;
    let offer = RedeemedOffer {
        member_id: redemption.member_id,
        member_name: redemption.member_name,
        offer_type: redemption.offer_type,
        redeemed_at: Some(crate::sources::now_micros()),
        redemption_date: utc_date(window_start),
    };
    let engine = &state.engine;
    let table = engine.catalog().id(RedeemedOffer::spec().name).expect("redeemed_offers is in the catalog");
    let row = offer.to_row();
    match engine.write(table, vec![Update::insert(table, row.clone())]).await {
        Ok(_) => Ok(Json(Value::Object(row_to_object(RedeemedOffer::spec(), &row)))),
        Err(e) if e.sqlstate == "23505" => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "member {} has already redeemed a {} offer on {}: one per member per day per type",
                offer.member_id,
                offer.offer_type,
                crate::json::datum_to_json(&Datum::Date(offer.redemption_date)).as_str().unwrap_or("that day"),
            ),
        )
        .into()),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

/// `POST /api/casino/thresholds`.
pub async fn thresholds(
    Extension(dashboard): Extension<Arc<Dashboard>>,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    change: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, Refusal> {
    dashboard.guard.check(peer, &headers, Access::Write)?;
    let change = body(change)?;
    let engine = &state.engine;
    let (table, spec) = engine.catalog().lookup(SETTINGS).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, format!("this server has no {SETTINGS} table to change"))
    })?;
    for (name, value) in &change {
        if !matches!(name.as_str(), "hotel_threshold" | "drink_threshold") {
            return Err(ApiError::bad_request(format!("unknown setting {name:?}")).into());
        }
        if value.as_f64().is_some_and(|v| v < 0.0) {
            return Err(ApiError::bad_request(format!("{name} must not be negative")).into());
        }
    }
    // The row as it is (the table holds one, id 1), with the settings given replaced.
    let snapshot = engine.snapshot();
    let current = snapshot.relation(table).rows().next().map(|row| row_to_object(spec, &row));
    drop(snapshot);
    let mut object = current.unwrap_or_default();
    object.insert("id".into(), json!(1));
    object.extend(change);
    let row = row_from_object(spec, &object).map_err(|e| ApiError::bad_request(format!("invalid settings: {e}")))?;
    engine.write(table, vec![Update::upsert(table, row.clone())]).await.map_err(ApiError::from)?;
    Ok(Json(Value::Object(row_to_object(spec, &row))))
}
