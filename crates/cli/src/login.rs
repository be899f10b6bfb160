//! `cpis login`: signs a user in through a client system and keeps the session token for
//! the commands that follow.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Args;
use cpis_proto::identity::IssueTokenRequest;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use serde_json::json;

use crate::dev::demo::Demo;
use crate::failure::Failure;
use crate::output::Output;
use crate::remote::{Remote, Service, Session};

/// `cpis login USERNAME`
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The user's sign-in name (under `cpis dev`, one of the users in demo.json).
    username: String,
    /// Read the password from the first line of standard input. Otherwise it comes from
    /// CPIS_PASSWORD, or, for a demo user of `cpis dev`, from demo.json.
    #[arg(long)]
    password_stdin: bool,
    /// The role profile to act through, when the user has several.
    #[arg(long)]
    role_profile: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `cpis login`.
pub(crate) fn run(args: LoginArgs, output: Output) -> Result<(), Failure> {
    let demo = Demo::load(&args.remote.data_dir);
    let demo_user = demo.as_ref().and_then(|d| d.user(&args.username));
    let tls_dir: PathBuf = match (&args.remote.tls_dir, demo_user) {
        (Some(dir), _) => dir.clone(),
        (None, Some(user)) => crate::dev::system_dir(&args.remote.data_dir, &user.system),
        (None, None) => {
            return Err(Failure::usage(format!(
                "`{}` is not a demo user of {}: pass --tls-dir with your system's ca.crt, \
                 tls.crt and tls.key",
                args.username,
                args.remote.data_dir.display()
            )));
        }
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("reading the password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Ok(password) = std::env::var("CPIS_PASSWORD") {
        password
    } else if let Some(user) = demo_user {
        user.password.clone()
    } else {
        return Err(Failure::usage(
            "no password: pass --password-stdin or set CPIS_PASSWORD",
        ));
    };

    let runtime = crate::remote::runtime()?;
    let _entered = runtime.enter();
    let channel = args.remote.channel_with(Service::Identity, &tls_dir)?;
    let request = IssueTokenRequest {
        username: args.username.clone(),
        credential: password,
        role_profile_id: args.role_profile.clone().unwrap_or_default(),
    };
    let response = runtime
        .block_on(IdentityServiceClient::new(channel).issue_token(request))
        .map_err(|s| Failure::from_status("signing in", &s))?
        .into_inner();
    let principal = response.principal.unwrap_or_default();
    let organisation = crate::show::ods(principal.organisation.as_ref());
    let expires = crate::show::rfc3339(response.expire_time.as_ref());
    let session = Session {
        token: response.access_token,
        expires: expires.as_str().unwrap_or_default().to_owned(),
        username: args.username.clone(),
        organisation: organisation.clone(),
        tls_dir,
    };
    let path = session.save(&args.remote.data_dir)?;
    let activities: Vec<String> = response
        .activities
        .iter()
        .map(|a| crate::show::activity(*a))
        .collect();
    if output.json {
        output.json(&json!({
            "username": args.username,
            "display_name": principal.display_name,
            "organisation": organisation,
            "role": principal.role,
            "activities": activities,
            "expires": expires,
            "session_file": path,
        }));
    } else {
        output.line(&format!(
            "signed in as {} ({}) for {organisation}; may: {}",
            principal.display_name,
            principal.role,
            activities.join(", ")
        ));
        output.line(&format!(
            "session saved in {} until {}",
            path.display(),
            session.expires
        ));
    }
    Ok(())
}
