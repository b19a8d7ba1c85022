#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine: system packages when missing, the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# chromium: the clients of the tests and benchmarks; chromium-headless-shell: the workers' browser
# (enigma_site/settings.py CHROMIUM_PATH).
[ -x /usr/lib/chromium/chromium ] || need+=(chromium)
[ -n "${CHROMIUM_PATH:-}" ] || [ -x /usr/lib/chromium/chromium-headless-shell ] || need+=(chromium-headless-shell)
[ -d /usr/share/doc/python3.11/html ] || need+=(python3.11-doc)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)  # ffprobe reads recordings in the tests
if [ "${DB:-}" = "postgres" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing system packages: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Chromium runs as this unprivileged user (agents/egress/nslaunch.py); without useradd the worker
# falls back to `nobody`.
browser_user=${ENIGMA_BROWSER_USER:-enigma-browser}
if [ "$(id -u)" -eq 0 ] && ! id "$browser_user" >/dev/null 2>&1 && command -v useradd >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$browser_user"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt -c constraints.txt
  touch "$stamp"
fi
if [ -f tests/js/package.json ] && command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/js/node_modules ] || [ tests/js/package.json -nt tests/js/node_modules ]; then
    (cd tests/js && npm install --silent --no-audit --no-fund >/dev/null)
  fi
fi
