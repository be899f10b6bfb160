//! The SQL both dialects share (sqlx binds `$n` parameters on SQLite too), and the rows it
//! reads, converted to the directory's and the register's types.

use cpis_domain::{AuthorityContacts, PersonStatus};
use time::{Date, OffsetDateTime};

use super::{StoreError, StoredSigningKey, nhs_from, ods_from, status_from};
use crate::directory::{
    CareSettingEntry, Organisation, OrganisationKind, Role, RoleProfile, User,
    activities_from_text, parse_setting_type,
};
use crate::persons::Person;

pub(crate) const SIGNING_KEYS: &str = "SELECT generation, key_id, public_key, sealed_private_key, \
     create_time, retire_time FROM signing_keys ORDER BY generation";
pub(crate) const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (generation, key_id, public_key, sealed_private_key, create_time) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (generation) DO NOTHING";
pub(crate) const RETIRE_SIGNING_KEY: &str = "UPDATE signing_keys SET retire_time = $1 \
     WHERE generation = $2 AND retire_time IS NULL";

pub(crate) const ROLES: &str = "SELECT name, activities FROM roles ORDER BY name";
pub(crate) const ROLE: &str = "SELECT name, activities FROM roles WHERE name = $1";
pub(crate) const UPSERT_ROLE: &str = "INSERT INTO roles (name, activities) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET activities = excluded.activities";

const ORGANISATION_COLUMNS: &str =
    "code, name, kind, office_hours_phone, emergency_duty_phone, secure_email";
pub(crate) fn organisation_by_code() -> String {
    format!("SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE code = $1")
}
pub(crate) fn organisations_page() -> String {
    format!(
        "SELECT {ORGANISATION_COLUMNS} FROM organisations \
         WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR code > $2) ORDER BY code LIMIT $3"
    )
}
pub(crate) fn all_organisations() -> String {
    format!("SELECT {ORGANISATION_COLUMNS} FROM organisations ORDER BY code")
}
pub(crate) const UPSERT_ORGANISATION: &str = "INSERT INTO organisations \
     (code, name, kind, office_hours_phone, emergency_duty_phone, secure_email) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO UPDATE SET name = excluded.name, \
     kind = excluded.kind, office_hours_phone = excluded.office_hours_phone, \
     emergency_duty_phone = excluded.emergency_duty_phone, secure_email = excluded.secure_email";
/// Care settings of the organisations listed after it (`IN (...)`, built per query).
pub(crate) const CARE_SETTINGS_OF: &str = "SELECT organisation, site, setting_type, name, phone \
     FROM care_settings WHERE organisation IN ";
pub(crate) const CARE_SETTINGS_ORDER: &str = " ORDER BY organisation, position";
pub(crate) const ALL_CARE_SETTINGS: &str = "SELECT organisation, site, setting_type, name, \
     phone FROM care_settings ORDER BY organisation, position";
pub(crate) const DELETE_CARE_SETTINGS: &str = "DELETE FROM care_settings WHERE organisation = $1";
pub(crate) const INSERT_CARE_SETTING: &str = "INSERT INTO care_settings \
     (organisation, position, site, setting_type, name, phone) VALUES ($1, $2, $3, $4, $5, $6)";

const USER_COLUMNS: &str = "user_id, username, display_name, status, credential_hash, create_time";
pub(crate) fn user_by_username() -> String {
    format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1")
}
pub(crate) fn user_by_id() -> String {
    format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1")
}
pub(crate) fn users_page() -> String {
    format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR EXISTS (SELECT 1 FROM \
         role_profiles p WHERE p.user_id = users.user_id AND p.organisation = $1)) \
         AND ($2 IS NULL OR username > $2) ORDER BY username LIMIT $3"
    )
}
pub(crate) fn all_users() -> String {
    format!("SELECT {USER_COLUMNS} FROM users ORDER BY username")
}
pub(crate) const INSERT_USER: &str = "INSERT INTO users \
     (user_id, username, display_name, status, credential_hash, create_time) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const UPSERT_USER: &str = "INSERT INTO users \
     (user_id, username, display_name, status, credential_hash, create_time) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET \
     username = excluded.username, display_name = excluded.display_name, \
     status = excluded.status, credential_hash = excluded.credential_hash";
pub(crate) const SET_USER_STATUS: &str = "UPDATE users SET status = $1 WHERE user_id = $2";
pub(crate) const SET_LAST_SIGN_IN: &str =
    "UPDATE users SET last_sign_in_time = $1 WHERE user_id = $2";

pub(crate) const PROFILE_COLUMNS: &str =
    "role_profile_id, user_id, organisation, role, status, create_time";
pub(crate) fn profile_by_id() -> String {
    format!("SELECT {PROFILE_COLUMNS} FROM role_profiles WHERE role_profile_id = $1")
}
pub(crate) fn all_profiles() -> String {
    format!("SELECT {PROFILE_COLUMNS} FROM role_profiles ORDER BY role_profile_id")
}
pub(crate) const INSERT_PROFILE: &str = "INSERT INTO role_profiles \
     (role_profile_id, user_id, organisation, role, status, create_time) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const UPSERT_PROFILE: &str = "INSERT INTO role_profiles \
     (role_profile_id, user_id, organisation, role, status, create_time) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (role_profile_id) DO UPDATE SET \
     organisation = excluded.organisation, role = excluded.role, status = excluded.status";
pub(crate) const SET_PROFILE_STATUS: &str =
    "UPDATE role_profiles SET status = $1 WHERE role_profile_id = $2";

pub(crate) const PERSON_COLUMNS: &str =
    "nhs_number, date_of_birth, status, superseded_by, sensitive";

pub(crate) type KeyRow = (
    i64,
    String,
    Vec<u8>,
    Vec<u8>,
    OffsetDateTime,
    Option<OffsetDateTime>,
);
pub(crate) type RoleRow = (String, String);
pub(crate) type OrganisationRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);
pub(crate) type CareSettingRow = (String, String, String, String, String);
pub(crate) type UserRow = (String, String, String, String, String, OffsetDateTime);
pub(crate) type ProfileRow = (String, String, String, String, String, OffsetDateTime);
pub(crate) type PersonRow = (String, Date, String, Option<String>, bool);

pub(crate) fn key_from(row: KeyRow) -> StoredSigningKey {
    let (generation, key_id, public_key, sealed_private_key, create_time, retire_time) = row;
    StoredSigningKey {
        generation,
        key_id,
        public_key,
        sealed_private_key,
        create_time,
        retire_time,
    }
}

pub(crate) fn role_from((name, activities): RoleRow) -> Role {
    Role {
        name,
        activities: activities_from_text(&activities),
    }
}

/// An organisation from its row and its care settings' rows (those of other organisations
/// are skipped).
pub(crate) fn organisation_from(
    row: OrganisationRow,
    settings: &[CareSettingRow],
) -> Result<Organisation, StoreError> {
    let (code, name, kind, office, emergency, email) = row;
    let kind = OrganisationKind::from_code(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("organisation kind `{kind}`")))?;
    let contacts = match emergency {
        Some(emergency) => Some(
            AuthorityContacts::parse(office.as_deref(), &emergency, email.as_deref())
                .map_err(|e| StoreError::Corrupt(format!("contacts of {code}: {e}")))?,
        ),
        None => None,
    };
    let care_settings = settings
        .iter()
        .filter(|s| s.0 == code)
        .map(|(_, site, setting_type, name, phone)| {
            Ok(CareSettingEntry {
                site: site.clone(),
                setting_type: parse_setting_type(setting_type).map_err(StoreError::Corrupt)?,
                name: name.clone(),
                phone: phone.clone(),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Organisation {
        code: ods_from(&code)?,
        name,
        kind,
        contacts,
        care_settings,
    })
}

/// The texts an organisation is stored as: code, name, kind and the three contacts.
pub(crate) fn organisation_columns(org: &Organisation) -> OrganisationRow {
    let contacts = org.contacts.as_ref();
    (
        org.code.to_string(),
        org.name.clone(),
        org.kind.code().to_owned(),
        contacts.and_then(|c| c.office_hours_phone.as_ref().map(|p| p.to_string())),
        contacts.map(|c| c.emergency_duty_phone.to_string()),
        contacts.and_then(|c| c.secure_email.as_ref().map(|e| e.to_string())),
    )
}

pub(crate) fn user_from(row: UserRow) -> Result<User, StoreError> {
    let (user_id, username, display_name, status, credential_hash, create_time) = row;
    Ok(User {
        user_id,
        username,
        display_name,
        status: status_from(&status)?,
        credential_hash,
        create_time,
    })
}

pub(crate) fn profile_from(row: ProfileRow) -> Result<RoleProfile, StoreError> {
    let (role_profile_id, user_id, organisation, role, status, create_time) = row;
    Ok(RoleProfile {
        role_profile_id,
        user_id,
        organisation: ods_from(&organisation)?,
        role,
        status: status_from(&status)?,
        create_time,
    })
}

pub(crate) fn person_from(row: PersonRow) -> Result<Person, StoreError> {
    let (number, date_of_birth, status, superseded_by, sensitive) = row;
    let status = match (status.as_str(), superseded_by) {
        ("active", None) => PersonStatus::Active,
        ("inactive", None) => PersonStatus::Inactive,
        ("superseded", Some(by)) => PersonStatus::Superseded { by: nhs_from(&by)? },
        _ => return Err(StoreError::Corrupt(format!("person status `{status}`"))),
    };
    Ok(Person {
        nhs_number: nhs_from(&number)?,
        date_of_birth,
        status,
        sensitive,
    })
}

/// A person's status as stored: its code and the replacing number.
pub(crate) fn person_status_columns(status: &PersonStatus) -> (&'static str, Option<String>) {
    match status {
        PersonStatus::Active => ("active", None),
        PersonStatus::Inactive => ("inactive", None),
        PersonStatus::Superseded { by } => ("superseded", Some(by.as_str().to_owned())),
    }
}
