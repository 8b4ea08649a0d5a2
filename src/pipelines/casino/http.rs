//! The casino's route: the offer thresholds written over HTTP (what a dashboard's
//! threshold controls send), through the same table and rules as SQL's `UPDATE`.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `PUT /casino/settings` | API key | sets `hotel_threshold` and/or `drink_threshold` of `casino_settings`' row; `{"id", "hotel_threshold", "drink_threshold"}` |
//!
//! The body is a JSON object with either field or both (numbers, or numeric strings),
//! rounded to two decimal places as the column's type does; any other field is refused.
//! A field left out keeps its value; while the table has no row (the flags' values
//! apply) both are needed. A refused value answers 400 with the table's error (a CHECK:
//! negative; `numeric(12,2)`: 10^10 or more) and changes nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, http::StatusCode};
use diffmart_dataflows::casino::CasinoSettings;
use diffmart_dataflows::datum::{Datum, Record, validate_row};
use serde_json::Value;

use crate::engine::{Op, Update};
use crate::http::api::{ApiError, AppState};
use crate::json::{datum_from_json, parse_object, row_to_object};

pub fn routes() -> Router<AppState> {
    Router::new().route("/casino/settings", put(put_settings))
}

/// The columns a body may set, in the table's column order after `id`.
const THRESHOLDS: [&str; 2] = ["hotel_threshold", "drink_threshold"];

/// The thresholds a body sets (`None`: left out), each as its column's datum.
fn parse_body(body: &[u8]) -> Result<[Option<Datum>; 2], ApiError> {
    let object = parse_object(body).map_err(ApiError::bad_request)?;
    if let Some(other) = object.keys().find(|k| !THRESHOLDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{other}\": the body sets hotel_threshold and/or drink_threshold"
        )));
    }
    let spec = CasinoSettings::spec();
    let mut set = [None, None];
    for (slot, name) in set.iter_mut().zip(THRESHOLDS) {
        let Some(value) = object.get(name) else { continue };
        let column = &spec.columns[spec.column_index(name).expect("a casino_settings column")];
        let datum = match value {
            Value::Null => return Err(ApiError::bad_request(format!("{name} must not be null"))),
            value => datum_from_json(column.ty, value).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?,
        };
        *slot = Some(datum);
    }
    if set.iter().all(Option::is_none) {
        return Err(ApiError::bad_request("the body sets nothing: give hotel_threshold and/or drink_threshold"));
    }
    Ok(set)
}

/// `PUT /casino/settings`.
async fn put_settings(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.auth.check(&headers)?;
    let set = parse_body(&body)?;
    let engine = &state.engine;
    let spec = CasinoSettings::spec();
    let table = engine.catalog().id(spec.name).expect("casino_settings is in the catalog");
    let key = vec![Datum::Int32(CasinoSettings::ID)];
    let current = engine.snapshot().relation(table).get_by_key(&key);
    // The row as it will be, checked here so a refusal carries the table's own error and
    // SQLSTATE; the write path merges again against the row it holds then.
    let merged: Vec<Datum> = std::iter::once(Some(Datum::Int32(CasinoSettings::ID)))
        .chain(set.iter().cloned())
        .enumerate()
        .map(|(i, given)| given.or_else(|| current.as_ref().map(|row| row[i].clone())))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            ApiError::bad_request(
                "casino_settings has no row (the flags' thresholds apply): give both hotel_threshold and \
                 drink_threshold",
            )
        })?;
    validate_row(spec, &merged).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let row = std::iter::once(Some(Datum::Int32(CasinoSettings::ID))).chain(set).collect();
    engine.write(table, vec![Update { relation: table, op: Op::Patch { key: key.clone(), row } }]).await?;
    let written = engine.snapshot().relation(table).get_by_key(&key);
    match written {
        Some(row) => Ok(Json(Value::Object(row_to_object(spec, &row))).into_response()),
        // Another writer deleted the row in the meantime.
        None => Err(ApiError::new(StatusCode::CONFLICT, "casino_settings' row was deleted meanwhile")),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn a_body_sets_either_threshold_rounded_to_cents() {
        let [hotel, drink] = parse_body(br#"{"hotel_threshold": 3000.125}"#).unwrap();
        assert_eq!(hotel, Some(Datum::Numeric(Decimal::new(300013, 2))));
        assert_eq!(drink, None);
        let [hotel, drink] = parse_body(br#"{"hotel_threshold": "12", "drink_threshold": 0}"#).unwrap();
        assert_eq!((hotel, drink), (Some(Datum::Numeric(Decimal::from(12))), Some(Datum::Numeric(Decimal::ZERO))));
    }

    #[test]
    fn bodies_that_set_nothing_or_something_else_are_refused() {
        for body in [
            &br#"{}"#[..],
            br#"[1]"#,
            br#"{"hotel_threshold": null}"#,
            br#"{"hotel_threshold": "lots"}"#,
            br#"{"id": 2, "hotel_threshold": 1}"#,
        ] {
            let error = parse_body(body).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        }
    }
}
