//! `cpis flags`: a local authority's flags against a running flag registry: upload a CSV
//! file (`upload`), list (`list`), create or change one (`upsert`), end one (`end`).
//!
//! Every command acts for one authority: `--authority`, else the organisation of the
//! session `cpis login` stored. Writes also send the authority's name and contacts: the
//! flags given, the rest from the directory (identity's `GetOrganisation`).

mod csv;
mod manage;
mod records;
mod upload;

use clap::{Args, Subcommand};
use cpis_proto::common;
use cpis_proto::identity::GetOrganisationRequest;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;

use crate::failure::Failure;
use crate::output::Output;
use crate::remote::{Remote, Service, Session};

/// `cpis flags ...`
#[derive(Debug, Args)]
pub(crate) struct FlagsArgs {
    #[command(subcommand)]
    command: FlagsCommand,
}

#[derive(Debug, Subcommand)]
enum FlagsCommand {
    /// Upload a CSV file of flags (all or nothing), with a per-record report.
    Upload(upload::UploadArgs),
    /// List the authority's flags.
    List(manage::ListArgs),
    /// Create or replace one flag (by case reference).
    #[command(disable_version_flag = true)]
    Upsert(manage::UpsertArgs),
    /// End one flag (by case reference).
    #[command(disable_version_flag = true)]
    End(manage::EndArgs),
}

/// Runs `cpis flags ...`.
pub(crate) fn run(args: FlagsArgs, output: Output) -> Result<(), Failure> {
    match args.command {
        FlagsCommand::Upload(args) => upload::run(args, output),
        FlagsCommand::List(args) => manage::list(args, output),
        FlagsCommand::Upsert(args) => manage::upsert(args, output),
        FlagsCommand::End(args) => manage::end(args, output),
    }
}

/// Which authority a command acts for, and (for writes) its name and contacts.
#[derive(Debug, Clone, Args)]
pub(crate) struct AuthorityArgs {
    /// The local authority's ODS code; by default the signed-in session's organisation.
    #[arg(long, value_name = "ODS")]
    authority: Option<String>,
    /// The authority's name (writes); by default the directory's.
    #[arg(long)]
    authority_name: Option<String>,
    /// The emergency duty (out-of-hours) phone sent with the flags; by default the
    /// directory's.
    #[arg(long)]
    emergency_duty_phone: Option<String>,
    /// The office-hours phone sent with the flags; by default the directory's.
    #[arg(long)]
    office_hours_phone: Option<String>,
    /// The secure email sent with the flags; by default the directory's.
    #[arg(long)]
    secure_email: Option<String>,
}

/// Which authority a read acts for.
#[derive(Debug, Clone, Args)]
pub(crate) struct AuthorityCode {
    /// The local authority's ODS code; by default the signed-in session's organisation.
    #[arg(long, value_name = "ODS")]
    authority: Option<String>,
}

/// The authority's code: the flag, else the session's organisation.
fn authority_code(given: Option<&str>, remote: &Remote) -> Result<common::OdsCode, Failure> {
    let code = match given {
        Some(code) => code.trim().to_owned(),
        None => Session::load(&remote.data_dir)?
            .map(|s| s.organisation)
            .ok_or_else(|| {
                Failure::usage("pass --authority (or sign in with `cpis login` to act for yours)")
            })?,
    };
    cpis_domain::OdsCode::parse(&code)
        .map(|c| common::OdsCode {
            value: c.as_str().to_owned(),
        })
        .map_err(|e| Failure::usage(format!("--authority `{code}`: {e}")))
}

impl AuthorityCode {
    /// The authority's code.
    pub(crate) fn resolve(&self, remote: &Remote) -> Result<common::OdsCode, Failure> {
        authority_code(self.authority.as_deref(), remote)
    }
}

impl AuthorityArgs {
    /// The authority with its name, and its contacts: from the flags, the rest from the
    /// directory (only asked when a flag is missing).
    pub(crate) async fn resolve_with_contacts(
        &self,
        remote: &Remote,
    ) -> Result<(common::LocalAuthority, common::AuthorityContacts), Failure> {
        let code = authority_code(self.authority.as_deref(), remote)?;
        let given = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_owned());
        // The name and the emergency phone are enough to write: the optional contacts
        // stay empty rather than cost a call.
        let (name, contacts) =
            if self.authority_name.is_some() && self.emergency_duty_phone.is_some() {
                (String::new(), common::AuthorityContacts::default())
            } else {
                let channel = remote.channel(Service::Identity)?;
                let organisation = IdentityServiceClient::new(channel)
                    .get_organisation(remote.authorized(GetOrganisationRequest {
                        code: Some(code.clone()),
                    })?)
                    .await
                    .map_err(|status| {
                        Failure::from_status(
                            "looking the authority up in the directory (or pass --authority-name \
                         and --emergency-duty-phone)",
                            &status,
                        )
                    })?
                    .into_inner()
                    .organisation
                    .unwrap_or_default();
                (organisation.name, organisation.contacts.unwrap_or_default())
            };
        let authority = common::LocalAuthority {
            code: Some(code),
            name: given(&self.authority_name).unwrap_or(name),
        };
        let contacts = common::AuthorityContacts {
            office_hours_phone: given(&self.office_hours_phone)
                .unwrap_or(contacts.office_hours_phone),
            emergency_duty_phone: given(&self.emergency_duty_phone)
                .unwrap_or(contacts.emergency_duty_phone),
            secure_email: given(&self.secure_email).unwrap_or(contacts.secure_email),
        };
        Ok((authority, contacts))
    }
}
