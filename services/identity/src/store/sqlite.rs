//! The SQLite store.

use cpis_domain::{NhsNumber, OdsCode};
use std::sync::{Arc, OnceLock};

use cpis_mesh::db::Database;
use cpis_mesh::outbox::OutboxNotifier;
use cpis_proto::audit::AuditEvent;
use sqlx::SqlitePool;
use time::OffsetDateTime;

use super::outbox::enqueue_sqlite;
use super::rows::*;
use super::sql::sql_store;
use super::{DirectoryChanges, Page, StoreError, StoredSigningKey};
use crate::directory::{
    Directory, Organisation, OrganisationKind, Role, RoleProfile, Status, User, activities_to_text,
    setting_type_code,
};
use crate::persons::{Person, PersonCounts};

/// Identity's tables in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    database: Database,
    dialect: &'static str,
    notifier: Arc<OnceLock<OutboxNotifier>>,
}

impl SqliteStore {
    /// A store over `pool`, migrated already.
    pub fn new(pool: SqlitePool) -> Self {
        let database = Database::Sqlite(pool.clone());
        Self {
            dialect: database.dialect(),
            pool,
            database,
            notifier: Arc::default(),
        }
    }

    /// A transaction that will write.
    ///
    /// `BEGIN IMMEDIATE` takes SQLite's write lock first: a deferred transaction that reads
    /// before it writes can fail to become the writer when another connection wrote since.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

sql_store!(SqliteStore, sqlx::Sqlite, enqueue_sqlite);
