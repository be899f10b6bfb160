#!/usr/bin/env bash
# Attendance's check statement on its own, for one, two and four checks in a statement: the
# whole machine's busy CPU per check, with `pgbench -M prepared` and 8 clients on a copy of
# attendance's schema (docs/performance.md, "Where to look next", item 14). The statements
# are in scripts/bench-statement/; they follow `check_sql` in
# services/attendance/src/store/postgres.rs by hand, so keep them in step with it.
#
#   scripts/bench-statement.sh SOURCE_DB [seconds] [passes]
#
# SOURCE_DB is a migrated attendance database whose schema is copied into a scratch database
# (dropped at the end): e.g. cpis_dev_attendance of a running `cpis dev --postgres ...`.
# Environment: PGHOST, PGPORT, PGUSER (default 127.0.0.1, 5432, postgres).
set -euo pipefail

SOURCE="${1:?usage: scripts/bench-statement.sh SOURCE_DB [seconds] [passes]}"
SECONDS_EACH="${2:-8}"
PASSES="${3:-2}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
HERE="$(cd "$(dirname "$0")" && pwd)/bench-statement"
DB=cpis_bench_statement

export PGOPTIONS="-c client_min_messages=warning"
dropdb --if-exists "$DB"
trap 'dropdb --if-exists "$DB"' EXIT
createdb "$DB"
pg_dump -s "$SOURCE" | psql -q "$DB" >/dev/null
# As on the checks' own connections (cpis_mesh::db::index_scan_pool).
psql -qc "ALTER DATABASE $DB SET enable_seqscan = off" \
  -c "ALTER DATABASE $DB SET enable_bitmapscan = off" postgres
# A history for each of the thousand children first.
pgbench -n -M prepared -f "$HERE/four.sql" -c 8 -j 2 -T 20 "$DB" >/dev/null 2>&1
psql -qc CHECKPOINT "$DB"

busy() { # the machine's busy CPU so far, in clock ticks
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat
}
echo "checks per statement, statements/s, checks/s, the machine's busy CPU per check"
for _ in $(seq 1 "$PASSES"); do
  for script in one:1 two:2 four:4; do
    name="${script%:*}" per="${script#*:}"
    psql -qc "TRUNCATE outbox" "$DB"
    sync
    before="$(busy)"
    out="$(pgbench -n -M prepared -f "$HERE/$name.sql" -c 8 -j 2 -T "$SECONDS_EACH" "$DB" 2>&1)"
    after="$(busy)"
    printf '%s\n' "$out" | python3 -c '
import re, sys
per, before, after, hz = map(int, sys.argv[1:])
out = sys.stdin.read()
tps = float(re.search(r"^tps = ([0-9.]+)", out, re.M).group(1))
done = int(re.search(r"actually processed: (\d+)", out).group(1))
print(f"{per:>2}  {tps:8.0f}  {tps * per:8.0f}  {(after - before) / hz * 1e6 / (done * per):6.0f} µs")
' "$per" "$before" "$after" "$(getconf CLK_TCK)"
  done
done
