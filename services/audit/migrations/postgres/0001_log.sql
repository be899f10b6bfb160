-- The audit log: append-only, tamper-evident (RFC 6962 Merkle tree over leaf_data).
--
-- audit_events: one row per event; idx is its position in the log (0, 1, 2, ... with no
--   gaps), assigned by one sequencer at a time (a transaction-scoped advisory lock).
--   leaf_data is the canonical bytes hashed into the tree (the prost encoding of
--   cpis.audit.v1.LogEntry without leaf_data); the other columns are a search index derived
--   from it and checked against it whenever a row is read.
-- stored_hashes: every leaf hash and every complete-subtree hash, at the index given by
--   cpis_merkle::stored_hash_index, so roots and proofs read O(log n) rows.
-- checkpoints: every signed checkpoint (C2SP signed note), kept for ever.
CREATE TABLE audit_events (
    idx BIGINT PRIMARY KEY CHECK (idx >= 0),
    event_id UUID NOT NULL UNIQUE,
    leaf_data BYTEA NOT NULL,
    -- The child's NHS number (10 digits), for privacy officers' searches; NULL when the event
    -- concerns no child. Never logged; the table is readable only by the audit service.
    subject_nhs_number TEXT,
    actor TEXT NOT NULL,
    actor_organisation TEXT,
    action TEXT NOT NULL,
    event_time_us BIGINT NOT NULL,
    trace_id TEXT,
    append_time_us BIGINT NOT NULL
);

-- QueryEvents filters by child, actor, organisation or trace and pages by idx.
CREATE INDEX audit_events_subject ON audit_events (subject_nhs_number, idx) WHERE subject_nhs_number IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor, idx);
CREATE INDEX audit_events_organisation ON audit_events (actor_organisation, idx) WHERE actor_organisation IS NOT NULL;
CREATE INDEX audit_events_trace ON audit_events (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX audit_events_time ON audit_events (event_time_us);

CREATE TABLE stored_hashes (
    idx BIGINT PRIMARY KEY CHECK (idx >= 0),
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE checkpoints (
    tree_size BIGINT PRIMARY KEY CHECK (tree_size >= 0),
    root_hash BYTEA NOT NULL CHECK (length(root_hash) = 32),
    signed_note TEXT NOT NULL,
    create_time_us BIGINT NOT NULL
);

-- Insert-only, enforced twice:
-- 1. privileges: nobody but the owner may change rows; deployments run migrations as the
--    owner and the service as a role with SELECT and INSERT only (granted below when the
--    role `cpis_audit_writer` exists);
-- 2. triggers: UPDATE, DELETE and TRUNCATE are refused for every role, the owner included.
-- A superuser can still disable triggers; the Merkle tree and signed checkpoints make any
-- such change detectable (`cpis audit verify`).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, stored_hashes, checkpoints FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cpis_audit_writer') THEN
        GRANT SELECT, INSERT ON audit_events, stored_hashes, checkpoints TO cpis_audit_writer;
    END IF;
END
$$;

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER stored_hashes_append_only BEFORE UPDATE OR DELETE ON stored_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER stored_hashes_no_truncate BEFORE TRUNCATE ON stored_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
