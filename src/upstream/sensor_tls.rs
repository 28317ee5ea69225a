//! TLS to Stenographer sensors: one rustls client configuration per sensor, presenting the
//! configured client certificate and trusting **only** that sensor's CA.
//!
//! Real sensors carry certificates made by the package's `stenokeys.sh`: X.509 **v1**, no
//! extensions, the address only in the subject CN. webpki refuses those outright
//! (`UnsupportedCertVersion`; a v3 certificate without subjectAltName fails name checks). The
//! verifier here therefore has two paths:
//!
//! - a certificate with a subjectAltName (v3) is judged by webpki alone — chain to the CA,
//!   validity, key usage, the SAN against the configured host — and its verdict stands;
//! - a certificate without one (v1, or v3 without SAN) is accepted only if it is signed
//!   **directly** by one of the configured CA certificates (issuer name and signature), is
//!   within its validity period, is not itself a CA, and its subject CN equals the configured
//!   host. No intermediates, no other names: the narrowest check that still pins the sensor to
//!   its CA and address.
//!
//! Handshake signatures are checked against the public key of the certificate the first step
//! accepted (through webpki's raw-public-key verifier, which does not care about the
//! certificate's version).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a sensor's TLS material cannot be used (at start, naming the file).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Error {
    /// The file at fault.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The rustls client configuration for one sensor: HTTP/1.1 only (large dumps are ~1.6× slower
/// over Go's HTTP/2), client certificate, and the verifier described in the module docs.
///
/// # Errors
/// A file cannot be read or holds no usable certificate or key; the key does not match.
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    host: &str,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| err(ca, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(ca, e.to_string()))?;
    if cas.is_empty() {
        return Err(err(ca, "no certificate in the file"));
    }
    let mut roots = RootCertStore::empty();
    for c in &cas {
        roots
            .add(c.clone())
            .map_err(|e| err(ca, format!("not a usable CA certificate: {e}")))?;
        X509Certificate::from_der(c).map_err(|e| err(ca, format!("cannot parse: {e}")))?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| err(ca, e.to_string()))?;
    let verifier = SensorVerifier {
        webpki,
        cas,
        host: host.to_owned(),
        algorithms: provider.signature_verification_algorithms,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let signer = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| err(key, e.to_string()))?;
    // rustls's own `with_client_auth_cert` parses the certificate with webpki, which refuses
    // stenokeys' v1 client certificates; the key/certificate match is checked here instead.
    let (_, leaf) = X509Certificate::from_der(&chain[0])
        .map_err(|e| err(cert, format!("cannot parse: {e}")))?;
    if signer.public_key().as_deref() != Some(leaf.public_key().raw) {
        return Err(err(
            key,
            format!("is not the key of the certificate {}", cert.display()),
        ));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(ClientIdentity(Arc::new(
            rustls::sign::CertifiedKey::new(chain, signer),
        ))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to send as SNI and to check: an IP address or a DNS name.
///
/// # Errors
/// `host` is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?}: {e}"))
}

/// Docket's one identity towards a sensor, whatever the sensor hints.
#[derive(Debug)]
struct ClientIdentity(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct SensorVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    cas: Vec<CertificateDer<'static>>,
    host: String,
    algorithms: WebPkiSupportedAlgorithms,
}

fn bad(e: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(e)
}

fn other(message: String) -> rustls::Error {
    bad(CertificateError::Other(rustls::OtherError(Arc::new(
        std::io::Error::other(message),
    ))))
}

impl SensorVerifier {
    /// The check for certificates without subjectAltName; see the module docs.
    fn verify_without_san(
        &self,
        leaf: &X509Certificate<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let now = x509_parser::time::ASN1Time::from_timestamp(now.as_secs() as i64)
            .map_err(|e| other(format!("clock: {e}")))?;
        if !leaf.validity().is_valid_at(now) {
            return Err(bad(CertificateError::Expired));
        }
        // What webpki would refuse anyway stays refused here: a CA as leaf (or unreadable
        // constraints), a certificate not meant for servers, an unknown critical extension,
        // inner and outer signature algorithms that differ, SHA-1 or MD5 signatures.
        match leaf.basic_constraints() {
            Ok(None) => {}
            Ok(Some(bc)) if !bc.value.ca => {}
            _ => return Err(other("the sensor presented a CA certificate".into())),
        }
        match leaf.extended_key_usage() {
            Ok(None) => {}
            Ok(Some(eku)) if eku.value.server_auth || eku.value.any => {}
            _ => return Err(other("the certificate is not for TLS servers".into())),
        }
        if leaf.extensions().iter().any(|e| {
            e.critical
                && matches!(
                    e.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::UnsupportedExtension { .. }
                )
        }) {
            return Err(other(
                "the certificate has an unknown critical extension".into(),
            ));
        }
        let alg = &leaf.signature_algorithm;
        if *alg != leaf.tbs_certificate.signature {
            return Err(bad(CertificateError::BadSignature));
        }
        const WEAK: [&str; 4] = [
            "1.2.840.113549.1.1.4", // md5WithRSAEncryption
            "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
            "1.2.840.10045.4.1",    // ecdsa-with-SHA1
            "1.2.840.10040.4.3",    // dsa-with-sha1
        ];
        if WEAK.contains(&alg.algorithm.to_id_string().as_str()) {
            return Err(other("the certificate is signed with MD5 or SHA-1".into()));
        }
        let issued_by_ca = self.cas.iter().any(|der| {
            X509Certificate::from_der(der).is_ok_and(|(_, ca)| {
                let is_ca = ca.is_ca() || ca.version() == x509_parser::x509::X509Version::V1;
                let strong = ca.public_key().parsed().is_ok_and(|k| match k {
                    x509_parser::public_key::PublicKey::RSA(rsa) => rsa.key_size() >= 2048,
                    _ => true,
                });
                is_ca
                    && strong
                    && ca.subject().as_raw() == leaf.issuer().as_raw()
                    && ca.validity().is_valid_at(now)
                    && leaf.verify_signature(Some(ca.public_key())).is_ok()
            })
        });
        if !issued_by_ca {
            return Err(bad(CertificateError::UnknownIssuer));
        }
        let cn_matches = leaf.subject().iter_common_name().any(|cn| {
            cn.as_str()
                .is_ok_and(|cn| cn.eq_ignore_ascii_case(&self.host))
        });
        if !cn_matches {
            return Err(other(format!(
                "the certificate has no subjectAltName and its CN is not {:?}",
                self.host
            )));
        }
        Ok(())
    }

    /// The public key of an end-entity certificate, whatever its version.
    fn spki(cert: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
        let (_, c) =
            X509Certificate::from_der(cert).map_err(|_| bad(CertificateError::BadEncoding))?;
        Ok(SubjectPublicKeyInfoDer::from(c.public_key().raw.to_vec()))
    }
}

impl ServerCertVerifier for SensorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (_, leaf) = X509Certificate::from_der(end_entity)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        let has_san = leaf
            .subject_alternative_name()
            .map_err(|_| bad(CertificateError::BadEncoding))?
            .is_some();
        if has_san {
            return self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        self.verify_without_san(&leaf, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = Self::spki(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        // TLS 1.2 does not tie a scheme to one algorithm: try each candidate, as rustls does.
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(s, _)| *s == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        if candidates
            .iter()
            .any(|alg| key.verify_signature(*alg, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(bad(CertificateError::BadSignature))
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = Self::spki(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
