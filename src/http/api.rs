//! What every route shares: the state handlers get, the admin API key check of
//! protected routes, and error answers (`{"error": "..."}`).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::limits::HttpLimits;
use super::ws::WebSocketGate;
use crate::engine::{Engine, SqlError};

/// What the server needs to know beyond the engine.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// `--admin-api-key` / `ADMIN_API_KEY`: protected routes refuse everything without it.
    pub admin_api_key: Option<String>,
    /// `--api-key-header` (default `X-API-Key`).
    pub api_key_header: HeaderName,
    /// `--http-*` and `--ws-*`.
    pub limits: HttpLimits,
}

impl HttpConfig {
    /// No admin key, the default header.
    pub fn without_admin_key() -> HttpConfig {
        HttpConfig {
            admin_api_key: None,
            api_key_header: HeaderName::from_static("x-api-key"),
            limits: HttpLimits::default(),
        }
    }

    pub fn with_admin_key(key: impl Into<String>) -> HttpConfig {
        HttpConfig { admin_api_key: Some(key.into()), ..HttpConfig::without_admin_key() }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub auth: Arc<AdminAuth>,
    pub limits: Arc<HttpLimits>,
    pub websockets: Arc<WebSocketGate>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, config: &HttpConfig) -> AppState {
        let auth = AdminAuth {
            key: config.admin_api_key.clone().map(String::into_bytes),
            header: config.api_key_header.clone(),
        };
        AppState {
            engine,
            auth: Arc::new(auth),
            limits: Arc::new(config.limits.clone()),
            websockets: Arc::new(WebSocketGate::new(config.limits.websocket.clone())),
        }
    }
}

/// The admin API key check of protected routes.
pub struct AdminAuth {
    key: Option<Vec<u8>>,
    header: HeaderName,
}

impl AdminAuth {
    /// Passes a request carrying the configured key; compares in constant time (for
    /// keys of the configured length). Without a configured key, refuses everything.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.key else {
            return Err(ApiError::unauthorized(
                "admin API disabled: no admin API key is configured (start diffmart with --admin-api-key or ADMIN_API_KEY)",
            ));
        };
        let Some(given) = headers.get(&self.header) else {
            return Err(ApiError::unauthorized(format!("missing API key: send it in the {} header", self.header)));
        };
        if bool::from(given.as_bytes().ct_eq(key)) { Ok(()) } else { Err(ApiError::unauthorized("invalid API key")) }
    }
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<SqlError> for ApiError {
    /// A refused table write, with the status closest to its SQLSTATE.
    fn from(e: SqlError) -> ApiError {
        let status = match e.sqlstate {
            "22P02" | "22003" | "23502" | "23514" => StatusCode::BAD_REQUEST,
            "23505" | "40001" => StatusCode::CONFLICT,
            "42501" | "42809" => StatusCode::FORBIDDEN,
            "57P01" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
