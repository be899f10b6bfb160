//! Peer identities: the one SPIFFE URI SAN of a certificate.
//!
//! Two shapes exist in a trust domain:
//! - workloads of the mesh: `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`;
//! - organisation systems (an EHR, a social-care system):
//!   `spiffe://<trust-domain>/org/<ODS code>/system/<name>`.

use std::fmt;
use std::str::FromStr;

use cpis_domain::OdsCode;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Who is at the other end of a TLS connection, from its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A workload of the mesh (a service or the edge).
    Workload(WorkloadId),
    /// An organisation's system.
    OrgSystem(OrgSystemId),
}

/// `spiffe://<trust-domain>/ns/<namespace>/sa/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadId {
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The service account, which is the service's name (`flag-registry`, `edge`).
    pub name: String,
}

/// `spiffe://<trust-domain>/org/<ODS code>/system/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrgSystemId {
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The organisation the system belongs to.
    pub organisation: OdsCode,
    /// The system's name within its organisation.
    pub system: String,
}

/// Why a certificate or URI does not name a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate could not be parsed.
    #[error("certificate is not valid DER X.509")]
    BadCertificate,
    /// The certificate carries no URI SAN.
    #[error("certificate has no URI subject alternative name")]
    NoUriSan,
    /// The certificate carries several URI SANs, so its identity is ambiguous.
    #[error("certificate has {0} URI subject alternative names; exactly one is allowed")]
    SeveralUriSans(usize),
    /// The URI is not one of the two SPIFFE shapes of the mesh.
    #[error("`{0}` is not a CP-IS SPIFFE ID")]
    NotSpiffe(String),
}

impl PeerIdentity {
    /// The SPIFFE trust domain of the identity.
    pub fn trust_domain(&self) -> &str {
        match self {
            Self::Workload(w) => &w.trust_domain,
            Self::OrgSystem(o) => &o.trust_domain,
        }
    }

    /// Reads the identity from a DER certificate: its one and only URI SAN.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| IdentityError::BadCertificate)?;
        let mut uris = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    uris.push(*uri);
                }
            }
        }
        match uris.as_slice() {
            [] => Err(IdentityError::NoUriSan),
            [one] => one.parse(),
            several => Err(IdentityError::SeveralUriSans(several.len())),
        }
    }
}

impl WorkloadId {
    /// A workload identity; labels are not checked here (see [`validate_label`]).
    pub fn new(trust_domain: &str, namespace: &str, name: &str) -> Self {
        Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl FromStr for PeerIdentity {
    type Err = IdentityError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::NotSpiffe(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let trust_domain = parts.next().ok_or_else(bad)?;
        validate_label(trust_domain).map_err(|_| bad())?;
        let segments: Vec<&str> = parts.collect();
        match segments.as_slice() {
            ["ns", namespace, "sa", name] => {
                validate_label(namespace).map_err(|_| bad())?;
                validate_label(name).map_err(|_| bad())?;
                Ok(Self::Workload(WorkloadId::new(
                    trust_domain,
                    namespace,
                    name,
                )))
            }
            ["org", ods, "system", system] => {
                validate_label(system).map_err(|_| bad())?;
                let organisation = ods.parse::<OdsCode>().map_err(|_| bad())?;
                // The canonical form is upper case; refuse other spellings so that one
                // organisation system has exactly one identity string.
                if organisation.as_str() != *ods {
                    return Err(bad());
                }
                Ok(Self::OrgSystem(OrgSystemId {
                    trust_domain: trust_domain.to_owned(),
                    organisation,
                    system: (*system).to_owned(),
                }))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Workload(w) => w.fmt(f),
            Self::OrgSystem(o) => o.fmt(f),
        }
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.name
        )
    }
}

impl fmt::Display for OrgSystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/org/{}/system/{}",
            self.trust_domain,
            self.organisation.as_str(),
            self.system
        )
    }
}

/// Checks a trust domain, namespace or workload/system name: 1 to 63 characters of lower-case
/// letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub fn validate_label(label: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if label.is_empty() || label.len() > 63 {
        return Err(format!("`{label}` must be 1 to 63 characters"));
    }
    if !label.chars().all(ok_char)
        || !edge_ok(label.chars().next())
        || !edge_ok(label.chars().last())
    {
        return Err(format!(
            "`{label}` may hold only lower-case letters, digits, `-` and `.`, and must start and end with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_a_workload() {
        let uri = "spiffe://cpis.local/ns/cpis/sa/flag-registry";
        let id: PeerIdentity = uri.parse().unwrap();
        assert_eq!(
            id,
            PeerIdentity::Workload(WorkloadId::new("cpis.local", "cpis", "flag-registry"))
        );
        assert_eq!(id.to_string(), uri);
    }

    #[test]
    fn parses_and_prints_an_organisation_system() {
        let uri = "spiffe://cpis.local/org/RJ1/system/ed-ehr";
        let id: PeerIdentity = uri.parse().unwrap();
        let PeerIdentity::OrgSystem(org) = &id else {
            panic!("not an org system: {id:?}")
        };
        assert_eq!(org.organisation.as_str(), "RJ1");
        assert_eq!(id.to_string(), uri);
    }

    #[test]
    fn refuses_other_shapes() {
        for uri in [
            "https://cpis.local/ns/cpis/sa/x",
            "spiffe://cpis.local/ns/cpis/sa",
            "spiffe://cpis.local/ns/cpis/sa/x/y",
            "spiffe://cpis.local/org/rj1/system/ehr",
            "spiffe://CPIS/ns/cpis/sa/x",
            "spiffe:///ns/cpis/sa/x",
            "spiffe://cpis.local/ns/cpis/sa/-x",
        ] {
            assert!(uri.parse::<PeerIdentity>().is_err(), "{uri}");
        }
    }
}
