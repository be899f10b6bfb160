-- Retention per child instead of per attendance: every check set the child's retention on
-- all of its attendances, reading each of them (a frequent attendee's check read its whole
-- history). One row per child whose attendances are kept: the check upserts it (one row),
-- the sweep deletes the attendances of children whose time has come, then the rows of
-- children left with none. A child never kept (no flag) gets no row.
CREATE TABLE attendance_children (
    nhs_number TEXT PRIMARY KEY,
    -- Until when (microseconds since the epoch); NULL while a flag with no end retains it.
    retain_until_us BIGINT
);

-- What the attendances said: NULL if any was open-ended, else the latest.
INSERT INTO attendance_children (nhs_number, retain_until_us)
SELECT nhs_number, CASE WHEN COUNT(*) = COUNT(retain_until_us) THEN MAX(retain_until_us) END
FROM attendances GROUP BY nhs_number;

-- The sweep reads the earliest deadlines first.
CREATE INDEX attendance_children_retain_until ON attendance_children (retain_until_us)
    WHERE retain_until_us IS NOT NULL;

DROP INDEX attendances_retain_until;
ALTER TABLE attendances DROP COLUMN retain_until_us;
