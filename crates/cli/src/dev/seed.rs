//! Filling the demo: identity's directory and register before the mesh starts (no one can
//! sign in before there are users), then flags and a first attendance through the mesh's
//! own RPCs, as an authority's and a hospital's systems would.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use cpis_identity::audit::AuditActor;
use cpis_identity::credential::CredentialHasher;
use cpis_identity::directory::import::import_directory;
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::tls::{MeshTls, TlsFiles};
use cpis_proto::attendance::RecordAttendanceRequest;
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::common::{self, CareSettingType, FlagKind, LookedAfterLegalBasis};
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{FlagRecord, UpsertFlagRequest};
use cpis_proto::identity::IssueTokenRequest;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use tonic::{Code, Request, Status};

use super::demo::{self, Demo, DemoSystem, DemoUser};
use super::{SEED_PATIENCE, TRUST_DOMAIN, system_dir};
use crate::failure::Failure;
use crate::remote::Service;

const ACTOR: &str = "cpis-dev";

/// Imports the demo directory and person register into identity's database at `url`.
pub(super) async fn identity(url: &str) -> Result<(), Failure> {
    let store = cpis_identity::store::open(url)
        .await
        .map_err(|e| Failure::internal(format!("identity's database: {e}")))?;
    let hasher = CredentialHasher::new().map_err(|e| Failure::internal(e.to_string()))?;
    let actor = AuditActor::tool(ACTOR);
    import_directory(store.as_ref(), &hasher, 12, demo::DIRECTORY, false, &actor)
        .await
        .map_err(|e| Failure::internal(format!("the demo directory: {e}")))?;
    let persons = persons()?;
    cpis_identity::persons::import(store.as_ref(), &actor, &persons)
        .await
        .map_err(|e| Failure::internal(format!("the demo register: {e}")))?;
    store.database().close().await;
    Ok(())
}

fn persons() -> Result<Vec<cpis_identity::persons::Person>, Failure> {
    cpis_identity::persons::synthetic(0, demo::PERSONS)
        .ok_or_else(|| Failure::internal("the synthetic NHS number range is exhausted"))
}

/// Uploads the demo's flags and a first attendance, and describes the demo.
pub(super) async fn mesh(data_dir: &Path, audit_vkey: &str) -> Result<Demo, Failure> {
    let numbers = demo::plain_numbers(&persons()?);
    let number = |i: usize| {
        numbers
            .get(i)
            .map(|n| n.as_str().to_owned())
            .ok_or_else(|| Failure::internal("the demo register has too few plain persons"))
    };
    let today = time::OffsetDateTime::now_utc().date();

    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, authority, case, index) in demo::FLAGS {
        let nhs = number(index)?;
        let token = sign_in(data_dir, authority, social_worker(authority)).await?;
        let flags = FlagRegistryServiceClient::new(channel(
            data_dir,
            demo::system_of(authority),
            Service::FlagRegistry,
        )?);
        let request = upsert(authority, case, kind, &nhs, today);
        patiently(|| {
            let mut flags = flags.clone();
            let request = authed(&token, request.clone());
            async move { flags.upsert_flag(request).await }
        })
        .await
        .map_err(|s| Failure::from_status("uploading the demo's flags", &s))?;
        by_kind.entry(kind.to_owned()).or_default().push(nhs);
    }
    let unflagged = demo::UNFLAGGED
        .iter()
        .map(|i| number(*i))
        .collect::<Result<Vec<_>, _>>()?;
    by_kind.insert("unflagged".to_owned(), unflagged);

    // A first visit, so that the first check shows a history: the Camden child was seen at
    // the Royal Free's emergency department.
    let first_cpp = number(demo::FLAGS[0].3)?;
    let token = sign_in(data_dir, demo::TRUST_B, "ed.clinician.ral").await?;
    let attendance = AttendanceServiceClient::new(channel(
        data_dir,
        demo::system_of(demo::TRUST_B),
        Service::Attendance,
    )?);
    let visit = RecordAttendanceRequest {
        nhs_number: Some(common::NhsNumber {
            value: first_cpp.clone(),
        }),
        care_setting: Some(common::CareSetting {
            organisation: Some(common::OdsCode {
                value: demo::TRUST_B.to_owned(),
            }),
            site: "RAL01".to_owned(),
            setting_type: CareSettingType::EmergencyDepartment as i32,
            name: "Royal Free Hospital Emergency Department".to_owned(),
            phone: "020 7794 0500".to_owned(),
        }),
        arrival_time: None,
        request_id: String::new(),
    };
    patiently(|| {
        let mut attendance = attendance.clone();
        let request = authed(&token, visit.clone());
        async move { attendance.record_attendance(request).await }
    })
    .await
    .map_err(|s| Failure::from_status("recording the demo's first attendance", &s))?;

    let (services, admin) = super::addresses();
    let systems = demo::SYSTEMS
        .iter()
        .map(|(key, ods, _)| {
            let dir = system_dir(data_dir, key);
            (
                (*key).to_owned(),
                DemoSystem {
                    organisation: (*ods).to_owned(),
                    ca: dir.join("ca.crt"),
                    cert: dir.join("tls.crt"),
                    key: dir.join("tls.key"),
                    tls_dir: dir,
                },
            )
        })
        .collect();
    let users = demo::USERS
        .iter()
        .map(|(username, role, organisation)| DemoUser {
            username: (*username).to_owned(),
            password: demo::DEMO_PASSWORD.to_owned(),
            role: (*role).to_owned(),
            organisation: (*organisation).to_owned(),
            system: demo::system_of(organisation).to_owned(),
        })
        .collect();
    Ok(Demo {
        services,
        admin,
        trust_domain: TRUST_DOMAIN.to_owned(),
        ca: data_dir.join("pki").join("ca.crt"),
        users,
        systems,
        nhs_numbers: by_kind,
        audit_vkey: audit_vkey.to_owned(),
    })
}

fn social_worker(authority: &str) -> &'static str {
    if authority == demo::CAMDEN {
        "camden.social"
    } else {
        "islington.social"
    }
}

/// A channel to `service` as the demo's client system `system`.
fn channel(data_dir: &Path, system: &str, service: Service) -> Result<MeshChannel, Failure> {
    let dir = system_dir(data_dir, system);
    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let tls = MeshTls::load(files, TRUST_DOMAIN).map_err(|e| Failure::internal(e.to_string()))?;
    cpis_mesh::client::channel(
        &format!("https://localhost:{}", service.dev_port()),
        &tls,
        &Metrics::new(),
        &ChannelSettings::default(),
    )
    .map_err(|e| Failure::internal(e.to_string()))
}

/// Signs `username` in through `organisation`'s demo system.
async fn sign_in(data_dir: &Path, organisation: &str, username: &str) -> Result<String, Failure> {
    let identity = IdentityServiceClient::new(channel(
        data_dir,
        demo::system_of(organisation),
        Service::Identity,
    )?);
    let request = IssueTokenRequest {
        username: username.to_owned(),
        credential: demo::DEMO_PASSWORD.to_owned(),
        role_profile_id: String::new(),
    };
    let response = patiently(|| {
        let mut identity = identity.clone();
        let request = Request::new(request.clone());
        async move { identity.issue_token(request).await }
    })
    .await
    .map_err(|s| Failure::from_status(&format!("signing {username} in"), &s))?;
    Ok(response.into_inner().access_token)
}

/// Calls until the mesh answers something other than UNAVAILABLE (it is still starting),
/// for at most [`SEED_PATIENCE`].
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Err(status)
                if status.code() == Code::Unavailable && started.elapsed() < SEED_PATIENCE =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn wire(date: time::Date) -> common::Date {
    common::Date {
        year: date.year(),
        month: i32::from(u8::from(date.month())),
        day: i32::from(date.day()),
    }
}

/// A current flag of `kind` (`cpp`, `lac`, `ucpp`) for `nhs`, started three months ago.
fn upsert(
    authority: &str,
    case: &str,
    kind: &str,
    nhs: &str,
    today: time::Date,
) -> UpsertFlagRequest {
    let (name, office, emergency, email) = if authority == demo::CAMDEN {
        (
            "London Borough of Camden",
            "020 7974 3317",
            "020 7974 4444",
            "mash@camden.gov.uk",
        )
    } else {
        (
            "London Borough of Islington",
            "020 7527 7400",
            "020 7226 0992",
            "mash@islington.gov.uk",
        )
    };
    let (flag_kind, basis, due) = match kind {
        "lac" => (
            FlagKind::LookedAfterChild,
            LookedAfterLegalBasis::Section31CareOrder as i32,
            None,
        ),
        "ucpp" => (
            FlagKind::UnbornChildProtectionPlan,
            0,
            Some(wire(today + time::Duration::days(60))),
        ),
        _ => (FlagKind::ChildProtectionPlan, 0, None),
    };
    UpsertFlagRequest {
        authority: Some(common::LocalAuthority {
            code: Some(common::OdsCode {
                value: authority.to_owned(),
            }),
            name: name.to_owned(),
        }),
        contacts: Some(common::AuthorityContacts {
            office_hours_phone: office.to_owned(),
            emergency_duty_phone: emergency.to_owned(),
            secure_email: email.to_owned(),
        }),
        record: Some(FlagRecord {
            case_reference: case.to_owned(),
            nhs_number: Some(common::NhsNumber {
                value: nhs.to_owned(),
            }),
            date_of_birth: None,
            kind: flag_kind as i32,
            looked_after_legal_basis: basis,
            expected_delivery_date: due,
            start_date: Some(wire(today - time::Duration::days(90))),
            end_date: None,
            delete_date: None,
        }),
        expected_version: None,
    }
}
