-- The retention sweep deletes attendances, and each delete cascades to the attendance's
-- authorities, found by attendance_id: with the key led by the authority, every cascade
-- scanned the whole table. The key now leads with the attendance; listing an authority's
-- attendances keeps its own index. SQLite cannot change a primary key in place: the table
-- is rebuilt with the same columns and rows.
CREATE TABLE attendance_authorities_by_attendance (
    authority TEXT NOT NULL,
    attendance_id BLOB NOT NULL REFERENCES attendances (attendance_id) ON DELETE CASCADE,
    arrival_us BIGINT NOT NULL,
    PRIMARY KEY (attendance_id, authority)
);
INSERT INTO attendance_authorities_by_attendance (authority, attendance_id, arrival_us)
SELECT authority, attendance_id, arrival_us FROM attendance_authorities;
DROP TABLE attendance_authorities;
ALTER TABLE attendance_authorities_by_attendance RENAME TO attendance_authorities;

-- ListAttendances pages one authority's attendances newest first.
CREATE INDEX attendance_authorities_by_arrival
    ON attendance_authorities (authority, arrival_us DESC, attendance_id);
