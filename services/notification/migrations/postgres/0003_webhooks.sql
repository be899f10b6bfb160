-- Webhooks, their deliveries and the delivery log; escalation and folding state of the
-- inbox. Times are microseconds since the epoch from the service's clock, as in 0001.

-- Folding: attendances of the same child at the same setting share a fold key (a SHA-256
-- of the NHS number and the setting), set only on attendance notifications.
ALTER TABLE notifications ADD COLUMN fold_key TEXT;
ALTER TABLE notifications ADD COLUMN occurrence_count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE notifications ADD COLUMN last_occur_time_us BIGINT;
-- Escalation: when an unacknowledged attendance notification is due to be escalated;
-- cleared (atomically, once) when it is escalated or acknowledged.
ALTER TABLE notifications ADD COLUMN escalate_at_us BIGINT;

-- The open attendance notifications a new attendance may fold into.
CREATE INDEX notifications_fold ON notifications (authority, fold_key)
    WHERE fold_key IS NOT NULL AND acknowledge_time_us IS NULL;
-- The escalation scan reads only the notifications still waiting.
CREATE INDEX notifications_escalation_due ON notifications (escalate_at_us)
    WHERE escalate_at_us IS NOT NULL;

-- Event ids folded into an existing notification: Publish stays idempotent by event id.
CREATE TABLE folded_events (
    event_id        UUID   PRIMARY KEY,
    notification_id UUID   NOT NULL
);

CREATE TABLE webhooks (
    -- UUID v7: ordering by id is ordering by registration (the list's page order).
    webhook_id                 UUID     PRIMARY KEY,
    authority                  TEXT     NOT NULL,
    url                        TEXT     NOT NULL,
    escalation                 BOOLEAN  NOT NULL,
    description                TEXT     NOT NULL,
    -- Sealed with notification.webhook_secret_key when set (see src/webhook/secret.rs);
    -- emptied when the webhook is unregistered.
    secret                     BYTEA    NOT NULL,
    previous_secret            BYTEA,
    previous_secret_expire_us  BIGINT,
    create_time_us             BIGINT   NOT NULL,
    secret_create_time_us      BIGINT   NOT NULL,
    -- Set when unregistered: the row stays so that its deliveries still name it.
    unregister_time_us         BIGINT
);
CREATE INDEX webhooks_authority ON webhooks (authority, webhook_id)
    WHERE unregister_time_us IS NULL;

CREATE TABLE webhook_deliveries (
    -- UUID v7: newest first is by id, descending.
    delivery_id       UUID     PRIMARY KEY,
    authority         TEXT     NOT NULL,
    webhook_id        UUID     NOT NULL,
    notification_id   UUID     NOT NULL,
    -- cpis.notification.v1.DeliveryState: 1 pending, 2 delivered, 3 dead-lettered,
    -- 4 cancelled.
    state             INTEGER  NOT NULL,
    attempt_count     INTEGER  NOT NULL DEFAULT 0,
    create_time_us    BIGINT   NOT NULL,
    next_attempt_us   BIGINT,
    last_attempt_us   BIGINT,
    last_error        TEXT     NOT NULL DEFAULT '',
    complete_time_us  BIGINT,
    -- The lease of the worker attempting it.
    claimed_by        TEXT,
    claimed_until_us  BIGINT,
    CONSTRAINT webhook_deliveries_one UNIQUE (notification_id, webhook_id)
);
-- The worker's claim walks only the pending deliveries, by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us)
    WHERE state = 1;
CREATE INDEX webhook_deliveries_authority ON webhook_deliveries (authority, delivery_id);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id) WHERE state = 1;

-- The delivery log: one row per attempt.
CREATE TABLE delivery_attempts (
    -- UUID v7: newest first is by id, descending.
    attempt_id        UUID     PRIMARY KEY,
    delivery_id       UUID     NOT NULL,
    attempt_number    INTEGER  NOT NULL,
    authority         TEXT     NOT NULL,
    webhook_id        UUID     NOT NULL,
    notification_id   UUID     NOT NULL,
    attempt_time_us   BIGINT   NOT NULL,
    http_status       INTEGER  NOT NULL,
    latency_us        BIGINT   NOT NULL,
    success           BOOLEAN  NOT NULL,
    error             TEXT     NOT NULL,
    CONSTRAINT delivery_attempts_number UNIQUE (delivery_id, attempt_number)
);
CREATE INDEX delivery_attempts_authority ON delivery_attempts (authority, attempt_id);
