#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine or a used one; safe to run twice.
#
# 1. Makes sure what the tests need is there: PostgreSQL and Redis reachable on
#    127.0.0.1 (started, or installed from Debian's packages, when absent), cargo-nextest,
#    and the outside tools (buf, grpcio, ...) in a virtual env under .tools/.
#    Reserves the dev ports 50051-50055 from the ephemeral port range (see below).
# 2. Runs cargo fmt --check, clippy with warnings denied, buf lint, and cargo nextest.
#
# Environment it exports for the tests:
#   CPIS_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:5432/postgres
#   CPIS_TEST_REDIS_URL     redis://127.0.0.1:6379
#   CPIS_TOOLS_BIN          the virtual env's bin directory
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379

log() { printf '==> %s\n' "$*" >&2; }

reachable() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # what host port
  for _ in $(seq 1 60); do
    if reachable "$2" "$3"; then return 0; fi
    sleep 0.5
  done
  log "$1 did not come up on $2:$3"
  return 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_postgres() {
  if reachable "$PG_HOST" "$PG_PORT"; then return 0; fi
  log "PostgreSQL is not reachable on $PG_HOST:$PG_PORT; starting it"
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian's packages"
    apt_install postgresql
  fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$version" ]; then
    # initdb refuses to run as root; pg_createcluster runs it as the postgres user.
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    as_root pg_createcluster "$version" main
  fi
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect as postgres over TCP without a password, as on the development machines.
  if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  wait_for PostgreSQL "$PG_HOST" "$PG_PORT"
}

ensure_redis() {
  if reachable 127.0.0.1 "$REDIS_PORT"; then return 0; fi
  log "Redis is not reachable on 127.0.0.1:$REDIS_PORT; starting it"
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing Redis from Debian's packages"
    apt_install redis-server
  fi
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 127.0.0.1 "$REDIS_PORT"
}

ensure_tools() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum scripts/tools-requirements.txt | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "installing outside tools into $VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/tools-requirements.txt
  echo "$want" >"$stamp"
}

ensure_rust_tools() {
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
}

# `cpis dev` listens on 50051-50055, inside Linux's ephemeral range (32768-60999): while the
# suite runs, any of its thousands of outgoing connections may be given one of those ports
# as its local port, and then `cpis dev`'s tests cannot listen there. Reserving the ports
# keeps connect() off them (binding them explicitly still works). Needs root; without it
# the dev tests can, rarely, find a port taken.
reserve_dev_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports
  local current
  current="$(cat "$file" 2>/dev/null || true)"
  case ",$current," in *,50051-50055,*) return 0 ;; esac
  local write=(sh -c "echo '${current:+$current,}50051-50055' > $file")
  if [ "$(id -u)" -ne 0 ]; then write=(sudo -n "${write[@]}"); fi
  if ! "${write[@]}" 2>/dev/null; then
    log "could not reserve ports 50051-50055 from the ephemeral range ($file); the cpis dev tests may find one taken"
  fi
}

ensure_postgres
ensure_redis
ensure_tools
ensure_rust_tools
reserve_dev_ports

export CPIS_TEST_DATABASE_URL="${CPIS_TEST_DATABASE_URL:-postgres://postgres@$PG_HOST:$PG_PORT/postgres}"
export CPIS_TEST_REDIS_URL="${CPIS_TEST_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"
export CPIS_TOOLS_BIN="$VENV/bin"
export PATH="$VENV/bin:$PATH"
# Tests print their own logs only on failure.
export RUST_BACKTRACE=1

# Databases left by earlier runs' tests (each test creates its own cpis_test_<random>).
psql_admin() { psql "postgres://postgres@$PG_HOST:$PG_PORT/postgres" -Atqc "$1"; }
if command -v psql >/dev/null 2>&1; then
  # Several at once: each drop waits for a checkpoint, and a busy machine holds hundreds.
  { psql_admin "SELECT datname FROM pg_database WHERE datname LIKE 'cpis_test_%'" || true; } |
    xargs -r -P 8 -I '{}' psql "postgres://postgres@$PG_HOST:$PG_PORT/postgres" -Atqc \
      'DROP DATABASE IF EXISTS "{}" WITH (FORCE)' >/dev/null 2>&1 || true
fi

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "buf lint"
(cd proto && buf lint)

log "interop: a Python grpcio client against real service binaries"
cargo build --locked -p cpis-audit -p cpis-cli
"$VENV/bin/python" -m unittest discover -s tests/interop -p 'test_*.py' -v

log "deploy: the Helm chart and k8s/ manifests, rendered and validated offline"
"$VENV/bin/python" -m unittest discover -s tests/deploy -p 'test_*.py' -v

log "cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast
