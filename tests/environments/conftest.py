"""Short timers for webhooks and triggers; the worker and server started by the shared fixtures
inherit them (they are set at collection, before any process starts). This process read its
settings before this file, so they are set there too."""

from __future__ import annotations

import os

from django.conf import settings

SHORT: dict[str, float | int] = {
    "ENIGMA_WEBHOOK_RETRY_BASE_S": 0.5,
    "ENIGMA_TRIGGER_MIN_INTERVAL_S": 1,
    # Small storage limits (every test has its own team), so tests can reach them with small files.
    "ENIGMA_MAX_DOWNLOAD_MB": 1.0,
    "ENIGMA_MAX_DOWNLOADS_PER_SESSION": 3,
    "ENIGMA_TEAM_STORAGE_MB": 3.0,
    "ENIGMA_PROFILE_UPLOAD_RATE_LIMIT": 20,
}
for _name, _value in SHORT.items():
    os.environ.setdefault(_name, str(_value))
    setattr(settings, _name, type(_value)(os.environ[_name]))
