-- four checks in one statement: the writes and reads of a flagged check at an emergency department
-- (services/attendance/src/store/postgres.rs, check_sql), for scripts/bench-statement.sh.
\set a1 random(1765000000000000, 1766000000000000)
\set a2 random(1765000000000000, 1766000000000000)
\set a3 random(1765000000000000, 1766000000000000)
\set a4 random(1765000000000000, 1766000000000000)
\set n1 random(1, 250)
\set n2 random(251, 500)
\set n3 random(501, 750)
\set n4 random(751, 1000)
WITH input AS (SELECT * FROM unnest(ARRAY['999000000' || :n1, '999000000' || :n2, '999000000' || :n3, '999000000' || :n4]::text[], ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid()]::uuid[], ARRAY[:a1, :a2, :a3, :a4]::bigint[]) WITH ORDINALITY AS i(nhs, id, arrival, n)),
retained AS (INSERT INTO attendance_children (nhs_number, retain_until_us) SELECT i.nhs, 1800000000000000 FROM input i WHERE NOT EXISTS (SELECT 1 FROM attendance_children c WHERE c.nhs_number = i.nhs AND c.retain_until_us IS NOT DISTINCT FROM 1800000000000000) ON CONFLICT (nhs_number) DO UPDATE SET retain_until_us = excluded.retain_until_us WHERE attendance_children.retain_until_us IS DISTINCT FROM excluded.retain_until_us),
kept AS (INSERT INTO attendances (attendance_id, nhs_number, organisation, site, setting_type, setting_name, arrival_us, practitioner, flag_current, record_us) SELECT id, nhs, 'RJ1', NULL, 1, 'ED', arrival, '\x0102030405060708090a0b0c0d0e0f10'::bytea, true, arrival FROM input RETURNING attendance_id, nhs_number, arrival_us, organisation, site, setting_type, setting_name),
authorities AS (INSERT INTO attendance_authorities (authority, attendance_id, arrival_us) SELECT 'LA1', attendance_id, arrival_us FROM kept),
events AS (INSERT INTO outbox (event_id, destination, payload, traceparent, tracestate) SELECT gen_random_uuid(), d.dest, d.payload, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', NULL FROM input, (VALUES (1, 'audit', decode(repeat('ab',400),'hex')), (2, 'notification', decode(repeat('cd',300),'hex'))) AS d(k, dest, payload) ORDER BY input.n, d.k)
SELECT i.n, r.arrival_us, r.organisation, r.site, r.setting_type, r.setting_name FROM input i CROSS JOIN LATERAL (SELECT arrival_us, organisation, site, setting_type, setting_name, attendance_id FROM ((SELECT attendance_id, arrival_us, organisation, site, setting_type, setting_name FROM attendances a WHERE a.nhs_number = i.nhs ORDER BY arrival_us DESC, attendance_id DESC LIMIT 25) UNION ALL SELECT attendance_id, arrival_us, organisation, site, setting_type, setting_name FROM kept k WHERE k.nhs_number = i.nhs) u ORDER BY arrival_us DESC, attendance_id DESC LIMIT 25) r;
