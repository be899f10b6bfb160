//! Where flags live: one trait, a Postgres and an SQLite implementation sharing one set of
//! queries (`sql.rs`).
//!
//! Every write takes the audit events that describe it and writes them to the outbox in
//! the same transaction: a change is never stored without its audit event, nor the
//! reverse. Concurrency is optimistic: a row is changed only at the version it was read at.

mod postgres;
mod sql;
mod sqlite;
mod upload_sql;

use std::fmt;
use std::sync::{Arc, OnceLock};

use cpis_domain::{
    FieldViolations, Flag, FlagDetails, FlagDraft, FlagKind, LookedAfterLegalBasis, NhsNumber,
    OdsCode,
};
use cpis_mesh::db::{Database, EmbeddedMigration, Migrations};
use cpis_mesh::outbox::OutboxNotifier;
use cpis_proto::audit::AuditEvent;
use time::{Date, Month, OffsetDateTime};

pub use postgres::PgFlagStore;
pub use sqlite::SqliteFlagStore;

/// The service's migrations, embedded: its tables, then the mesh's outbox.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "flags and uploads",
            sql: include_str!("../../migrations/postgres/0001_flags.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: cpis_mesh::outbox::POSTGRES_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: room for claims in place",
            sql: cpis_mesh::outbox::POSTGRES_HOT_SQL,
        },
        EmbeddedMigration {
            version: 4,
            description: "outbox: event ids not unique",
            sql: cpis_mesh::outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "flags and uploads",
            sql: include_str!("../../migrations/sqlite/0001_flags.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: cpis_mesh::outbox::SQLITE_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: event ids not unique",
            sql: cpis_mesh::outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox refused an event.
    #[error("outbox: {0}")]
    Outbox(String),
    /// The stored version is not the one expected (or a concurrent write won).
    #[error("{0}")]
    Conflict(String),
    /// The upload's sequence number was used by another upload of the authority.
    #[error("the sequence number was used by another upload")]
    SequenceUsed,
    /// No such flag of this authority.
    #[error("no such flag")]
    NotFound,
    /// The change would break a rule of the flag.
    #[error("{0}")]
    Invalid(FieldViolations),
    /// A stored row does not make a valid flag.
    #[error("stored flag {flag_id} is not valid: {reason}")]
    Corrupt {
        /// The row.
        flag_id: String,
        /// What is wrong.
        reason: String,
    },
}

/// A flag as stored, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlag {
    /// The registry's id of the flag.
    pub flag_id: String,
    /// The flag.
    pub flag: Flag,
}

/// Which flag of an authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagTarget {
    /// By the registry's id.
    Id(String),
    /// By the authority's case reference.
    CaseReference(String),
}

/// What an upsert did.
#[derive(Debug, Clone)]
pub struct Upserted {
    /// The flag as stored now.
    pub flag: StoredFlag,
    /// Whether this call created it.
    pub created: bool,
    /// The NHS number it was held on before, when it moved to another.
    pub previous_subject: Option<NhsNumber>,
}

/// What an ending did.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The flag as stored now.
    pub flag: StoredFlag,
    /// Whether it changed (ending again with the same dates changes nothing).
    pub changed: bool,
}

/// One page's worth of an authority's flags, in case-reference order.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// The authority.
    pub authority: OdsCode,
    /// Only flags whose case reference sorts after this one (the cursor).
    pub after: String,
    /// Only the flags of this NHS number.
    pub nhs_number: Option<NhsNumber>,
    /// Only the flag with this case reference.
    pub case_reference: Option<String>,
    /// At most this many rows.
    pub limit: u32,
}

/// Builds the audit events of a write from the flag it wrote, inside its transaction.
pub type AuditFor = Box<dyn FnOnce(&StoredFlag) -> Vec<AuditEvent> + Send>;

/// A chunk of an upload to write: the flags to create or replace (valid, traced, under
/// their current numbers, each case reference once in the upload), and the events of the
/// chunk (an audit event per child stored, notifications of changed numbers).
#[derive(Debug, Clone, Default)]
pub struct UploadChunk {
    /// The flags to create or replace.
    pub upserts: Vec<FlagDetails>,
    /// Audit and notification events written with them.
    pub events: Vec<cpis_mesh::outbox::NewOutboxEvent>,
}

/// What applying an upload changed.
#[derive(Debug, Clone, Default)]
pub struct UploadApplied {
    /// The flags ended because the snapshot omitted them.
    pub ended: Vec<StoredFlag>,
    /// The NHS numbers whose flags the snapshot endings changed (for the cache).
    pub touched: Vec<NhsNumber>,
}

/// An upload being applied: ONE database transaction, open from the first chunk to the
/// commit, so that the records stream through it in chunks (memory bounded by a chunk, not
/// the upload) and the upload still applies all or nothing. Dropped without
/// [`commit`](UploadTransaction::commit), it rolls back.
#[tonic::async_trait]
pub trait UploadTransaction: Send {
    /// Marks the case references of a chunk (every record, refused ones included) as
    /// present in the upload; answers, in order, whether each is the first occurrence in the
    /// whole upload.
    async fn claim(&mut self, case_references: &[&str]) -> Result<Vec<bool>, StoreError>;

    /// Writes a chunk: creates or replaces its flags (an identical flag is left as it is),
    /// and enqueues its events. Answers the NHS numbers whose flags changed (for the cache).
    async fn write(&mut self, chunk: UploadChunk) -> Result<Vec<NhsNumber>, StoreError>;

    /// In snapshot mode (`snapshot_end` set), ends the authority's open flags whose case
    /// reference no chunk claimed; then keeps the upload's record and commits. A sequence
    /// number already used is [`StoreError::SequenceUsed`] and applies nothing.
    async fn commit(
        self: Box<Self>,
        snapshot_end: Option<Date>,
        finish: FinishUpload,
    ) -> Result<UploadApplied, StoreError>;
}

/// An upload's report as kept: its id, the authority, the sequence number it used up
/// (none for a corrupt upload or one refused for lack of demographics), the encoded
/// `cpis.flags.v1.UploadReport`, and the outbox events recording it.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    /// The upload's id.
    pub upload_id: String,
    /// The authority.
    pub authority: OdsCode,
    /// The sequence number used up.
    pub sequence_number: Option<i64>,
    /// The encoded report.
    pub report: Vec<u8>,
    /// When the upload started, microseconds.
    pub create_time_us: i64,
    /// Audit (and notification) events.
    pub events: Vec<cpis_mesh::outbox::NewOutboxEvent>,
}

/// Makes the upload's record once the changes are known, inside the transaction.
pub type FinishUpload = Box<dyn FnOnce(&UploadApplied) -> UploadRecord + Send>;

/// Which upload of an authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadKey {
    /// By id.
    Id(String),
    /// By the sequence number it used up.
    Sequence(i64),
}

/// The flags' storage.
#[tonic::async_trait]
pub trait FlagStore: Send + Sync + fmt::Debug + 'static {
    /// The database, for its health check and the outbox relay.
    fn database(&self) -> &Database;

    /// Wakes the outbox relay after each commit that wrote events.
    fn set_outbox_notifier(&self, notifier: OutboxNotifier);

    /// Creates or replaces the flag of `details`' authority and case reference. An
    /// identical flag is left as it is (same version). `expected_version`: `Some(0)`
    /// requires that none exists, `Some(n)` that the stored one is at version `n`.
    async fn upsert(
        &self,
        details: FlagDetails,
        expected_version: Option<u64>,
        updated_by: &str,
        audit: AuditFor,
    ) -> Result<Upserted, StoreError>;

    /// Ends a flag of `authority`.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per field of EndFlag"
    )]
    async fn end(
        &self,
        authority: &OdsCode,
        target: &FlagTarget,
        end_date: Date,
        delete_date: Option<Date>,
        expected_version: Option<u64>,
        updated_by: &str,
        audit: AuditFor,
    ) -> Result<Ended, StoreError>;

    /// Every flag held on `subject`, whatever its state (purged ones included: the caller
    /// knows today's date).
    async fn flags_of(&self, subject: &NhsNumber) -> Result<Vec<StoredFlag>, StoreError>;

    /// A page of an authority's flags.
    async fn list(&self, query: &ListQuery) -> Result<Vec<StoredFlag>, StoreError>;

    /// Writes audit events of something that stored nothing (a read, a refusal); answers
    /// once they are durable (concurrent callers share a commit).
    async fn record(&self, events: Vec<AuditEvent>) -> Result<(), StoreError>;

    /// As [`record`](Self::record), but answers once the events are queued for the next
    /// commit: for a read whose access the caller records durably itself (a check's read,
    /// which attendance audits in the check's own transaction).
    async fn record_queued(&self, events: Vec<AuditEvent>) -> Result<(), StoreError>;

    /// Starts applying an upload of `authority` by `updated_by`.
    async fn begin_upload(
        &self,
        authority: &OdsCode,
        updated_by: &str,
    ) -> Result<Box<dyn UploadTransaction>, StoreError>;

    /// Keeps the report of an upload that applied nothing.
    async fn save_upload(&self, record: UploadRecord) -> Result<(), StoreError>;

    /// The encoded report of an upload of `authority`.
    async fn upload_report(
        &self,
        authority: &OdsCode,
        key: &UploadKey,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Opens the store of a connected, migrated database.
pub fn open(database: &Database) -> Arc<dyn FlagStore> {
    match database {
        Database::Postgres(pool) => Arc::new(PgFlagStore::new(database.clone(), pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteFlagStore::new(database.clone(), pool.clone())),
    }
}

/// The outbox rows of audit events.
pub(crate) fn audit_rows(
    events: Vec<AuditEvent>,
) -> Result<Vec<cpis_mesh::outbox::NewOutboxEvent>, StoreError> {
    events
        .into_iter()
        .map(cpis_mesh::outbox::NewOutboxEvent::audit)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Outbox(e.to_string()))
}

/// The outbox notifier slot a store keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier(Arc<OnceLock<OutboxNotifier>>);

impl Notifier {
    pub(crate) fn set(&self, notifier: OutboxNotifier) {
        let _ = self.0.set(notifier);
    }

    pub(crate) fn notify(&self) {
        if let Some(notifier) = self.0.get() {
            notifier.notify();
        }
    }
}

/// A row of `flags`, as the queries read and write it.
#[derive(Debug, Clone)]
pub(crate) struct FlagRow {
    pub(crate) flag_id: String,
    pub(crate) authority_code: String,
    pub(crate) authority_name: String,
    pub(crate) case_reference: String,
    pub(crate) nhs_number: String,
    pub(crate) kind: String,
    pub(crate) legal_basis: Option<String>,
    pub(crate) expected_delivery: Option<String>,
    pub(crate) start_date: String,
    pub(crate) end_date: Option<String>,
    pub(crate) delete_date: Option<String>,
    pub(crate) office_hours_phone: Option<String>,
    pub(crate) emergency_duty_phone: String,
    pub(crate) secure_email: Option<String>,
    pub(crate) version: i64,
    pub(crate) updated_at_us: i64,
    pub(crate) updated_by: String,
}

impl FlagRow {
    /// The row of `details` at `version`, changed now by `updated_by`.
    pub(crate) fn of(flag_id: &str, details: &FlagDetails, version: i64, updated_by: &str) -> Self {
        let contacts = details.contacts();
        Self {
            flag_id: flag_id.to_owned(),
            authority_code: details.authority().code().as_str().to_owned(),
            authority_name: details.authority().name().to_owned(),
            case_reference: details.case_reference().as_str().to_owned(),
            nhs_number: details.subject().as_str().to_owned(),
            kind: details.kind().code().to_owned(),
            legal_basis: details.plan().legal_basis().map(|b| b.code().to_owned()),
            expected_delivery: details.plan().expected_delivery().map(date_text),
            start_date: date_text(details.start_date()),
            end_date: details.end_date().map(date_text),
            delete_date: details.delete_date().map(date_text),
            office_hours_phone: contacts
                .office_hours_phone
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            emergency_duty_phone: contacts.emergency_duty_phone.as_str().to_owned(),
            secure_email: contacts
                .secure_email
                .as_ref()
                .map(|e| e.as_str().to_owned()),
            version,
            updated_at_us: micros(OffsetDateTime::now_utc()),
            updated_by: updated_by.to_owned(),
        }
    }

    /// Whether `other` holds the same flag (whatever its id, version and last change).
    pub(crate) fn same_flag(&self, other: &Self) -> bool {
        self.authority_code == other.authority_code
            && self.authority_name == other.authority_name
            && self.case_reference == other.case_reference
            && self.nhs_number == other.nhs_number
            && self.kind == other.kind
            && self.legal_basis == other.legal_basis
            && self.expected_delivery == other.expected_delivery
            && self.start_date == other.start_date
            && self.end_date == other.end_date
            && self.delete_date == other.delete_date
            && self.office_hours_phone == other.office_hours_phone
            && self.emergency_duty_phone == other.emergency_duty_phone
            && self.secure_email == other.secure_email
    }

    /// The NHS number the row is held on.
    pub(crate) fn subject(&self) -> Result<NhsNumber, StoreError> {
        NhsNumber::parse(&self.nhs_number).map_err(|e| StoreError::Corrupt {
            flag_id: self.flag_id.clone(),
            reason: e.to_string(),
        })
    }

    /// The stored flag this row holds, checked by the domain's rules.
    pub(crate) fn into_stored(self) -> Result<StoredFlag, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            flag_id: self.flag_id.clone(),
            reason,
        };
        let kind = self
            .kind
            .parse::<FlagKind>()
            .map_err(|e| corrupt(e.to_string()))?;
        let legal_basis = self
            .legal_basis
            .as_deref()
            .map(str::parse::<LookedAfterLegalBasis>)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?;
        let date = |text: &Option<String>| match text.as_deref() {
            None => Some(None),
            Some(text) => parse_date(text).map(Some),
        };
        let dates = (|| {
            Some((
                parse_date(&self.start_date)?,
                date(&self.end_date)?,
                date(&self.delete_date)?,
                date(&self.expected_delivery)?,
            ))
        })()
        .ok_or_else(|| corrupt("a date is not YYYY-MM-DD".to_owned()))?;
        let draft = FlagDraft {
            nhs_number: self.nhs_number.clone(),
            kind: Some(kind),
            legal_basis,
            expected_delivery: dates.3,
            start_date: Some(dates.0),
            end_date: dates.1,
            delete_date: dates.2,
            authority_code: self.authority_code.clone(),
            authority_name: self.authority_name.clone(),
            office_hours_phone: self.office_hours_phone.clone(),
            emergency_duty_phone: self.emergency_duty_phone.clone(),
            secure_email: self.secure_email.clone(),
            case_reference: self.case_reference.clone(),
        };
        let details = draft.validate().map_err(|e| corrupt(e.to_string()))?;
        let updated_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.updated_at_us) * 1_000)
                .map_err(|e| corrupt(e.to_string()))?;
        let version = u64::try_from(self.version).map_err(|e| corrupt(e.to_string()))?;
        Ok(StoredFlag {
            flag_id: self.flag_id,
            flag: Flag::new(details, version, updated_at, self.updated_by),
        })
    }
}

/// `YYYY-MM-DD`, which sorts as the date does.
pub(crate) fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Reads `YYYY-MM-DD`.
pub(crate) fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let year = parts.next()?.parse().ok()?;
    let month = Month::try_from(parts.next()?.parse::<u8>().ok()?).ok()?;
    let day = parts.next()?.parse().ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// Microseconds since the epoch.
pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Checks `expected` against the stored version (`None`: no flag stored).
pub(crate) fn check_version(expected: Option<u64>, stored: Option<u64>) -> Result<(), StoreError> {
    match (expected, stored) {
        (None, _) | (Some(0), None) => Ok(()),
        (Some(want), Some(have)) if want == have => Ok(()),
        (Some(want), have) => Err(StoreError::Conflict(format!(
            "the flag is at version {}, not {want}",
            have.unwrap_or(0)
        ))),
    }
}
