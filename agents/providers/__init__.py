"""Model providers: `get_provider` picks one from the agent's settings."""

from __future__ import annotations

from agents.config import AgentSettings
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


def get_provider(settings: AgentSettings) -> Provider:
    """Return the provider `settings.provider` names: "anthropic", "offline" or "auto".

    "auto" means Anthropic when `settings.anthropic_api_key` is set, else the offline provider.
    Raise ValueError for any other name.
    """
    choice = (settings.provider or "auto").strip().lower()
    if choice == "auto":
        choice = "anthropic" if settings.anthropic_api_key else "offline"
    if choice == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            model=settings.anthropic_model,
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url or None,
            max_retries=settings.anthropic_max_retries,
            retry_base_s=settings.anthropic_retry_base_s,
            screenshots=settings.screenshots,
        )
    if choice == "offline":
        from agents.providers.offline import OfflineProvider

        return OfflineProvider()
    raise ValueError(f"Unknown agent provider {settings.provider!r}; use auto, anthropic or offline")
