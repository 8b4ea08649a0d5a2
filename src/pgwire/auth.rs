//! Logging in: SCRAM-SHA-256 passwords, or trust on a loopback-only server.
//!
//! With a root password set (`--root-password`), every connection proves its
//! role's password with SCRAM-SHA-256 (SCRAM-SHA-256-PLUS, bound to the TLS
//! channel, when TLS is on). Without one, the server trusts the role a client
//! names, as PostgreSQL's `trust` does; `server::run` allows that only on a
//! loopback address unless `--insecure` says otherwise. Either way the role must
//! exist and be allowed to log in.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::roles::{Roles, ScramSecret};
use super::tls::Tls;

/// How clients log in, shared by every connection.
pub struct Authentication {
    roles: Arc<Roles>,
    connections: Arc<ConnectionManager>,
    /// The server certificate, for SCRAM-SHA-256-PLUS channel binding.
    certificate_pem: Option<Vec<u8>>,
}

impl Authentication {
    pub fn new(roles: Arc<Roles>, connections: Arc<ConnectionManager>, tls: Option<&Tls>) -> Authentication {
        Authentication { roles, connections, certificate_pem: tls.map(|tls| tls.certificate_pem.clone()) }
    }

    /// The startup handler of one connection (SASL keeps per-connection state).
    pub fn for_connection(&self) -> Arc<Login> {
        let parameters = Arc::new(Parameters { roles: self.roles.clone() });
        let password = if self.roles.passwords_required() {
            let mut scram = ScramAuth::new(Arc::new(Secrets { roles: self.roles.clone() }));
            if let Some(pem) = &self.certificate_pem
                && let Err(e) = scram.configure_certificate(pem)
            {
                tracing::warn!("SCRAM channel binding is off: {e}");
            }
            Some(
                SASLAuthStartupHandler::new(parameters.clone())
                    .with_scram(scram)
                    .with_connection_manager(self.connections.clone()),
            )
        } else {
            None
        };
        Arc::new(Login {
            roles: self.roles.clone(),
            password,
            trusted: Trusted { connections: self.connections.clone(), parameters },
        })
    }
}

/// One connection's login: by password, or trusted.
pub struct Login {
    roles: Arc<Roles>,
    password: Option<SASLAuthStartupHandler<Parameters>>,
    trusted: Trusted,
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(password) = &self.password {
            // libpq leaves the SCRAM user name empty (it is in the startup message): name the role.
            return password.on_startup(client, message).await.map_err(|e| match e {
                PgWireError::InvalidPassword(_) => {
                    PgWireError::InvalidPassword(client.metadata().get(METADATA_USER).cloned().unwrap_or_default())
                }
                other => other,
            });
        }
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup.parameters.get(METADATA_USER).map(String::as_str).unwrap_or_default();
            match self.roles.get(user) {
                None => return Err(fatal("28000", format!("role \"{user}\" does not exist"))),
                Some(role) if !role.login => {
                    return Err(fatal("28000", format!("role \"{user}\" is not permitted to log in")));
                }
                Some(_) => {}
            }
        }
        self.trusted.on_startup(client, message).await
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// Login without a password: pgwire's no-op handler, with cancel keys registered.
struct Trusted {
    connections: Arc<ConnectionManager>,
    parameters: Arc<Parameters>,
}

#[async_trait]
impl NoopStartupHandler for Trusted {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }

    async fn post_startup<C>(&self, client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The no-op handler reports pgwire's defaults; correct is_superuser for this role.
        let superuser = self.parameters.is_superuser(client);
        use futures::SinkExt;
        client
            .send(PgWireBackendMessage::ParameterStatus(pgwire::messages::startup::ParameterStatus::new(
                "is_superuser".into(),
                on_off(superuser),
            )))
            .await?;
        Ok(())
    }
}

/// The SCRAM secret of the role logging in; unknown roles and roles that may not
/// log in get one no password matches, so the failure is the same 28P01.
#[derive(Debug)]
struct Secrets {
    roles: Arc<Roles>,
}

#[async_trait]
impl AuthSource for Secrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let role = login.user().and_then(|user| self.roles.get(user));
        let secret = match role {
            Some(role) if role.login => role.password.unwrap_or_else(ScramSecret::unmatchable),
            _ => ScramSecret::unmatchable(),
        };
        Ok(Password::new(Some(secret.salt), secret.salted_password))
    }
}

/// The parameters sent after login: pgwire's defaults, with `is_superuser` true only for superusers.
struct Parameters {
    roles: Arc<Roles>,
}

impl Parameters {
    fn is_superuser<C: ClientInfo>(&self, client: &C) -> bool {
        client.metadata().get(METADATA_USER).is_some_and(|user| self.roles.is_superuser(user))
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut parameters = DefaultServerParameterProvider::default().server_parameters(client)?;
        parameters.insert("is_superuser".into(), on_off(self.is_superuser(client)));
        Some(parameters)
    }
}

fn on_off(value: bool) -> String {
    if value { "on" } else { "off" }.to_string()
}
