#!/usr/bin/env bash
# Start web (daphne), a browser worker, beat and the demo site under a supervisor that restarts
# any of them that exits; Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
DEMO_PORT=${ENIGMA_DEMO_PORT:-8001}
export PORT
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
# The browser may reach no address of this machine except the demo site's port; set the variable
# (even empty) to decide yourself. The product's own port, Redis and the database stay refused.
export ENIGMA_ALLOWED_PRIVATE_HOSTS=${ENIGMA_ALLOWED_PRIVATE_HOSTS-127.0.0.1:$DEMO_PORT}
mkdir -p var

programs=()
redis_host_port=${REDIS_URL#redis://}; redis_host_port=${redis_host_port##*@}; redis_host_port=${redis_host_port%%/*}
redis_port=${redis_host_port##*:}
if ! .venv/bin/python -c "import redis; redis.Redis.from_url('$REDIS_URL').ping()" 2>/dev/null; then
  echo "Starting redis-server on port $redis_port"
  programs+=("redis=redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no --dir '$PWD/var' --logfile '$PWD/var/redis.log'")
fi

.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
demo=$(.venv/bin/python manage.py demo_account)
key=$(printf '%s\n' "$demo" | head -1)
password=$(printf '%s\n' "$demo" | sed -n 's/^password //p')

programs+=(
  "worker=scripts/worker.sh browser"
  "ops=scripts/worker.sh ops"
  "beat=.venv/bin/celery -A enigma_site beat --loglevel INFO --schedule var/celerybeat-schedule"
  "web=.venv/bin/daphne -b $HOST -p $PORT enigma_site.asgi:application"
  "demo-site=.venv/bin/python -m http.server $DEMO_PORT --bind 127.0.0.1 --directory demo_site"
)

if [ -n "$password" ]; then
  account="demo@enigma.local / password \"$password\" (shown once; 'manage.py demo_account --reset-password' makes a new one)"
else
  account="demo@enigma.local (password shown when it was created; 'manage.py demo_account --reset-password')"
fi
cat <<MSG

  Enigma is running at http://$HOST:$PORT/
  Demo account: $account
  Demo API key: $key
  Admin: create an operator with '.venv/bin/python manage.py createsuperuser' (the demo user is not staff)

  curl -s -X POST http://$HOST:$PORT/start/run-task \\
    -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
    -d '{"taskDetails": "go to http://127.0.0.1:$DEMO_PORT/ then extract the title and headings"}'

  The browser may visit public addresses and: ${ENIGMA_ALLOWED_PRIVATE_HOSTS:-nothing else} (ENIGMA_ALLOWED_PRIVATE_HOSTS)

  Press Ctrl-C to stop.

MSG
exec .venv/bin/python scripts/supervise.py "${programs[@]}"
