-- Until when an attendance is kept (microseconds since the epoch): the latest end date plus
-- `retention_history` of the flags that retained it at the child's last check. NULL while a
-- flag with no end date retains it. Every check of the child sets it for all the child's
-- attendances (now, when no flag retains them any more), and the retention sweep deletes
-- the attendances whose time has come.
ALTER TABLE attendances ADD COLUMN retain_until_us BIGINT;

-- The sweep reads the oldest deadlines first, in batches.
CREATE INDEX attendances_retain_until ON attendances (retain_until_us)
    WHERE retain_until_us IS NOT NULL;
