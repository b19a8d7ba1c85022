"""The typed configuration of a session and of a task, from the edge to the worker.

Both are stored as JSON on their rows (`BrowserSession.config`, `Task.config`); the keys are
the API's names. `from_json` accepts rows written by any earlier version: a missing key takes
the same default the worker always used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_DURATION_MS = 300_000
DEFAULT_MAX_TOKENS = 100_000


def webhook_redacted(webhook: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task's webhook as stored: its auth value is never kept."""
    if webhook is None:
        return None
    return {k: ("***" if k == "auth" else v) for k, v in webhook.items()}


@dataclass
class TaskConfig:
    """What a task runs with (no secret value: only which sites secrets are for)."""

    starting_url: str | None = None
    max_duration_ms: int = DEFAULT_MAX_DURATION_MS
    max_input_tokens: int = DEFAULT_MAX_TOKENS
    max_output_tokens: int = DEFAULT_MAX_TOKENS
    avoid_domains: list[str] = field(default_factory=list)
    terminate_on_completion: bool = False
    output_type: str = "text"
    output_schema: Any = None
    files: list[str] = field(default_factory=list)
    webhook: dict[str, Any] | None = None  # its auth redacted
    secret_matches: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskConfig:
        """Read a stored task config; raise ValueError or TypeError for a value of the wrong type."""
        return cls(
            starting_url=data.get("startingUrl"),
            max_duration_ms=int(data.get("maxDuration", DEFAULT_MAX_DURATION_MS)),
            max_input_tokens=int(data.get("maxInputTokens", DEFAULT_MAX_TOKENS)),
            max_output_tokens=int(data.get("maxOutputTokens", DEFAULT_MAX_TOKENS)),
            avoid_domains=list(data.get("avoidDomains") or []),
            terminate_on_completion=bool(data.get("terminateOnCompletion", False)),
            output_type=data.get("outputType", "text"),
            output_schema=data.get("outputSchema"),
            files=list(data.get("files") or []),
            webhook=data.get("webhook"),
            secret_matches=list(data.get("secretMatches") or []),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "startingUrl": self.starting_url,
            "maxDuration": self.max_duration_ms,
            "maxInputTokens": self.max_input_tokens,
            "maxOutputTokens": self.max_output_tokens,
            "avoidDomains": self.avoid_domains,
            "terminateOnCompletion": self.terminate_on_completion,
            "outputType": self.output_type,
            "outputSchema": self.output_schema,
            "files": self.files,
            "webhook": self.webhook,
            "secretMatches": self.secret_matches,
        }


@dataclass
class SessionConfig:
    """What a session was started with; its first task's settings are also its defaults."""

    mode: str = "default"
    reach_out_mode: str = "guardrail_only"
    max_duration_ms: int | None = None  # the default maxDuration of the session's later tasks
    max_input_tokens: int = DEFAULT_MAX_TOKENS
    max_output_tokens: int = DEFAULT_MAX_TOKENS
    avoid_domains: list[str] = field(default_factory=list)
    starting_url: str | None = None
    terminate_on_completion: bool = False
    initial_prompt: str = ""
    environment_id: str | None = None
    proxy: dict[str, Any] | None = None  # without credentials (environments.proxies keeps those)
    policy_id: str | None = None
    recording: bool = True
    cdp: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionConfig:
        """Read a stored session config; raise ValueError or TypeError for a value of the wrong type."""
        max_duration = data.get("maxDuration")
        return cls(
            mode=data.get("mode", "default"),
            reach_out_mode=data.get("reachOutMode", "guardrail_only"),
            max_duration_ms=int(max_duration) if max_duration else None,
            max_input_tokens=int(data.get("maxInputTokens", DEFAULT_MAX_TOKENS)),
            max_output_tokens=int(data.get("maxOutputTokens", DEFAULT_MAX_TOKENS)),
            avoid_domains=list(data.get("avoidDomains") or []),
            starting_url=data.get("startingUrl"),
            terminate_on_completion=bool(data.get("terminateOnCompletion", False)),
            initial_prompt=data.get("initialPrompt") or "",
            environment_id=data.get("environmentId") or None,
            proxy=data.get("proxy") or None,
            policy_id=data.get("policyId") or None,
            recording=data.get("recording", True) is not False,
            cdp=bool(data.get("cdp", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reachOutMode": self.reach_out_mode,
            "maxDuration": self.max_duration_ms,
            "maxInputTokens": self.max_input_tokens,
            "maxOutputTokens": self.max_output_tokens,
            "avoidDomains": self.avoid_domains,
            "startingUrl": self.starting_url,
            "terminateOnCompletion": self.terminate_on_completion,
            "initialPrompt": self.initial_prompt,
            "environmentId": self.environment_id,
            "proxy": self.proxy,
            "policyId": self.policy_id,
            "recording": self.recording,
            "cdp": self.cdp,
        }
