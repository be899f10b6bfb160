-- The answers of checks made with a caller-chosen request_id, so that a retry within 24
-- hours answers as the first call did and records nothing new. Keyed by the user as well:
-- one user's request id never replays another user's answer.
CREATE TABLE check_requests (
    request_id UUID NOT NULL,
    user_id TEXT NOT NULL,
    -- The prost-encoded RecordAttendanceResponse.
    response BYTEA NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (request_id, user_id)
);

-- Expired answers are deleted by age.
CREATE INDEX check_requests_created ON check_requests (created_us);
