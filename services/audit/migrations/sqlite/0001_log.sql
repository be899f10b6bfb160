-- The audit log: append-only, tamper-evident (RFC 6962 Merkle tree over leaf_data).
-- See migrations/postgres/0001_log.sql for the meaning of each table; SQLite has no roles,
-- so the triggers alone refuse UPDATE and DELETE (and SQLite has no TRUNCATE: DELETE
-- without WHERE fires the same trigger).
CREATE TABLE audit_events (
    idx INTEGER PRIMARY KEY CHECK (idx >= 0),
    event_id TEXT NOT NULL UNIQUE,
    leaf_data BLOB NOT NULL,
    subject_nhs_number TEXT,
    actor TEXT NOT NULL,
    actor_organisation TEXT,
    action TEXT NOT NULL,
    event_time_us INTEGER NOT NULL,
    trace_id TEXT,
    append_time_us INTEGER NOT NULL
);

CREATE INDEX audit_events_subject ON audit_events (subject_nhs_number, idx) WHERE subject_nhs_number IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor, idx);
CREATE INDEX audit_events_organisation ON audit_events (actor_organisation, idx) WHERE actor_organisation IS NOT NULL;
CREATE INDEX audit_events_trace ON audit_events (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX audit_events_time ON audit_events (event_time_us);

CREATE TABLE stored_hashes (
    idx INTEGER PRIMARY KEY CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    signed_note TEXT NOT NULL,
    create_time_us INTEGER NOT NULL
);

CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on audit_events refused'); END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on audit_events refused'); END;
CREATE TRIGGER stored_hashes_append_only_update BEFORE UPDATE ON stored_hashes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on stored_hashes refused'); END;
CREATE TRIGGER stored_hashes_append_only_delete BEFORE DELETE ON stored_hashes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on stored_hashes refused'); END;
CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on checkpoints refused'); END;
CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on checkpoints refused'); END;
