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
