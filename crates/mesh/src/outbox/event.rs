//! Outbox events: the one a producer writes, and the one a relay claims.

use http::HeaderMap;
use http::header::HeaderValue;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AUDIT, NOTIFICATION, OutboxError};
use crate::propagation;

/// An event to write into the outbox, in the producer's transaction.
///
/// Its trace context is captured from the current tracing span when it is built, so build
/// it inside the span of the request that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    id: Uuid,
    destination: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl NewOutboxEvent {
    /// An event for `destination` carrying `payload` (bytes its sink understands), with a
    /// fresh UUID v7 and the current span's trace context.
    pub fn new(destination: impl Into<String>, payload: Vec<u8>) -> Self {
        let (traceparent, tracestate) = current_trace_context();
        Self {
            // v7: time-ordered, so ids sort roughly like the events and index well.
            id: Uuid::now_v7(),
            destination: destination.into(),
            payload,
            traceparent,
            tracestate,
        }
    }

    /// An event for the audit service. Its `event_id` becomes the outbox id (a fresh UUID
    /// v7 when empty) and, when it has none, it gets the current span's trace context.
    pub fn audit(mut event: cpis_proto::audit::AuditEvent) -> Result<Self, OutboxError> {
        let id = event_id(&mut event.event_id)?;
        let this = Self::new(AUDIT, Vec::new()).with_id(id);
        if event.trace_context.is_none() {
            event.trace_context = this.trace_context();
        }
        Ok(Self {
            payload: event.encode_to_vec(),
            ..this
        })
    }

    /// An event for the notification service, with its id and trace context as
    /// [`audit`](Self::audit) does.
    pub fn notification(
        mut event: cpis_proto::notification::NotificationEvent,
    ) -> Result<Self, OutboxError> {
        let id = event_id(&mut event.event_id)?;
        let this = Self::new(NOTIFICATION, Vec::new()).with_id(id);
        if event.trace_context.is_none() {
            event.trace_context = this.trace_context();
        }
        Ok(Self {
            payload: event.encode_to_vec(),
            ..this
        })
    }

    /// The same event with the id `id` (for a producer that chose the id itself, e.g. to
    /// put it inside the payload).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// The same event with the trace context given instead of the captured one.
    pub fn with_trace_context(
        mut self,
        traceparent: Option<String>,
        tracestate: Option<String>,
    ) -> Self {
        self.traceparent = traceparent.filter(|v| !v.is_empty());
        self.tracestate = tracestate.filter(|v| !v.is_empty());
        self
    }

    /// The event's id: destinations ignore an id they have seen.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Where it goes (`audit`, `notification`).
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// What it carries.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The W3C `traceparent` captured, if the producer had a trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The W3C `tracestate` captured, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    fn trace_context(&self) -> Option<cpis_proto::common::TraceContext> {
        trace_context(self.traceparent.as_deref(), self.tracestate.as_deref())
    }
}

/// Parses a producer's event id, or chooses one when it is empty.
fn event_id(field: &mut String) -> Result<Uuid, OutboxError> {
    if field.is_empty() {
        let id = Uuid::now_v7();
        *field = id.to_string();
        return Ok(id);
    }
    Uuid::parse_str(field).map_err(|_| OutboxError::EventId(field.clone()))
}

/// The trace context of the current span, as W3C header values.
fn current_trace_context() -> (Option<String>, Option<String>) {
    let mut headers = HeaderMap::new();
    propagation::inject(&tracing::Span::current(), &mut headers);
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    (value("traceparent"), value("tracestate"))
}

fn trace_context(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<cpis_proto::common::TraceContext> {
    traceparent.map(|traceparent| cpis_proto::common::TraceContext {
        traceparent: traceparent.to_owned(),
        tracestate: tracestate.unwrap_or_default().to_owned(),
    })
}

/// An event as a relay claimed it from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its place in creation order.
    pub seq: i64,
    /// The producer's id: the destination's idempotency key.
    pub id: Uuid,
    /// Where it goes.
    pub destination: String,
    /// What it carries.
    pub payload: Vec<u8>,
    /// The producer's W3C `traceparent`, if it had a trace.
    pub traceparent: Option<String>,
    /// The producer's W3C `tracestate`, if any.
    pub tracestate: Option<String>,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// Deliveries that failed so far.
    pub attempts: u32,
}

impl OutboxEvent {
    /// The producer's span, to link the relay's span to it; `None` without a valid
    /// stored trace context.
    pub fn span_context(&self) -> Option<SpanContext> {
        let mut headers = HeaderMap::new();
        let parent = HeaderValue::from_str(self.traceparent.as_deref()?).ok()?;
        headers.insert("traceparent", parent);
        if let Some(state) = self
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert("tracestate", state);
        }
        let cx = propagation::extract(&headers);
        let span_context = cx.span().span_context().clone();
        span_context.is_valid().then_some(span_context)
    }

    /// The stored trace context as the contracts carry it, for sinks to put into events
    /// that lack one.
    pub fn trace_context(&self) -> Option<cpis_proto::common::TraceContext> {
        trace_context(self.traceparent.as_deref(), self.tracestate.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_event_gets_the_outbox_id() {
        let event = NewOutboxEvent::audit(cpis_proto::audit::AuditEvent::default()).unwrap();
        let decoded = cpis_proto::audit::AuditEvent::decode(event.payload()).unwrap();
        assert_eq!(decoded.event_id, event.id().to_string());
        assert_eq!(event.destination(), AUDIT);
        // No subscriber, no trace: nothing is invented.
        assert_eq!(event.traceparent(), None);
        assert_eq!(decoded.trace_context, None);
    }

    #[test]
    fn a_given_event_id_is_kept_and_checked() {
        let id = Uuid::now_v7();
        let event = NewOutboxEvent::notification(cpis_proto::notification::NotificationEvent {
            event_id: id.to_string(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(event.id(), id);
        let bad = NewOutboxEvent::audit(cpis_proto::audit::AuditEvent {
            event_id: "not-a-uuid".to_owned(),
            ..Default::default()
        });
        assert!(matches!(bad, Err(OutboxError::EventId(_))));
    }

    #[test]
    fn a_stored_traceparent_gives_a_span_context() {
        let event = OutboxEvent {
            seq: 1,
            id: Uuid::now_v7(),
            destination: AUDIT.to_owned(),
            payload: Vec::new(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            tracestate: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            attempts: 0,
        };
        let span_context = event.span_context().unwrap();
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let garbage = OutboxEvent {
            traceparent: Some("garbage".to_owned()),
            ..event
        };
        assert!(garbage.span_context().is_none());
    }
}
