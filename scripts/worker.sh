#!/bin/sh
# One Celery worker of a role, the same command line wherever it runs (make run, Procfile,
# systemd, docker compose):
#   browser  hosts sessions: one per host, ENIGMA_WORKER_CAPACITY threads, queue `browsers`
#            (and its own `browsers.<ENIGMA_HOST_ID>`, added at boot) plus `celery`;
#            SIGTERM drains it (see README, "From one machine to many").
#   ops      sweeps, webhooks, triggers and retention (queue `celery`).
set -eu
cd "$(dirname "$0")/.."
case "${1:-}" in
  browser)
    exec .venv/bin/celery -A enigma_site worker -Q browsers,celery --pool threads \
      --concurrency "${ENIGMA_WORKER_CAPACITY:-20}" -n 'browsers@%h' --without-gossip --without-mingle --loglevel INFO ;;
  ops)
    exec .venv/bin/celery -A enigma_site worker -Q celery --pool threads --concurrency 4 -n 'ops@%h' --loglevel INFO ;;
  *)
    echo "usage: scripts/worker.sh browser|ops" >&2
    exit 2 ;;
esac
