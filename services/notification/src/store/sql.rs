//! The inbox statements both stores share, written once: `impl_store!` expands them for a
//! dialect (the webhook ones are in `webhook_sql.rs`). Each store module provides:
//! - `begin`: a transaction that may write;
//! - `begin_locked`: one that also holds the given authorities' turns (publishers and
//!   escalations of one authority take turns);
//! - `seen`: which of a batch's event ids are stored or folded already;
//! - `fold_batch`: folding what a batch can fold at once (Postgres; SQLite folds none);
//! - `fold`: folding an event into an open notification;
//! - `CLAIM`: leasing due deliveries without two workers taking the same one.

/// The webhooks of an authority a kind goes to (by authority, and whether the kind is not an
/// escalation), looked up once per transaction.
pub(crate) type WebhooksOf = std::collections::HashMap<(String, bool), Vec<uuid::Uuid>>;

/// The webhooks a notification of a kind goes to: escalations only to those flagged for
/// them. Binds: authority, whether the kind is not an escalation.
pub(crate) const WEBHOOKS_FOR: &str = "SELECT webhook_id FROM webhooks \
     WHERE authority = $1 AND unregister_time_us IS NULL AND (escalation OR $2) \
     ORDER BY webhook_id";

/// A pending delivery. Binds: delivery id, authority, webhook id, notification id, now.
pub(crate) const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries \
     (delivery_id, authority, webhook_id, notification_id, state, create_time_us, \
      next_attempt_us) VALUES ($1, $2, $3, $4, 1, $5, $5)";

/// Expands the inbox part of a store for `$db` (`Postgres` or `Sqlite`): helpers on a
/// transaction (`read`, `insert`, `fold`) and [`NotificationStore`](super::NotificationStore).
macro_rules! impl_store {
    ($store:ty, $db:ty, $enqueue:path) => {
        use $crate::store::sql::{INSERT_DELIVERY, WEBHOOKS_FOR};

        async fn read(
            tx: &mut sqlx::Transaction<'_, $db>,
            authority: &str,
            id: Uuid,
        ) -> Result<Option<StoredNotification>, StoreError> {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE authority = $1 AND notification_id = $2"
            ))
            .bind(authority)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
            Ok(row.map(|row| decode_row!(&row)).transpose()?)
        }

        /// Stores `n` at the next place of its inbox with a delivery to each of its
        /// authority's webhooks (looked up once per transaction in `webhooks`).
        async fn insert(
            tx: &mut sqlx::Transaction<'_, $db>,
            n: NewNotification,
            now_us: i64,
            webhooks: &mut $crate::store::sql::WebhooksOf,
        ) -> Result<Option<StoredNotification>, StoreError> {
            let seq: Option<i64> = sqlx::query_scalar(INSERT)
                .bind(&n.authority)
                .bind(n.notification_id)
                .bind(n.event_id)
                .bind(n.kind)
                .bind(&n.body)
                .bind(n.occur_time_us)
                .bind(now_us)
                .bind(&n.fold_key)
                .bind(n.escalate_at_us)
                .fetch_optional(&mut **tx)
                .await?;
            let Some(seq) = seq else { return Ok(None) };
            let escalation = cpis_proto::notification::NotificationKind::Escalation as i32;
            let key = (n.authority.clone(), n.kind != escalation);
            let hooks = match webhooks.entry(key) {
                std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let found: Vec<Uuid> = sqlx::query_scalar(WEBHOOKS_FOR)
                        .bind(&n.authority)
                        .bind(n.kind != escalation)
                        .fetch_all(&mut **tx)
                        .await?;
                    entry.insert(found)
                }
            };
            for &hook in hooks.iter() {
                sqlx::query(INSERT_DELIVERY)
                    .bind(Uuid::now_v7())
                    .bind(&n.authority)
                    .bind(hook)
                    .bind(n.notification_id)
                    .bind(now_us)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(Some(StoredNotification {
                authority: n.authority,
                seq,
                notification_id: n.notification_id,
                event_id: n.event_id,
                kind: n.kind,
                body: n.body,
                create_time_us: now_us,
                acknowledgement: None,
                occur_time_us: n.occur_time_us,
                occurrence_count: 1,
                last_occur_time_us: None,
            }))
        }

        impl NotificationStore for $store {
            async fn publish(
                &self,
                notifications: Vec<NewNotification>,
                now_us: i64,
                fold_window_us: i64,
            ) -> Result<Published, StoreError> {
                let authorities: Vec<&str> =
                    notifications.iter().map(|n| n.authority.as_str()).collect();
                let mut tx = begin_locked(&self.pool, &authorities).await?;
                let mut published = Published::default();
                // Event ids stored or folded before, then also those of this batch: a
                // re-sent event (even twice in one batch) is a duplicate.
                let ids: Vec<Uuid> = notifications.iter().filter_map(|n| n.event_id).collect();
                let mut seen_ids = seen(&mut tx, &ids).await?;
                let mut fresh = Vec::with_capacity(notifications.len());
                for n in notifications {
                    if let Some(event_id) = n.event_id
                        && !seen_ids.insert(event_id)
                    {
                        published.duplicates += 1;
                        continue;
                    }
                    fresh.push(n);
                }
                // What can be folded at once (Postgres), then the rest in order.
                let mut taken = vec![false; fresh.len()];
                for (folded, positions) in fold_batch(&mut tx, &fresh, fold_window_us).await? {
                    published.folded_events += positions.len();
                    for position in positions {
                        if let Some(slot) = taken.get_mut(position) {
                            *slot = true;
                        }
                    }
                    published.folded.push(folded);
                }
                let mut webhooks = $crate::store::sql::WebhooksOf::new();
                for (n, taken) in fresh.into_iter().zip(taken) {
                    if taken {
                        continue;
                    }
                    if let Some(folded) = fold(&mut tx, &n, fold_window_us).await? {
                        published.folded_events += 1;
                        // A notification folded into twice in one batch is announced
                        // once, as it ends up.
                        published
                            .folded
                            .retain(|f| f.notification_id != folded.notification_id);
                        published.folded.push(folded);
                        continue;
                    }
                    match insert(&mut tx, n, now_us, &mut webhooks).await? {
                        Some(stored) => published.stored.push(stored),
                        None => published.duplicates += 1,
                    }
                }
                tx.commit().await?;
                Ok(published)
            }

            async fn list(
                &self,
                query: &InboxQuery,
            ) -> Result<Vec<StoredNotification>, StoreError> {
                let rows = list_query::<$db>(query)
                    .build()
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| decode_row!(row))
                    .collect::<Result<_, _>>()?)
            }

            async fn acknowledge(
                &self,
                authority: &str,
                ids: &[Uuid],
                acknowledged_by: &[u8],
                now_us: i64,
                audit: &[NewOutboxEvent],
            ) -> Result<Vec<StoredNotification>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut acknowledged = Vec::with_capacity(ids.len());
                for id in ids {
                    sqlx::query(ACKNOWLEDGE)
                        .bind(now_us)
                        .bind(acknowledged_by)
                        .bind(authority)
                        .bind(*id)
                        .execute(&mut *tx)
                        .await?;
                    match read(&mut tx, authority, *id).await? {
                        Some(n) => acknowledged.push(n),
                        // Dropping the transaction rolls every acknowledgement back.
                        None => return Err(StoreError::NotFound(*id)),
                    }
                }
                $enqueue(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(acknowledged)
            }

            async fn last_seq(&self, authority: &str) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT COALESCE(MAX(seq), 0) FROM notifications WHERE authority = $1",
                )
                .bind(authority)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn due_escalations(
                &self,
                now_us: i64,
                limit: u32,
            ) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT notification_id FROM notifications WHERE escalate_at_us IS NOT NULL \
                     AND escalate_at_us <= $1 AND acknowledge_time_us IS NULL \
                     ORDER BY escalate_at_us LIMIT $2",
                )
                .bind(now_us)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn escalate<F>(
                &self,
                id: Uuid,
                now_us: i64,
                escalation: F,
            ) -> Result<Option<StoredNotification>, StoreError>
            where
                F: FnOnce(&StoredNotification) -> Option<NewNotification> + Send,
            {
                // A notification's authority never changes: read before taking its turn.
                let authority: Option<String> = sqlx::query_scalar(
                    "SELECT authority FROM notifications WHERE notification_id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(authority) = authority else {
                    return Ok(None);
                };
                let mut tx = begin_locked(&self.pool, &[authority.as_str()]).await?;
                // The claim: whichever replica clears the due time first escalates.
                let claimed = sqlx::query(
                    "UPDATE notifications SET escalate_at_us = NULL WHERE notification_id = $1 \
                     AND escalate_at_us IS NOT NULL AND escalate_at_us <= $2 \
                     AND acknowledge_time_us IS NULL",
                )
                .bind(id)
                .bind(now_us)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed == 0 {
                    return Ok(None);
                }
                let Some(original) = read(&mut tx, &authority, id).await? else {
                    return Ok(None);
                };
                let Some(new) = escalation(&original) else {
                    // Not escalable (undecodable): the claim stands, nothing is stored.
                    tx.commit().await?;
                    return Ok(None);
                };
                let stored = insert(
                    &mut tx,
                    new,
                    now_us,
                    &mut $crate::store::sql::WebhooksOf::new(),
                )
                .await?;
                tx.commit().await?;
                Ok(stored)
            }
        }
    };
}
pub(crate) use impl_store;
