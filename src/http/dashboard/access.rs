//! Who may use the dashboard, by pgwire's rules (docs/security.md):
//!
//! - with a root password (`Roles::passwords_required`), every dashboard route needs
//!   HTTP Basic auth with a diffmart role that may log in, its password checked
//!   against the role's SCRAM secret ([`Roles::verify_password`]); reads need
//!   [`Access::Read`], writes [`Access::Write`]. No or wrong credentials: 401 with a
//!   `WWW-Authenticate` challenge; too little access: 403.
//! - without one, pgwire lets anyone log in as anyone; over HTTP only clients whose
//!   peer address is loopback are trusted (as `root`), others get 403 saying to set
//!   `DIFFMART_ROOT_PASSWORD`.
//!
//! Refusals are JSON, `{"error": ...}`, like every HTTP error.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::http::api::ApiError;
use crate::pgwire::roles::{Access, ROOT, Roles};

/// The realm of the Basic challenge: the browser keeps the credentials per realm.
const REALM: &str = "Basic realm=\"diffmart\", charset=\"UTF-8\"";

/// Checks a request's credentials against the roles.
pub struct Guard {
    roles: Arc<Roles>,
}

/// A refused request: 401 carries the Basic challenge.
#[derive(Debug)]
pub struct Refusal(pub ApiError);

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        Refusal(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let challenge = self.0.status == StatusCode::UNAUTHORIZED;
        let mut response = self.0.into_response();
        if challenge {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
        }
        response
    }
}

impl Guard {
    pub fn new(roles: Arc<Roles>) -> Guard {
        Guard { roles }
    }

    /// The role a request acts as, if it may do what `need` asks.
    pub fn check(&self, peer: SocketAddr, headers: &HeaderMap, need: Access) -> Result<String, Refusal> {
        if !self.roles.passwords_required() {
            return if peer.ip().is_loopback() {
                Ok(ROOT.to_string())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the dashboard serves only clients on this machine while no root password is set: \
                     start diffmart with DIFFMART_ROOT_PASSWORD (or --root-password) to serve others, \
                     who then log in with a diffmart role",
                )
                .into())
            };
        }
        let (role, password) = basic_credentials(headers)?;
        if !self.roles.verify_password(&role, &password) {
            return Err(ApiError::unauthorized(format!("password authentication failed for user \"{role}\"")).into());
        }
        let access = self.roles.access(&role);
        if access < need {
            let what = if need == Access::Write { "write" } else { "read" };
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("role \"{role}\" may not {what} data: GRANT pg_{what}_all_data TO {role}"),
            )
            .into());
        }
        Ok(role)
    }
}

/// The role and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), Refusal> {
    let missing = || Refusal(ApiError::unauthorized("log in with a diffmart role (HTTP Basic auth)"));
    let value = headers.get(AUTHORIZATION).ok_or_else(missing)?;
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .ok_or_else(missing)?;
    let bad = || Refusal(ApiError::unauthorized("malformed Basic credentials"));
    let decoded = BASE64.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (role, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((role.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgwire::roles::{READ_ALL_DATA, RoleOptions};

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn status(result: Result<String, Refusal>) -> StatusCode {
        result.map_or_else(|e| e.0.status, |_| StatusCode::OK)
    }

    #[test]
    fn without_a_root_password_only_loopback_peers_are_trusted() {
        let guard = Guard::new(Arc::new(Roles::open(None, None).unwrap()));
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(guard.check(local, &HeaderMap::new(), Access::Write).unwrap(), ROOT);
        assert_eq!(guard.check("[::1]:1".parse().unwrap(), &HeaderMap::new(), Access::Write).unwrap(), ROOT);
        let refused = guard.check(remote, &basic("root", ""), Access::Read).unwrap_err();
        assert_eq!(refused.0.status, StatusCode::FORBIDDEN);
        assert!(refused.0.message.contains("DIFFMART_ROOT_PASSWORD"), "{}", refused.0.message);
    }

    #[test]
    fn with_a_root_password_roles_log_in_and_need_their_access() {
        let roles = Arc::new(Roles::open(None, Some("rootpw")).unwrap());
        let login = RoleOptions { login: Some(true), password: Some(Some("pw".into())), ..RoleOptions::default() };
        roles.create("reader", &login, false).unwrap();
        roles.set_membership(READ_ALL_DATA, "reader", true).unwrap();
        roles.create("nobody", &login, false).unwrap();
        let guard = Guard::new(roles);
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(status(guard.check(local, &HeaderMap::new(), Access::Read)), StatusCode::UNAUTHORIZED);
        assert_eq!(status(guard.check(local, &basic("root", "wrong"), Access::Read)), StatusCode::UNAUTHORIZED);
        assert_eq!(status(guard.check(local, &basic("root", "rootpw"), Access::Write)), StatusCode::OK);
        assert_eq!(status(guard.check(local, &basic("reader", "pw"), Access::Read)), StatusCode::OK);
        assert_eq!(status(guard.check(local, &basic("reader", "pw"), Access::Write)), StatusCode::FORBIDDEN);
        assert_eq!(status(guard.check(local, &basic("nobody", "pw"), Access::Read)), StatusCode::FORBIDDEN);
        let response = guard.check(local, &HeaderMap::new(), Access::Read).unwrap_err().into_response();
        assert!(response.headers().get(WWW_AUTHENTICATE).is_some());
    }
}
