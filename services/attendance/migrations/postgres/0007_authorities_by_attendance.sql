-- The retention sweep deletes attendances, and each delete cascades to the attendance's
-- authorities, found by attendance_id: with the key led by the authority, every cascade
-- scanned the whole table (a sweep of a thousand attendances, a thousand scans). The key
-- now leads with the attendance; listing an authority's attendances keeps its own index
-- (attendance_authorities_by_arrival). Same columns, same uniqueness, no extra index.
--
-- The new key's index is built here unless an operator built it beforehand without
-- blocking writes (see docs/operations.md, "Migrations"):
--   CREATE UNIQUE INDEX CONCURRENTLY attendance_authorities_by_attendance
--       ON attendance_authorities (attendance_id, authority);
-- Either way the key then takes it over, and the old key's index goes.
DO $$
BEGIN
    IF to_regclass('attendance_authorities_by_attendance') IS NULL THEN
        CREATE UNIQUE INDEX attendance_authorities_by_attendance
            ON attendance_authorities (attendance_id, authority);
    END IF;
END
$$;
ALTER TABLE attendance_authorities
    DROP CONSTRAINT attendance_authorities_pkey,
    ADD CONSTRAINT attendance_authorities_pkey
        PRIMARY KEY USING INDEX attendance_authorities_by_attendance;
