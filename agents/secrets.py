"""Task secrets (api.md §5.3): the model sees placeholders, the page gets the real values.

A placeholder looks like `{{secret:password}}`. It is replaced by the value of the best matching
SecretEntry for the page's host only when an action types it into the page. Everything that
leaves the agent (events, model requests, results) goes through `SecretVault.scrub`, which turns
any secret value back into its placeholder, so a page that echoes a value does not leak it. A
value is found however it is written: as is or in another case (a page's `text-transform`),
percent-encoded in either case of hex digits, with `+` for spaces (a GET form's query), as HTML
character references, or any mix of these.
"""

from __future__ import annotations

import html.entities
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from agents.types import SecretEntry, clean_text

PLACEHOLDER_RE = re.compile(r"\{\{\s*secret:([A-Za-z0-9_.-]+)\s*\}\}")

# Values shorter than this are not scrubbed: replacing every "a" or "1" in a page would make the
# observation unreadable, and such values are not secrets worth the name.
_MIN_SCRUB_LEN = 3


def placeholder(field: str) -> str:
    """Return the placeholder the model uses for the secret field `field`."""
    return "{{secret:" + field + "}}"


def _char_pattern(char: str) -> str:
    """A regex for one character of a secret value in any of its written forms."""
    code = ord(char)
    forms = [
        re.escape(char),
        "".join(f"%{byte:02x}" for byte in char.encode("utf-8")),
        f"&#0*{code};",
        f"&#x0*{code:x};",
    ]
    if char == " ":
        forms.append(r"\+")
    name = html.entities.codepoint2name.get(code) or ("apos" if char == "'" else None)
    if name:
        forms.append(f"&{name};")
    return "(?:" + "|".join(forms) + ")"


def _value_pattern(value: str) -> str:
    return "".join(_char_pattern(char) for char in value)


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
        # Longest first, so a value that contains another value is replaced whole. One group per
        # value: the group that matched names the placeholder.
        ordered = sorted(pairs.items(), key=lambda item: len(item[0]), reverse=True)
        self._markers = [marker for _value, marker in ordered]
        self._pattern = (
            re.compile("|".join(f"({_value_pattern(value)})" for value, _marker in ordered), re.IGNORECASE)
            if ordered
            else None
        )

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
        """Return `text` clean (agents.types.clean_text) with every secret value, in any of its
        written forms, replaced by its placeholder."""
        text = clean_text(text)
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: self._markers[(match.lastindex or 1) - 1], text)

    def scrub_obj(self, obj: Any) -> Any:
        """Scrub every string inside a JSON-like structure (dicts, lists, strings)."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {
                self.scrub(key) if isinstance(key, str) else key: self.scrub_obj(value) for key, value in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.scrub_obj(value) for value in obj]
        return obj

    def holds(self, obj: Any) -> bool:
        """Whether any string inside `obj` (a JSON-like structure) holds a secret value."""
        if self._pattern is None:
            return False
        if isinstance(obj, str):
            return self._pattern.search(obj) is not None
        if isinstance(obj, dict):
            return any(self.holds(key) or self.holds(value) for key, value in obj.items())
        if isinstance(obj, list | tuple):
            return any(self.holds(value) for value in obj)
        return False

    def scrub_storage_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """Return a Playwright storage state without the cookies, localStorage entries and
        IndexedDB records that hold a secret value: a value cannot be masked without breaking
        what the site stored, so the entry is dropped (the site asks to log in again)."""
        if self._pattern is None:
            return state

        def keep(entries: Any) -> list[Any]:
            return [entry for entry in entries or [] if not self.holds(entry)]

        origins = []
        for origin in state.get("origins") or []:
            origin = {**origin, "localStorage": keep(origin.get("localStorage"))}
            if "indexedDB" in origin:
                origin["indexedDB"] = [
                    {
                        **database,
                        "stores": [
                            {**store, "records": keep(store.get("records"))} for store in database.get("stores") or []
                        ],
                    }
                    for database in origin["indexedDB"] or []
                ]
            origins.append(origin)
        return {**state, "cookies": keep(state.get("cookies")), "origins": origins}
