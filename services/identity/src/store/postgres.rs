//! The Postgres store.

use cpis_domain::{NhsNumber, OdsCode};
use std::sync::{Arc, OnceLock};

use cpis_mesh::db::Database;
use cpis_mesh::outbox::OutboxNotifier;
use cpis_proto::audit::AuditEvent;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::outbox::enqueue_postgres;
use super::rows::*;
use super::sql::sql_store;
use super::{DirectoryChanges, Page, StoreError, StoredSigningKey};
use crate::directory::{
    Directory, Organisation, OrganisationKind, Role, RoleProfile, Status, User, activities_to_text,
    setting_type_code,
};
use crate::persons::{Person, PersonCounts};

/// Identity's tables in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    database: Database,
    dialect: &'static str,
    notifier: Arc<OnceLock<OutboxNotifier>>,
}

impl PostgresStore {
    /// A store over `pool`, migrated already.
    pub fn new(pool: PgPool) -> Self {
        let database = Database::Postgres(pool.clone());
        Self {
            dialect: database.dialect(),
            pool,
            database,
            notifier: Arc::default(),
        }
    }

    /// A transaction that will write.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

sql_store!(PostgresStore, sqlx::Postgres, enqueue_postgres);
