//! Tokens as other services see them: verified locally with keys fetched from
//! `GetSigningKeys` over mTLS by [`IdentityKeySource`], against Postgres and SQLite.
//! Expired tokens are refused; a token signed before a rotation verifies until it expires;
//! an unknown key id costs one refresh, not one per request.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_identity::IdentityKeySource;
use cpis_mesh::duration::HumanDuration;
use cpis_mesh::token::{Claims, TokenError, TokenRules, TokenSigner, TokenVerifier};
use cpis_proto::identity::{Activity, AuthorizeRequest, DenialReason, GetSigningKeysRequest};
use support::{Backend, TestIdentity, eventually, with_token};
use tonic::Code;

/// A verifier as the attendance service would hold one.
fn attendance_verifier(test: &TestIdentity, min_refresh_interval: Duration) -> TokenVerifier {
    let source = IdentityKeySource::new(test.service_channel("attendance"));
    let tokens = &test.ctx.config.tokens;
    TokenVerifier::new(
        Arc::new(source),
        TokenRules {
            issuer: tokens.issuer.clone(),
            audience: tokens.audience.clone(),
            leeway: tokens.leeway.get(),
            min_refresh_interval,
        },
    )
}

/// Tokens of `lifetime` seconds (claims count whole seconds, so at least 2 for a token to be
/// valid for a while), keys re-read every second, no clock leeway.
async fn short_lived(backend: Backend, lifetime: u64) -> TestIdentity {
    TestIdentity::start_with(backend, |config| {
        config.service.token_lifetime = HumanDuration::from_secs(lifetime);
        config.service.key_check_interval = HumanDuration::from_secs(1);
        config.mesh.tokens.leeway = HumanDuration::from_secs(0);
    })
    .await
}

async fn an_expired_token_is_refused_by_a_verifier(backend: Backend) {
    let test = short_lived(backend, 2).await;
    let token = test.sign_in("nurse.jones", "").await.access_token;
    let verifier = attendance_verifier(&test, Duration::from_secs(5));
    verifier.verify(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(verifier.verify(&token).await, Err(TokenError::Expired));
    // Authorize says so too, as a denial.
    let answer = test
        .service_client("attendance")
        .authorize(with_token(
            AuthorizeRequest {
                activity: Activity::ChildCheck as i32,
                organisation: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.allowed);
    assert_eq!(answer.denial_reason, DenialReason::TokenExpired as i32);
}

async fn a_token_signed_before_a_rotation_verifies_until_it_expires(backend: Backend) {
    let test = short_lived(backend, 3).await;
    let before = test.sign_in("nurse.jones", "").await.access_token;
    let verifier = attendance_verifier(&test, Duration::from_millis(100));
    verifier.verify(&before).await.unwrap();
    test.handle.state.keys.rotate_now().await.unwrap();
    let after = test.sign_in("nurse.jones", "").await.access_token;
    assert_ne!(kid(&before), kid(&after));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The new key id is unknown to the verifier: it refreshes once and knows both.
    verifier.verify(&after).await.unwrap();
    verifier.verify(&before).await.unwrap();
    let fresh = attendance_verifier(&test, Duration::from_millis(100));
    fresh.verify(&before).await.unwrap();
    fresh.verify(&after).await.unwrap();
    let published = |test: &TestIdentity| {
        let mut client = test.service_client("flag-registry");
        async move {
            client
                .get_signing_keys(GetSigningKeysRequest {})
                .await
                .unwrap()
                .into_inner()
                .keys
        }
    };
    let keys = published(&test).await;
    assert_eq!(keys.len(), 2);
    assert!(keys[0].current && keys[0].expire_time.is_none());
    assert!(!keys[1].current && keys[1].expire_time.is_some());
    assert!(
        keys.iter()
            .all(|k| k.algorithm == "EdDSA" && k.public_key.len() == 32)
    );
    // Once no token it signed can be valid (lifetime + re-read interval), the old key goes.
    let gone = eventually(Duration::from_secs(10), || async {
        published(&test).await.len() == 1
    })
    .await;
    assert!(gone, "the retired key is still published");
    assert_eq!(fresh.verify(&before).await, Err(TokenError::Expired));
}

async fn an_unknown_key_id_triggers_one_refresh_not_one_per_request(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let verifier = attendance_verifier(&test, Duration::from_secs(1));
    let genuine = test.sign_in("nurse.jones", "").await.access_token;
    verifier.verify(&genuine).await.unwrap();
    // The server counts a call as it completes, a moment after the client has its answer.
    let served = |n: u64| {
        let test = &test;
        async move {
            eventually(Duration::from_secs(2), || async {
                test.served("GetSigningKeys") >= n
            })
            .await;
            test.served("GetSigningKeys")
        }
    };
    let after_first_fetch = served(1).await;
    assert_eq!(after_first_fetch, 1);

    // Past the verifier's least interval between refreshes, a flood of tokens naming an
    // unknown key id makes one refresh, and no more until that interval passes again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (forger, _) = TokenSigner::generate("k-forged").unwrap();
    let forged = forger.sign(&claims(&test));
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let verifier = verifier.clone();
            let forged = forged.clone();
            tokio::spawn(async move { verifier.verify(&forged).await })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.unwrap(), Err(TokenError::UnknownKey));
    }
    assert_eq!(served(after_first_fetch + 1).await, after_first_fetch + 1);
    // Known keys go on verifying without any call.
    for _ in 0..20 {
        verifier.verify(&genuine).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(test.served("GetSigningKeys"), after_first_fetch + 1);
}

async fn signing_keys_are_only_for_mesh_services(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let status = test
        .org_client("RJ1", "ehr")
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let keys = test
        .service_client("notification")
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.max_cache_age.unwrap().seconds, 60);
}

async fn keys_survive_a_restart_and_need_their_encryption_key(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let token = test.sign_in("nurse.jones", "").await.access_token;
    // A second replica on the same database signs with the same key.
    let config = cpis_mesh::Config {
        mesh: test.pki.mesh_config("identity"),
        service: support::section(&test.database.url),
    };
    let ctx = cpis_mesh::MeshContext::new(
        config.mesh.clone(),
        cpis_mesh::metrics::Metrics::new(),
        cpis_mesh::Shutdown::new(),
    )
    .unwrap();
    let (_, replica) = cpis_identity::build(&ctx, &config).await.unwrap();
    let current = replica.state.keys.signer().verification_key().key_id;
    assert_eq!(current, kid(&token));
    replica.state.verifier().verify(&token).await.unwrap();
    // Another key encryption key cannot open the stored private key.
    let mut wrong = config.clone();
    wrong.service.key_encryption_key = Some("ff".repeat(32));
    let error = cpis_identity::build(&ctx, &wrong).await.unwrap_err();
    assert!(error.to_string().contains("does not decrypt"), "{error}");
}

fn claims(test: &TestIdentity) -> Claims {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Claims {
        iss: test.ctx.config.tokens.issuer.clone(),
        sub: "u-nurse".into(),
        aud: test.ctx.config.tokens.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: "forged".into(),
        org: "RJ1".into(),
        rp: "rp-nurse".into(),
        role: "clinician".into(),
        act: vec!["child.check".into()],
    }
}

/// The key id in a token's header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let start = text.find("\"kid\":\"").unwrap() + 7;
    text[start..].split('"').next().unwrap().to_owned()
}

both_stores!(
    an_expired_token_is_refused_by_a_verifier,
    a_token_signed_before_a_rotation_verifies_until_it_expires,
    an_unknown_key_id_triggers_one_refresh_not_one_per_request,
    signing_keys_are_only_for_mesh_services,
    keys_survive_a_restart_and_need_their_encryption_key,
);
