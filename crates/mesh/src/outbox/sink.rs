//! Sinks: where a relay delivers a destination's batches.

use cpis_proto::audit::audit_service_client::AuditServiceClient;
use cpis_proto::audit::{AppendRequest, AuditEvent};
use cpis_proto::notification::notification_service_client::NotificationServiceClient;
use cpis_proto::notification::{NotificationEvent, PublishRequest};
use futures_util::future::BoxFuture;
use prost::Message;

use super::OutboxEvent;
use crate::client::MeshChannel;

/// Events per call that `Append` and `Publish` accept at most.
const MAX_EVENTS_PER_CALL: usize = 500;

/// Why a batch was not delivered. Either way its rows stay in the outbox and are retried
/// with backoff: the outbox never drops an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The destination could not take the batch now (down, overloaded, timed out).
    #[error("destination unavailable: {0}")]
    Retryable(String),
    /// The destination refused the batch's content (e.g. INVALID_ARGUMENT naming one
    /// event). The relay then ships the batch's events one by one, so that one bad event
    /// does not hold back the others.
    #[error("destination refused the batch: {0}")]
    Rejected(String),
}

impl SinkError {
    /// Whether the destination refused the content rather than being unavailable.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Rejected(_))
    }

    /// The error of a failed call: the codes that say the request itself is wrong are
    /// rejections; every other (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
    /// PERMISSION_DENIED while a policy is being fixed, ...) may pass with time.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = format!(
            "{}: {}",
            crate::metrics::code_name(status.code()),
            status.message()
        );
        match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Self::Rejected(message)
            }
            _ => Self::Retryable(message),
        }
    }
}

/// Delivers batches of one destination's events.
///
/// Destinations are idempotent by event id: a batch may be delivered more than once (at
/// least once), never partly confirmed.
pub trait OutboxSink: Send + Sync {
    /// Delivers `events` (in creation order); `Ok` only once the destination confirmed all
    /// of them.
    fn deliver(&self, events: Vec<OutboxEvent>) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// Decodes each payload as `M`, giving it the outbox id and trace context when it lacks
/// them.
fn decode<M: Message + Default>(
    events: &[OutboxEvent],
    complete: impl Fn(&mut M, &OutboxEvent),
) -> Result<Vec<M>, SinkError> {
    events
        .iter()
        .map(|event| {
            let mut message = M::decode(event.payload.as_slice()).map_err(|e| {
                SinkError::Rejected(format!("event {} does not decode: {e}", event.id))
            })?;
            complete(&mut message, event);
            Ok(message)
        })
        .collect()
}

/// Splits `items` into calls of at most [`MAX_EVENTS_PER_CALL`]; none for no item.
fn calls<M>(mut items: Vec<M>) -> Vec<Vec<M>> {
    let mut calls = Vec::new();
    while items.len() > MAX_EVENTS_PER_CALL {
        let rest = items.split_off(MAX_EVENTS_PER_CALL);
        calls.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        calls.push(items);
    }
    calls
}

/// Delivers `audit` events to `AuditService.Append`.
#[derive(Debug, Clone)]
pub struct AuditSink {
    client: AuditServiceClient<MeshChannel>,
}

impl AuditSink {
    /// A sink calling the audit service over `channel`.
    pub fn new(channel: MeshChannel) -> Self {
        Self {
            client: AuditServiceClient::new(channel),
        }
    }
}

impl OutboxSink for AuditSink {
    fn deliver(&self, events: Vec<OutboxEvent>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let decoded = decode(&events, |message: &mut AuditEvent, event| {
                if message.event_id.is_empty() {
                    message.event_id = event.id.to_string();
                }
                if message.trace_context.is_none() {
                    message.trace_context = event.trace_context();
                }
            })?;
            for events in calls(decoded) {
                let sent = events.len();
                let answer = self
                    .client
                    .clone()
                    .append(AppendRequest { events })
                    .await
                    .map_err(|status| SinkError::from_status(&status))?;
                let results = answer.into_inner().results.len();
                if results != sent {
                    return Err(SinkError::Retryable(format!(
                        "Append answered {results} results for {sent} events"
                    )));
                }
            }
            Ok(())
        })
    }
}

/// Delivers `notification` events to `NotificationService.Publish`.
#[derive(Debug, Clone)]
pub struct NotificationSink {
    client: NotificationServiceClient<MeshChannel>,
}

impl NotificationSink {
    /// A sink calling the notification service over `channel`.
    pub fn new(channel: MeshChannel) -> Self {
        Self {
            client: NotificationServiceClient::new(channel),
        }
    }
}

impl OutboxSink for NotificationSink {
    fn deliver(&self, events: Vec<OutboxEvent>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let decoded = decode(&events, |message: &mut NotificationEvent, event| {
                if message.event_id.is_empty() {
                    message.event_id = event.id.to_string();
                }
                if message.trace_context.is_none() {
                    message.trace_context = event.trace_context();
                }
            })?;
            for events in calls(decoded) {
                self.client
                    .clone()
                    .publish(PublishRequest { events })
                    .await
                    .map_err(|status| SinkError::from_status(&status))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_are_retryable_and_bad_content_is_rejected() {
        for status in [
            tonic::Status::unavailable("down"),
            tonic::Status::deadline_exceeded("slow"),
            tonic::Status::resource_exhausted("busy"),
            tonic::Status::permission_denied("policy"),
            tonic::Status::unknown("transport"),
        ] {
            assert!(
                !SinkError::from_status(&status).is_rejection(),
                "{status:?}"
            );
        }
        let rejected = SinkError::from_status(&tonic::Status::invalid_argument("events[0]"));
        assert!(rejected.is_rejection());
        assert!(rejected.to_string().contains("INVALID_ARGUMENT: events[0]"));
    }

    #[test]
    fn calls_hold_at_most_500_events() {
        let sizes: Vec<usize> = calls((0..1201).collect()).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 201]);
        assert!(calls(Vec::<u8>::new()).is_empty());
    }
}
