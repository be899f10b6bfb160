//! An upload's transaction, written once for both stores like `sql.rs` (and expanded next to
//! it, whose helpers it uses): case references claimed in a temporary table, flags written
//! a chunk at a time, the snapshot's endings and the upload's record at the commit. The
//! three statements of a chunk differ by store: Postgres takes each column as one array
//! parameter (`postgres.rs`), SQLite multi-row `VALUES` (`multi_row_statements!`, here).

/// Rows per multi-row statement (SQLite): 1,000 rows of 17 columns stay under SQLite's
/// 32,766 bound parameters.
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// Parameter `n` (1-based): `$n` when `numbered`, else `?` (SQLite, where parameters bind
/// in order: sqlx looks a numbered one up by its name, which costs time in the square of
/// their count, and these statements have thousands).
pub(crate) fn parameter(n: usize, numbered: bool) -> String {
    if numbered {
        format!("${n}")
    } else {
        "?".to_owned()
    }
}

/// `($first, ...), (...)`: `rows` tuples of `columns` parameters, in order.
pub(crate) fn values(rows: usize, columns: usize, first: usize, numbered: bool) -> String {
    let mut text = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for column in 0..columns {
            if column > 0 {
                text.push_str(", ");
            }
            text.push_str(&parameter(first + row * columns + column, numbered));
        }
        text.push(')');
    }
    text
}

/// What an upsert does to a row that exists: replaces it, only at the version before its
/// own (so a concurrent change makes the statement touch fewer rows than it was given).
pub(crate) const ON_CONFLICT: &str = "ON CONFLICT (authority_code, case_reference) DO UPDATE \
     SET authority_name = excluded.authority_name, nhs_number = excluded.nhs_number, \
     kind = excluded.kind, legal_basis = excluded.legal_basis, \
     expected_delivery = excluded.expected_delivery, start_date = excluded.start_date, \
     end_date = excluded.end_date, delete_date = excluded.delete_date, \
     office_hours_phone = excluded.office_hours_phone, \
     emergency_duty_phone = excluded.emergency_duty_phone, \
     secure_email = excluded.secure_email, version = excluded.version, \
     updated_at_us = excluded.updated_at_us, updated_by = excluded.updated_by \
     WHERE flags.version = excluded.version - 1";

/// Creates or replaces `rows` flags in one statement of `?` parameters.
pub(crate) fn upsert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO flags ({}) VALUES {} {ON_CONFLICT}",
        super::sql::COLUMNS,
        values(rows, 17, 1, false)
    )
}

/// The conflict an upsert that touched fewer rows than it was given reports.
pub(crate) fn changed_concurrently() -> super::StoreError {
    super::StoreError::Conflict("a flag of the upload was changed concurrently".to_owned())
}

/// Generates a chunk's three statements as multi-row `VALUES` (SQLite), in a module where
/// `flag_store!` expanded: `claim_rows` (answers the case references not claimed before),
/// `lock_existing` (the stored flags of some case references) and `write_rows` (the flags,
/// then the events).
macro_rules! multi_row_statements {
    ($db:ty, $lock:literal) => {
        async fn claim_rows(
            conn: &mut <$db as sqlx::Database>::Connection,
            case_references: &[&str],
        ) -> Result<Vec<String>, $crate::store::StoreError> {
            let mut new = Vec::with_capacity(case_references.len());
            for part in case_references.chunks($crate::store::upload_sql::ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO upload_present (case_reference) VALUES {} \
                     ON CONFLICT DO NOTHING RETURNING case_reference",
                    $crate::store::upload_sql::values(part.len(), 1, 1, false)
                );
                // Not kept prepared: the table is created again by every upload.
                let mut query = sqlx::query_scalar::<_, String>(&sql).persistent(false);
                for reference in part {
                    query = query.bind(*reference);
                }
                new.extend(query.fetch_all(&mut *conn).await?);
            }
            Ok(new)
        }

        async fn lock_existing(
            conn: &mut <$db as sqlx::Database>::Connection,
            authority: &str,
            case_references: &[&str],
        ) -> Result<Vec<$crate::store::FlagRow>, $crate::store::StoreError> {
            let mut existing = Vec::new();
            for part in case_references.chunks($crate::store::upload_sql::ROWS_PER_STATEMENT) {
                let sql = format!(
                    "SELECT {} FROM flags WHERE authority_code = ? AND case_reference IN \
                     ({}){}",
                    $crate::store::sql::COLUMNS,
                    vec!["?"; part.len()].join(", "),
                    $lock
                );
                let mut query = sqlx::query(&sql).persistent(false).bind(authority);
                for reference in part {
                    query = query.bind(*reference);
                }
                for row in query.fetch_all(&mut *conn).await? {
                    existing.push(decode(&row)?);
                }
            }
            Ok(existing)
        }

        async fn write_rows(
            conn: &mut <$db as sqlx::Database>::Connection,
            rows: &[$crate::store::FlagRow],
            events: Vec<cpis_mesh::outbox::NewOutboxEvent>,
        ) -> Result<(), $crate::store::StoreError> {
            for part in rows.chunks($crate::store::upload_sql::ROWS_PER_STATEMENT) {
                let sql = $crate::store::upload_sql::upsert_sql(part.len());
                let mut query = sqlx::query(&sql);
                for row in part {
                    query = $crate::store::sql::bind_flag_row!(query, row);
                }
                let done = query.execute(&mut *conn).await?;
                if usize::try_from(done.rows_affected()).ok() != Some(part.len()) {
                    return Err($crate::store::upload_sql::changed_concurrently());
                }
            }
            enqueue_rows(conn, events).await
        }
    };
}

pub(crate) use multi_row_statements;

/// Generates `UploadTx` over one sqlx database, in a module where `flag_store!` expanded and
/// `claim_rows`, `lock_existing` and `write_rows` are defined.
macro_rules! upload_transaction {
    ($db:ty, $lock:literal) => {
        /// An upload being applied, in its one transaction.
        pub(crate) struct UploadTx {
            tx: sqlx::Transaction<'static, $db>,
            authority: String,
            updated_by: String,
            notifier: $crate::store::Notifier,
        }

        #[tonic::async_trait]
        impl $crate::store::UploadTransaction for UploadTx {
            async fn claim(
                &mut self,
                case_references: &[&str],
            ) -> Result<Vec<bool>, $crate::store::StoreError> {
                let mut in_chunk = std::collections::HashSet::new();
                let unique: Vec<&str> = case_references
                    .iter()
                    .copied()
                    .filter(|r| in_chunk.insert(*r))
                    .collect();
                let mut new: std::collections::HashSet<String> = claim_rows(&mut self.tx, &unique)
                    .await?
                    .into_iter()
                    .collect();
                // The first occurrence takes the claim; a later one in the chunk finds it gone.
                Ok(case_references.iter().map(|r| new.remove(*r)).collect())
            }

            async fn write(
                &mut self,
                chunk: $crate::store::UploadChunk,
            ) -> Result<Vec<cpis_domain::NhsNumber>, $crate::store::StoreError> {
                use $crate::store::FlagRow;
                let mut touched = Vec::new();
                // The stored flags of the chunk's case references, in one read, locked.
                let references: Vec<&str> = chunk
                    .upserts
                    .iter()
                    .map(|details| details.case_reference().as_str())
                    .collect();
                let existing: std::collections::HashMap<String, FlagRow> =
                    lock_existing(&mut self.tx, &self.authority, &references)
                        .await?
                        .into_iter()
                        .map(|row| (row.case_reference.clone(), row))
                        .collect();
                let mut rows = Vec::with_capacity(chunk.upserts.len());
                for details in &chunk.upserts {
                    match existing.get(details.case_reference().as_str()) {
                        Some(old) => {
                            let row = FlagRow::of(
                                &old.flag_id,
                                details,
                                old.version + 1,
                                &self.updated_by,
                            );
                            if row.same_flag(old) {
                                continue;
                            }
                            touched.push(old.subject()?);
                            touched.push(details.subject());
                            rows.push(row);
                        }
                        None => {
                            let id = uuid::Uuid::now_v7().to_string();
                            rows.push(FlagRow::of(&id, details, 1, &self.updated_by));
                            touched.push(details.subject());
                        }
                    }
                }
                write_rows(&mut self.tx, &rows, chunk.events).await?;
                Ok(touched)
            }

            async fn commit(
                self: Box<Self>,
                snapshot_end: Option<time::Date>,
                finish: $crate::store::FinishUpload,
            ) -> Result<$crate::store::UploadApplied, $crate::store::StoreError> {
                use $crate::store::{FlagRow, UploadApplied};
                let UploadTx {
                    mut tx,
                    authority,
                    updated_by,
                    notifier,
                } = *self;
                let mut applied = UploadApplied::default();
                if let Some(end_date) = snapshot_end {
                    // NOT EXISTS, an anti-join: Postgres hashes a `NOT IN (SELECT ...)` only
                    // while the claimed references fit in `work_mem`, and past that (some
                    // 150,000 of them) scanned them all again for every flag.
                    let sql = format!(
                        "SELECT {} FROM flags WHERE authority_code = $1 AND end_date IS NULL \
                         AND NOT EXISTS (SELECT 1 FROM upload_present AS p \
                         WHERE p.case_reference = flags.case_reference) \
                         ORDER BY case_reference{}",
                        $crate::store::sql::COLUMNS,
                        $lock
                    );
                    let rows = sqlx::query(&sql)
                        .persistent(false)
                        .bind(&authority)
                        .fetch_all(&mut *tx)
                        .await?;
                    for open in stored(rows)? {
                        // A plan that starts after the upload's date ends on its start.
                        let end = end_date.max(open.flag.details().start_date());
                        let ended = open
                            .flag
                            .details()
                            .clone()
                            .ended(end, None)
                            .map_err($crate::store::StoreError::Invalid)?;
                        let at = i64::try_from(open.flag.version()).unwrap_or(i64::MAX);
                        let row = FlagRow::of(&open.flag_id, &ended, at + 1, &updated_by);
                        update(&mut tx, &row, at).await?;
                        applied.touched.push(ended.subject());
                        applied.ended.push(row.into_stored()?);
                    }
                }
                sqlx::query("DROP TABLE upload_present")
                    .persistent(false)
                    .execute(&mut *tx)
                    .await?;
                insert_upload(&mut tx, finish(&applied)).await?;
                tx.commit().await?;
                notifier.notify();
                Ok(applied)
            }
        }
    };
}

pub(crate) use upload_transaction;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_number_the_parameters_row_by_row() {
        assert_eq!(values(2, 2, 3, true), "($3, $4), ($5, $6)");
        assert_eq!(values(1, 1, 1, true), "($1)");
        assert_eq!(values(2, 2, 1, false), "(?, ?), (?, ?)");
    }
}
