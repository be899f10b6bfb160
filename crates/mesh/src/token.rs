//! Users' session tokens: EdDSA (Ed25519) signed JWTs, verified locally against public keys
//! looked up by key id from a [`KeySource`] (the identity service in the mesh), cached, and
//! refreshed when an unknown key id arrives.
//!
//! Only `alg: EdDSA` is accepted: a token naming any other algorithm (`none`, `HS256`, ...)
//! is refused before its signature is looked at.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cpis_domain::OdsCode;
use futures_util::future::BoxFuture;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::error::ApiError;

/// What a role profile lets a user do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// Check a child at an unscheduled care setting (notifies the authority).
    ChildCheck,
    /// View a child silently from scheduled care.
    ChildView,
    /// Manage an authority's own flags and uploads.
    FlagManage,
    /// Read an authority's own notification inbox.
    NotificationRead,
    /// Query the audit log (privacy officers).
    AuditRead,
    /// Administer the directory.
    DirectoryAdmin,
}

impl Activity {
    /// Every activity.
    pub const ALL: [Activity; 6] = [
        Self::ChildCheck,
        Self::ChildView,
        Self::FlagManage,
        Self::NotificationRead,
        Self::AuditRead,
        Self::DirectoryAdmin,
    ];

    /// The activity's code in tokens and the directory (`child.check`).
    pub fn code(self) -> &'static str {
        match self {
            Self::ChildCheck => "child.check",
            Self::ChildView => "child.view",
            Self::FlagManage => "flag.manage",
            Self::NotificationRead => "notification.read",
            Self::AuditRead => "audit.read",
            Self::DirectoryAdmin => "directory.admin",
        }
    }

    /// The activity with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }
}

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// ODS code of the organisation the user acts for.
    pub org: String,
    /// The role profile chosen at sign-in.
    pub rp: String,
    /// The role of that profile (`clinician`, `social-worker`, ...).
    pub role: String,
    /// Activity codes the role grants.
    pub act: Vec<String>,
}

/// The claims of a session token with the kind of organisation the user acts for: the
/// registered [`Claims`] and, beside them, `ok`. A separate type so that [`Claims`] keeps its
/// fields (and every literal of it compiles); a token without `ok` (issued before the claim
/// existed) still verifies, and its user is of [`OrganisationKind::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The registered claims.
    #[serde(flatten)]
    pub claims: Claims,
    /// The kind of the organisation (`health`, `local_authority`), from identity's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<String>,
}

/// The kind of organisation a user acts for, from the token's `ok` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OrganisationKind {
    /// A health organisation (a trust, a GP practice): runs care settings.
    Health,
    /// A local authority (children's social care): holds flags.
    LocalAuthority,
    /// Not said (a token issued before `ok` existed) or a kind this verifier does not know:
    /// services give it the least they give any kind.
    #[default]
    Unknown,
}

impl OrganisationKind {
    /// The claim's value (`health`, `local_authority`); none for [`Unknown`](Self::Unknown).
    pub fn code(self) -> Option<&'static str> {
        match self {
            Self::Health => Some("health"),
            Self::LocalAuthority => Some("local_authority"),
            Self::Unknown => None,
        }
    }

    /// The kind a claim names; [`Unknown`](Self::Unknown) when absent or not known here.
    pub fn from_claim(value: Option<&str>) -> Self {
        match value {
            Some("health") => Self::Health,
            Some("local_authority") => Self::LocalAuthority,
            _ => Self::Unknown,
        }
    }
}

/// A verified user: who, for which organisation, allowed what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: String,
    /// The organisation the user acts for in this session.
    pub organisation: OdsCode,
    /// The kind of that organisation (claim `ok`).
    pub organisation_kind: OrganisationKind,
    /// The role profile chosen at sign-in.
    pub role_profile: String,
    /// The role of that profile.
    pub role: String,
    /// What the role grants.
    pub activities: BTreeSet<Activity>,
    /// The token's id, for audit.
    pub token_id: String,
    /// When the token expires (seconds since the epoch).
    pub expires_at: i64,
}

impl Principal {
    /// Whether the role grants `activity`.
    pub fn may(&self, activity: Activity) -> bool {
        self.activities.contains(&activity)
    }

    /// PERMISSION_DENIED unless the role grants `activity`.
    pub fn require(&self, activity: Activity) -> Result<(), ApiError> {
        if self.may(activity) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "the role profile does not grant {}",
                activity.code()
            )))
        }
    }

    /// PERMISSION_DENIED unless the user acts for `organisation`.
    pub fn require_organisation(&self, organisation: &OdsCode) -> Result<(), ApiError> {
        if &self.organisation == organisation {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(
                "the user does not act for this organisation".to_owned(),
            ))
        }
    }
}

/// Why a token was refused. Every variant maps to UNAUTHENTICATED but [`KeySourceDown`],
/// which maps to UNAVAILABLE.
///
/// [`KeySourceDown`]: TokenError::KeySourceDown
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `authorization: Bearer` metadata.
    #[error("no session token: send `authorization: Bearer <token>`")]
    Missing,
    /// Not three base64url parts with JSON header and claims.
    #[error("session token is malformed")]
    Malformed,
    /// An algorithm other than EdDSA.
    #[error("session token algorithm must be EdDSA")]
    Algorithm,
    /// No key with this id can verify tokens.
    #[error("session token key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("session token signature is invalid")]
    Signature,
    /// Past its expiry.
    #[error("session token has expired")]
    Expired,
    /// Not valid yet, or issued in the future.
    #[error("session token is not valid yet")]
    NotYetValid,
    /// Another issuer or audience.
    #[error("session token is not for this service")]
    WrongAudience,
    /// The keys could not be fetched.
    #[error("session token keys are unavailable: {0}")]
    KeySourceDown(String),
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::KeySourceDown(_) => ApiError::Unavailable(error.to_string()),
            other => ApiError::Unauthenticated(other.to_string()),
        }
    }
}

/// A public key that verifies tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey {
    /// The key id (`kid` in token headers).
    pub key_id: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
}

/// Where verification keys come from.
pub trait KeySource: Send + Sync + 'static {
    /// Every key that may verify an unexpired token.
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<VerificationKey>, String>>;
}

/// A fixed set of keys (tests, and a process that signs its own tokens).
#[derive(Debug, Clone, Default)]
pub struct StaticKeys(pub Vec<VerificationKey>);

impl KeySource for StaticKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<VerificationKey>, String>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// The identity service's `GetSigningKeys`, the key source of every verifier in the mesh.
#[derive(Debug, Clone)]
pub struct IdentityKeys {
    channel: crate::client::MeshChannel,
}

impl IdentityKeys {
    /// Keys from the identity service behind `channel`.
    pub fn new(channel: crate::client::MeshChannel) -> Self {
        Self { channel }
    }
}

impl KeySource for IdentityKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<VerificationKey>, String>> {
        use cpis_proto::identity::GetSigningKeysRequest;
        use cpis_proto::identity::identity_service_client::IdentityServiceClient;
        Box::pin(async move {
            let client = IdentityServiceClient::new(self.channel.clone());
            // Idempotent: a lost answer is simply asked for again.
            let answer = crate::client::retry_idempotent(Default::default(), || {
                let mut client = client.clone();
                async move { client.get_signing_keys(GetSigningKeysRequest {}).await }
            })
            .await
            .map_err(|status| format!("identity GetSigningKeys: {}", status.message()))?;
            Ok(answer
                .into_inner()
                .keys
                .into_iter()
                .filter(|k| {
                    k.algorithm.is_empty() || k.algorithm == "EdDSA" || k.algorithm == "Ed25519"
                })
                .map(|k| VerificationKey {
                    key_id: k.key_id,
                    public_key: k.public_key,
                })
                .collect())
        })
    }
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// The issuer.
    pub issuer: String,
    /// The audience.
    pub audience: String,
    /// Clock skew tolerated.
    pub leeway: Duration,
    /// Least time between two refreshes caused by unknown key ids, so a flood of forged key
    /// ids cannot turn into a flood of calls to the key source.
    pub min_refresh_interval: Duration,
}

impl From<&crate::config::TokenSection> for TokenRules {
    fn from(section: &crate::config::TokenSection) -> Self {
        Self {
            issuer: section.issuer.clone(),
            audience: section.audience.clone(),
            leeway: section.leeway.get(),
            min_refresh_interval: Duration::from_secs(5),
        }
    }
}

/// Verifies tokens with cached keys.
#[derive(Clone)]
pub struct TokenVerifier {
    source: Arc<dyn KeySource>,
    rules: Arc<TokenRules>,
    keys: Arc<RwLock<HashMap<String, Vec<u8>>>>,
    last_refresh: Arc<Mutex<Option<Instant>>>,
    verified: Arc<std::sync::Mutex<HashMap<[u8; 32], Arc<Verified>>>>,
}

/// A token verified before (known by its SHA-256): the key id and key that verified it, and
/// what it says, decoded once.
struct Verified {
    kid: String,
    key: Vec<u8>,
    claims: Claims,
    principal: Principal,
}

/// How many verified tokens a verifier remembers (then it starts again from none).
const VERIFIED_TOKENS: usize = 10_000;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

impl TokenVerifier {
    /// A verifier using `source` for keys.
    pub fn new(source: Arc<dyn KeySource>, rules: TokenRules) -> Self {
        Self {
            source,
            rules: Arc::new(rules),
            keys: Arc::default(),
            last_refresh: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// The token from `authorization: Bearer <token>` metadata, verified.
    pub async fn verify_metadata(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Principal, TokenError> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(TokenError::Missing)?;
        self.verify(token.trim()).await
    }

    /// Verifies a compact JWS and returns its principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        // A check presents the same token to attendance and then (forwarded) to the flag
        // registry, and a clinician's system presents it for every check of a session: a
        // token seen before is neither decoded nor its signature verified again, as long as
        // its key id still names the key that verified it (a rotated-out key's tokens are
        // verified again, and fail). The claims (expiry above all) are checked every time.
        let seen = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let seen: [u8; 32] = seen
            .as_ref()
            .try_into()
            .map_err(|_| TokenError::Malformed)?;
        if let Some(known) = self.known(&seen)
            && self.key(&known.kid).await? == known.key
        {
            self.check_claims(&known.claims)?;
            return Ok(known.principal.clone());
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(header)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let key = self.key(&kid).await?;
        let signing_input = &token[..header_len(token)];
        UnparsedPublicKey::new(&ED25519, &key)
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        let session: SessionClaims = decode_json(claims)?;
        self.check_claims(&session.claims)?;
        let claims = session.claims.clone();
        let principal = principal(session)?;
        self.remember(
            seen,
            Verified {
                kid,
                key,
                claims,
                principal: principal.clone(),
            },
        );
        Ok(principal)
    }

    /// The token with digest `seen`, if verified before.
    fn known(&self, seen: &[u8; 32]) -> Option<Arc<Verified>> {
        self.verified
            .lock()
            .ok()
            .and_then(|verified| verified.get(seen).cloned())
    }

    fn remember(&self, seen: [u8; 32], verified: Verified) {
        if let Ok(mut known) = self.verified.lock() {
            if known.len() >= VERIFIED_TOKENS {
                known.clear();
            }
            known.insert(seen, Arc::new(verified));
        }
    }

    fn check_claims(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let leeway = i64::try_from(self.rules.leeway.as_secs()).unwrap_or(i64::MAX);
        if claims.iss != self.rules.issuer || claims.aud != self.rules.audience {
            return Err(TokenError::WrongAudience);
        }
        if claims.exp <= now.saturating_sub(leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) || claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Vec<u8>, TokenError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        {
            let mut last = self.last_refresh.lock().await;
            let recently = last.is_some_and(|t| t.elapsed() < self.rules.min_refresh_interval);
            // Another task may have refreshed while this one waited for the lock.
            if let Some(key) = self.keys.read().await.get(kid) {
                return Ok(key.clone());
            }
            if recently {
                return Err(TokenError::UnknownKey);
            }
            let fetched = self
                .source
                .fetch()
                .await
                .map_err(TokenError::KeySourceDown)?;
            *last = Some(Instant::now());
            let mut keys = self.keys.write().await;
            keys.clear();
            keys.extend(fetched.into_iter().map(|k| (k.key_id, k.public_key)));
        }
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or(TokenError::UnknownKey)
    }
}

fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

fn principal(session: SessionClaims) -> Result<Principal, TokenError> {
    let organisation_kind = OrganisationKind::from_claim(session.ok.as_deref());
    let claims = session.claims;
    let organisation = claims
        .org
        .parse::<OdsCode>()
        .map_err(|_| TokenError::Malformed)?;
    Ok(Principal {
        user_id: claims.sub,
        organisation,
        organisation_kind,
        role_profile: claims.rp,
        role: claims.role,
        // Unknown codes are ignored: a newer identity service may grant activities this
        // verifier does not know, which it therefore never checks.
        activities: claims
            .act
            .iter()
            .filter_map(|c| Activity::from_code(c))
            .collect(),
        token_id: claims.jti,
        expires_at: claims.exp,
    })
}

/// Signs tokens with one Ed25519 key (the identity service, and tests).
pub struct TokenSigner {
    key_id: String,
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A signing key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Ed25519 key: {0}")]
pub struct SigningKeyError(String);

impl TokenSigner {
    /// A new random key; returns the signer and the key's PKCS#8 document for storage.
    pub fn generate(key_id: &str) -> Result<(Self, Vec<u8>), SigningKeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| SigningKeyError(e.to_string()))?;
        let signer = Self::from_pkcs8(key_id, pkcs8.as_ref())?;
        Ok((signer, pkcs8.as_ref().to_vec()))
    }

    /// A signer from a stored PKCS#8 document.
    pub fn from_pkcs8(key_id: &str, pkcs8: &[u8]) -> Result<Self, SigningKeyError> {
        let key_pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| SigningKeyError(e.to_string()))?;
        Ok(Self {
            key_id: key_id.to_owned(),
            key_pair,
        })
    }

    /// The public half, for a key source.
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            key_id: self.key_id.clone(),
            public_key: self.key_pair.public_key().as_ref().to_vec(),
        }
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_payload(claims)
    }

    /// A compact JWS of `claims` with the organisation's kind (what identity issues).
    pub fn sign_session(&self, claims: &SessionClaims) -> String {
        self.sign_payload(claims)
    }

    fn sign_payload<C: Serialize>(&self, claims: &C) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.key_id});
        // Serialising these plain structures cannot fail.
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let signature = self.key_pair.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> TokenRules {
        TokenRules {
            issuer: "cpis-identity".into(),
            audience: "cpis".into(),
            leeway: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(5),
        }
    }

    fn claims(exp_in: i64) -> Claims {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: "cpis-identity".into(),
            sub: "user-1".into(),
            aud: "cpis".into(),
            iat: now,
            nbf: now,
            exp: now + exp_in,
            jti: "t-1".into(),
            org: "RJ1".into(),
            rp: "rp-1".into(),
            role: "clinician".into(),
            act: vec!["child.check".into(), "some.future.activity".into()],
        }
    }

    fn verifier(signer: &TokenSigner) -> TokenVerifier {
        TokenVerifier::new(
            Arc::new(StaticKeys(vec![signer.verification_key()])),
            rules(),
        )
    }

    #[tokio::test]
    async fn a_signed_token_verifies() {
        let (signer, _) = TokenSigner::generate("k1").unwrap();
        let principal = verifier(&signer)
            .verify(&signer.sign(&claims(900)))
            .await
            .unwrap();
        assert_eq!(principal.organisation.as_str(), "RJ1");
        assert!(principal.may(Activity::ChildCheck));
        assert!(principal.require(Activity::AuditRead).is_err());
    }

    #[tokio::test]
    async fn expired_tampered_and_foreign_tokens_are_refused() {
        let (signer, _) = TokenSigner::generate("k1").unwrap();
        let (stranger, _) = TokenSigner::generate("k1").unwrap();
        let v = verifier(&signer);
        assert_eq!(
            v.verify(&signer.sign(&claims(-60))).await,
            Err(TokenError::Expired)
        );
        assert_eq!(
            v.verify(&stranger.sign(&claims(900))).await,
            Err(TokenError::Signature)
        );
        let token = signer.sign(&claims(900));
        let mut forged = claims(900);
        forged.org = "XYZ".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(v.verify(&tampered).await, Err(TokenError::Signature));
        let mut other_aud = claims(900);
        other_aud.aud = "elsewhere".into();
        assert_eq!(
            v.verify(&signer.sign(&other_aud)).await,
            Err(TokenError::WrongAudience)
        );
    }

    /// Keys that a test can swap.
    struct SwappableKeys(std::sync::Mutex<Vec<VerificationKey>>);

    impl KeySource for SwappableKeys {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<VerificationKey>, String>> {
            let keys = self.0.lock().unwrap().clone();
            Box::pin(async move { Ok(keys) })
        }
    }

    #[tokio::test]
    async fn a_token_seen_before_is_still_checked_for_expiry_and_against_the_current_key() {
        let (signer, _) = TokenSigner::generate("k1").unwrap();
        let keys = Arc::new(SwappableKeys(std::sync::Mutex::new(vec![
            signer.verification_key(),
        ])));
        let v = TokenVerifier::new(
            keys.clone(),
            TokenRules {
                leeway: Duration::ZERO,
                min_refresh_interval: Duration::ZERO,
                ..rules()
            },
        );
        let lasting = signer.sign(&claims(900));
        let brief = signer.sign(&claims(1));
        let first = v.verify(&lasting).await.unwrap();
        for _ in 0..3 {
            // From memory: the same principal as decoded the first time.
            assert_eq!(v.verify(&lasting).await.unwrap(), first);
            v.verify(&brief).await.unwrap();
        }
        // Expiry is checked every time, whether the signature was seen or not.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(v.verify(&brief).await, Err(TokenError::Expired));
        // A token that differs from a seen one in any byte is verified afresh.
        let mut tampered = lasting.clone();
        tampered.pop();
        tampered.push(if lasting.ends_with('A') { 'B' } else { 'A' });
        assert!(v.verify(&tampered).await.is_err());
        // Should `k1` come to mean another key, the seen token is verified again, and fails.
        let (impostor, _) = TokenSigner::generate("k1").unwrap();
        *keys.0.lock().unwrap() = vec![impostor.verification_key()];
        let (unknown, _) = TokenSigner::generate("k9").unwrap();
        assert_eq!(
            v.verify(&unknown.sign(&claims(900))).await,
            Err(TokenError::UnknownKey),
            "the refresh that picks up the new key"
        );
        assert_eq!(v.verify(&lasting).await, Err(TokenError::Signature));
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(900)).unwrap());
        let (signer, _) = TokenSigner::generate("k1").unwrap();
        assert_eq!(
            verifier(&signer)
                .verify(&format!("{header}.{payload}."))
                .await,
            Err(TokenError::Algorithm)
        );
    }

    #[tokio::test]
    async fn the_organisation_kind_is_read_and_its_absence_is_unknown() {
        let (signer, _) = TokenSigner::generate("k1").unwrap();
        let v = verifier(&signer);
        let old = v.verify(&signer.sign(&claims(900))).await.unwrap();
        assert_eq!(old.organisation_kind, OrganisationKind::Unknown);
        for (ok, kind) in [
            (Some("local_authority"), OrganisationKind::LocalAuthority),
            (Some("health"), OrganisationKind::Health),
            (Some("something_new"), OrganisationKind::Unknown),
            (None, OrganisationKind::Unknown),
        ] {
            let token = signer.sign_session(&SessionClaims {
                claims: claims(900),
                ok: ok.map(str::to_owned),
            });
            let principal = v.verify(&token).await.unwrap();
            assert_eq!(principal.organisation_kind, kind, "{ok:?}");
            assert_eq!(principal.organisation.as_str(), "RJ1");
        }
        // An old verifier's view: the claim is simply one more field it ignores.
        let token = signer.sign_session(&SessionClaims {
            claims: claims(900),
            ok: Some("health".into()),
        });
        let payload = token.split('.').nth(1).unwrap();
        let plain: Claims = decode_json(payload).unwrap();
        assert_eq!(plain.org, "RJ1");
        let json: serde_json::Value = decode_json(payload).unwrap();
        assert_eq!(json["ok"], "health");
    }

    #[tokio::test]
    async fn an_unknown_key_id_is_refused_after_one_refresh() {
        let (signer, _) = TokenSigner::generate("k1").unwrap();
        let (other, _) = TokenSigner::generate("k2").unwrap();
        assert_eq!(
            verifier(&signer).verify(&other.sign(&claims(900))).await,
            Err(TokenError::UnknownKey)
        );
    }
}
