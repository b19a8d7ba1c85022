"""Task secrets (api.md §5.3): the model sees placeholders, the page gets the real values.

A placeholder looks like `{{secret:password}}`. It is replaced by the value of the best matching
SecretEntry for the page's host only when an action types it into the page. Everything that
leaves the agent (events, model requests, results) goes through `SecretVault.scrub`, which turns
any secret value back into its placeholder, so a page that echoes a value does not leak it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from agents.types import SecretEntry

PLACEHOLDER_RE = re.compile(r"\{\{\s*secret:([A-Za-z0-9_.-]+)\s*\}\}")

# Values shorter than this are not scrubbed: replacing every "a" or "1" in a page would make the
# observation unreadable, and such values are not secrets worth the name.
_MIN_SCRUB_LEN = 3


def placeholder(field: str) -> str:
    """Return the placeholder the model uses for the secret field `field`."""
    return "{{secret:" + field + "}}"


def _specificity(match: str, host: str) -> int | None:
    """Return how specifically `match` matches `host` (higher wins), or None if it does not.

    An exact host beats any wildcard; a longer `*.domain` beats a shorter one; `all` comes last.
    """
    pattern = match.strip().lower()
    if pattern == "all":
        return 0
    if pattern.startswith("*."):
        domain = pattern[2:]
        if host.endswith("." + domain):
            return 10 + domain.count(".")
        return None
    return 1000 if host == pattern else None


class SecretVault:
    """The task's secrets, with lookup by page URL and scrubbing of outgoing text."""

    def __init__(self, entries: Iterable[SecretEntry]) -> None:
        self._entries = tuple(entries)
        pairs: dict[str, str] = {}
        for entry in self._entries:
            for field, value in entry.fields.items():
                if value and len(value) >= _MIN_SCRUB_LEN:
                    pairs.setdefault(value, placeholder(field))
        # Longest first, so a value that contains another value is replaced whole.
        self._scrub_pairs = sorted(pairs.items(), key=lambda item: len(item[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def fields_for(self, url: str) -> dict[str, str]:
        """Return the fields of the most specific entry matching `url`'s host ({} if none)."""
        host = (urlsplit(url).hostname or "").lower()
        best: tuple[int, SecretEntry] | None = None
        for entry in self._entries:
            score = _specificity(entry.match, host)
            if score is not None and (best is None or score > best[0]):
                best = (score, entry)
        return dict(best[1].fields) if best else {}

    def field_names_for(self, url: str) -> list[str]:
        """Return the names of the secret fields usable on `url` (never the values)."""
        return sorted(self.fields_for(url))

    def substitute(self, text: str, url: str) -> str:
        """Replace placeholders in `text` with the values for `url`; raise KeyError for unknown."""
        fields = self.fields_for(url)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in fields:
                raise KeyError(name)
            return fields[name]

        return PLACEHOLDER_RE.sub(replace, text)

    def scrub(self, text: str) -> str:
        """Return `text` with every secret value replaced by its placeholder."""
        for value, marker in self._scrub_pairs:
            if value in text:
                text = text.replace(value, marker)
        return text

    def scrub_obj(self, obj: object) -> object:
        """Scrub every string inside a JSON-like structure (dicts, lists, strings)."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {key: self.scrub_obj(value) for key, value in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.scrub_obj(value) for value in obj]
        return obj
