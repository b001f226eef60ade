#!/usr/bin/env bash
# The services of the several-machines profile, on loopback: PostgreSQL for the Dagster instance,
# Redis as the Celery broker, and Celery workers. README: "Many cores, many machines".
#
#   deploy/celery/services.sh start STATE_DIR    # PostgreSQL + Redis; prints the variables to export
#   deploy/celery/services.sh dagster-yaml FILE  # put the instance on that PostgreSQL (merges FILE)
#   deploy/celery/services.sh worker NAME [N]    # a Celery worker running N steps at once (default 1)
#   deploy/celery/services.sh stop STATE_DIR
#
# Ports: POSTER_ASSETS_PG_PORT (default 55432) and POSTER_ASSETS_REDIS_PORT (default 56379), so a
# system PostgreSQL or Redis keeps its own. Run as root, PostgreSQL runs as the `postgres` user
# (it refuses root), so STATE_DIR must be reachable by that user.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PG_PORT="${POSTER_ASSETS_PG_PORT:-55432}"
REDIS_PORT="${POSTER_ASSETS_REDIS_PORT:-56379}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

die() { echo "services.sh: $*" >&2; exit 1; }

# Debian installs PostgreSQL's programs under /usr/lib/postgresql/<version>/bin, off PATH.
pg_bin() {
  local found
  found="$(command -v "$1" || true)"
  [ -n "$found" ] || found="$(ls -1d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$found" ] || die "$1 not found: install PostgreSQL (apt-get install postgresql)"
  echo "$found"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local state="$1" pgdata initdb pg_ctl
  command -v redis-server >/dev/null || die "redis-server not found: install it (apt-get install redis-server)"
  mkdir -p "$state/redis"
  state="$(cd "$state" && pwd)"
  pgdata="$state/postgres"
  initdb="$(pg_bin initdb)"
  pg_ctl="$(pg_bin pg_ctl)"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres "$pgdata"
    as_pg "$initdb" -D "$pgdata" -U postgres --auth=trust >"$state/initdb.log" 2>&1 \
      || die "initdb failed: $state/initdb.log"
  fi
  # Loopback only, no Unix socket (the state folder may be on a filesystem that cannot hold one).
  as_pg "$pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" >/dev/null \
    || die "PostgreSQL did not start: $pgdata/server.log"
  "$(pg_bin psql)" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'dagster'" | grep -q 1 \
    || "$(pg_bin createdb)" -h 127.0.0.1 -p "$PG_PORT" -U postgres dagster
  # appendonly: queued steps survive a restart of the broker.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$state/redis" --appendonly yes \
    --daemonize yes --pidfile "$state/redis/redis.pid" --logfile "$state/redis/redis.log"
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || die "Redis did not start: $state/redis/redis.log"
  echo "export POSTER_ASSETS_PG_URL=postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/dagster"
  echo "export POSTER_ASSETS_CELERY_BROKER=redis://127.0.0.1:$REDIS_PORT/0"
  echo "export POSTER_ASSETS_EXECUTOR=celery"
}

stop() {
  local state="$1" pid
  if [ -f "$state/redis/redis.pid" ]; then
    pid="$(cat "$state/redis/redis.pid")"
    kill "$pid" 2>/dev/null || true
    # Redis saves its append-only file before it exits on SIGTERM, and stays up when that save
    # fails (the state folder removed meanwhile): wait for it, then make sure.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  [ -f "$state/postgres/postmaster.pid" ] && as_pg "$(pg_bin pg_ctl)" -D "$state/postgres" -m fast -w stop >/dev/null || true
}

# The instance's runs, event log, schedules and pool slots in PostgreSQL, read from
# POSTER_ASSETS_PG_URL by every process that opens the instance (CLI, UI, daemon, workers).
dagster_yaml() {
  "$PYTHON" - "$1" <<'EOF'
import sys
from pathlib import Path

import yaml

path = Path(sys.argv[1])
config = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
config["storage"] = {"postgres": {"postgres_url": {"env": "POSTER_ASSETS_PG_URL"}}}
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(yaml.safe_dump(config, sort_keys=False))
EOF
}

worker() {
  local name="$1" n="${2:-1}"
  [ -n "${POSTER_ASSETS_HOME:-}" ] || die "set POSTER_ASSETS_HOME to the shared home folder"
  [ -n "${POSTER_ASSETS_CELERY_BROKER:-}" ] || die "set POSTER_ASSETS_CELERY_BROKER (services.sh start prints it)"
  # dagster_celery.app reads its settings from the module dagster_celery_config in this folder.
  export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
  cd "$ROOT"
  exec "$(dirname "$PYTHON")/celery" -A dagster_celery.app worker -Q dagster -n "$name@%h" \
    --concurrency "$n" --prefetch-multiplier 1 --loglevel INFO
}

case "${1:-}" in
  start) start "${2:?STATE_DIR}" ;;
  stop) stop "${2:?STATE_DIR}" ;;
  dagster-yaml) dagster_yaml "${2:?FILE}" ;;
  worker) worker "${2:?NAME}" "${3:-1}" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
