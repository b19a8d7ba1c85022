"""Model providers: `get_provider` picks one from ENIGMA_AGENT_PROVIDER and the environment."""

from __future__ import annotations

import os

from agents.providers.base import (
    ModelTurn,
    Provider,
    ProviderSession,
    ToolCall,
    ToolResult,
    TurnRequest,
)

__all__ = [
    "ModelTurn",
    "Provider",
    "ProviderSession",
    "ToolCall",
    "ToolResult",
    "TurnRequest",
    "get_provider",
]


def get_provider(name: str = "auto") -> Provider:
    """Return the provider called `name`: "anthropic", "offline" or "auto".

    "auto" means Anthropic when ANTHROPIC_API_KEY is set, else the offline provider. Raise
    ValueError for any other name.
    """
    choice = (name or "auto").strip().lower()
    if choice == "auto":
        choice = "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "offline"
    if choice == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider()
    if choice == "offline":
        from agents.providers.offline import OfflineProvider

        return OfflineProvider()
    raise ValueError(f"Unknown agent provider {name!r}; use auto, anthropic or offline")
