//! The person register's half of both store implementations (see `sql.rs`): lookups in
//! chunks, and upserts that count what they change.

/// Implements the register's queries for `$store` (see [`sql_store`](super::sql::sql_store)).
macro_rules! sql_register {
    ($store:ident, $db:ty, $enqueue:path) => {
        impl $store {
            /// Upserts `persons` by NHS number in one transaction, with `audit`.
            async fn upsert_persons_now(
                &self,
                persons: &[Person],
                audit: &[AuditEvent],
            ) -> Result<PersonCounts, StoreError> {
                let mut tx = self.begin_write().await?;
                let existing: std::collections::HashMap<NhsNumber, Person> = {
                    let numbers: Vec<NhsNumber> =
                        persons.iter().map(|p| p.nhs_number).collect();
                    persons_in(&mut tx, &numbers)
                        .await?
                        .into_iter()
                        .map(|p| (p.nhs_number, p))
                        .collect()
                };
                let mut counts = PersonCounts::default();
                let mut writes: Vec<&Person> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                // A number listed twice in one batch: the last one wins, counted once.
                for person in persons.iter().rev() {
                    if !seen.insert(person.nhs_number) {
                        continue;
                    }
                    match existing.get(&person.nhs_number) {
                        None => counts.created += 1,
                        Some(stored) if stored == person => {
                            counts.unchanged += 1;
                            continue;
                        }
                        Some(_) => counts.updated += 1,
                    }
                    writes.push(person);
                }
                let now = OffsetDateTime::now_utc();
                for chunk in writes.chunks(500) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                        "INSERT INTO persons ({PERSON_COLUMNS}, update_time) "
                    ));
                    query.push_values(chunk, |mut row, person| {
                        let (status, by) = person_status_columns(&person.status);
                        row.push_bind(person.nhs_number.as_str().to_owned())
                            .push_bind(person.date_of_birth)
                            .push_bind(status)
                            .push_bind(by)
                            .push_bind(person.sensitive)
                            .push_bind(now);
                    });
                    query.push(
                        " ON CONFLICT (nhs_number) DO UPDATE SET \
                         date_of_birth = excluded.date_of_birth, status = excluded.status, \
                         superseded_by = excluded.superseded_by, \
                         sensitive = excluded.sensitive, update_time = excluded.update_time",
                    );
                    query.build().execute(&mut *tx).await?;
                }
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                Ok(counts)
            }
        }

        /// The records of `numbers` on `conn`.
        async fn persons_in(
            conn: &mut <$db as sqlx::Database>::Connection,
            numbers: &[NhsNumber],
        ) -> Result<Vec<Person>, StoreError> {
            let mut persons = Vec::with_capacity(numbers.len());
            for chunk in numbers.chunks(1000) {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {PERSON_COLUMNS} FROM persons WHERE nhs_number IN ("
                ));
                let mut list = query.separated(", ");
                for number in chunk {
                    list.push_bind(number.as_str().to_owned());
                }
                query.push(")");
                let rows: Vec<PersonRow> = query.build_query_as().fetch_all(&mut *conn).await?;
                for row in rows {
                    persons.push(person_from(row)?);
                }
            }
            Ok(persons)
        }
    };
}

pub(crate) use sql_register;
