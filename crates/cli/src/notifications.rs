//! `cpis notifications`: a local authority's inbox — list, acknowledge, watch live.

use clap::{Args, Subcommand};
use cpis_proto::common::OdsCode;
use cpis_proto::notification::notification::Payload;
use cpis_proto::notification::notification_service_client::NotificationServiceClient;
use cpis_proto::notification::subscribe_response::Event;
use cpis_proto::notification::{
    AcknowledgeNotificationsRequest, ListNotificationsRequest, Notification, NotificationKind,
    SubscribeRequest,
};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::{Output, Table};
use crate::remote::{Remote, Service, Session};
use crate::show;

/// `cpis notifications ...`
#[derive(Debug, Args)]
pub(crate) struct NotificationsArgs {
    #[command(subcommand)]
    command: NotificationsCommand,
}

#[derive(Debug, Subcommand)]
enum NotificationsCommand {
    /// List the inbox, newest last.
    List {
        /// Only those nobody has acknowledged yet.
        #[arg(long)]
        unacknowledged: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i32,
        #[command(flatten)]
        target: Target,
    },
    /// Acknowledge notifications by id (who and when is recorded).
    Ack {
        /// The notifications' ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Stream the inbox live: the backlog after --cursor, then each new notification as it
    /// arrives (Ctrl-C stops).
    Watch {
        /// Start after this cursor (from an earlier notification); by default only new ones.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The authority (ODS code); by default the signed-in user's organisation.
    #[arg(long)]
    authority: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

impl Target {
    fn authority(&self) -> Result<OdsCode, Failure> {
        let value = match &self.authority {
            Some(code) => code.trim().to_ascii_uppercase(),
            None => Session::load(&self.remote.data_dir)?
                .map(|s| s.organisation)
                .ok_or_else(|| Failure::usage("pass --authority ODS (or run `cpis login`)"))?,
        };
        Ok(OdsCode { value })
    }
}

/// Runs `cpis notifications ...`.
pub(crate) fn run(args: NotificationsArgs, output: Output) -> Result<(), Failure> {
    crate::remote::runtime()?.block_on(async {
        match args.command {
            NotificationsCommand::List {
                unacknowledged,
                limit,
                target,
            } => list(&target, unacknowledged, limit, output).await,
            NotificationsCommand::Ack { ids, target } => ack(&target, ids, output).await,
            NotificationsCommand::Watch { cursor, target } => watch(&target, cursor, output).await,
        }
    })
}

async fn list(
    target: &Target,
    unacknowledged: bool,
    limit: i32,
    output: Output,
) -> Result<(), Failure> {
    let mut client = NotificationServiceClient::new(target.remote.channel(Service::Notification)?);
    let request = target.remote.authorized(ListNotificationsRequest {
        authority: Some(target.authority()?),
        unacknowledged_only: unacknowledged,
        kinds: Vec::new(),
        page_size: limit,
        page_token: String::new(),
    })?;
    let answer = client
        .list_notifications(request)
        .await
        .map_err(|s| Failure::from_status("listing notifications", &s))?
        .into_inner();
    if output.json {
        output.json(&json!({
            "notifications": answer.notifications.iter().map(notification_json).collect::<Vec<_>>(),
            "next_page_token": answer.next_page_token,
        }));
        return Ok(());
    }
    if answer.notifications.is_empty() {
        output.line("The inbox is empty.");
        return Ok(());
    }
    let mut table = Table::new(&[
        "id",
        "when",
        "kind",
        "child",
        "where",
        "count",
        "acknowledged",
    ]);
    for n in &answer.notifications {
        let (child, place) = subject(n);
        table.row(vec![
            n.notification_id.clone(),
            show::time(n.occur_time.as_ref()),
            kind(n.kind).to_owned(),
            child,
            place,
            n.occurrence_count.max(1).to_string(),
            n.acknowledgement
                .as_ref()
                .map(|a| {
                    format!(
                        "{} by {}",
                        show::time(a.acknowledge_time.as_ref()),
                        a.acknowledged_by
                            .as_ref()
                            .map(|p| p.display_name.clone())
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "no".to_owned()),
        ]);
    }
    table.print();
    Ok(())
}

async fn ack(target: &Target, ids: Vec<String>, output: Output) -> Result<(), Failure> {
    let mut client = NotificationServiceClient::new(target.remote.channel(Service::Notification)?);
    let request = target.remote.authorized(AcknowledgeNotificationsRequest {
        authority: Some(target.authority()?),
        notification_ids: ids,
    })?;
    let answer = client
        .acknowledge_notifications(request)
        .await
        .map_err(|s| Failure::from_status("acknowledging", &s))?
        .into_inner();
    if output.json {
        output.json(&json!({
            "notifications": answer.notifications.iter().map(notification_json).collect::<Vec<_>>(),
        }));
    } else {
        for n in &answer.notifications {
            output.line(&format!("acknowledged {}", n.notification_id));
        }
    }
    Ok(())
}

async fn watch(target: &Target, cursor: Option<String>, output: Output) -> Result<(), Failure> {
    let mut client = NotificationServiceClient::new(target.remote.channel(Service::Notification)?);
    let authority = target.authority()?;
    let request = target.remote.authorized(SubscribeRequest {
        authority: Some(authority.clone()),
        cursor: cursor.unwrap_or_default(),
        kinds: Vec::new(),
    })?;
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(|s| Failure::from_status("subscribing", &s))?
        .into_inner();
    output.line(&format!(
        "watching the inbox of {} (Ctrl-C stops)",
        authority.value
    ));
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match next {
            Ok(Some(response)) => match response.event {
                Some(Event::Notification(n)) => {
                    if output.json {
                        // One JSON object per line, for a pipe.
                        crate::say(&notification_json(&n).to_string());
                    } else {
                        let (child, place) = subject(&n);
                        output.line(&format!(
                            "{}  {}  {child} at {place}  (id {}, cursor {})",
                            show::time(n.occur_time.as_ref()),
                            kind(n.kind),
                            n.notification_id,
                            n.cursor
                        ));
                    }
                }
                Some(Event::KeepAlive(_)) | None => {}
            },
            Ok(None) => {
                return Err(Failure::unavailable(
                    "the notification service ended the stream; run the command again",
                ));
            }
            Err(status) => return Err(Failure::from_status("watching", &status)),
        }
    }
}

fn kind(value: i32) -> &'static str {
    match NotificationKind::try_from(value) {
        Ok(NotificationKind::Attendance) => "attendance",
        Ok(NotificationKind::Escalation) => "ESCALATION",
        Ok(NotificationKind::NhsNumberSuperseded) => "NHS number superseded",
        Ok(NotificationKind::NhsNumberInactive) => "NHS number inactive",
        _ => "other",
    }
}

/// The child and the place a notification is about.
fn subject(n: &Notification) -> (String, String) {
    let attendance = match &n.payload {
        Some(Payload::Attendance(a)) => Some(a),
        Some(Payload::Escalation(e)) => e.attendance.as_ref(),
        Some(Payload::NhsNumberChange(c)) => {
            return (
                c.nhs_number
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_default(),
                format!("case {}", c.case_reference),
            );
        }
        None => None,
    };
    attendance.map_or_else(Default::default, |a| {
        (
            a.nhs_number
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_default(),
            show::setting(a.care_setting.as_ref()),
        )
    })
}

fn notification_json(n: &Notification) -> Value {
    let (child, place) = subject(n);
    json!({
        "notification_id": n.notification_id,
        "kind": kind(n.kind),
        "authority": show::ods(n.authority.as_ref()),
        "occur_time": show::rfc3339(n.occur_time.as_ref()),
        "last_occur_time": show::rfc3339(n.last_occur_time.as_ref()),
        "occurrence_count": n.occurrence_count.max(1),
        "nhs_number": child,
        "where": place,
        "acknowledged": n.acknowledgement.is_some(),
        "cursor": n.cursor,
        "event_id": n.event_id,
    })
}
