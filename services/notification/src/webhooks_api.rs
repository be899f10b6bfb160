//! The webhook RPCs: validate, authorise (the authority's own users with
//! `notification.read`), call the store, map errors. Registration, rotation and
//! unregistration are audited in the same transaction as the change; secrets are sealed
//! before they reach the store and never returned or logged.

use std::time::Duration;

use cpis_mesh::authz::Caller;
use cpis_mesh::{ApiError, FieldViolation};
use cpis_proto::common::OdsCode;
use cpis_proto::notification::{
    DeliveryAttempt, DeliveryState, ListDeliveryAttemptsRequest, ListDeliveryAttemptsResponse,
    ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, ListWebhooksRequest,
    ListWebhooksResponse, RegisterWebhookRequest, RegisterWebhookResponse,
    RotateWebhookSecretRequest, RotateWebhookSecretResponse, UnregisterWebhookRequest,
    UnregisterWebhookResponse, Webhook, WebhookDelivery,
};
use tonic::Request;
use uuid::Uuid;

use crate::api::NotificationApi;
use crate::audit;
use crate::convert::{now_us, timestamp};
use crate::cursor;
use crate::store::{
    AttemptQuery, DeliveryQuery, NewWebhook, NotificationStore, StoreError, StoredAttempt,
    StoredDelivery, StoredWebhook, WebhookStore,
};
use crate::webhook::{check_secret, check_url};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const MAX_DESCRIPTION: usize = 500;
/// The previous secret's overlap when the request leaves it unset, and its longest.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

fn page_size(value: i32) -> Result<u32, ApiError> {
    match u32::try_from(value) {
        Ok(0) => Ok(DEFAULT_PAGE),
        Ok(n) => Ok(n.min(MAX_PAGE)),
        Err(_) => Err(ApiError::invalid("page_size", "must not be negative")),
    }
}

fn page_token(kind: &str, token: &str) -> Result<Option<Uuid>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    cursor::decode_id(kind, token)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page_token", "is not a token this service gave"))
}

/// An optional id filter (empty: none).
fn optional_id(field: &str, value: &str) -> Result<Option<Uuid>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(value)
        .map(Some)
        .map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

fn required_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    optional_id(field, value)?.ok_or_else(|| ApiError::invalid(field, "is required"))
}

/// The page of `rows` (fetched one too many) and the token of the next one.
fn page<T>(mut rows: Vec<T>, limit: u32, kind: &str, id: impl Fn(&T) -> Uuid) -> (Vec<T>, String) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let token = match rows.last() {
        Some(last) if more => cursor::encode_id(kind, id(last)),
        _ => String::new(),
    };
    (rows, token)
}

fn webhook(w: &StoredWebhook, now_us: i64) -> Webhook {
    Webhook {
        webhook_id: w.webhook_id.to_string(),
        authority: Some(OdsCode {
            value: w.authority.clone(),
        }),
        url: w.url.clone(),
        escalation: w.escalation,
        description: w.description.clone(),
        create_time: Some(timestamp(w.create_time_us)),
        secret_create_time: Some(timestamp(w.secret_create_time_us)),
        previous_secret_expire_time: w
            .previous_secret
            .as_ref()
            .and(w.previous_secret_expire_us)
            .filter(|until| *until > now_us)
            .map(timestamp),
    }
}

fn delivery(d: &StoredDelivery) -> WebhookDelivery {
    WebhookDelivery {
        delivery_id: d.delivery_id.to_string(),
        webhook_id: d.webhook_id.to_string(),
        notification_id: d.notification_id.to_string(),
        state: d.state,
        attempt_count: d.attempt_count,
        create_time: Some(timestamp(d.create_time_us)),
        last_attempt_time: d.last_attempt_us.map(timestamp),
        next_attempt_time: d
            .next_attempt_us
            .filter(|_| d.state == DeliveryState::Pending as i32)
            .map(timestamp),
        last_error: d.last_error.clone(),
        complete_time: d.complete_time_us.map(timestamp),
    }
}

fn attempt(a: &StoredAttempt) -> DeliveryAttempt {
    DeliveryAttempt {
        delivery_id: a.delivery_id.to_string(),
        webhook_id: a.webhook_id.to_string(),
        notification_id: a.notification_id.to_string(),
        attempt_number: a.attempt_number,
        attempt_time: Some(timestamp(a.attempt_time_us)),
        http_status: a.http_status,
        latency: Some(prost_types::Duration {
            seconds: a.latency_us / 1_000_000,
            nanos: i32::try_from((a.latency_us % 1_000_000) * 1_000).unwrap_or_default(),
        }),
        success: a.success,
        error: a.error.clone(),
    }
}

impl<S: NotificationStore + WebhookStore> NotificationApi<S> {
    pub(crate) async fn register(
        &self,
        request: Request<RegisterWebhookRequest>,
    ) -> Result<RegisterWebhookResponse, ApiError> {
        let (user, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let caller = request.extensions().get::<Caller>().cloned();
        let body = request.into_inner();
        let mut problems = Vec::new();
        let url =
            check_url(body.url.trim()).map_err(|e| problems.push(FieldViolation::new("url", e)));
        if let Err(e) = check_secret(&body.secret) {
            problems.push(FieldViolation::new("secret", e));
        }
        if body.description.chars().count() > MAX_DESCRIPTION {
            problems.push(FieldViolation::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
        let Ok(url) = url else {
            return Err(ApiError::InvalidArgument(problems));
        };
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems));
        }
        let webhook_id = Uuid::now_v7();
        let secret = self
            .sealer
            .seal(webhook_id, body.secret.as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let event = audit::webhook_event(
            audit::WEBHOOK_REGISTER,
            caller.as_ref(),
            &user,
            webhook_id,
            format!(
                "host {}, escalation {}",
                url.host().unwrap_or_default(),
                body.escalation
            ),
        )
        .map_err(StoreError::from)?;
        let now = now_us();
        let stored = self
            .store
            .register_webhook(
                NewWebhook {
                    webhook_id,
                    authority: authority.into_string(),
                    url: body.url.trim().to_owned(),
                    escalation: body.escalation,
                    description: body.description,
                    secret,
                    now_us: now,
                },
                &[event],
            )
            .await?;
        self.notify_outbox();
        tracing::info!(webhook = %webhook_id, "webhook registered");
        Ok(RegisterWebhookResponse {
            webhook: Some(webhook(&stored, now)),
        })
    }

    pub(crate) async fn list_hooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Result<ListWebhooksResponse, ApiError> {
        let (_, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let body = request.into_inner();
        let limit = page_size(body.page_size)?;
        let after = page_token("w1", &body.page_token)?;
        let rows = self
            .store
            .list_webhooks(authority.as_str(), after, limit + 1)
            .await?;
        let (rows, next_page_token) = page(rows, limit, "w1", |w| w.webhook_id);
        let now = now_us();
        Ok(ListWebhooksResponse {
            webhooks: rows.iter().map(|w| webhook(w, now)).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn rotate(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> Result<RotateWebhookSecretResponse, ApiError> {
        let (user, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let caller = request.extensions().get::<Caller>().cloned();
        let body = request.into_inner();
        let mut problems = Vec::new();
        let id = Uuid::parse_str(&body.webhook_id).map_err(|_| {
            let problem = if body.webhook_id.is_empty() {
                "is required"
            } else {
                "must be a UUID"
            };
            problems.push(FieldViolation::new("webhook_id", problem));
        });
        if let Err(e) = check_secret(&body.new_secret) {
            problems.push(FieldViolation::new("new_secret", e));
        }
        let overlap = match body.previous_secret_validity {
            None => Some(DEFAULT_OVERLAP),
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                problems.push(FieldViolation::new(
                    "previous_secret_validity",
                    "must not be negative",
                ));
                None
            }
            Some(d) => {
                let d = Duration::new(d.seconds.unsigned_abs(), d.nanos.unsigned_abs());
                if d > MAX_OVERLAP {
                    problems.push(FieldViolation::new(
                        "previous_secret_validity",
                        "must be at most 7 days",
                    ));
                }
                Some(d)
            }
        };
        let (Ok(id), Some(overlap)) = (id, overlap) else {
            return Err(ApiError::InvalidArgument(problems));
        };
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems));
        }
        let now = now_us();
        let previous_expire_us = (!overlap.is_zero())
            .then(|| now.saturating_add(i64::try_from(overlap.as_micros()).unwrap_or(i64::MAX)));
        let secret = self
            .sealer
            .seal(id, body.new_secret.as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let event = audit::webhook_event(
            audit::WEBHOOK_ROTATE_SECRET,
            caller.as_ref(),
            &user,
            id,
            format!("previous secret valid for {}s", overlap.as_secs()),
        )
        .map_err(StoreError::from)?;
        let stored = self
            .store
            .rotate_webhook_secret(
                authority.as_str(),
                id,
                secret,
                previous_expire_us,
                now,
                &[event],
            )
            .await?;
        self.notify_outbox();
        tracing::info!(webhook = %id, "webhook secret rotated");
        Ok(RotateWebhookSecretResponse {
            webhook: Some(webhook(&stored, now)),
        })
    }

    pub(crate) async fn unregister(
        &self,
        request: Request<UnregisterWebhookRequest>,
    ) -> Result<UnregisterWebhookResponse, ApiError> {
        let (user, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let id = required_id("webhook_id", &request.get_ref().webhook_id)?;
        let event = audit::webhook_event(
            audit::WEBHOOK_UNREGISTER,
            request.extensions().get(),
            &user,
            id,
            String::new(),
        )
        .map_err(StoreError::from)?;
        self.store
            .unregister_webhook(authority.as_str(), id, now_us(), &[event])
            .await?;
        self.notify_outbox();
        tracing::info!(webhook = %id, "webhook unregistered");
        Ok(UnregisterWebhookResponse {})
    }

    pub(crate) async fn deliveries(
        &self,
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<ListWebhookDeliveriesResponse, ApiError> {
        let (_, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let body = request.into_inner();
        let mut states = Vec::new();
        for (i, state) in body.states.iter().enumerate() {
            match DeliveryState::try_from(*state) {
                Ok(DeliveryState::Unspecified) => {}
                Ok(s) => states.push(s as i32),
                Err(_) => {
                    return Err(ApiError::invalid(
                        format!("states[{i}]"),
                        "is not a delivery state",
                    ));
                }
            }
        }
        let limit = page_size(body.page_size)?;
        let query = DeliveryQuery {
            authority: authority.into_string(),
            webhook_id: optional_id("webhook_id", &body.webhook_id)?,
            states,
            before: page_token("d1", &body.page_token)?,
            limit: limit + 1,
        };
        let rows = self.store.list_deliveries(&query).await?;
        let (rows, next_page_token) = page(rows, limit, "d1", |d| d.delivery_id);
        Ok(ListWebhookDeliveriesResponse {
            deliveries: rows.iter().map(delivery).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn attempts(
        &self,
        request: Request<ListDeliveryAttemptsRequest>,
    ) -> Result<ListDeliveryAttemptsResponse, ApiError> {
        let (_, authority) = self
            .inbox_user(&request, request.get_ref().authority.as_ref())
            .await?;
        let body = request.into_inner();
        let limit = page_size(body.page_size)?;
        let query = AttemptQuery {
            authority: authority.into_string(),
            webhook_id: optional_id("webhook_id", &body.webhook_id)?,
            delivery_id: optional_id("delivery_id", &body.delivery_id)?,
            notification_id: optional_id("notification_id", &body.notification_id)?,
            before: page_token("a1", &body.page_token)?,
            limit: limit + 1,
        };
        let rows = self.store.list_attempts(&query).await?;
        let (rows, next_page_token) = page(rows, limit, "a1", |a| a.attempt_id);
        Ok(ListDeliveryAttemptsResponse {
            attempts: rows.iter().map(attempt).collect(),
            next_page_token,
        })
    }
}
