"""Short timers for webhooks and triggers; the worker and server started by the shared fixtures
inherit them (they are set at collection, before any process starts)."""

from __future__ import annotations

import os

os.environ.setdefault("ENIGMA_WEBHOOK_RETRY_BASE_S", "0.5")
os.environ.setdefault("ENIGMA_TRIGGER_MIN_INTERVAL_S", "1")
