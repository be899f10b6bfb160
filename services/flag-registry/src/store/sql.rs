//! The queries, written once for both stores: the schema uses the same column types in
//! Postgres and SQLite and the queries use `$n` parameters, which both understand, so
//! `flag_store!` generates each store's implementation from one text.

/// The columns of `flags`, in [`FlagRow`](super::FlagRow) order.
pub(crate) const COLUMNS: &str = "flag_id, authority_code, authority_name, case_reference, \
     nhs_number, kind, legal_basis, expected_delivery, start_date, end_date, delete_date, \
     office_hours_phone, emergency_duty_phone, secure_email, version, updated_at_us, updated_by";

/// Generates a store over one sqlx database: `$store` (type), `$db` (sqlx database),
/// `$pool`, `$enqueue` (the outbox writer), `$begin` (how a write transaction starts) and
/// `$lock` (the row lock a read-for-update takes, if the database has one).
macro_rules! flag_store {
    ($store:ident, $db:ty, $pool:ty, $row:ty, $enqueue:path, $begin:literal, $lock:literal) => {
        /// The store.
        #[derive(Debug, Clone)]
        pub struct $store {
            database: cpis_mesh::db::Database,
            pool: $pool,
            notifier: $crate::store::Notifier,
            /// The audit events of reads, with group commit.
            reads: cpis_mesh::outbox::OutboxWriter,
        }

        impl $store {
            /// A store on a migrated database (within a Tokio runtime: the writer of read
            /// audits runs on a task of its own).
            pub fn new(database: cpis_mesh::db::Database, pool: $pool) -> Self {
                let notifier = $crate::store::Notifier::default();
                let committed = notifier.clone();
                Self {
                    reads: cpis_mesh::outbox::OutboxWriter::spawn(database.clone(), move || {
                        committed.notify()
                    }),
                    database,
                    pool,
                    notifier,
                }
            }

            async fn begin(&self) -> Result<sqlx::Transaction<'static, $db>, sqlx::Error> {
                self.pool.begin_with($begin).await
            }
        }

        fn decode(row: &$row) -> Result<$crate::store::FlagRow, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::store::FlagRow {
                flag_id: row.try_get("flag_id")?,
                authority_code: row.try_get("authority_code")?,
                authority_name: row.try_get("authority_name")?,
                case_reference: row.try_get("case_reference")?,
                nhs_number: row.try_get("nhs_number")?,
                kind: row.try_get("kind")?,
                legal_basis: row.try_get("legal_basis")?,
                expected_delivery: row.try_get("expected_delivery")?,
                start_date: row.try_get("start_date")?,
                end_date: row.try_get("end_date")?,
                delete_date: row.try_get("delete_date")?,
                office_hours_phone: row.try_get("office_hours_phone")?,
                emergency_duty_phone: row.try_get("emergency_duty_phone")?,
                secure_email: row.try_get("secure_email")?,
                version: row.try_get("version")?,
                updated_at_us: row.try_get("updated_at_us")?,
                updated_by: row.try_get("updated_by")?,
            })
        }

        fn stored(rows: Vec<$row>) -> Result<Vec<$crate::store::StoredFlag>, $crate::store::StoreError> {
            rows.iter()
                .map(|row| decode(row)?.into_stored())
                .collect()
        }

        async fn insert(
            conn: &mut <$db as sqlx::Database>::Connection,
            row: &$crate::store::FlagRow,
        ) -> Result<(), $crate::store::StoreError> {
            let sql = format!(
                "INSERT INTO flags ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                 $12, $13, $14, $15, $16, $17)",
                $crate::store::sql::COLUMNS
            );
            let result = $crate::store::sql::bind_flag_row!(sqlx::query(&sql), row)
                .execute(&mut *conn)
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(
                    $crate::store::StoreError::Conflict(
                        "a flag with this case reference was created concurrently".to_owned(),
                    ),
                ),
                Err(e) => Err(e.into()),
            }
        }

        /// Replaces the row with `row.flag_id` if it is still at `at_version`.
        async fn update(
            conn: &mut <$db as sqlx::Database>::Connection,
            row: &$crate::store::FlagRow,
            at_version: i64,
        ) -> Result<(), $crate::store::StoreError> {
            let done = sqlx::query(
                "UPDATE flags SET authority_name = $2, nhs_number = $3, kind = $4, \
                 legal_basis = $5, expected_delivery = $6, start_date = $7, end_date = $8, \
                 delete_date = $9, office_hours_phone = $10, emergency_duty_phone = $11, \
                 secure_email = $12, version = $13, updated_at_us = $14, updated_by = $15 \
                 WHERE flag_id = $1 AND version = $16",
            )
            .bind(&row.flag_id)
            .bind(&row.authority_name)
            .bind(&row.nhs_number)
            .bind(&row.kind)
            .bind(&row.legal_basis)
            .bind(&row.expected_delivery)
            .bind(&row.start_date)
            .bind(&row.end_date)
            .bind(&row.delete_date)
            .bind(&row.office_hours_phone)
            .bind(&row.emergency_duty_phone)
            .bind(&row.secure_email)
            .bind(row.version)
            .bind(row.updated_at_us)
            .bind(&row.updated_by)
            .bind(at_version)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err($crate::store::StoreError::Conflict(
                    "the flag was changed concurrently".to_owned(),
                ))
            }
        }

        async fn find(
            conn: &mut <$db as sqlx::Database>::Connection,
            authority: &str,
            target: &$crate::store::FlagTarget,
        ) -> Result<Option<$crate::store::StoredFlag>, $crate::store::StoreError> {
            let (column, value) = match target {
                $crate::store::FlagTarget::Id(id) => ("flag_id", id),
                $crate::store::FlagTarget::CaseReference(reference) => ("case_reference", reference),
            };
            let sql = format!(
                "SELECT {} FROM flags WHERE authority_code = $1 AND {column} = $2{}",
                $crate::store::sql::COLUMNS,
                $lock
            );
            let rows = sqlx::query(&sql)
                .bind(authority)
                .bind(value)
                .fetch_all(&mut *conn)
                .await?;
            Ok(stored(rows)?.into_iter().next())
        }

        async fn enqueue(
            conn: &mut <$db as sqlx::Database>::Connection,
            events: Vec<cpis_proto::audit::AuditEvent>,
        ) -> Result<(), $crate::store::StoreError> {
            $enqueue(conn, &$crate::store::audit_rows(events)?)
                .await
                .map_err(|e| $crate::store::StoreError::Outbox(e.to_string()))
        }

        async fn enqueue_rows(
            conn: &mut <$db as sqlx::Database>::Connection,
            rows: Vec<cpis_mesh::outbox::NewOutboxEvent>,
        ) -> Result<(), $crate::store::StoreError> {
            $enqueue(conn, &rows)
                .await
                .map_err(|e| $crate::store::StoreError::Outbox(e.to_string()))
        }

        async fn insert_upload(
            conn: &mut <$db as sqlx::Database>::Connection,
            record: $crate::store::UploadRecord,
        ) -> Result<(), $crate::store::StoreError> {
            let result = sqlx::query(
                "INSERT INTO uploads (upload_id, authority_code, sequence_number, report, \
                 create_time_us) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&record.upload_id)
            .bind(record.authority.as_str())
            .bind(record.sequence_number)
            .bind(&record.report)
            .bind(record.create_time_us)
            .execute(&mut *conn)
            .await;
            match result {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err($crate::store::StoreError::SequenceUsed);
                }
                Err(e) => return Err(e.into()),
            }
            enqueue_rows(conn, record.events).await
        }

        #[tonic::async_trait]
        impl $crate::store::FlagStore for $store {
            fn database(&self) -> &cpis_mesh::db::Database {
                &self.database
            }

            fn set_outbox_notifier(&self, notifier: cpis_mesh::outbox::OutboxNotifier) {
                self.notifier.set(notifier);
            }

            async fn upsert(
                &self,
                details: cpis_domain::FlagDetails,
                expected_version: Option<u64>,
                updated_by: &str,
                audit: $crate::store::AuditFor,
            ) -> Result<$crate::store::Upserted, $crate::store::StoreError> {
                use $crate::store::{FlagRow, FlagTarget, StoredFlag, Upserted};
                let mut tx = self.begin().await?;
                let target = FlagTarget::CaseReference(details.case_reference().as_str().to_owned());
                let existing = find(&mut tx, details.authority().code().as_str(), &target).await?;
                $crate::store::check_version(
                    expected_version,
                    existing.as_ref().map(|f| f.flag.version()),
                )?;
                let upserted = match existing {
                    Some(existing) if existing.flag.details() == &details => Upserted {
                        flag: existing,
                        created: false,
                        previous_subject: None,
                    },
                    Some(existing) => {
                        let at = i64::try_from(existing.flag.version()).unwrap_or(i64::MAX);
                        let row = FlagRow::of(&existing.flag_id, &details, at + 1, updated_by);
                        update(&mut tx, &row, at).await?;
                        let previous = existing.flag.subject();
                        Upserted {
                            flag: row.into_stored()?,
                            created: false,
                            previous_subject: (previous != details.subject()).then_some(previous),
                        }
                    }
                    None => {
                        let id = uuid::Uuid::now_v7().to_string();
                        let row = FlagRow::of(&id, &details, 1, updated_by);
                        insert(&mut tx, &row).await?;
                        Upserted {
                            flag: row.into_stored()?,
                            created: true,
                            previous_subject: None,
                        }
                    }
                };
                let flag: &StoredFlag = &upserted.flag;
                enqueue(&mut tx, audit(flag)).await?;
                tx.commit().await?;
                self.notifier.notify();
                Ok(upserted)
            }

            async fn end(
                &self,
                authority: &cpis_domain::OdsCode,
                target: &$crate::store::FlagTarget,
                end_date: time::Date,
                delete_date: Option<time::Date>,
                expected_version: Option<u64>,
                updated_by: &str,
                audit: $crate::store::AuditFor,
            ) -> Result<$crate::store::Ended, $crate::store::StoreError> {
                use $crate::store::{Ended, FlagRow, StoreError};
                let mut tx = self.begin().await?;
                let existing = find(&mut tx, authority.as_str(), target)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                $crate::store::check_version(expected_version, Some(existing.flag.version()))?;
                let ended = existing
                    .flag
                    .details()
                    .clone()
                    .ended(end_date, delete_date)
                    .map_err(StoreError::Invalid)?;
                let result = if &ended == existing.flag.details() {
                    Ended {
                        flag: existing,
                        changed: false,
                    }
                } else {
                    let at = i64::try_from(existing.flag.version()).unwrap_or(i64::MAX);
                    let row = FlagRow::of(&existing.flag_id, &ended, at + 1, updated_by);
                    update(&mut tx, &row, at).await?;
                    Ended {
                        flag: row.into_stored()?,
                        changed: true,
                    }
                };
                enqueue(&mut tx, audit(&result.flag)).await?;
                tx.commit().await?;
                self.notifier.notify();
                Ok(result)
            }

            async fn flags_of(
                &self,
                subject: &cpis_domain::NhsNumber,
            ) -> Result<Vec<$crate::store::StoredFlag>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM flags WHERE nhs_number = $1",
                    $crate::store::sql::COLUMNS
                );
                let rows = sqlx::query(&sql)
                    .bind(subject.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                stored(rows)
            }

            async fn list(
                &self,
                query: &$crate::store::ListQuery,
            ) -> Result<Vec<$crate::store::StoredFlag>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM flags WHERE authority_code = $1 AND case_reference > $2 \
                     AND ($3 IS NULL OR nhs_number = $3) AND ($4 IS NULL OR case_reference = $4) \
                     ORDER BY case_reference LIMIT $5",
                    $crate::store::sql::COLUMNS
                );
                let rows = sqlx::query(&sql)
                    .bind(query.authority.as_str())
                    .bind(&query.after)
                    .bind(query.nhs_number.map(|n| n.as_str().to_owned()))
                    .bind(&query.case_reference)
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await?;
                stored(rows)
            }

            async fn begin_upload(
                &self,
                authority: &cpis_domain::OdsCode,
                updated_by: &str,
            ) -> Result<Box<dyn $crate::store::UploadTransaction>, $crate::store::StoreError> {
                let mut tx = self.begin().await?;
                // The case references the upload holds, for duplicates and the snapshot:
                // in the database, not in memory. Created in the transaction, so a rollback
                // removes it; dropped before the commit.
                sqlx::query("CREATE TEMP TABLE upload_present (case_reference TEXT PRIMARY KEY)")
                    .execute(&mut *tx)
                    .await?;
                Ok(Box::new(UploadTx {
                    tx,
                    authority: authority.as_str().to_owned(),
                    updated_by: updated_by.to_owned(),
                    notifier: self.notifier.clone(),
                }))
            }

            async fn save_upload(
                &self,
                record: $crate::store::UploadRecord,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin().await?;
                insert_upload(&mut tx, record).await?;
                tx.commit().await?;
                self.notifier.notify();
                Ok(())
            }

            async fn upload_report(
                &self,
                authority: &cpis_domain::OdsCode,
                key: &$crate::store::UploadKey,
            ) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                let query = match key {
                    $crate::store::UploadKey::Id(id) => sqlx::query_scalar(
                        "SELECT report FROM uploads WHERE authority_code = $1 AND upload_id = $2",
                    )
                    .bind(authority.as_str())
                    .bind(id.clone()),
                    $crate::store::UploadKey::Sequence(sequence) => sqlx::query_scalar(
                        "SELECT report FROM uploads WHERE authority_code = $1 \
                         AND sequence_number = $2",
                    )
                    .bind(authority.as_str())
                    .bind(*sequence),
                };
                Ok(query.fetch_optional(&self.pool).await?)
            }

            async fn record(
                &self,
                events: Vec<cpis_proto::audit::AuditEvent>,
            ) -> Result<(), $crate::store::StoreError> {
                let rows = $crate::store::audit_rows(events)?;
                // Concurrent reads share a commit; each answers once its event is durable.
                self.reads
                    .write(rows)
                    .await
                    .map_err(|e| $crate::store::StoreError::Outbox(e.to_string()))
            }

            async fn record_queued(
                &self,
                events: Vec<cpis_proto::audit::AuditEvent>,
            ) -> Result<(), $crate::store::StoreError> {
                let rows = $crate::store::audit_rows(events)?;
                self.reads
                    .queue(rows)
                    .await
                    .map_err(|e| $crate::store::StoreError::Outbox(e.to_string()))
            }
        }
    };
}

pub(crate) use flag_store;

/// Binds a [`FlagRow`](crate::store::FlagRow)'s 17 values to `$query`, in the order of
/// [`COLUMNS`].
macro_rules! bind_flag_row {
    ($query:expr, $row:expr) => {{
        let row: &$crate::store::FlagRow = $row;
        $query
            .bind(&row.flag_id)
            .bind(&row.authority_code)
            .bind(&row.authority_name)
            .bind(&row.case_reference)
            .bind(&row.nhs_number)
            .bind(&row.kind)
            .bind(&row.legal_basis)
            .bind(&row.expected_delivery)
            .bind(&row.start_date)
            .bind(&row.end_date)
            .bind(&row.delete_date)
            .bind(&row.office_hours_phone)
            .bind(&row.emergency_duty_phone)
            .bind(&row.secure_email)
            .bind(row.version)
            .bind(row.updated_at_us)
            .bind(&row.updated_by)
    }};
}
pub(crate) use bind_flag_row;
