-- The flag registry in SQLite: the same tables and indexes as
-- migrations/postgres/0001_flags.sql (see there for why each index exists).
CREATE TABLE flags (
    flag_id              TEXT PRIMARY KEY,
    authority_code       TEXT NOT NULL,
    authority_name       TEXT NOT NULL,
    case_reference       TEXT NOT NULL,
    nhs_number           TEXT NOT NULL CHECK (length(nhs_number) = 10),
    kind                 TEXT NOT NULL CHECK (kind IN ('CPP', 'LAC', 'UCPP')),
    legal_basis          TEXT,
    expected_delivery    TEXT,
    start_date           TEXT NOT NULL,
    end_date             TEXT,
    delete_date          TEXT,
    office_hours_phone   TEXT,
    emergency_duty_phone TEXT NOT NULL,
    secure_email         TEXT,
    version              INTEGER NOT NULL CHECK (version >= 1),
    updated_at_us        INTEGER NOT NULL,
    updated_by           TEXT NOT NULL,
    -- The idempotency key of an upsert. Its index also serves ListFlags (an authority's
    -- flags in case-reference order, the cursor being the last case reference of a page),
    -- EndFlag by case reference, and the snapshot upload's "every flag of this authority".
    CONSTRAINT flags_authority_case UNIQUE (authority_code, case_reference)
);

-- GetFlags, the hot read of every check: all flags of one NHS number, across authorities.
CREATE INDEX flags_subject ON flags (nhs_number);

-- Bulk uploads: one row per upload, its report kept as the encoded
-- cpis.flags.v1.UploadReport. `sequence_number` is set only for an applied upload (not for
-- a corrupt one or one refused because demographics were unavailable), so the unique index
-- makes a replay find the earlier report and never apply twice.
CREATE TABLE uploads (
    upload_id        TEXT PRIMARY KEY,
    authority_code   TEXT NOT NULL,
    sequence_number  INTEGER,
    report           BLOB NOT NULL,
    create_time_us   INTEGER NOT NULL
);

-- Replay detection and GetUploadReport by sequence number.
CREATE UNIQUE INDEX uploads_authority_sequence ON uploads (authority_code, sequence_number)
    WHERE sequence_number IS NOT NULL;
