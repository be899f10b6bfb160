//! The demo `cpis dev` creates on its first run: a directory of organisations and users, a
//! person register, flags of each kind, and `demo.json` describing it all for scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cpis_domain::NhsNumber;
use cpis_domain::PersonStatus;
use cpis_identity::persons::Person;
use serde::{Deserialize, Serialize};

/// The password of every demo user (the directory's minimum length is 12).
pub(crate) const DEMO_PASSWORD: &str = "cpis-demo-password";

/// The organisations of the demo.
pub(crate) const TRUST_A: &str = "RJ1";
pub(crate) const TRUST_B: &str = "RAL";
pub(crate) const GP_PRACTICE: &str = "F83004";
pub(crate) const CAMDEN: &str = "E09000007";
pub(crate) const ISLINGTON: &str = "E09000019";

/// The demo directory in the format of `cpis identity import` (docs/directory-format.md).
pub(crate) const DIRECTORY: &str = r#"version: 1

organisations:
  - code: RJ1
    name: Guy's and St Thomas' NHS Foundation Trust
    kind: health
    care_settings:
      - site: RJ122
        type: EMERGENCY_DEPARTMENT
        name: St Thomas' Hospital Emergency Department
        phone: 020 7188 7188
      - site: RJ121
        type: MATERNITY
        name: St Thomas' Maternity
  - code: RAL
    name: Royal Free London NHS Foundation Trust
    kind: health
    care_settings:
      - site: RAL01
        type: EMERGENCY_DEPARTMENT
        name: Royal Free Hospital Emergency Department
        phone: 020 7794 0500
      - site: RAL26
        type: URGENT_TREATMENT_CENTRE
        name: Barnet Urgent Treatment Centre
  - code: F83004
    name: Queens Crescent Practice
    kind: health
    care_settings:
      - type: GP_PRACTICE
        name: Queens Crescent Practice
  - code: E09000007
    name: London Borough of Camden
    kind: local_authority
    contacts:
      office_hours_phone: 020 7974 3317
      emergency_duty_phone: 020 7974 4444
      secure_email: mash@camden.gov.uk
  - code: E09000019
    name: London Borough of Islington
    kind: local_authority
    contacts:
      office_hours_phone: 020 7527 7400
      emergency_duty_phone: 020 7226 0992
      secure_email: mash@islington.gov.uk

users:
  - username: ed.clinician
    display_name: Dr Ada Okafor (ED, St Thomas')
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: RJ1
        role: clinician
  - username: ed.clerk
    display_name: Sam Reid (registration, Royal Free)
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: RAL
        role: registration_clerk
  - username: ed.clinician.ral
    display_name: Dr Lee Chen (ED, Royal Free)
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: RAL
        role: clinician
  - username: gp.clinician
    display_name: Dr Priya Shah (GP)
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: F83004
        role: clinician
  - username: camden.social
    display_name: Jo Malik (Camden MASH)
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: E09000007
        role: social_worker
  - username: islington.social
    display_name: Chris Evans (Islington MASH)
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: E09000019
        role: social_worker
  - username: privacy.officer
    display_name: Morgan Blake (privacy officer)
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: RJ1
        role: privacy_officer
  - username: admin
    display_name: Directory administrator
    initial_credential: cpis-demo-password
    role_profiles:
      - organisation: RJ1
        role: administrator
"#;

/// A demo user as `demo.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DemoUser {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) role: String,
    pub(crate) organisation: String,
    /// The client system this user signs in through (a key of `systems`).
    pub(crate) system: String,
}

/// A client system's certificate files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DemoSystem {
    pub(crate) organisation: String,
    pub(crate) tls_dir: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// `demo.json`: everything a script needs to drive the demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Demo {
    /// Each service's mTLS address.
    pub(crate) services: BTreeMap<String, String>,
    /// Each service's admin (metrics, health) address.
    pub(crate) admin: BTreeMap<String, String>,
    pub(crate) trust_domain: String,
    pub(crate) ca: PathBuf,
    pub(crate) users: Vec<DemoUser>,
    pub(crate) systems: BTreeMap<String, DemoSystem>,
    /// NHS numbers by flag kind (`cpp`, `lac`, `ucpp` — the mother's number — and
    /// `unflagged`).
    pub(crate) nhs_numbers: BTreeMap<String, Vec<String>>,
    /// The audit log's checkpoint verifier key, for `cpis audit verify`.
    pub(crate) audit_vkey: String,
}

impl Demo {
    /// The file in `data_dir`.
    pub(crate) fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("demo.json")
    }

    /// Reads `demo.json` if `cpis dev` has written one.
    pub(crate) fn load(data_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(Self::path(data_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The user named `username`.
    pub(crate) fn user(&self, username: &str) -> Option<&DemoUser> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// The client systems of the demo: (key, organisation, system name).
pub(crate) const SYSTEMS: [(&str, &str, &str); 5] = [
    ("RJ1-ed-ehr", TRUST_A, "ed-ehr"),
    ("RAL-ed-ehr", TRUST_B, "ed-ehr"),
    ("F83004-gp-system", GP_PRACTICE, "gp-system"),
    ("E09000007-case-system", CAMDEN, "case-system"),
    ("E09000019-case-system", ISLINGTON, "case-system"),
];

/// The demo users: (username, role, organisation).
pub(crate) const USERS: [(&str, &str, &str); 8] = [
    ("ed.clinician", "clinician", TRUST_A),
    ("ed.clerk", "registration_clerk", TRUST_B),
    ("ed.clinician.ral", "clinician", TRUST_B),
    ("gp.clinician", "clinician", GP_PRACTICE),
    ("camden.social", "social_worker", CAMDEN),
    ("islington.social", "social_worker", ISLINGTON),
    ("privacy.officer", "privacy_officer", TRUST_A),
    ("admin", "administrator", TRUST_A),
];

/// The key of the client system of `organisation`.
pub(crate) fn system_of(organisation: &str) -> &'static str {
    SYSTEMS
        .iter()
        .find(|(_, ods, _)| *ods == organisation)
        .map_or(SYSTEMS[0].0, |(key, _, _)| key)
}

/// How many synthetic persons the demo's register holds.
pub(crate) const PERSONS: u64 = 400;

/// The persons whose numbers the demo uses: active and not sensitive, so that every check
/// and every upload record behaves plainly.
pub(crate) fn plain_numbers(persons: &[Person]) -> Vec<NhsNumber> {
    persons
        .iter()
        .filter(|p| matches!(p.status, PersonStatus::Active) && !p.sensitive)
        .map(|p| p.nhs_number)
        .collect()
}

/// Which numbers get which flag: (kind key, authority, case reference, number index).
pub(crate) const FLAGS: [(&str, &str, &str, usize); 6] = [
    ("cpp", CAMDEN, "CAM-CPP-0001", 0),
    ("cpp", ISLINGTON, "ISL-CPP-0001", 1),
    ("lac", CAMDEN, "CAM-LAC-0001", 2),
    ("lac", ISLINGTON, "ISL-LAC-0001", 3),
    ("ucpp", CAMDEN, "CAM-UCPP-0001", 4),
    ("ucpp", ISLINGTON, "ISL-UCPP-0001", 5),
];

/// Numbers of children without a flag (indexes into the plain numbers).
pub(crate) const UNFLAGGED: [usize; 3] = [10, 11, 12];
