//! The directory file: the whole directory as YAML (format in `docs/directory-format.md`),
//! written by export and read by import. Export writes what import reads back unchanged.

use cpis_domain::{AuthorityContacts, FieldViolations, OdsCode, ViolationCollector};
use serde::{Deserialize, Serialize};

use super::{
    CareSettingEntry, Directory, Organisation, OrganisationKind, Role, Status, parse_activity,
    parse_setting_type, setting_type_code, validate_display_name, validate_name,
    validate_role_name, validate_user_id,
};

/// The version of the format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The file as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// The format's version: 1.
    pub version: u32,
    /// Roles and the activities they grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleEntry>,
    /// Organisations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<OrganisationEntry>,
    /// Users, each with their role profiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserEntry>,
}

/// A role in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// `clinician`.
    pub name: String,
    /// Activity codes (`child.check`).
    #[serde(default)]
    pub activities: Vec<String>,
}

/// An organisation in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganisationEntry {
    /// Its ODS code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// `health` or `local_authority`.
    pub kind: String,
    /// A local authority's contacts (required for one, refused for a health organisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<ContactsEntry>,
    /// A health organisation's care settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub care_settings: Vec<CareSettingFileEntry>,
}

/// A local authority's contacts in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsEntry {
    /// Office hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_hours_phone: Option<String>,
    /// Out of hours; required.
    pub emergency_duty_phone: String,
    /// Secure e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_email: Option<String>,
}

/// A care setting in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareSettingFileEntry {
    /// The site; empty or absent for a single-site organisation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site: String,
    /// `EMERGENCY_DEPARTMENT`, `GP_PRACTICE`, ...
    #[serde(rename = "type")]
    pub setting_type: String,
    /// A name for people to read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A phone number to call back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
}

/// A user in the file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The stable id; for a new user, chosen by the service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The sign-in name.
    pub username: String,
    /// The name people read.
    pub display_name: String,
    /// `active` (default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The argon2id PHC string of the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_hash: Option<String>,
    /// A credential in clear, hashed on import, used only when the user is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_credential: Option<String>,
    /// The user's role profiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_profiles: Vec<RoleProfileEntry>,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A role profile in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleProfileEntry {
    /// Its id; when absent, the user's profile with this organisation and role is meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The organisation's ODS code.
    pub organisation: String,
    /// The role.
    pub role: String,
    /// `active` (default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Reads the file's YAML; syntax errors and unknown keys name their line.
pub fn parse(yaml: &str) -> Result<DirectoryFile, FieldViolations> {
    let file: DirectoryFile = serde_yaml_ng::from_str(yaml).map_err(|e| {
        FieldViolations::from(cpis_domain::FieldViolation::new(
            "directory_yaml",
            format!("not a directory file: {e}"),
        ))
    })?;
    if file.version != FORMAT_VERSION {
        return Err(cpis_domain::FieldViolation::new(
            "directory_yaml",
            format!("version must be {FORMAT_VERSION}, not {}", file.version),
        )
        .into());
    }
    Ok(file)
}

/// The roles of the file, validated.
pub fn validate_roles(file: &DirectoryFile) -> Result<Vec<Role>, FieldViolations> {
    let mut violations = ViolationCollector::new();
    let mut roles = Vec::new();
    for (i, entry) in file.roles.iter().enumerate() {
        let name = violations.check(&format!("roles[{i}].name"), validate_role_name(&entry.name));
        let mut activities = std::collections::BTreeSet::new();
        for (j, code) in entry.activities.iter().enumerate() {
            if let Some(a) =
                violations.check(&format!("roles[{i}].activities[{j}]"), parse_activity(code))
            {
                activities.insert(a);
            }
        }
        if let Some(name) = name {
            if roles.iter().any(|r: &Role| r.name == name) {
                violations.add(format!("roles[{i}].name"), "appears twice in the file");
            }
            roles.push(Role { name, activities });
        }
    }
    violations.finish(Some(roles))
}

/// The organisations of the file, validated.
pub fn validate_organisations(file: &DirectoryFile) -> Result<Vec<Organisation>, FieldViolations> {
    let mut violations = ViolationCollector::new();
    let mut organisations: Vec<Organisation> = Vec::new();
    for (i, entry) in file.organisations.iter().enumerate() {
        let at = |field: &str| format!("organisations[{i}].{field}");
        if let Some(org) = validate_organisation(entry, &at, &mut violations) {
            if organisations.iter().any(|o| o.code == org.code) {
                violations.add(at("code"), "appears twice in the file");
            }
            organisations.push(org);
        }
    }
    violations.finish(Some(organisations))
}

fn validate_organisation(
    entry: &OrganisationEntry,
    at: &dyn Fn(&str) -> String,
    violations: &mut ViolationCollector,
) -> Option<Organisation> {
    let code = violations.check(&at("code"), OdsCode::parse(&entry.code));
    let name = violations.check(&at("name"), validate_name(&entry.name, 200));
    let kind = violations.check(
        &at("kind"),
        OrganisationKind::from_code(entry.kind.trim())
            .ok_or("must be `health` or `local_authority`"),
    );
    let contacts = match (&entry.contacts, kind) {
        (Some(c), Some(OrganisationKind::LocalAuthority)) => {
            match AuthorityContacts::parse(
                c.office_hours_phone.as_deref(),
                &c.emergency_duty_phone,
                c.secure_email.as_deref(),
            ) {
                Ok(contacts) => Some(Some(contacts)),
                Err(problems) => {
                    for v in problems {
                        violations.add(format!("{}.{}", at("contacts"), v.field), v.description);
                    }
                    None
                }
            }
        }
        (None, Some(OrganisationKind::LocalAuthority)) => {
            violations.add(at("contacts"), "a local authority needs its contacts");
            None
        }
        (Some(_), Some(OrganisationKind::Health)) => {
            violations.add(
                at("contacts"),
                "only a local authority has contacts; a health organisation has care settings",
            );
            None
        }
        _ => Some(None),
    };
    if kind == Some(OrganisationKind::LocalAuthority) && !entry.care_settings.is_empty() {
        violations.add(
            at("care_settings"),
            "a local authority has no care settings",
        );
    }
    let mut care_settings = Vec::new();
    for (j, setting) in entry.care_settings.iter().enumerate() {
        let field = |f: &str| at(&format!("care_settings[{j}].{f}"));
        let site = match setting.site.trim() {
            "" => Some(String::new()),
            site => violations.check(&field("site"), validate_name(site, 100)),
        };
        let setting_type =
            violations.check(&field("type"), parse_setting_type(&setting.setting_type));
        let name = match setting.name.trim() {
            "" => Some(String::new()),
            name => violations.check(&field("name"), validate_name(name, 200)),
        };
        let phone = match setting.phone.trim() {
            "" => Some(String::new()),
            phone => violations
                .check(&field("phone"), cpis_domain::PhoneNumber::parse(phone))
                .map(String::from),
        };
        if let (Some(site), Some(setting_type), Some(name), Some(phone)) =
            (site, setting_type, name, phone)
        {
            care_settings.push(CareSettingEntry {
                site,
                setting_type,
                name,
                phone,
            });
        }
    }
    Some(Organisation {
        code: code?,
        name: name?,
        kind: kind?,
        contacts: contacts?,
        care_settings,
    })
}

/// A status code, `active` when absent.
pub(crate) fn parse_status(status: Option<&str>) -> Result<Status, &'static str> {
    match status.map(str::trim) {
        None | Some("") => Ok(Status::Active),
        Some(code) => Status::from_code(code).ok_or("must be `active` or `disabled`"),
    }
}

/// Checks a user entry's own texts (everything but references to other entries).
pub(crate) fn check_user_texts(entry: &UserEntry, i: usize, violations: &mut ViolationCollector) {
    let at = |f: &str| format!("users[{i}].{f}");
    if let Some(id) = &entry.user_id {
        violations.check(&at("user_id"), validate_user_id(id));
    }
    violations.check(
        &at("display_name"),
        validate_display_name(&entry.display_name),
    );
    violations.check(&at("status"), parse_status(entry.status.as_deref()));
    if let Some(hash) = &entry.credential_hash {
        violations.check(&at("credential_hash"), crate::credential::check_hash(hash));
    }
}

/// The directory as a file: sorted, complete, credentials only as hashes.
pub fn export(directory: &Directory) -> DirectoryFile {
    let mut roles: Vec<RoleEntry> = directory
        .roles
        .iter()
        .map(|r| RoleEntry {
            name: r.name.clone(),
            activities: r.activities.iter().map(|a| a.code().to_owned()).collect(),
        })
        .collect();
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    let mut organisations: Vec<OrganisationEntry> = directory
        .organisations
        .iter()
        .map(|o| OrganisationEntry {
            code: o.code.to_string(),
            name: o.name.clone(),
            kind: o.kind.code().to_owned(),
            contacts: o.contacts.as_ref().map(|c| ContactsEntry {
                office_hours_phone: c.office_hours_phone.as_ref().map(|p| p.to_string()),
                emergency_duty_phone: c.emergency_duty_phone.to_string(),
                secure_email: c.secure_email.as_ref().map(|e| e.to_string()),
            }),
            care_settings: o
                .care_settings
                .iter()
                .map(|s| CareSettingFileEntry {
                    site: s.site.clone(),
                    setting_type: setting_type_code(s.setting_type).to_owned(),
                    name: s.name.clone(),
                    phone: s.phone.clone(),
                })
                .collect(),
        })
        .collect();
    organisations.sort_by(|a, b| a.code.cmp(&b.code));
    let mut users: Vec<UserEntry> = directory
        .users
        .iter()
        .map(|u| {
            let mut profiles: Vec<_> = directory
                .role_profiles
                .iter()
                .filter(|p| p.user_id == u.user_id)
                .collect();
            profiles.sort_by(|a, b| {
                (&a.organisation, &a.role, &a.role_profile_id).cmp(&(
                    &b.organisation,
                    &b.role,
                    &b.role_profile_id,
                ))
            });
            UserEntry {
                user_id: Some(u.user_id.clone()),
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                status: Some(u.status.code().to_owned()),
                credential_hash: Some(u.credential_hash.clone()),
                initial_credential: None,
                role_profiles: profiles
                    .into_iter()
                    .map(|p| RoleProfileEntry {
                        id: Some(p.role_profile_id.clone()),
                        organisation: p.organisation.to_string(),
                        role: p.role.clone(),
                        status: Some(p.status.code().to_owned()),
                    })
                    .collect(),
            }
        })
        .collect();
    users.sort_by(|a, b| a.username.cmp(&b.username));
    DirectoryFile {
        version: FORMAT_VERSION,
        roles,
        organisations,
        users,
    }
}

/// The file as YAML text.
pub fn to_yaml(file: &DirectoryFile) -> String {
    // Plain structs of strings and lists always serialise.
    serde_yaml_ng::to_string(file).unwrap_or_default()
}
