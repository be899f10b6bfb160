//! The RPC handlers: validate, authorise, call the store, map errors.

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::outbox::{OutboxNotifier, OutboxStore};
use cpis_mesh::token::{Activity, Principal, TokenVerifier};
use cpis_mesh::{ApiError, FieldViolation, Shutdown};
use cpis_proto::notification::notification_service_server::NotificationService;
use cpis_proto::notification::{
    AcknowledgeNotificationsRequest, AcknowledgeNotificationsResponse, ListDeliveryAttemptsRequest,
    ListDeliveryAttemptsResponse, ListNotificationsRequest, ListNotificationsResponse,
    ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, ListWebhooksRequest,
    ListWebhooksResponse, NotificationKind, PublishRequest, PublishResponse,
    RegisterWebhookRequest, RegisterWebhookResponse, RotateWebhookSecretRequest,
    RotateWebhookSecretResponse, SubscribeRequest, SubscribeResponse, UnregisterWebhookRequest,
    UnregisterWebhookResponse,
};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::audit;
use crate::convert::{self, now_us};
use crate::cursor;
use crate::escalation::EscalationPolicy;
use crate::fanout::Fanout;
use crate::publish::notification_of;
use crate::store::{InboxQuery, NotificationStore, StoreError, StoredNotification, WebhookStore};
use crate::subscribe;
use crate::webhook::SecretSealer;
use crate::worker::WorkerWaker;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const MAX_ACKNOWLEDGE: usize = 500;

/// The notification service's handlers over a store.
#[derive(Clone)]
pub struct NotificationApi<S> {
    pub(crate) store: S,
    pub(crate) tokens: TokenVerifier,
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) max_batch: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) shutdown: Shutdown,
    /// Where audit events of reads are written (in a transaction of their own).
    pub(crate) outbox: Arc<dyn OutboxStore>,
    /// Wakes the outbox relay, when this process runs one.
    pub(crate) outbox_notifier: Option<OutboxNotifier>,
    /// Seals webhook secrets before they are stored.
    pub(crate) sealer: SecretSealer,
    /// When attendance notifications are escalated.
    pub(crate) escalation: EscalationPolicy,
    /// Repeated attendances within this window are folded (0: never), microseconds.
    pub(crate) fold_window_us: i64,
    /// Wakes the background worker (deliveries) after a publish.
    pub(crate) worker: WorkerWaker,
}

/// The authority a request names, checked.
fn authority(
    value: Option<&cpis_proto::common::OdsCode>,
) -> Result<cpis_domain::OdsCode, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid("authority", "is required"))?;
    value
        .value
        .parse()
        .map_err(|e: cpis_domain::OdsCodeError| ApiError::invalid("authority", e.to_string()))
}

/// The kinds of a filter: unspecified means any; unknown numbers are refused.
pub(crate) fn kinds(values: &[i32]) -> Result<Vec<i32>, ApiError> {
    let mut kinds = Vec::new();
    for (i, kind) in values.iter().enumerate() {
        match NotificationKind::try_from(*kind) {
            Ok(NotificationKind::Unspecified) => {}
            Ok(k) => kinds.push(k as i32),
            Err(_) => {
                return Err(ApiError::invalid(
                    format!("kinds[{i}]"),
                    "is not a notification kind",
                ));
            }
        }
    }
    Ok(kinds)
}

impl<S: NotificationStore + WebhookStore> NotificationApi<S> {
    /// The user of a call on an authority's inbox: a valid token, `notification.read`, and
    /// the authority the user acts for.
    pub(crate) async fn inbox_user<T>(
        &self,
        request: &Request<T>,
        named: Option<&cpis_proto::common::OdsCode>,
    ) -> Result<(Principal, cpis_domain::OdsCode), ApiError> {
        let principal = self.tokens.verify_metadata(request.metadata()).await?;
        let authority = authority(named)?;
        principal.require(Activity::NotificationRead)?;
        principal.require_organisation(&authority)?;
        Ok((principal, authority))
    }

    /// Records an inbox read before it is answered: a read that cannot be audited is not
    /// served.
    async fn audit_read<T>(
        &self,
        request: &Request<T>,
        action: &str,
        user: &Principal,
        authority: &str,
        reason: String,
    ) -> Result<(), ApiError> {
        let event = audit::inbox_event(action, request.extensions().get(), user, authority, reason)
            .map_err(StoreError::from)?;
        self.outbox
            .enqueue(&[event])
            .await
            .map_err(StoreError::from)?;
        self.notify_outbox();
        Ok(())
    }

    pub(crate) fn notify_outbox(&self) {
        if let Some(notifier) = &self.outbox_notifier {
            notifier.notify();
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<S: NotificationStore + WebhookStore> NotificationService for NotificationApi<S> {
    async fn publish(&self, request: Request<PublishRequest>) -> Reply<PublishResponse> {
        let events = request.into_inner().events;
        if events.is_empty() || events.len() > self.max_batch {
            let message = format!("send 1 to {} events", self.max_batch);
            return Err(ApiError::invalid("events", message).into());
        }
        // One span per event in the trace of the request that produced it: the outbox's
        // asynchronous hop stays in the producer's trace.
        let spans: Vec<tracing::Span> = events
            .iter()
            .filter_map(|event| {
                let context = event.trace_context.as_ref()?;
                let span = tracing::info_span!("notification.store", otel.kind = "consumer");
                cpis_mesh::propagation::continue_trace(
                    &span,
                    &context.traceparent,
                    &context.tracestate,
                );
                Some(span)
            })
            .collect();
        let mut problems: Vec<FieldViolation> = Vec::new();
        let now = now_us();
        let mut new = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            if let Some(mut n) = notification_of(event, &format!("events[{i}]"), &mut problems) {
                if n.kind == NotificationKind::Attendance as i32 {
                    n.escalate_at_us = Some(self.escalation.due_at(now));
                }
                new.push(n);
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let published = self
            .store
            .publish(new, now, self.fold_window_us)
            .await
            .map_err(ApiError::from)?;
        drop(spans);
        self.worker.wake();
        // Each notification once, as it ends up, in inbox order: a stream passes each
        // new place in turn and takes a folded one it has passed as an update.
        let folded: Vec<Uuid> = published.folded.iter().map(|n| n.notification_id).collect();
        let mut announced: Vec<&StoredNotification> = published
            .stored
            .iter()
            .filter(|n| !folded.contains(&n.notification_id))
            .chain(&published.folded)
            .collect();
        announced.sort_by_key(|n| n.seq);
        let live = announced
            .into_iter()
            .map(convert::notification)
            .collect::<Result<Vec<_>, _>>()?;
        tracing::info!(
            stored = published.stored.len(),
            folded = published.folded_events,
            duplicates = published.duplicates,
            "published"
        );
        self.fanout.announce(live).await;
        // Events, not notifications: a folded event counts as stored.
        let stored = published.stored.len() + published.folded_events;
        Ok(Response::new(PublishResponse {
            stored_count: i32::try_from(stored).unwrap_or(i32::MAX),
            duplicate_count: i32::try_from(published.duplicates).unwrap_or(i32::MAX),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Reply<ListNotificationsResponse> {
        let (user, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let filter = if request.get_ref().unacknowledged_only {
            "unacknowledged only"
        } else {
            "all"
        };
        self.audit_read(
            &request,
            audit::LIST,
            &user,
            authority.as_str(),
            filter.to_owned(),
        )
        .await?;
        let body = request.into_inner();
        let limit = match u32::try_from(body.page_size) {
            Ok(0) => DEFAULT_PAGE,
            Ok(n) => n.min(MAX_PAGE),
            Err(_) => return Err(ApiError::invalid("page_size", "must not be negative").into()),
        };
        let after_seq = if body.page_token.is_empty() {
            0
        } else {
            cursor::decode(&body.page_token).ok_or_else(|| {
                ApiError::invalid("page_token", "is not a token this service gave")
            })?
        };
        let query = InboxQuery {
            authority: authority.into_string(),
            after_seq,
            unacknowledged_only: body.unacknowledged_only,
            kinds: kinds(&body.kinds)?,
            limit: limit + 1,
        };
        let mut rows = self.store.list(&query).await.map_err(ApiError::from)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => cursor::encode(last.seq),
            _ => String::new(),
        };
        Ok(Response::new(ListNotificationsResponse {
            notifications: rows
                .iter()
                .map(convert::notification)
                .collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }

    async fn acknowledge_notifications(
        &self,
        request: Request<AcknowledgeNotificationsRequest>,
    ) -> Reply<AcknowledgeNotificationsResponse> {
        let (principal, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let count = request.get_ref().notification_ids.len();
        let event = audit::inbox_event(
            audit::ACKNOWLEDGE,
            request.extensions().get(),
            &principal,
            authority.as_str(),
            format!("{count} notification(s)"),
        )
        .map_err(StoreError::from)
        .map_err(ApiError::from)?;
        let body = request.into_inner();
        if body.notification_ids.is_empty() || body.notification_ids.len() > MAX_ACKNOWLEDGE {
            let message = format!("send 1 to {MAX_ACKNOWLEDGE} ids");
            return Err(ApiError::invalid("notification_ids", message).into());
        }
        let mut ids = Vec::with_capacity(body.notification_ids.len());
        let mut problems = Vec::new();
        for (i, id) in body.notification_ids.iter().enumerate() {
            match Uuid::parse_str(id) {
                Ok(id) => ids.push(id),
                Err(_) => problems.push(FieldViolation::new(
                    format!("notification_ids[{i}]"),
                    "must be a UUID",
                )),
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let by = convert::principal(&principal).encode_to_vec();
        let rows = self
            .store
            .acknowledge(authority.as_str(), &ids, &by, now_us(), &[event])
            .await
            .map_err(ApiError::from)?;
        self.notify_outbox();
        tracing::info!(count = rows.len(), "acknowledged");
        Ok(Response::new(AcknowledgeNotificationsResponse {
            notifications: rows
                .iter()
                .map(convert::notification)
                .collect::<Result<_, _>>()?,
        }))
    }

    type SubscribeStream = ReceiverStream<Result<SubscribeResponse, Status>>;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Reply<Self::SubscribeStream> {
        let (user, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        self.audit_read(
            &request,
            audit::SUBSCRIBE,
            &user,
            authority.as_str(),
            String::new(),
        )
        .await?;
        let body = request.into_inner();
        let kinds = kinds(&body.kinds)?;
        let resume =
            if body.cursor.is_empty() {
                None
            } else {
                Some(cursor::decode(&body.cursor).ok_or_else(|| {
                    ApiError::invalid("cursor", "is not a cursor this service gave")
                })?)
            };
        // Listen before reading where the stream starts: nothing stored in between is
        // missed (and a notification seen twice is dropped by its place).
        let live = self.fanout.subscribe();
        let after = match resume {
            Some(seq) => seq,
            None => self
                .store
                .last_seq(authority.as_str())
                .await
                .map_err(ApiError::from)?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(subscribe::stream(
            subscribe::Stream {
                store: self.store.clone(),
                authority: authority.into_string(),
                kinds,
                after,
                keep_alive: self.keep_alive,
                shutdown: self.shutdown.clone(),
            },
            live,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn register_webhook(
        &self,
        request: Request<RegisterWebhookRequest>,
    ) -> Reply<RegisterWebhookResponse> {
        Ok(Response::new(self.register(request).await?))
    }

    async fn list_webhooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Reply<ListWebhooksResponse> {
        Ok(Response::new(self.list_hooks(request).await?))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> Reply<RotateWebhookSecretResponse> {
        Ok(Response::new(self.rotate(request).await?))
    }

    async fn unregister_webhook(
        &self,
        request: Request<UnregisterWebhookRequest>,
    ) -> Reply<UnregisterWebhookResponse> {
        Ok(Response::new(self.unregister(request).await?))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Reply<ListWebhookDeliveriesResponse> {
        Ok(Response::new(self.deliveries(request).await?))
    }

    async fn list_delivery_attempts(
        &self,
        request: Request<ListDeliveryAttemptsRequest>,
    ) -> Reply<ListDeliveryAttemptsResponse> {
        Ok(Response::new(self.attempts(request).await?))
    }
}
