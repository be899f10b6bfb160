//! mTLS for servers and clients from PEM files, reloaded when the files change.
//!
//! rustls configurations are immutable, so [`MeshTls`] keeps the current server and client
//! configurations behind an `ArcSwap` and a watcher replaces both when the files change.
//! Each new connection takes the configuration current at its handshake; established
//! connections keep theirs, so a rotation never drops a call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ring::digest;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::identity::PeerIdentity;
use crate::shutdown::Shutdown;

/// Paths of the PEM files of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate authorities trusted for peers.
    pub ca: PathBuf,
    /// This workload's certificate chain, leaf first.
    pub cert: PathBuf,
    /// This workload's private key.
    pub key: PathBuf,
}

impl From<&crate::config::TlsSection> for TlsFiles {
    fn from(tls: &crate::config::TlsSection) -> Self {
        Self {
            ca: tls.ca_file.clone(),
            cert: tls.cert_file.clone(),
            key: tls.key_file.clone(),
        }
    }
}

/// A TLS set-up problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM object.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(String),
    /// This workload's own certificate does not name one identity in the trust domain.
    #[error("own certificate: {0}")]
    OwnIdentity(String),
}

/// The current server and client configurations of a workload, reloaded from its files.
#[derive(Debug, Clone)]
pub struct MeshTls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    files: TlsFiles,
    trust_domain: String,
    server: ArcSwap<ServerConfig>,
    client: ArcSwap<ClientConfig>,
    identity: ArcSwap<PeerIdentity>,
    fingerprint: ArcSwap<Vec<u8>>,
}

impl MeshTls {
    /// Loads the files and builds both configurations. Peers must present a certificate from
    /// the CA bundle naming exactly one SPIFFE ID in `trust_domain`.
    pub fn load(files: TlsFiles, trust_domain: &str) -> Result<Self, TlsError> {
        let material = Material::read(&files)?;
        let built = Built::new(&material, trust_domain)?;
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                trust_domain: trust_domain.to_owned(),
                server: ArcSwap::from_pointee(built.server),
                client: ArcSwap::from_pointee(built.client),
                identity: ArcSwap::from_pointee(built.identity),
                fingerprint: ArcSwap::from_pointee(material.fingerprint),
            }),
        })
    }

    /// The server configuration for the next handshake.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server.load_full()
    }

    /// The client configuration for the next connection.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.inner.client.load_full()
    }

    /// This workload's own identity, from its certificate.
    pub fn identity(&self) -> Arc<PeerIdentity> {
        self.inner.identity.load_full()
    }

    /// Re-reads the files; when they changed and are valid, the new material serves every
    /// following handshake. Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let material = Material::read(&self.inner.files)?;
        if **self.inner.fingerprint.load() == material.fingerprint {
            return Ok(false);
        }
        let built = Built::new(&material, &self.inner.trust_domain)?;
        self.inner.server.store(Arc::new(built.server));
        self.inner.client.store(Arc::new(built.client));
        self.inner.identity.store(Arc::new(built.identity));
        self.inner.fingerprint.store(Arc::new(material.fingerprint));
        Ok(true)
    }

    /// Checks the files every `interval` until shutdown. A broken or half-written set of files
    /// is logged and the current material kept, so a failed rotation never takes a service
    /// down.
    pub fn spawn_reloader(&self, interval: Duration, shutdown: Shutdown) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.requested() => return,
                }
                match tls.reload() {
                    Ok(true) => {
                        tracing::info!(identity = %tls.identity(), "reloaded TLS certificates")
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "TLS files changed but cannot be used; keeping the current certificates")
                    }
                }
            }
        });
    }
}

/// The bytes of the three files and a digest of them.
struct Material {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    fingerprint: Vec<u8>,
}

impl Material {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca_pem = read(&files.ca)?;
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [&ca_pem, &cert_pem, &key_pem] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        Ok(Self {
            ca: certs(&files.ca, &ca_pem)?,
            chain: certs(&files.cert, &cert_pem)?,
            key: PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::File {
                path: files.key.clone(),
                message: format!("no private key: {e}"),
            })?,
            fingerprint: ctx.finish().as_ref().to_vec(),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.to_owned(),
            message: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.to_owned(),
            message: "no certificate".to_owned(),
        });
    }
    Ok(certs)
}

struct Built {
    server: ServerConfig,
    client: ClientConfig,
    identity: PeerIdentity,
}

impl Built {
    fn new(material: &Material, trust_domain: &str) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());

        let leaf = material
            .chain
            .first()
            .ok_or_else(|| TlsError::OwnIdentity("empty chain".to_owned()))?;
        let identity = PeerIdentity::from_certificate(leaf)
            .map_err(|e| TlsError::OwnIdentity(e.to_string()))?;
        if identity.trust_domain() != trust_domain {
            return Err(TlsError::OwnIdentity(format!(
                "{identity} is not in trust domain {trust_domain}"
            )));
        }

        let mut roots = RootCertStore::empty();
        for ca in &material.ca {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::Rustls(format!("CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);

        let webpki_clients =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let client_verifier = Arc::new(SpiffeClientVerifier {
            inner: webpki_clients,
            trust_domain: trust_domain.to_owned(),
        });
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(material.chain.clone(), material.key.clone_key())
            .map_err(rustls_err)?;
        server.alpn_protocols = vec![b"h2".to_vec()];

        let webpki_servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                inner: webpki_servers,
                trust_domain: trust_domain.to_owned(),
            }))
            .with_client_auth_cert(material.chain.clone(), material.key.clone_key())
            .map_err(rustls_err)?;
        client.alpn_protocols = vec![b"h2".to_vec()];

        Ok(Self {
            server,
            client,
            identity,
        })
    }
}

/// Checks the chain with webpki, then that the certificate names exactly one SPIFFE ID of the
/// trust domain: a certificate with none or several is refused during the handshake.
fn check_spiffe(cert: &CertificateDer<'_>, trust_domain: &str) -> Result<(), rustls::Error> {
    let identity = PeerIdentity::from_certificate(cert).map_err(|e| {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(e),
        )))
    })?;
    if identity.trust_domain() != trust_domain {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ));
    }
    Ok(())
}

#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_spiffe(end_entity, &self.trust_domain)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client side: the server's chain and DNS name by webpki, then its SPIFFE ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    trust_domain: String,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_spiffe(end_entity, &self.trust_domain)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The crypto provider of the whole mesh (ring), for code that needs one explicitly.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
