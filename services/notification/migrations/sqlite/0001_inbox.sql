-- Each local authority's inbox (SQLite, one machine). A notification's place in its
-- authority's inbox is `seq`, consecutive per authority and assigned in the inserting
-- statement itself; SQLite has one writer at a time, so a notification becomes visible only
-- after every notification before it: a reader resuming after seq N never skips one. That
-- is what lets Subscribe join backlog and live events without a gap. UUIDs are 16-byte
-- BLOBs (sqlx's encoding).
CREATE TABLE notifications (
    authority          TEXT     NOT NULL,
    seq                BIGINT   NOT NULL,
    notification_id    BLOB     NOT NULL,
    -- The producer's event id: the idempotency key of Publish. NULL for notifications
    -- the service makes itself (escalations).
    event_id           BLOB,
    -- cpis.notification.v1.NotificationKind.
    kind               INTEGER  NOT NULL,
    -- The prost-encoded cpis.notification.v1.Notification as stored; the columns below
    -- (times, acknowledgement, cursor) are overlaid when it is read.
    body               BLOB     NOT NULL,
    occur_time_us      BIGINT   NOT NULL,
    create_time_us     BIGINT   NOT NULL,
    acknowledge_time_us BIGINT,
    -- The prost-encoded cpis.common.v1.Principal who acknowledged.
    acknowledged_by    BLOB,
    -- The inbox walk (list, page, backlog, last position) is by authority then seq: the
    -- primary key serves it without a sort.
    PRIMARY KEY (authority, seq),
    CONSTRAINT notifications_id_unique UNIQUE (notification_id),
    -- Duplicate publishes are refused by this index (ON CONFLICT DO NOTHING).
    CONSTRAINT notifications_event_unique UNIQUE (event_id),
    CHECK ((acknowledge_time_us IS NULL) = (acknowledged_by IS NULL))
);

-- "Unacknowledged only" is the inbox's working view: a partial index holds just the
-- open notifications, so it stays small however long the acknowledged history grows.
CREATE INDEX notifications_unacknowledged ON notifications (authority, seq)
    WHERE acknowledge_time_us IS NULL;
