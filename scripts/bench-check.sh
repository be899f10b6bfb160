#!/usr/bin/env bash
# Issue 6's benchmark in one sitting, against a running `cpis dev --postgres ... --redis ...`
# (see docs/performance.md): pgbench -N with the same client count before and after, then
# `cpis bench check --rate half-peak --baseline` between them, then pgbench -N at the same
# half-peak rate for the commit latency a check cannot beat on this machine.
#
#   CPIS_DATA_DIR=.cpis-pg scripts/bench-check.sh [duration-seconds] [clients]
#
# Environment: CPIS (the cpis binary, default target/release/cpis), PGHOST, PGPORT, PGUSER
# (default 127.0.0.1, 5432, postgres), BENCH_DB (default cpis_pgbench, created once).
set -euo pipefail

DURATION="${1:-15}"
CLIENTS="${2:-8}"
CPIS="${CPIS:-target/release/cpis}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
DB="${BENCH_DB:-cpis_pgbench}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if ! psql -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" postgres | grep -q 1; then
  createdb "$DB"
  pgbench -i -s 10 -q "$DB" >/dev/null 2>&1
fi

tps() { # pgbench -N with $CLIENTS clients for $DURATION s: its tps
  pgbench -N -c "$CLIENTS" -j 2 -T "$DURATION" "$DB" 2>/dev/null | awk '/^tps/ {print $3}'
}

before="$(tps)"
"$CPIS" --json bench check --rate half-peak --concurrency "$CLIENTS" \
  --duration "${DURATION}s" --baseline >"$WORK/check.json"
after="$(tps)"
rate="$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["open_loop"]["offered_rate"]))' "$WORK/check.json")"
(cd "$WORK" && pgbench -N -c "$CLIENTS" -j 2 -R "$rate" -T "$DURATION" -l "$DB" >/dev/null 2>&1)

python3 - "$WORK" "$before" "$after" "$rate" "$DURATION" <<'EOF'
import glob, json, sys
work, before, after, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
d = json.load(open(f"{work}/check.json"))
lat = sorted(int(line.split()[2]) / 1000 for f in glob.glob(f"{work}/pgbench_log.*") for line in open(f))
pct = lambda xs, p: xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")
c, o = d["check"], d["open_loop"]
pg = (before + after) / 2
def line(name, rps, l):
    print(f"{name:<44} {rps:>9.1f}/s  p50 {l['p50']:6.2f}  p95 {l['p95']:6.2f}  p99 {l['p99']:7.2f}  max {l['max']:7.2f} ms")
print(f"{'pgbench -N, before / after':<44} {before:>9.1f} / {after:.1f} tps")
line("checks, closed loop (the peak)", c["requests_per_second"], c["latency_ms"])
line("health RPC, same workers and channels", d["baseline"]["requests_per_second"], d["baseline"]["latency_ms"])
line(f"checks, open loop at half the peak", o["achieved_rate"], o["latency_ms"])
line("health RPC, open loop at the same rate", o["baseline"]["achieved_rate"], o["baseline"]["latency_ms"])
line(f"pgbench -N -R {rate} (a durable commit alone)", len(lat) / float(sys.argv[5]),
     {"p50": pct(lat, .5), "p95": pct(lat, .95), "p99": pct(lat, .99), "max": lat[-1] if lat else float("nan")})
print(f"peak checks / pgbench -N: {c['requests_per_second'] / pg:.3f} (target 0.5); "
      f"errors {c['errors'] + o['errors']}; late sends {o['late']}")
EOF
