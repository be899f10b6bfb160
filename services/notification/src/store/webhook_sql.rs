//! The webhook statements both stores share, written once: `impl_webhook_store!` expands
//! [`WebhookStore`](super::WebhookStore) for a dialect, next to `impl_store!` (whose `read`
//! and `insert` it uses).

use uuid::Uuid;

use super::{AttemptQuery, DeliveryQuery};

/// Moves a delivery on after an attempt, only under the exact lease given. Binds: state,
/// attempt time, next attempt, error (NULL keeps the last), complete time, id, worker,
/// lease end.
pub(crate) const FINISH: &str = "UPDATE webhook_deliveries SET state = $1, \
     attempt_count = attempt_count + 1, last_attempt_us = $2, next_attempt_us = $3, \
     last_error = COALESCE($4, last_error), complete_time_us = $5, claimed_by = NULL, \
     claimed_until_us = NULL \
     WHERE delivery_id = $6 AND claimed_by = $7 AND claimed_until_us = $8 AND state = 1";

/// Logs an attempt. Binds the columns of `ATTEMPT_COLUMNS` plus the authority.
pub(crate) const INSERT_ATTEMPT: &str = "INSERT INTO delivery_attempts \
     (attempt_id, delivery_id, attempt_number, webhook_id, notification_id, attempt_time_us, \
      http_status, latency_us, success, error, authority) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// The `SELECT` of deliveries, newest first.
pub(crate) fn deliveries_query<'a, DB>(query: &DeliveryQuery) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = sqlx::QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM webhook_deliveries WHERE authority = ",
        super::webhooks::DELIVERY_COLUMNS
    ));
    sql.push_bind(query.authority.clone());
    if let Some(id) = query.webhook_id {
        sql.push(" AND webhook_id = ").push_bind(id);
    }
    if let Some(id) = query.before {
        sql.push(" AND delivery_id < ").push_bind(id);
    }
    if !query.states.is_empty() {
        sql.push(" AND state IN (");
        let mut list = sql.separated(", ");
        for state in &query.states {
            list.push_bind(*state);
        }
        list.push_unseparated(")");
    }
    sql.push(" ORDER BY delivery_id DESC LIMIT ")
        .push_bind(i64::from(query.limit));
    sql
}

/// The `SELECT` of attempts, newest first.
pub(crate) fn attempts_query<'a, DB>(query: &AttemptQuery) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = sqlx::QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM delivery_attempts WHERE authority = ",
        super::webhooks::ATTEMPT_COLUMNS
    ));
    sql.push_bind(query.authority.clone());
    for (column, value) in [
        ("webhook_id", query.webhook_id),
        ("delivery_id", query.delivery_id),
        ("notification_id", query.notification_id),
    ] {
        if let Some(id) = value {
            sql.push(format!(" AND {column} = ")).push_bind(id);
        }
    }
    if let Some(id) = query.before {
        sql.push(" AND attempt_id < ").push_bind(id);
    }
    sql.push(" ORDER BY attempt_id DESC LIMIT ")
        .push_bind(i64::from(query.limit));
    sql
}

/// Expands [`WebhookStore`](super::WebhookStore) for `$db`, after `impl_store!`.
macro_rules! impl_webhook_store {
    ($store:ty, $db:ty, $enqueue:path) => {
        use $crate::store::webhook_sql::{FINISH, INSERT_ATTEMPT, attempts_query, deliveries_query};
        use $crate::store::webhooks::{
            DELIVERY_COLUMNS, WEBHOOK_COLUMNS, decode_attempt, decode_delivery, decode_webhook,
        };
        use $crate::store::{
            AttemptOutcome, AttemptQuery, ClaimedDelivery, DeliveryQuery, NewWebhook,
            StoredAttempt, StoredDelivery, StoredWebhook, WebhookStore,
        };

        async fn webhook(
            tx: &mut sqlx::Transaction<'_, $db>,
            authority: &str,
            id: Uuid,
            registered_only: bool,
        ) -> Result<Option<(StoredWebhook, bool)>, StoreError> {
            let row = sqlx::query(&format!(
                "SELECT {WEBHOOK_COLUMNS}, unregister_time_us FROM webhooks \
                 WHERE authority = $1 AND webhook_id = $2"
            ))
            .bind(authority)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let unregistered: Option<i64> = sqlx::Row::try_get(&row, 10)?;
            let registered = unregistered.is_none();
            if registered_only && !registered {
                return Ok(None);
            }
            Ok(Some((decode_webhook!(&row)?, registered)))
        }

        impl WebhookStore for $store {
            async fn register_webhook(
                &self,
                w: NewWebhook,
                audit: &[NewOutboxEvent],
            ) -> Result<StoredWebhook, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO webhooks (webhook_id, authority, url, escalation, description, \
                     secret, create_time_us, secret_create_time_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(w.webhook_id)
                .bind(&w.authority)
                .bind(&w.url)
                .bind(w.escalation)
                .bind(&w.description)
                .bind(&w.secret)
                .bind(w.now_us)
                .execute(&mut *tx)
                .await?;
                $enqueue(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(StoredWebhook {
                    webhook_id: w.webhook_id,
                    authority: w.authority,
                    url: w.url,
                    escalation: w.escalation,
                    description: w.description,
                    secret: w.secret,
                    previous_secret: None,
                    previous_secret_expire_us: None,
                    create_time_us: w.now_us,
                    secret_create_time_us: w.now_us,
                })
            }

            async fn list_webhooks(
                &self,
                authority: &str,
                after: Option<Uuid>,
                limit: u32,
            ) -> Result<Vec<StoredWebhook>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE authority = $1 \
                     AND unregister_time_us IS NULL AND ($2 IS NULL OR webhook_id > $2) \
                     ORDER BY webhook_id LIMIT $3"
                ))
                .bind(authority)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|row| decode_webhook!(row))
                    .collect::<Result<_, _>>()?)
            }

            async fn rotate_webhook_secret(
                &self,
                authority: &str,
                webhook_id: Uuid,
                secret: Vec<u8>,
                previous_expire_us: Option<i64>,
                now_us: i64,
                audit: &[NewOutboxEvent],
            ) -> Result<StoredWebhook, StoreError> {
                let mut tx = begin(&self.pool).await?;
                let Some((current, _)) = webhook(&mut tx, authority, webhook_id, true).await?
                else {
                    return Err(StoreError::WebhookNotFound(webhook_id));
                };
                let previous = previous_expire_us.map(|_| current.secret.clone());
                sqlx::query(
                    "UPDATE webhooks SET secret = $1, secret_create_time_us = $2, \
                     previous_secret = $3, previous_secret_expire_us = $4 WHERE webhook_id = $5",
                )
                .bind(&secret)
                .bind(now_us)
                .bind(previous)
                .bind(previous_expire_us)
                .bind(webhook_id)
                .execute(&mut *tx)
                .await?;
                let Some((rotated, _)) = webhook(&mut tx, authority, webhook_id, true).await?
                else {
                    return Err(StoreError::WebhookNotFound(webhook_id));
                };
                $enqueue(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(rotated)
            }

            async fn unregister_webhook(
                &self,
                authority: &str,
                webhook_id: Uuid,
                now_us: i64,
                audit: &[NewOutboxEvent],
            ) -> Result<(), StoreError> {
                let mut tx = begin(&self.pool).await?;
                let Some((_, registered)) = webhook(&mut tx, authority, webhook_id, false).await?
                else {
                    return Err(StoreError::WebhookNotFound(webhook_id));
                };
                if registered {
                    // The secrets go with the registration.
                    sqlx::query(
                        "UPDATE webhooks SET unregister_time_us = $1, secret = $2, \
                         previous_secret = NULL, previous_secret_expire_us = NULL \
                         WHERE webhook_id = $3",
                    )
                    .bind(now_us)
                    .bind(Vec::<u8>::new())
                    .bind(webhook_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE webhook_deliveries SET state = 4, complete_time_us = $1, \
                         next_attempt_us = NULL, claimed_by = NULL, claimed_until_us = NULL \
                         WHERE webhook_id = $2 AND state = 1",
                    )
                    .bind(now_us)
                    .bind(webhook_id)
                    .execute(&mut *tx)
                    .await?;
                    $enqueue(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_deliveries(
                &self,
                query: &DeliveryQuery,
            ) -> Result<Vec<StoredDelivery>, StoreError> {
                let rows = deliveries_query::<$db>(query)
                    .build()
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| decode_delivery!(row))
                    .collect::<Result<_, _>>()?)
            }

            async fn list_attempts(
                &self,
                query: &AttemptQuery,
            ) -> Result<Vec<StoredAttempt>, StoreError> {
                let rows = attempts_query::<$db>(query)
                    .build()
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| decode_attempt!(row))
                    .collect::<Result<_, _>>()?)
            }

            async fn claim_deliveries(
                &self,
                worker: &str,
                now_us: i64,
                claimed_until_us: i64,
                limit: u32,
            ) -> Result<Vec<ClaimedDelivery>, StoreError> {
                let rows = sqlx::query(&CLAIM.replace("{COLUMNS}", DELIVERY_COLUMNS))
                    .bind(worker)
                    .bind(claimed_until_us)
                    .bind(now_us)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                let deliveries = rows
                    .iter()
                    .map(|row| decode_delivery!(row))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut claimed = Vec::with_capacity(deliveries.len());
                let mut tx = self.pool.begin().await?;
                for delivery in deliveries {
                    let webhook = webhook(&mut tx, &delivery.authority, delivery.webhook_id, true)
                        .await?
                        .map(|(w, _)| w);
                    let notification =
                        read(&mut tx, &delivery.authority, delivery.notification_id).await?;
                    claimed.push(ClaimedDelivery {
                        delivery,
                        claimed_by: worker.to_owned(),
                        claimed_until_us,
                        webhook,
                        notification,
                    });
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn finish_attempt(
                &self,
                claim: &ClaimedDelivery,
                outcome: &AttemptOutcome,
            ) -> Result<bool, StoreError> {
                let a = &outcome.attempt;
                let end_us = a.attempt_time_us.saturating_add(a.latency_us);
                let pending = outcome.state == 1;
                let mut tx = self.pool.begin().await?;
                let moved = sqlx::query(FINISH)
                    .bind(outcome.state)
                    .bind(a.attempt_time_us)
                    .bind(outcome.next_attempt_us)
                    .bind((!a.success).then(|| a.error.clone()))
                    .bind((!pending).then_some(end_us))
                    .bind(claim.delivery.delivery_id)
                    .bind(&claim.claimed_by)
                    .bind(claim.claimed_until_us)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if moved == 0 {
                    return Ok(false);
                }
                sqlx::query(INSERT_ATTEMPT)
                    .bind(a.attempt_id)
                    .bind(a.delivery_id)
                    .bind(a.attempt_number)
                    .bind(a.webhook_id)
                    .bind(a.notification_id)
                    .bind(a.attempt_time_us)
                    .bind(a.http_status)
                    .bind(a.latency_us)
                    .bind(a.success)
                    .bind(&a.error)
                    .bind(&claim.delivery.authority)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}
pub(crate) use impl_webhook_store;
