//! The body of both store implementations. The SQL is the same in both dialects, so one
//! macro expands it for each pool type; the dialects differ in their migrations, their
//! outbox writer, and how they lock.

/// Implements [`IdentityStore`](super::IdentityStore) for `$store` (a struct with a `pool`
/// field of database `$db`), writing audit events with `$enqueue`.
macro_rules! sql_store {
    ($store:ident, $db:ty, $enqueue:path) => {
        $crate::store::register::sql_register!($store, $db, $enqueue);

        #[tonic::async_trait]
        impl $crate::store::IdentityStore for $store {
            fn dialect(&self) -> &'static str {
                self.dialect
            }

            fn database(&self) -> &cpis_mesh::db::Database {
                &self.database
            }

            fn set_outbox_notifier(&self, notifier: cpis_mesh::outbox::OutboxNotifier) {
                // Set once at start-up; a second call (a test building twice) keeps the first.
                let _ = self.notifier.set(notifier);
            }

            async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
                let rows: Vec<KeyRow> = sqlx::query_as(SIGNING_KEYS).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(key_from).collect())
            }

            async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(INSERT_SIGNING_KEY)
                    .bind(key.generation)
                    .bind(&key.key_id)
                    .bind(&key.public_key)
                    .bind(&key.sealed_private_key)
                    .bind(key.create_time)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    return Ok(false);
                }
                sqlx::query(RETIRE_SIGNING_KEY)
                    .bind(key.create_time)
                    .bind(key.generation - 1)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn roles(&self) -> Result<Vec<Role>, StoreError> {
                let rows: Vec<RoleRow> = sqlx::query_as(ROLES).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(role_from).collect())
            }

            async fn role(&self, name: &str) -> Result<Option<Role>, StoreError> {
                let row: Option<RoleRow> = sqlx::query_as(ROLE)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(role_from))
            }

            async fn organisation(
                &self,
                code: &OdsCode,
            ) -> Result<Option<Organisation>, StoreError> {
                let row: Option<OrganisationRow> = sqlx::query_as(&organisation_by_code())
                    .bind(code.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let settings = self.care_settings_of(std::slice::from_ref(&row.0)).await?;
                organisation_from(row, &settings).map(Some)
            }

            async fn organisations(
                &self,
                kind: Option<OrganisationKind>,
                page: Page<'_>,
            ) -> Result<Vec<Organisation>, StoreError> {
                let rows: Vec<OrganisationRow> = sqlx::query_as(&organisations_page())
                    .bind(kind.map(OrganisationKind::code))
                    .bind(page.after)
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await?;
                let codes: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
                let settings = self.care_settings_of(&codes).await?;
                rows.into_iter()
                    .map(|row| organisation_from(row, &settings))
                    .collect()
            }

            async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&user_by_username())
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(user_from).transpose()
            }

            async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&user_by_id())
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(user_from).transpose()
            }

            async fn users(
                &self,
                organisation: Option<&OdsCode>,
                page: Page<'_>,
            ) -> Result<Vec<User>, StoreError> {
                let rows: Vec<UserRow> = sqlx::query_as(&users_page())
                    .bind(organisation.map(OdsCode::as_str))
                    .bind(page.after)
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(user_from).collect()
            }

            async fn role_profiles_of(
                &self,
                user_ids: &[String],
            ) -> Result<Vec<RoleProfile>, StoreError> {
                let mut profiles = Vec::new();
                for chunk in user_ids.chunks(500) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {PROFILE_COLUMNS} FROM role_profiles WHERE user_id IN ("
                    ));
                    let mut list = query.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    query.push(") ORDER BY create_time, role_profile_id");
                    let rows: Vec<ProfileRow> =
                        query.build_query_as().fetch_all(&self.pool).await?;
                    for row in rows {
                        profiles.push(profile_from(row)?);
                    }
                }
                Ok(profiles)
            }

            async fn role_profile(
                &self,
                role_profile_id: &str,
            ) -> Result<Option<RoleProfile>, StoreError> {
                let row: Option<ProfileRow> = sqlx::query_as(&profile_by_id())
                    .bind(role_profile_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(profile_from).transpose()
            }

            async fn create_user(
                &self,
                user: &User,
                audit: &[AuditEvent],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                bind_user(sqlx::query(INSERT_USER), user)
                    .execute(&mut *tx)
                    .await?;
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                Ok(())
            }

            async fn set_user_status(
                &self,
                user_id: &str,
                status: Status,
                audit: &[AuditEvent],
            ) -> Result<Option<User>, StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(SET_USER_STATUS)
                    .bind(status.code())
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let row: Option<UserRow> = sqlx::query_as(&user_by_id())
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                user_from(row).map(Some)
            }

            async fn create_role_profile(
                &self,
                profile: &RoleProfile,
                audit: &[AuditEvent],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                bind_profile(sqlx::query(INSERT_PROFILE), profile)
                    .execute(&mut *tx)
                    .await?;
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                Ok(())
            }

            async fn set_role_profile_status(
                &self,
                role_profile_id: &str,
                status: Status,
                audit: &[AuditEvent],
            ) -> Result<Option<RoleProfile>, StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(SET_PROFILE_STATUS)
                    .bind(status.code())
                    .bind(role_profile_id)
                    .execute(&mut *tx)
                    .await?;
                let row: Option<ProfileRow> = sqlx::query_as(&profile_by_id())
                    .bind(role_profile_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                profile_from(row).map(Some)
            }

            async fn record_sign_in(
                &self,
                user_id: Option<&str>,
                at: OffsetDateTime,
                audit: &[AuditEvent],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                if let Some(user_id) = user_id {
                    sqlx::query(SET_LAST_SIGN_IN)
                        .bind(at)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                Ok(())
            }

            async fn record_audit(&self, audit: &[AuditEvent]) -> Result<(), StoreError> {
                if audit.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                Ok(())
            }

            async fn directory(&self) -> Result<Directory, StoreError> {
                // One read transaction, so the parts agree with each other.
                let mut tx = self.pool.begin().await?;
                let roles: Vec<RoleRow> = sqlx::query_as(ROLES).fetch_all(&mut *tx).await?;
                let orgs: Vec<OrganisationRow> = sqlx::query_as(&all_organisations())
                    .fetch_all(&mut *tx)
                    .await?;
                let settings: Vec<CareSettingRow> = sqlx::query_as(ALL_CARE_SETTINGS)
                    .fetch_all(&mut *tx)
                    .await?;
                let users: Vec<UserRow> = sqlx::query_as(&all_users()).fetch_all(&mut *tx).await?;
                let profiles: Vec<ProfileRow> =
                    sqlx::query_as(&all_profiles()).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(Directory {
                    roles: roles.into_iter().map(role_from).collect(),
                    organisations: orgs
                        .into_iter()
                        .map(|row| organisation_from(row, &settings))
                        .collect::<Result<_, _>>()?,
                    users: users.into_iter().map(user_from).collect::<Result<_, _>>()?,
                    role_profiles: profiles
                        .into_iter()
                        .map(profile_from)
                        .collect::<Result<_, _>>()?,
                })
            }

            async fn apply_directory(
                &self,
                changes: &DirectoryChanges,
                audit: &[AuditEvent],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                for role in &changes.roles {
                    sqlx::query(UPSERT_ROLE)
                        .bind(&role.name)
                        .bind(activities_to_text(&role.activities))
                        .execute(&mut *tx)
                        .await?;
                }
                for org in &changes.organisations {
                    let (code, name, kind, office, emergency, email) = organisation_columns(org);
                    sqlx::query(UPSERT_ORGANISATION)
                        .bind(&code)
                        .bind(name)
                        .bind(kind)
                        .bind(office)
                        .bind(emergency)
                        .bind(email)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(DELETE_CARE_SETTINGS)
                        .bind(&code)
                        .execute(&mut *tx)
                        .await?;
                    for (position, setting) in org.care_settings.iter().enumerate() {
                        sqlx::query(INSERT_CARE_SETTING)
                            .bind(&code)
                            .bind(i64::try_from(position).unwrap_or(i64::MAX))
                            .bind(&setting.site)
                            .bind(setting_type_code(setting.setting_type))
                            .bind(&setting.name)
                            .bind(&setting.phone)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                for user in &changes.users {
                    bind_user(sqlx::query(UPSERT_USER), user)
                        .execute(&mut *tx)
                        .await?;
                }
                for profile in &changes.role_profiles {
                    bind_profile(sqlx::query(UPSERT_PROFILE), profile)
                        .execute(&mut *tx)
                        .await?;
                }
                $enqueue(&mut *tx, audit).await?;
                tx.commit().await?;
                self.notify(audit);
                Ok(())
            }

            async fn persons(&self, numbers: &[NhsNumber]) -> Result<Vec<Person>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                persons_in(&mut conn, numbers).await
            }

            async fn upsert_persons(
                &self,
                persons: &[Person],
                audit: &[AuditEvent],
            ) -> Result<PersonCounts, StoreError> {
                self.upsert_persons_now(persons, audit).await
            }
        }

        impl $store {
            /// Wakes the outbox relay after a commit that wrote events.
            fn notify(&self, audit: &[AuditEvent]) {
                if let (false, Some(notifier)) = (audit.is_empty(), self.notifier.get()) {
                    notifier.notify();
                }
            }

            async fn care_settings_of(
                &self,
                codes: &[String],
            ) -> Result<Vec<CareSettingRow>, StoreError> {
                if codes.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(CARE_SETTINGS_OF);
                query.push("(");
                let mut list = query.separated(", ");
                for code in codes {
                    list.push_bind(code.clone());
                }
                query.push(")").push(CARE_SETTINGS_ORDER);
                Ok(query.build_query_as().fetch_all(&self.pool).await?)
            }
        }

        fn bind_user<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            user: &'q User,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            query
                .bind(&user.user_id)
                .bind(&user.username)
                .bind(&user.display_name)
                .bind(user.status.code())
                .bind(&user.credential_hash)
                .bind(user.create_time)
        }

        fn bind_profile<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            profile: &'q RoleProfile,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            query
                .bind(&profile.role_profile_id)
                .bind(&profile.user_id)
                .bind(profile.organisation.as_str())
                .bind(&profile.role)
                .bind(profile.status.code())
                .bind(profile.create_time)
        }
    };
}

pub(crate) use sql_store;
