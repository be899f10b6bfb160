//! A development PKI: a CA and leaf certificates carrying the SPIFFE IDs of the mesh, for tests
//! and `cpis dev`. Never for production, where cert-manager or an operator's PKI issues them.
//!
//! Server certificates also carry DNS SANs (the service's DNS names and `localhost`) and the
//! loopback address, so that ordinary gRPC clients in any language verify them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::tls::TlsFiles;

/// A development PKI problem.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A PEM certificate and its private key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
}

/// What a leaf certificate says.
#[derive(Debug, Clone, Default)]
pub struct LeafSpec {
    /// Common name (informational).
    pub common_name: String,
    /// URI SANs; the mesh requires exactly one.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Usable by a server.
    pub server: bool,
    /// Usable by a client.
    pub client: bool,
}

/// A development certificate authority.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// The CA's subject and constraints, the same for a new CA and a reloaded one.
fn ca_params(trust_domain: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "CP-IS mesh development");
    dn.push(DnType::CommonName, format!("CP-IS dev CA ({trust_domain})"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl DevCa {
    /// A new CA for `trust_domain`, valid for ten years.
    pub fn new(trust_domain: &str) -> Result<Self, PkiError> {
        let mut params = ca_params(trust_domain);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The CA of `trust_domain` whose certificate and private key [`DevCa::new`] made and
    /// [`DevCa::cert_pem`] and [`DevCa::key_pem`] saved: it issues certificates that chain
    /// to the saved certificate (same subject, same key identifier).
    pub fn from_pem(trust_domain: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer: Issuer::new(ca_params(trust_domain), key),
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The CA's private key (PEM): keep it secret; with it anyone can join the mesh.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate (PEM), the trust bundle of every peer.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The trust domain the CA issues for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Issues a leaf certificate, valid for a year.
    pub fn issue(&self, spec: &LeafSpec) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.clone());
        params.distinguished_name = dn;
        for uri in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into()?));
        }
        for dns in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into()?));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A workload's certificate: `spiffe://<td>/ns/<namespace>/sa/<name>`, for server and
    /// client use, with its cluster DNS names (also as the chart's `cpis-<name>` Service),
    /// `localhost` and the loopback addresses.
    pub fn workload(&self, namespace: &str, name: &str) -> Result<IssuedCert, PkiError> {
        self.issue(&LeafSpec {
            common_name: name.to_owned(),
            uris: vec![format!(
                "spiffe://{}/ns/{namespace}/sa/{name}",
                self.trust_domain
            )],
            // The workload's own name and the chart's Service name (`cpis-<name>`), each
            // as the cluster's DNS spells it.
            dns_names: [name.to_owned(), format!("cpis-{name}")]
                .into_iter()
                .flat_map(|host| {
                    [
                        format!("{host}.{namespace}"),
                        format!("{host}.{namespace}.svc"),
                        format!("{host}.{namespace}.svc.cluster.local"),
                        host,
                    ]
                })
                .chain(["localhost".to_owned()])
                .collect(),
            ips: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            server: true,
            client: true,
        })
    }

    /// An organisation system's client certificate:
    /// `spiffe://<td>/org/<ods>/system/<system>`.
    pub fn org_system(&self, ods: &str, system: &str) -> Result<IssuedCert, PkiError> {
        self.issue(&LeafSpec {
            common_name: format!("{system}.{ods}"),
            uris: vec![format!(
                "spiffe://{}/org/{ods}/system/{system}",
                self.trust_domain
            )],
            client: true,
            ..LeafSpec::default()
        })
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (the layout of a Kubernetes TLS secret) into
    /// `dir`, creating it; the key file is readable by its owner only.
    pub fn write_bundle(&self, dir: &Path, leaf: &IssuedCert) -> Result<TlsFiles, PkiError> {
        let files = TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_owned(),
            source,
        })?;
        write(&files.ca, self.cert_pem.as_bytes())?;
        write(&files.cert, leaf.cert_pem.as_bytes())?;
        write_private(&files.key, leaf.key_pem.as_bytes())?;
        Ok(files)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    // Write then rename, so a reloading reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| PkiError::Write {
            path: path.to_owned(),
            source,
        })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| PkiError::Write {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tls::MeshTls;

    #[tokio::test]
    async fn a_reloaded_ca_issues_certificates_that_chain_to_the_saved_one() {
        let dir = tempfile::tempdir().unwrap();
        let original = DevCa::new("cpis.local").unwrap();
        let server = original
            .write_bundle(
                &dir.path().join("audit"),
                &original.workload("cpis", "audit").unwrap(),
            )
            .unwrap();
        let reloaded =
            DevCa::from_pem("cpis.local", original.cert_pem(), original.key_pem()).unwrap();
        let client = reloaded
            .write_bundle(
                &dir.path().join("org"),
                &reloaded.org_system("RJ1", "ehr").unwrap(),
            )
            .unwrap();
        let server = MeshTls::load(server, "cpis.local").unwrap();
        let client = MeshTls::load(client, "cpis.local").unwrap();

        // A real mutual-TLS handshake over an in-memory pipe: each side verifies the other's
        // chain against the saved CA certificate.
        let (near, far) = tokio::io::duplex(16 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config());
        let served = tokio::spawn(async move {
            let mut tls = acceptor.accept(far).await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            tls.write_all(&byte).await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&client.client_config()));
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), near)
            .await
            .unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut echo = [0u8; 1];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"x");
        served.await.unwrap().unwrap();
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused() {
        let ca = DevCa::new("cpis.local").unwrap();
        assert!(DevCa::from_pem("cpis.local", ca.cert_pem(), "not a key").is_err());
    }
}
