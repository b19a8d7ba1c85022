"""The agent's settings, given by the platform (enigma_site/settings.py): agents/ reads no environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True)
class AgentSettings:
    """Which model provider runs the agent, and how it reaches the model.

    `provider` is "auto" (Anthropic when `anthropic_api_key` is set, else offline), "anthropic" or
    "offline". `anthropic_retry_base_s` is the first backoff delay, doubled per attempt;
    `screenshots` sends the model a screenshot with each page observation.
    """

    provider: str = "auto"
    anthropic_api_key: str = ""
    anthropic_base_url: str = ""
    anthropic_model: str = DEFAULT_ANTHROPIC_MODEL
    anthropic_max_retries: int = 4
    anthropic_retry_base_s: float = 1.0
    screenshots: bool = False


HEADLESS_SHELL_PATH = "/usr/lib/chromium/chromium-headless-shell"
FULL_CHROMIUM_PATH = "/usr/lib/chromium/chromium"


def default_chromium_path() -> str:
    """Debian's chromium-headless-shell when installed, else chromium. A new context and page
    cost ~60 ms of CPU in the shell against ~300-450 ms in chromium (what a burst of starts waits
    for); screencasts (live view, WHEP, recordings) and downloads work the same."""
    return HEADLESS_SHELL_PATH if os.access(HEADLESS_SHELL_PATH, os.X_OK) else FULL_CHROMIUM_PATH
