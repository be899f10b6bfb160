//! Importing a directory file: compare it with the stored directory, then write what differs
//! in one transaction. Importing the same file twice changes nothing the second time.
//!
//! Entries are matched by their key: roles by name, organisations by code, users by id (or
//! by username when the file gives no id), role profiles by id (or, without one, the user's
//! profile with that organisation and role, the active one first). Entries the file does not
//! mention are left as they are.

use std::collections::HashMap;

use cpis_domain::{FieldViolations, OdsCode, ViolationCollector};
use time::OffsetDateTime;

use super::file::{self, DirectoryFile, check_user_texts, parse_status};
use super::{Directory, RoleProfile, Status, User, normalise_username};
use cpis_proto::audit::AuditOutcome;

use crate::audit::{self, AuditActor};
use crate::credential::{CredentialHasher, check_policy};
use crate::error::IdentityError;
use crate::store::{DirectoryChanges, IdentityStore};

/// How many entries an import adds, changes and finds as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Entries added.
    pub created: u32,
    /// Entries changed.
    pub updated: u32,
    /// Entries already as the file says.
    pub unchanged: u32,
}

/// One entry an import writes, for its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChange {
    /// `role:clinician`, `organisation:RJ1`, `user:<id>`, `role_profile:<id>`.
    pub target: String,
    /// Added (or else changed).
    pub created: bool,
}

/// What an import would write.
#[derive(Debug, Clone, Default)]
pub struct ImportPlan {
    /// The entries to write.
    pub changes: DirectoryChanges,
    /// One line per entry written.
    pub entries: Vec<EntryChange>,
    /// The counts.
    pub counts: ImportCounts,
}

impl ImportPlan {
    fn record<T: PartialEq>(&mut self, current: Option<&T>, wanted: &T, target: String) -> bool {
        let write = match current {
            None => {
                self.counts.created += 1;
                true
            }
            Some(c) if c == wanted => {
                self.counts.unchanged += 1;
                false
            }
            Some(_) => {
                self.counts.updated += 1;
                true
            }
        };
        if write {
            self.entries.push(EntryChange {
                target,
                created: current.is_none(),
            });
        }
        write
    }
}

/// Compares `file` with `current` and plans the writes. New users' initial credentials are
/// hashed here (slow by design: run it off the async threads).
pub fn plan(
    file: &DirectoryFile,
    current: &Directory,
    hasher: &CredentialHasher,
    min_credential_length: u32,
    now: OffsetDateTime,
) -> Result<ImportPlan, FieldViolations> {
    let roles = file::validate_roles(file)?;
    let organisations = file::validate_organisations(file)?;
    let mut plan = ImportPlan::default();

    for role in roles {
        let existing = current.roles.iter().find(|r| r.name == role.name);
        if plan.record(existing, &role, format!("role:{}", role.name)) {
            plan.changes.roles.push(role);
        }
    }
    for org in organisations {
        let existing = current.organisations.iter().find(|o| o.code == org.code);
        if plan.record(existing, &org, format!("organisation:{}", org.code)) {
            plan.changes.organisations.push(org);
        }
    }

    let known_role = |name: &str| {
        file.roles.iter().any(|r| r.name.trim() == name)
            || current.roles.iter().any(|r| r.name == name)
    };
    let known_org = |code: &OdsCode| {
        plan.changes.organisations.iter().any(|o| &o.code == code)
            || current.organisations.iter().any(|o| &o.code == code)
    };
    let mut violations = ViolationCollector::new();
    let mut users: Vec<User> = Vec::new();
    let mut profiles: Vec<(usize, RoleProfile)> = Vec::new();
    for (i, entry) in file.users.iter().enumerate() {
        let at = |f: &str| format!("users[{i}].{f}");
        check_user_texts(entry, i, &mut violations);
        let Some(username) = violations.check(&at("username"), normalise_username(&entry.username))
        else {
            continue;
        };
        let by_name = current.users.iter().find(|u| u.username == username);
        let existing = match entry.user_id.as_deref().map(str::trim) {
            Some(id) => {
                let by_id = current.users.iter().find(|u| u.user_id == id);
                if let Some(other) = by_name.filter(|u| u.user_id != id) {
                    violations.add(
                        at("username"),
                        format!("is taken by another user ({})", other.user_id),
                    );
                }
                by_id
            }
            None => by_name,
        };
        if users.iter().any(|u| u.username == username) {
            violations.add(at("username"), "appears twice in the file");
        }
        let credential_hash = match (&entry.credential_hash, existing) {
            (Some(hash), _) => hash.trim().to_owned(),
            (None, Some(user)) => user.credential_hash.clone(),
            (None, None) => match &entry.initial_credential {
                Some(credential) => {
                    match violations.check(
                        &at("initial_credential"),
                        check_policy(credential, min_credential_length),
                    ) {
                        Some(()) => match hasher.hash(credential) {
                            Ok(hash) => hash,
                            Err(e) => {
                                violations.add(at("initial_credential"), e.to_string());
                                continue;
                            }
                        },
                        None => continue,
                    }
                }
                None => {
                    violations.add(
                        at("credential_hash"),
                        "a new user needs credential_hash or initial_credential",
                    );
                    continue;
                }
            },
        };
        let user = User {
            user_id: existing.map_or_else(
                || {
                    entry
                        .user_id
                        .as_deref()
                        .map(str::trim)
                        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
                },
                |u| u.user_id.clone(),
            ),
            username,
            display_name: entry.display_name.trim().to_owned(),
            status: parse_status(entry.status.as_deref()).unwrap_or(Status::Active),
            credential_hash,
            create_time: existing.map_or(now, |u| u.create_time),
        };
        for (j, p) in entry.role_profiles.iter().enumerate() {
            let at = |f: &str| format!("users[{i}].role_profiles[{j}].{f}");
            let organisation =
                violations.check(&at("organisation"), OdsCode::parse(&p.organisation));
            if organisation.as_ref().is_some_and(|o| !known_org(o)) {
                violations.add(at("organisation"), "is not in the directory or the file");
            }
            let role = p.role.trim().to_owned();
            if !known_role(&role) {
                violations.add(at("role"), "is not a role of the directory or the file");
            }
            let status = violations.check(&at("status"), parse_status(p.status.as_deref()));
            let id = p.id.as_deref().map(str::trim).filter(|id| !id.is_empty());
            let (Some(organisation), Some(status)) = (organisation, status) else {
                continue;
            };
            let stored = match id {
                Some(id) => current
                    .role_profiles
                    .iter()
                    .find(|c| c.role_profile_id == id),
                None => {
                    let all: Vec<&RoleProfile> = current
                        .role_profiles
                        .iter()
                        .filter(|c| {
                            c.user_id == user.user_id
                                && c.organisation == organisation
                                && c.role == role
                        })
                        .collect();
                    all.iter()
                        .find(|c| c.status == Status::Active)
                        .or(all.first())
                        .copied()
                }
            };
            if stored.is_some_and(|s| s.user_id != user.user_id) {
                violations.add(at("id"), "belongs to another user");
                continue;
            }
            let profile = RoleProfile {
                role_profile_id: stored.map_or_else(
                    || id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
                    |s| s.role_profile_id.clone(),
                ),
                user_id: user.user_id.clone(),
                organisation,
                role: role.clone(),
                status,
                create_time: stored.map_or(now, |s| s.create_time),
            };
            let duplicate = profiles.iter().any(|(_, q)| {
                q.role_profile_id == profile.role_profile_id
                    || (q.status == Status::Active
                        && profile.status == Status::Active
                        && q.user_id == profile.user_id
                        && q.organisation == profile.organisation
                        && q.role == profile.role)
            });
            if duplicate {
                violations.add(at("role"), "the user has this active role profile twice");
            }
            profiles.push((j, profile));
        }
        users.push(user);
    }
    violations.finish(Some(()))?;

    let by_id: HashMap<&str, &User> = current
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u))
        .collect();
    for user in users {
        let existing = by_id.get(user.user_id.as_str()).copied();
        if plan.record(existing, &user, format!("user:{}", user.user_id)) {
            plan.changes.users.push(user);
        }
    }
    for (_, profile) in profiles {
        let existing = current
            .role_profiles
            .iter()
            .find(|c| c.role_profile_id == profile.role_profile_id);
        if plan.record(
            existing,
            &profile,
            format!("role_profile:{}", profile.role_profile_id),
        ) {
            plan.changes.role_profiles.push(profile);
        }
    }
    Ok(plan)
}

/// Imports `yaml` into `store`: all or nothing, audited per entry written, by `actor`.
/// With `validate_only`, nothing is written and the counts say what an import would do.
pub async fn import_directory(
    store: &dyn IdentityStore,
    hasher: &CredentialHasher,
    min_credential_length: u32,
    yaml: &str,
    validate_only: bool,
    actor: &AuditActor,
) -> Result<ImportCounts, IdentityError> {
    let file = file::parse(yaml)?;
    let current = store.directory().await?;
    let hasher = hasher.clone();
    // Hashing new users' initial credentials is slow by design: off the async threads.
    let plan = tokio::task::spawn_blocking(move || {
        plan(
            &file,
            &current,
            &hasher,
            min_credential_length,
            OffsetDateTime::now_utc(),
        )
    })
    .await
    .map_err(|e| IdentityError::Internal(format!("import interrupted: {e}")))??;
    if validate_only || plan.changes.is_empty() {
        return Ok(plan.counts);
    }
    let events: Vec<_> = plan
        .entries
        .iter()
        .map(|entry| {
            actor
                .event(audit::IMPORT_DIRECTORY, AuditOutcome::Success)
                .target(entry.target.clone())
                .reason(if entry.created { "created" } else { "updated" })
                .build()
        })
        .collect();
    store.apply_directory(&plan.changes, &events).await?;
    Ok(plan.counts)
}

/// The whole directory in its file format.
pub async fn export_directory(store: &dyn IdentityStore) -> Result<String, IdentityError> {
    let directory = store.directory().await?;
    Ok(file::to_yaml(&file::export(&directory)))
}
