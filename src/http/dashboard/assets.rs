//! The page's files, embedded in the binary at build time (no Node toolchain, no
//! resource from outside the server): plain HTML, CSS and JavaScript modules, charts
//! drawn as SVG by `charts.js`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, Path};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::Dashboard;
use super::access::Refusal;
use crate::http::api::ApiError;
use crate::pgwire::roles::Access;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_str!(concat!("assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the page loads; `index.html` is served at `/`, the others under `/dashboard/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("live.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("charts.js", JS),
    asset!("casino.js", JS),
    asset!("pricing.js", JS),
    asset!("inventory.js", JS),
    asset!("retail.js", JS),
    asset!("ecommerce.js", JS),
    asset!("generator.js", JS),
];

/// Nothing from elsewhere: scripts, styles, images and connections stay on this server.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                      connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /`.
pub async fn index(
    Extension(dashboard): Extension<Arc<Dashboard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    serve(&dashboard, peer, &headers, "index.html")
}

/// `GET /dashboard/{file}`.
pub async fn file(
    Extension(dashboard): Extension<Arc<Dashboard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    serve(&dashboard, peer, &headers, &name)
}

fn serve(dashboard: &Dashboard, peer: SocketAddr, headers: &HeaderMap, name: &str) -> Result<Response, Refusal> {
    dashboard.guard.check(peer, headers, Access::Read)?;
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no dashboard file named {name:?}")))?;
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The binary is the version: a new one serves new files, so nothing is cached for long.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
