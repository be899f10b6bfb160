//! Identity's storage: one trait, two implementations (Postgres in a cluster, SQLite on one
//! machine), one contract test suite run against both (`tests/store_contract.rs`).
//!
//! The SQL is the same in both dialects (sqlx binds `$n` parameters on SQLite too), so both
//! implementations are expanded from one macro (`sql.rs`); they differ in their migrations
//! and their outbox writer.
//!
//! Every write takes the audit events that describe it and writes them to the outbox in the
//! same transaction: a change is never stored without its audit event, nor the reverse.

mod outbox;
mod postgres;
mod register;
mod rows;
mod sql;
mod sqlite;

use std::sync::Arc;

use cpis_domain::{NhsNumber, OdsCode};
use cpis_mesh::db::{Database, DatabaseSettings, DbError, EmbeddedMigration, Migrations};
use cpis_mesh::health::DependencyCheck;
use cpis_proto::audit::AuditEvent;
use time::OffsetDateTime;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::directory::{
    Directory, Organisation, OrganisationKind, Role, RoleProfile, Status, User,
};
use crate::persons::{Person, PersonCounts};

/// Identity's migrations, embedded in the binary.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "directory, signing keys and person register",
            sql: include_str!("../../migrations/postgres/0001_identity.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: outbox::POSTGRES_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: room for claims in place",
            sql: outbox::POSTGRES_HOT_SQL,
        },
        EmbeddedMigration {
            version: 4,
            description: "outbox: event ids not unique",
            sql: outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "directory, signing keys and person register",
            sql: include_str!("../../migrations/sqlite/0001_identity.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: outbox::SQLITE_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: event ids not unique",
            sql: outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (a taken username, an active role profile that
    /// exists already).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist (an unknown organisation or role).
    #[error("missing reference: {0}")]
    MissingReference(String),
    /// The database cannot be reached or is overloaded.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not parse: a bug or tampering.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// Connecting or migrating failed.
    #[error(transparent)]
    Setup(#[from] DbError),
    /// The outbox refused an event.
    #[error("outbox: {0}")]
    Outbox(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error.to_string())
            }
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => Self::Conflict(db.message().to_owned()),
                ErrorKind::ForeignKeyViolation => Self::MissingReference(db.message().to_owned()),
                _ => Self::Database(error),
            },
            _ => Self::Database(error),
        }
    }
}

/// A signing key as stored: the private half sealed under the key encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// 1 for the first key, then one more per rotation; the newest signs.
    pub generation: i64,
    /// The key id (`kid`).
    pub key_id: String,
    /// The raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// The PKCS#8 document, sealed (nonce, ciphertext, tag).
    pub sealed_private_key: Vec<u8>,
    /// When it was made.
    pub create_time: OffsetDateTime,
    /// When the next generation replaced it.
    pub retire_time: Option<OffsetDateTime>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("generation", &self.generation)
            .field("key_id", &self.key_id)
            .field("create_time", &self.create_time)
            .field("retire_time", &self.retire_time)
            .finish_non_exhaustive()
    }
}

/// Entries an import creates or changes, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// Roles, upserted by name.
    pub roles: Vec<Role>,
    /// Organisations, upserted by code; their care settings replaced.
    pub organisations: Vec<Organisation>,
    /// Users, upserted by id.
    pub users: Vec<User>,
    /// Role profiles, upserted by id.
    pub role_profiles: Vec<RoleProfile>,
}

impl DirectoryChanges {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.organisations.is_empty()
            && self.users.is_empty()
            && self.role_profiles.is_empty()
    }
}

/// A page of a keyset-paged list: items after `after` (exclusive), at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The last key of the previous page.
    pub after: Option<&'a str>,
    /// The most items to return.
    pub limit: u32,
}

/// Identity's storage.
#[tonic::async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug + 'static {
    /// `postgres` or `sqlite`.
    fn dialect(&self) -> &'static str;

    /// The database, for its health check and the outbox relay.
    fn database(&self) -> &Database;

    /// A health dependency on the database.
    fn health_check(&self) -> Arc<dyn DependencyCheck> {
        self.database().health_check()
    }

    /// The relay to wake after a commit that wrote audit events.
    fn set_outbox_notifier(&self, notifier: cpis_mesh::outbox::OutboxNotifier);

    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;

    /// Adds the next generation and retires the one before; `false` (and nothing written)
    /// when that generation exists already (another replica rotated first).
    async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<bool, StoreError>;

    /// Every role, by name.
    async fn roles(&self) -> Result<Vec<Role>, StoreError>;

    /// One role.
    async fn role(&self, name: &str) -> Result<Option<Role>, StoreError>;

    /// One organisation with its care settings.
    async fn organisation(&self, code: &OdsCode) -> Result<Option<Organisation>, StoreError>;

    /// Organisations by code, optionally of one kind.
    async fn organisations(
        &self,
        kind: Option<OrganisationKind>,
        page: Page<'_>,
    ) -> Result<Vec<Organisation>, StoreError>;

    /// The user with this (normalised) username.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;

    /// The user with this id.
    async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError>;

    /// Users by username, optionally only those with a role profile at `organisation`.
    async fn users(
        &self,
        organisation: Option<&OdsCode>,
        page: Page<'_>,
    ) -> Result<Vec<User>, StoreError>;

    /// The role profiles of these users.
    async fn role_profiles_of(&self, user_ids: &[String]) -> Result<Vec<RoleProfile>, StoreError>;

    /// One role profile.
    async fn role_profile(&self, role_profile_id: &str) -> Result<Option<RoleProfile>, StoreError>;

    /// Adds a user. [`StoreError::Conflict`] when the id or username is taken.
    async fn create_user(&self, user: &User, audit: &[AuditEvent]) -> Result<(), StoreError>;

    /// Sets a user's status; the user as stored, `None` when unknown (nothing written).
    async fn set_user_status(
        &self,
        user_id: &str,
        status: Status,
        audit: &[AuditEvent],
    ) -> Result<Option<User>, StoreError>;

    /// Adds a role profile. [`StoreError::Conflict`] when the user has an active profile
    /// with that role at that organisation; [`StoreError::MissingReference`] for an
    /// unknown user, organisation or role.
    async fn create_role_profile(
        &self,
        profile: &RoleProfile,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;

    /// Sets a role profile's status; the profile as stored, `None` when unknown.
    async fn set_role_profile_status(
        &self,
        role_profile_id: &str,
        status: Status,
        audit: &[AuditEvent],
    ) -> Result<Option<RoleProfile>, StoreError>;

    /// Records a sign-in: the user's last sign-in time when one succeeded, and its audit
    /// events (success or failure) either way.
    async fn record_sign_in(
        &self,
        user_id: Option<&str>,
        at: OffsetDateTime,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;

    /// Writes audit events that accompany no other change (traces of persons).
    async fn record_audit(&self, audit: &[AuditEvent]) -> Result<(), StoreError>;

    /// The whole directory.
    async fn directory(&self) -> Result<Directory, StoreError>;

    /// Writes an import's changes, all or nothing.
    async fn apply_directory(
        &self,
        changes: &DirectoryChanges,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;

    /// The records of these numbers (those that exist), in no particular order.
    async fn persons(&self, numbers: &[NhsNumber]) -> Result<Vec<Person>, StoreError>;

    /// Upserts persons by NHS number in one transaction; what changed.
    async fn upsert_persons(
        &self,
        persons: &[Person],
        audit: &[AuditEvent],
    ) -> Result<PersonCounts, StoreError>;
}

/// Connects to the database `url` names and applies identity's migrations.
pub async fn open(url: &str) -> Result<Arc<dyn IdentityStore>, StoreError> {
    let database = Database::connect(&DatabaseSettings::new(url)).await?;
    database.migrate(&MIGRATIONS).await?;
    Ok(match database {
        Database::Postgres(pool) => Arc::new(PostgresStore::new(pool)),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool)),
    })
}

/// The status stored as `code`.
pub(crate) fn status_from(code: &str) -> Result<Status, StoreError> {
    Status::from_code(code).ok_or_else(|| StoreError::Corrupt(format!("status `{code}`")))
}

/// The ODS code stored as `code`.
pub(crate) fn ods_from(code: &str) -> Result<OdsCode, StoreError> {
    code.parse()
        .map_err(|_| StoreError::Corrupt(format!("organisation code `{code}`")))
}

/// The NHS number stored as `digits`.
pub(crate) fn nhs_from(digits: &str) -> Result<NhsNumber, StoreError> {
    digits
        .parse()
        .map_err(|_| StoreError::Corrupt("an NHS number".to_owned()))
}
