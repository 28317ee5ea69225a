//! TLS for the front door: rustls (ring provider), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
//!
//! Owns the server's certificate: a [`Reloadable`] resolver holds the current `CertifiedKey`
//! behind a lock and [`Tls::reload`] swaps it (SIGHUP). A handshake takes the key that is
//! current when it starts; connections already established keep theirs, so a reload never
//! touches a live stream. A reload that fails (unreadable file, key not matching) leaves the
//! old pair in place and says why.
//!
//! Client certificates (mTLS) are verified by webpki against `client_ca`; the user is the
//! certificate's subject common name (the whole subject if it has none).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration (key does not match, bad CA...).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot be used.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// A self-signed pair cannot be made (`docket gen-cert`).
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn pem_err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Pem {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a chain and its key, and checks that they belong together.
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE block"));
    }
    // PrivateKeyDer reads PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") and SEC1
    // ("EC PRIVATE KEY") blocks.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    let ck = CertifiedKey::from_der(chain, key_der, &provider())?;
    Ok(ck)
}

/// The certificate resolver that [`Tls::reload`] updates.
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

/// The server's TLS state.
pub struct Tls {
    config: TlsConfig,
    resolver: Arc<Reloadable>,
    /// The acceptor every new connection uses.
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish()
    }
}

impl Tls {
    /// Loads the certificate, key and client CA named by the configuration.
    ///
    /// # Errors
    /// A file is unreadable or unusable, the key does not match the certificate.
    pub fn new(config: &TlsConfig) -> Result<Tls, Error> {
        let resolver = Arc::new(Reloadable(RwLock::new(Arc::new(load_pair(
            &config.cert,
            &config.key,
        )?))));
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem_err(ca, e))? {
                    roots
                        .add(c.map_err(|e| pem_err(ca, e))?)
                        .map_err(|e| Error::ClientCa(e.to_string()))?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                // Optional by default: browser users without a certificate log in with a password.
                let v = if config.require_client_cert {
                    v
                } else {
                    v.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| Error::ClientCa(e.to_string()))?,
                )
            }
        };
        let mut sc = builder.with_cert_resolver(Arc::clone(&resolver) as _);
        sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless TLS 1.3 resumption (tickets), besides rustls' default session cache.
        sc.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Tls {
            config: config.clone(),
            resolver,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(sc)),
        })
    }

    /// Re-reads the certificate and key; new handshakes use them, live connections keep theirs.
    ///
    /// # Errors
    /// The new pair cannot be loaded; the old one stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        let ck = load_pair(&self.config.cert, &self.config.key)?;
        *self.resolver.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        Ok(())
    }
}

/// The user a verified client certificate names: its subject CN, else the whole subject.
pub fn cert_user(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = x.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    cn.or_else(|| Some(subject.to_string()))
        .filter(|s| !s.is_empty())
}

/// A self-signed certificate and its key (PEM: certificate, PKCS#8 key) for a first start:
/// P-256, subject CN = the first name, every name as a subject alternative name (IP
/// addresses as IP entries), valid from an hour ago for `days` days.
///
/// # Errors
/// A name is not a valid DNS name or IP address.
pub fn self_signed(names: &[String], days: u32) -> Result<(String, String), Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
