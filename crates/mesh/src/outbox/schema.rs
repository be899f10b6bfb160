//! The `outbox` table, once per dialect. Each service embeds it as one of its own
//! migrations, so the outbox lives in the service's database next to the rows it describes.

/// The `outbox` table for Postgres.
pub const POSTGRES_SQL: &str = r#"
-- The transactional outbox (cpis_mesh::outbox): events written in the same transaction as
-- the change they describe, shipped afterwards by a relay to their destination, at least
-- once. A row is deleted only after its destination confirmed it.
CREATE TABLE outbox (
    -- Creation order: the relay ships each destination's rows in this order. An identity
    -- never goes back, even after rows are deleted.
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The producer's id of the event; destinations ignore an id they have already seen.
    event_id        UUID NOT NULL UNIQUE,
    -- Which sink ships the row: "audit", "notification".
    destination     TEXT NOT NULL,
    -- A protobuf message the destination's sink decodes (an AuditEvent, a
    -- NotificationEvent).
    payload         BYTEA NOT NULL,
    -- The producer's W3C trace context, so that the asynchronous hop joins its trace.
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Failed deliveries so far, and when the row may be tried again (backoff).
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The lease: the relay shipping the row, until when. Both NULL when unclaimed; an
    -- expired lease is free to claim again (its relay died or hangs).
    claimed_by      TEXT,
    claimed_until   TIMESTAMPTZ,
    -- Why the last delivery failed, for operators (never personal data).
    last_error      TEXT
);

-- The relay's claim walks one destination's rows in creation order and stops after a
-- batch: (destination, seq) serves that walk without a sort, and the depth count per
-- destination as an index-only scan. Due and lease conditions are filtered on the way:
-- rows waiting for a retry are few, so no index on them pays for its writes.
CREATE INDEX outbox_destination_seq ON outbox (destination, seq);
"#;

/// A later Postgres migration of the `outbox` table (each service's next one after
/// [`POSTGRES_SQL`]): room on every page for the relay's claim to update its rows in place.
pub const POSTGRES_HOT_SQL: &str = r#"
-- A claim updates each row it ships (claimed_by, claimed_until, neither indexed) shortly
-- after the row was written, and the row is deleted once delivered. On full pages the new
-- version went to another page, adding an entry to each of the three indexes, which
-- claims then walk past until a vacuum: two thirds of the flag registry's claims under
-- load, and 78% of a whole-page claim. Pages filled to 40% leave room for every row's new
-- version on its own page (a heap-only update), even when a claim takes the whole page;
-- the rows are few and short-lived, so the table stays small.
ALTER TABLE outbox SET (fillfactor = 40);
"#;

/// A later Postgres migration of the `outbox` table (each service's next one after
/// [`POSTGRES_HOT_SQL`]): event ids no longer unique, one index fewer.
pub const POSTGRES_EVENT_ID_NOT_UNIQUE_SQL: &str = r#"
-- Every outbox row is inserted, claimed and deleted within moments, and every index entry
-- it adds is written to the WAL, removed again by the relay's vacuum, and - the first time
-- its page changes after a checkpoint - written once more as a whole page. The unique
-- index on event_id guarded nothing the destinations need: delivery is at least once
-- anyway, and a destination ignores an id it has already seen, so a repeated id is shipped
-- twice and kept once. Without it a check writes 3.5% less WAL (docs/performance.md).
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
"#;

/// The `outbox` table for SQLite. Times are integer milliseconds since the Unix epoch,
/// which compare and add exactly.
pub const SQLITE_SQL: &str = r#"
-- The transactional outbox (cpis_mesh::outbox): events written in the same transaction as
-- the change they describe, shipped afterwards by a relay to their destination, at least
-- once. A row is deleted only after its destination confirmed it.
CREATE TABLE outbox (
    -- Creation order: AUTOINCREMENT never reuses a number, even once the table is empty.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The producer's id of the event (16 bytes); destinations ignore an id already seen.
    event_id        BLOB NOT NULL UNIQUE,
    -- Which sink ships the row: "audit", "notification".
    destination     TEXT NOT NULL,
    -- A protobuf message the destination's sink decodes.
    payload         BLOB NOT NULL,
    -- The producer's W3C trace context, so that the asynchronous hop joins its trace.
    traceparent     TEXT,
    tracestate      TEXT,
    -- Milliseconds since the Unix epoch.
    created_at      INTEGER NOT NULL,
    -- Failed deliveries so far, and when the row may be tried again (backoff), in ms.
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- The lease: the relay shipping the row, until when (ms). Both NULL when unclaimed;
    -- an expired lease is free to claim again.
    claimed_by      TEXT,
    claimed_until   INTEGER,
    -- Why the last delivery failed, for operators (never personal data).
    last_error      TEXT
);

-- The relay's claim walks one destination's rows in creation order and stops after a
-- batch: (destination, seq) serves that walk without a sort, and the depth count.
CREATE INDEX outbox_destination_seq ON outbox (destination, seq);
"#;

/// A later SQLite migration of the `outbox` table (each service's next one after
/// [`SQLITE_SQL`]): event ids no longer unique, as on Postgres
/// ([`POSTGRES_EVENT_ID_NOT_UNIQUE_SQL`]). SQLite cannot drop a constraint, so the table is
/// rebuilt; the sequence carries over, so that `seq` never goes back.
pub const SQLITE_EVENT_ID_NOT_UNIQUE_SQL: &str = r#"
-- A repeated event id is harmless (destinations ignore an id they have already seen), and
-- its unique index cost a write per event. SQLite cannot drop a constraint: the table is
-- rebuilt with the same columns, and its AUTOINCREMENT sequence carried over.
CREATE TABLE outbox_rebuilt (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        BLOB NOT NULL,
    destination     TEXT NOT NULL,
    payload         BLOB NOT NULL,
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claimed_until   INTEGER,
    last_error      TEXT
);
INSERT INTO outbox_rebuilt (seq, event_id, destination, payload, traceparent, tracestate,
                            created_at, attempts, next_attempt_at, claimed_by,
                            claimed_until, last_error)
SELECT seq, event_id, destination, payload, traceparent, tracestate, created_at, attempts,
       next_attempt_at, claimed_by, claimed_until, last_error
FROM outbox;
DELETE FROM sqlite_sequence WHERE name = 'outbox_rebuilt';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'outbox_rebuilt', seq FROM sqlite_sequence WHERE name = 'outbox';
DROP TABLE outbox;
ALTER TABLE outbox_rebuilt RENAME TO outbox;
CREATE INDEX outbox_destination_seq ON outbox (destination, seq);
"#;
