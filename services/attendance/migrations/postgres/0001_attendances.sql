-- Attendances of children the system holds a flag for (data minimisation: a check of an
-- unflagged child is audited but not kept here). Times are microseconds since the epoch,
-- as on SQLite, so that both stores share their queries.
CREATE TABLE attendances (
    attendance_id UUID PRIMARY KEY,
    nhs_number TEXT NOT NULL,
    organisation TEXT NOT NULL,
    site TEXT,
    setting_type INTEGER NOT NULL,
    setting_name TEXT NOT NULL,
    arrival_us BIGINT NOT NULL,
    -- The prost-encoded cpis.common.v1.Principal who checked.
    practitioner BYTEA NOT NULL,
    flag_current BOOLEAN NOT NULL,
    record_us BIGINT NOT NULL
);

-- Every check answers with the child's last 25 attendances, newest first: this index
-- serves that read as one backward range scan, without a sort.
CREATE INDEX attendances_child_arrival ON attendances (nhs_number, arrival_us DESC);

-- Which authorities held a flag (current, recently ended or history) on the child when the
-- attendance was recorded: ListAttendances shows an authority only these.
CREATE TABLE attendance_authorities (
    authority TEXT NOT NULL,
    attendance_id UUID NOT NULL REFERENCES attendances (attendance_id) ON DELETE CASCADE,
    arrival_us BIGINT NOT NULL,
    PRIMARY KEY (authority, attendance_id)
);

-- ListAttendances pages one authority's attendances newest first.
CREATE INDEX attendance_authorities_by_arrival
    ON attendance_authorities (authority, arrival_us DESC, attendance_id);
