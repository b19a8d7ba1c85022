#!/usr/bin/env bash
# Start web (daphne), a browser worker and beat in the foreground; Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
# A local demo may browse pages on this machine; set the variable (even empty) to decide yourself.
export ENIGMA_ALLOWED_PRIVATE_HOSTS=${ENIGMA_ALLOWED_PRIVATE_HOSTS-127.0.0.1,localhost}
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "Stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

redis_host_port=${REDIS_URL#redis://}; redis_host_port=${redis_host_port%%/*}
redis_port=${redis_host_port##*:}
if ! .venv/bin/python -c "import redis,sys; redis.Redis.from_url('$REDIS_URL').ping()" 2>/dev/null; then
  echo "Starting redis-server on port $redis_port"
  mkdir -p var
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir var >var/redis.log 2>&1 &
  pids+=($!)
  sleep 0.5
fi

.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
key=$(.venv/bin/python manage.py demo_account)

.venv/bin/celery -A enigma_site worker -Q browsers,celery --pool threads \
  --concurrency "${ENIGMA_WORKER_CAPACITY:-20}" -n "browsers@%h" --loglevel INFO &
pids+=($!)
.venv/bin/celery -A enigma_site beat --loglevel INFO --schedule var/celerybeat-schedule &
pids+=($!)
.venv/bin/daphne -b "$HOST" -p "$PORT" enigma_site.asgi:application &
pids+=($!)

cat <<MSG

  Enigma is running at http://$HOST:$PORT/
  Demo account: demo@enigma.local / password "enigma-demo"
  Demo API key: $key

  curl -s -X POST http://$HOST:$PORT/start/run-task \\
    -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
    -d '{"taskDetails": "go to http://$HOST:$PORT/admin/login/ then extract the title and headings"}'

  The browser may visit: ${ENIGMA_ALLOWED_PRIVATE_HOSTS:-public addresses only} (ENIGMA_ALLOWED_PRIVATE_HOSTS)

  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
