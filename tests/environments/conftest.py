"""Short timers for webhooks and triggers; the worker and server started by the shared fixtures
inherit them (they are set at collection, before any process starts)."""

from __future__ import annotations

import os

os.environ.setdefault("ENIGMA_WEBHOOK_RETRY_BASE_S", "0.5")
os.environ.setdefault("ENIGMA_TRIGGER_MIN_INTERVAL_S", "1")
# Small storage limits (every test has its own team), so tests can reach them with small files.
os.environ.setdefault("ENIGMA_MAX_DOWNLOAD_MB", "1")
os.environ.setdefault("ENIGMA_MAX_DOWNLOADS_PER_SESSION", "3")
os.environ.setdefault("ENIGMA_TEAM_STORAGE_MB", "3")
os.environ.setdefault("ENIGMA_PROFILE_UPLOAD_RATE_LIMIT", "20")
