//! `cpis bench notify`: how long after a check returns its authority hears of it — the time
//! from `RecordAttendance` answering to the authority's live `Subscribe` stream delivering
//! the notification, through attendance's outbox, the relay and the notification service.
//!
//! One check at a time (paced to `--rate`), so each notification is matched to its check
//! without ambiguity: after a check returns, the next event about that child on the stream
//! is its notification (a new one, or the same one with a higher count when repeated
//! attendances fold).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use cpis_mesh::client::MeshChannel;
use cpis_proto::attendance::RecordAttendanceRequest;
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::common::{self, CareSettingType};
use cpis_proto::identity::IssueTokenRequest;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use cpis_proto::notification::notification::Payload;
use cpis_proto::notification::notification_service_client::NotificationServiceClient;
use cpis_proto::notification::subscribe_response::Event;
use cpis_proto::notification::{Notification, SubscribeRequest};
use serde_json::json;
use tonic::Request;

use super::histogram::Histogram;
use crate::dev::demo::Demo;
use crate::failure::Failure;
use crate::output::Output;
use crate::remote::{Remote, Service};

/// `cpis bench notify ...`
#[derive(Debug, Clone, Args)]
pub(super) struct NotifyArgs {
    /// How many checks to time.
    #[arg(long, short = 'n', default_value_t = 100)]
    checks: u32,
    /// Checks per second (one at a time).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// The authority to listen to (ODS); with `cpis dev`, Camden.
    #[arg(long)]
    authority: Option<String>,
    /// A token of the authority's user with notification.read; with `cpis dev`, the demo's
    /// social worker is signed in.
    #[arg(long, hide_env_values = true)]
    watch_token: Option<String>,
    /// A client certificate directory of the authority's system, for the stream; with
    /// `cpis dev`, the demo's.
    #[arg(long)]
    watch_tls_dir: Option<std::path::PathBuf>,
    /// Children the authority flags (repeatable); with `cpis dev`, the demo's Camden flags.
    #[arg(long = "nhs-number")]
    nhs_numbers: Vec<String>,
    /// The emergency department's organisation (ODS); by default the checker's.
    #[arg(long)]
    organisation: Option<String>,
    /// Its site code.
    #[arg(long, default_value = "")]
    site: String,
}

/// Who listens, and to which children.
struct Listener {
    authority: String,
    token: String,
    channel: MeshChannel,
    children: Vec<String>,
}

async fn listener(remote: &Remote, args: &NotifyArgs) -> Result<Listener, Failure> {
    let demo = Demo::load(&remote.data_dir);
    let authority = match (&args.authority, &demo) {
        (Some(ods), _) => ods.trim().to_ascii_uppercase(),
        (None, Some(_)) => crate::dev::demo::CAMDEN.to_owned(),
        (None, None) => return Err(Failure::usage("pass --authority ODS")),
    };
    let tls_dir = match (&args.watch_tls_dir, &demo) {
        (Some(dir), _) => dir.clone(),
        (None, Some(_)) => {
            crate::dev::system_dir(&remote.data_dir, crate::dev::demo::system_of(&authority))
        }
        (None, None) => return Err(Failure::usage("pass --watch-tls-dir")),
    };
    let channel = remote.channel_with(Service::Notification, &tls_dir)?;
    let token = match (&args.watch_token, &demo) {
        (Some(token), _) => token.clone(),
        (None, Some(demo)) => demo_sign_in(remote, demo, &authority, &tls_dir).await?,
        (None, None) => return Err(Failure::usage("pass --watch-token")),
    };
    let children = if args.nhs_numbers.is_empty() {
        demo_children(&remote.data_dir, &authority)?
    } else {
        args.nhs_numbers.clone()
    };
    Ok(Listener {
        authority,
        token,
        channel,
        children,
    })
}

/// Signs the demo's user of `authority` in.
async fn demo_sign_in(
    remote: &Remote,
    demo: &Demo,
    authority: &str,
    tls_dir: &Path,
) -> Result<String, Failure> {
    let user = demo
        .users
        .iter()
        .find(|u| u.organisation == authority)
        .ok_or_else(|| Failure::usage(format!("demo.json has no user of {authority}")))?;
    let mut identity = IdentityServiceClient::new(remote.channel_with(Service::Identity, tls_dir)?);
    let answer = identity
        .issue_token(Request::new(IssueTokenRequest {
            username: user.username.clone(),
            credential: user.password.clone(),
            role_profile_id: String::new(),
        }))
        .await
        .map_err(|s| Failure::from_status("signing the listener in", &s))?;
    Ok(answer.into_inner().access_token)
}

/// The demo's children flagged by `authority` (its flags' numbers).
fn demo_children(data_dir: &Path, authority: &str) -> Result<Vec<String>, Failure> {
    let demo = Demo::load(data_dir)
        .ok_or_else(|| Failure::usage("pass --nhs-number (children the authority flags)"))?;
    // The demo flags alternate authorities in each kind: Camden first, Islington second.
    let index = usize::from(authority != crate::dev::demo::CAMDEN);
    let children: Vec<String> = ["cpp", "lac"]
        .iter()
        .filter_map(|kind| demo.nhs_numbers.get(*kind)?.get(index).cloned())
        .collect();
    if children.is_empty() {
        return Err(Failure::usage(
            "pass --nhs-number (children the authority flags)",
        ));
    }
    Ok(children)
}

fn child_of(n: &Notification) -> Option<&str> {
    match &n.payload {
        Some(Payload::Attendance(a)) => a.nhs_number.as_ref().map(|n| n.value.as_str()),
        _ => None,
    }
}

/// Runs `cpis bench notify`.
pub(super) async fn run(remote: &Remote, args: &NotifyArgs, output: Output) -> Result<(), Failure> {
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err(Failure::usage("--rate must be above zero"));
    }
    let listener = listener(remote, args).await?;
    let token = remote.token()?;
    let organisation = match &args.organisation {
        Some(ods) => ods.clone(),
        None => super::numbers::token_organisation(&token)
            .ok_or_else(|| Failure::usage("pass --organisation ODS"))?,
    };
    let mut stream = NotificationServiceClient::new(listener.channel.clone())
        .subscribe(bearer(
            &listener.token,
            SubscribeRequest {
                authority: Some(common::OdsCode {
                    value: listener.authority.clone(),
                }),
                cursor: String::new(),
                kinds: Vec::new(),
            },
        ))
        .await
        .map_err(|s| Failure::from_status("subscribing", &s))?
        .into_inner();
    let mut checks = AttendanceServiceClient::new(remote.channel(Service::Attendance)?);
    let pace = Duration::from_secs_f64(1.0 / args.rate);
    let wait_limit = Duration::from_secs(30);
    let mut latencies = Histogram::default();
    let mut lost = 0u32;
    let started = Instant::now();
    for n in 0..args.checks {
        let due = started + pace * n;
        tokio::time::sleep_until(due.into()).await;
        let child = &listener.children[n as usize % listener.children.len()];
        let request = RecordAttendanceRequest {
            nhs_number: Some(common::NhsNumber {
                value: child.clone(),
            }),
            care_setting: Some(common::CareSetting {
                organisation: Some(common::OdsCode {
                    value: organisation.clone(),
                }),
                site: args.site.clone(),
                setting_type: CareSettingType::EmergencyDepartment as i32,
                name: String::new(),
                phone: String::new(),
            }),
            arrival_time: None,
            request_id: String::new(),
        };
        let answer = checks
            .record_attendance(bearer(&token, request))
            .await
            .map_err(|s| Failure::from_status("a check", &s))?
            .into_inner();
        if !answer.authorities_notified {
            return Err(Failure::usage(format!(
                "{child} is not flagged by a notified authority: pass --nhs-number of \
                 children {} flags",
                listener.authority
            )));
        }
        let returned = Instant::now();
        let heard = tokio::time::timeout(wait_limit, async {
            loop {
                match stream.message().await {
                    Ok(Some(message)) => {
                        if let Some(Event::Notification(n)) = message.event
                            && child_of(&n) == Some(child.as_str())
                        {
                            return Ok(Instant::now());
                        }
                    }
                    Ok(None) => return Err(Failure::unavailable("the stream ended")),
                    Err(s) => return Err(Failure::from_status("the stream", &s)),
                }
            }
        })
        .await;
        match heard {
            Ok(at) => latencies.record(at?.saturating_duration_since(returned)),
            Err(_) => lost += 1,
        }
    }
    let ms = |q: f64| latencies.quantile(q) as f64 / 1000.0;
    if output.json {
        output.json(&json!({
            "authority": listener.authority,
            "checks": args.checks,
            "rate_per_second": args.rate,
            "heard": latencies.count(),
            "not_heard_within_30s": lost,
            "latency_ms": {
                "p50": ms(0.50),
                "p95": ms(0.95),
                "p99": ms(0.99),
                "max": latencies.max() as f64 / 1000.0,
                "mean": latencies.mean() / 1000.0,
            },
        }));
    } else {
        output.line(&format!(
            "{} checks at {}/s; {} heard by {}'s live stream, {} not within 30 s",
            args.checks,
            args.rate,
            latencies.count(),
            listener.authority,
            lost
        ));
        output.line(&format!(
            "check returned → notification received: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(0.50),
            ms(0.95),
            ms(0.99),
            latencies.max() as f64 / 1000.0
        ));
    }
    if lost > 0 {
        return Err(Failure::failed(format!(
            "{lost} notifications were not heard within 30 s"
        )));
    }
    Ok(())
}

fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
