//! TLS for Postgres clients (`--tls-cert`, `--tls-key`): psql's `sslmode=require`
//! and `verify-full`, and PostgreSQL 17's direct TLS (`sslnegotiation=direct`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server's TLS acceptor, and its certificate for SCRAM channel binding.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub certificate_pem: Vec<u8>,
}

impl Tls {
    /// Loads a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(certificate: &Path, key: &Path) -> anyhow::Result<Tls> {
        let certificate_pem =
            std::fs::read(certificate).with_context(|| format!("reading --tls-cert {}", certificate.display()))?;
        let chain = CertificateDer::pem_slice_iter(&certificate_pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--tls-cert {} is not a PEM certificate chain", certificate.display()))?;
        anyhow::ensure!(!chain.is_empty(), "--tls-cert {} holds no certificate", certificate.display());
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("--tls-key {} holds no PEM private key", key.display()))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the TLS key does not match the certificate")?;
        // PostgreSQL 17 clients negotiating TLS directly ask for this ALPN protocol.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), certificate_pem })
    }
}
