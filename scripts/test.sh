#!/usr/bin/env bash
# Run the suite against services this script starts and stops: its own Redis on a free port,
# localstripe, and (DB=postgres) a throwaway PostgreSQL cluster. Never touches another Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/enigma-test.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  if [ -n "${PGDATA_DIR:-}" ]; then su postgres -c "$PG_BIN/pg_ctl -D $PGDATA_DIR -m immediate stop" >/dev/null 2>&1 || true; fi
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
export REDIS_URL="redis://127.0.0.1:$redis_port/0"

stripe_port=$(free_port)
.venv/bin/localstripe --port "$stripe_port" >"$tmp/localstripe.log" 2>&1 &
pids+=($!)
export STRIPE_API_BASE="http://127.0.0.1:$stripe_port"
export STRIPE_API_KEY="sk_test_enigma"
export STRIPE_PUBLISHABLE_KEY="pk_test_enigma"
export STRIPE_WEBHOOK_SECRET="whsec_enigma_test"
export STRIPE_JS_URL="$STRIPE_API_BASE/js.stripe.com/v3/"

if [ "${DB:-}" = "postgres" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGDATA_DIR="$tmp/pg"
  pg_port=$(free_port)
  mkdir -p "$PGDATA_DIR" && chown postgres "$tmp" "$PGDATA_DIR"
  su postgres -c "$PG_BIN/initdb -D $PGDATA_DIR -A trust -U postgres" >/dev/null
  su postgres -c "$PG_BIN/pg_ctl -D $PGDATA_DIR -o '-p $pg_port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=off' -w start" >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/enigma"
fi

export ENIGMA_VAR_DIR="$tmp/var"
export ENIGMA_ALLOWED_PRIVATE_HOSTS="127.0.0.1,localhost"
export ENIGMA_AGENT_PROVIDER=offline
unset ANTHROPIC_API_KEY || true

for _ in $(seq 50); do
  .venv/bin/python -c "import redis; redis.Redis(port=$redis_port).ping()" 2>/dev/null && break
  sleep 0.1
done
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
exit $status
