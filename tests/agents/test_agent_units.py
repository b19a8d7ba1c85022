"""Unit tests that need no browser: the offline parser, secret matching, provider choice."""

from __future__ import annotations

import pytest

from agents.config import AgentSettings
from agents.providers import get_provider
from agents.providers.offline import parse_instructions
from agents.secrets import SecretVault
from agents.types import SecretEntry


def test_parser_is_case_insensitive_and_forgiving() -> None:
    instructions = parse_instructions("GO TO example.com.  And then CLICK the Next link;\nWait 2 Seconds.")

    assert [(i.kind, i.args) for i in instructions] == [
        ("goto", {"url": "https://example.com"}),
        ("click", {"targets": ["the Next link", "Next link", "Next"]}),
        ("wait", {"seconds": 2.0}),
    ]


def test_get_provider_auto_picks_by_api_key() -> None:
    assert get_provider(AgentSettings(provider="auto")).name == "offline"
    assert get_provider(AgentSettings(provider="auto", anthropic_api_key="sk-test")).name == "anthropic"
    with pytest.raises(ValueError):
        get_provider(AgentSettings(provider="gpt"))


def test_most_specific_secret_entry_wins() -> None:
    vault = SecretVault(
        [
            SecretEntry(match="all", fields={"password": "p-all"}),
            SecretEntry(match="*.example.com", fields={"password": "p-wild"}),
            SecretEntry(match="*.login.example.com", fields={"password": "p-deeper"}),
            SecretEntry(match="example.com", fields={"password": "p-exact"}),
        ]
    )

    assert vault.fields_for("https://example.com/x") == {"password": "p-exact"}
    assert vault.fields_for("https://www.example.com/") == {"password": "p-wild"}
    assert vault.fields_for("https://a.login.example.com/") == {"password": "p-deeper"}
    assert vault.fields_for("https://other.org/") == {"password": "p-all"}
    assert vault.substitute("{{secret:password}}!", "https://example.com") == "p-exact!"
    assert vault.scrub("echo p-wild and p-exact") == "echo {{secret:password}} and {{secret:password}}"


def test_wildcard_does_not_match_the_apex_or_lookalikes() -> None:
    vault = SecretVault([SecretEntry(match="*.example.com", fields={"user": "bob"})])

    assert vault.fields_for("https://example.com/") == {}
    assert vault.fields_for("https://badexample.com/") == {}
