//! `extensions.transport_sockets.tls.v3`: both ends of the edge's TLS.

use serde::Serialize;

use super::{DataSource, TypeUrl};

/// The transport socket name of both TLS contexts.
pub(crate) const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// `DownstreamTlsContext`: what organisation systems connect to.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DownstreamTlsContext {
    pub(crate) common_tls_context: CommonTlsContext,
    pub(crate) require_client_certificate: bool,
}

impl TypeUrl for DownstreamTlsContext {
    const TYPE_URL: &'static str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
}

/// `UpstreamTlsContext`: how the edge connects to a service.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpstreamTlsContext {
    pub(crate) common_tls_context: CommonTlsContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sni: Option<String>,
}

impl TypeUrl for UpstreamTlsContext {
    const TYPE_URL: &'static str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
}

/// `CommonTlsContext`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CommonTlsContext {
    pub(crate) tls_params: TlsParameters,
    pub(crate) alpn_protocols: Vec<&'static str>,
    pub(crate) tls_certificates: Vec<TlsCertificate>,
    pub(crate) validation_context: CertificateValidationContext,
}

/// `TlsParameters`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TlsParameters {
    pub(crate) tls_minimum_protocol_version: TlsVersion,
}

/// `TlsParameters.TlsProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum TlsVersion {
    #[serde(rename = "TLSv1_2")]
    Tls12,
}

/// `TlsCertificate`, from files.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TlsCertificate {
    pub(crate) certificate_chain: DataSource,
    pub(crate) private_key: DataSource,
}

/// `CertificateValidationContext`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertificateValidationContext {
    pub(crate) trusted_ca: DataSource,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) match_typed_subject_alt_names: Vec<SubjectAltNameMatcher>,
}

/// `SubjectAltNameMatcher`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubjectAltNameMatcher {
    pub(crate) san_type: SanType,
    pub(crate) matcher: StringMatcher,
}

/// `SubjectAltNameMatcher.SanType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum SanType {
    Uri,
}

/// `type.matcher.v3.StringMatcher` (no patterns: identities are compared as strings). A
/// struct, not an enum: YAML serialisers write enum variants as tags, which Envoy refuses.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StringMatcher {
    #[serde(skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

impl StringMatcher {
    /// One identity.
    pub(crate) fn exact(value: String) -> Self {
        Self {
            exact: Some(value),
            prefix: None,
        }
    }

    /// A class of identities (`spiffe://<td>/org/`).
    pub(crate) fn prefix(value: String) -> Self {
        Self {
            exact: None,
            prefix: Some(value),
        }
    }
}
