"""Automation policies (api.md §5.5): validation of the rule document and its evaluation.

Pure code, no Django, so it can be tested alone. A policy document:

    {"defaultAction": "allow",
     "domainRules": {"mode": "allow_all" | "allowlist" | "blocklist",
                     "entries": [{"pattern": "*.example.com", "action": "block" | "guardrail"}]},
     "actionRules": [{"category": "navigation", "urlPattern": "*/admin/*", "action": "guardrail"},
                     {"category": "click", "scope": "target", "matchType": "regex", "match": "^Delete",
                      "role": "button", "action": "block"}]}

Every matching rule counts and the most restrictive wins: block > guardrail > allow. Domain
entries: `example.com` is that host only, `*.example.com` any subdomain (not the apex),
`*example.com` the apex, subdomains and any host ending so. In an allowlist, a host no entry
matches is blocked. A category with no action rule at all gets the default action.

What an action rule's `match` is tested against (each text on its own, so `^` and `$` anchor
to it; a keyword is a case-insensitive substring, a regex is `re.search`):
- scope `target`: the target's accessible name (`Save changes` for a button of that name) and
  its value (the text typed, the option chosen, the key pressed, the file uploaded);
- scope `page`: the page text the agent observes;
- scope `all`: any of those.
The optional `role` (an ARIA role such as `button`, `link`, `textbox`) limits a rule to targets
of that role; with a role, `match` may be left out to match every name.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ACTIONS = ("allow", "guardrail", "block")
CATEGORIES = ("navigation", "click", "type", "form_submit", "file_upload", "scroll", "select")
DOMAIN_MODES = ("allow_all", "allowlist", "blocklist")
SCOPES = ("all", "target", "page")
MATCH_TYPES = ("keyword", "regex")
_RANK = {action: rank for rank, action in enumerate(ACTIONS)}

# Agent tools and manual interactions, by category.
TOOL_CATEGORIES = {
    "navigate": "navigation",
    "go_back": "navigation",
    "click_element": "click",
    "type_text": "type",
    "press_key": "type",
    "select_option": "select",
    "scroll": "scroll",
    "upload_file": "file_upload",
    "CLICK": "click",
    "DOUBLE_CLICK": "click",
    "TYPE": "type",
    "KEY_PRESS": "type",
}


class PolicyInvalid(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Target:
    """What an action acts on, matched field by field."""

    role: str = ""  # ARIA role: "button", "link", "textbox" ... ("" when unknown)
    name: str = ""  # accessible name: "Save changes"
    value: str = ""  # the text typed, the option chosen, the key pressed, the file uploaded


@dataclass(frozen=True)
class Decision:
    action: str  # allow | guardrail | block
    rule: str  # which rule decided, for the audit log and the agent ("" = no rule matched)


def _choice(value: Any, allowed: tuple[str, ...], parameter: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise PolicyInvalid(parameter, f"Invalid parameter '{parameter}': must be one of {', '.join(allowed)}")
    return str(value)


def _pattern(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise PolicyInvalid(parameter, f"Invalid parameter '{parameter}': a non-empty pattern is required")
    return value.strip().lower() if not parameter.endswith(".match") else value.strip()


_ROLE_RE = re.compile(r"^[a-z][a-z-]{0,39}$")


def _role(value: Any, parameter: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _ROLE_RE.match(value.strip().lower()):
        raise PolicyInvalid(parameter, f"Invalid parameter '{parameter}': an ARIA role such as button, link or textbox")
    return value.strip().lower()


def validate_rules(data: dict[str, Any]) -> dict[str, Any]:
    """Return the normalised rule document, or raise PolicyInvalid naming the parameter."""
    default = _choice(data.get("defaultAction"), ACTIONS, "defaultAction", "allow")
    domain = data.get("domainRules") or {}
    if not isinstance(domain, dict):
        raise PolicyInvalid("domainRules", "Invalid parameter 'domainRules': must be an object")
    mode = _choice(domain.get("mode"), DOMAIN_MODES, "domainRules.mode", "allow_all")
    entries = domain.get("entries") or []
    if not isinstance(entries, list):
        raise PolicyInvalid("domainRules.entries", "Invalid parameter 'domainRules.entries': must be an array")
    domain_entries = []
    for i, entry in enumerate(entries):
        name = f"domainRules.entries[{i}]"
        if not isinstance(entry, dict):
            raise PolicyInvalid(name, f"Invalid parameter '{name}': must be an object")
        domain_entries.append(
            {
                "pattern": _pattern(entry.get("pattern"), f"{name}.pattern"),
                "action": _choice(
                    entry.get("action"), ACTIONS, f"{name}.action", "allow" if mode == "allowlist" else "block"
                ),
            }
        )
    rules = data.get("actionRules") or []
    if not isinstance(rules, list):
        raise PolicyInvalid("actionRules", "Invalid parameter 'actionRules': must be an array")
    action_rules = []
    for i, rule in enumerate(rules):
        name = f"actionRules[{i}]"
        if not isinstance(rule, dict):
            raise PolicyInvalid(name, f"Invalid parameter '{name}': must be an object")
        category = _choice(rule.get("category"), CATEGORIES, f"{name}.category")
        action = _choice(rule.get("action"), ACTIONS, f"{name}.action")
        if category == "navigation":
            action_rules.append(
                {
                    "category": category,
                    "action": action,
                    "urlPattern": _pattern(rule.get("urlPattern"), f"{name}.urlPattern"),
                }
            )
            continue
        match_type = _choice(rule.get("matchType"), MATCH_TYPES, f"{name}.matchType", "keyword")
        role = _role(rule.get("role"), f"{name}.role")
        match = "" if role and rule.get("match") is None else _pattern(rule.get("match"), f"{name}.match")
        if match_type == "regex":
            try:
                re.compile(match)
            except re.error as exc:
                raise PolicyInvalid(f"{name}.match", f"Invalid parameter '{name}.match': bad regex ({exc})") from exc
        entry = {
            "category": category,
            "action": action,
            "matchType": match_type,
            "match": match,
            "scope": _choice(rule.get("scope"), SCOPES, f"{name}.scope", "all"),
        }
        if role:
            entry["role"] = role
        action_rules.append(entry)
    return {
        "defaultAction": default,
        "domainRules": {"mode": mode, "entries": domain_entries},
        "actionRules": action_rules,
    }


def domain_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return host == pattern


def _strictest(decisions: list[Decision]) -> Decision:
    return max(decisions, key=lambda d: _RANK[d.action], default=Decision("allow", ""))


def evaluate_domain(rules: dict[str, Any], url: str) -> Decision:
    """The domain rules' decision for a URL (non-http URLs such as about:blank are allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Decision("allow", "")
    host = parts.hostname
    domain = rules["domainRules"]
    matched = [
        Decision(e["action"], f"domain {e['pattern']} ({e['action']})")
        for e in domain["entries"]
        if domain_matches(e["pattern"], host)
    ]
    if domain["mode"] == "allowlist" and not matched:
        return Decision("block", f"domain {host} is not on the allowlist")
    return _strictest(matched)


def _texts(scope: str, target: Target, page_text: str) -> list[str]:
    fields = [t for t in (target.name, target.value) if t]
    if scope == "target":
        return fields
    if scope == "page":
        return [page_text]
    return [*fields, page_text]


def _rule_hits(rule: dict[str, Any], target: Target, page_text: str) -> bool:
    if rule.get("role") and rule["role"] != target.role.lower():
        return False
    if not rule["match"]:
        return True  # a role alone matches every name
    texts = _texts(rule["scope"], target, page_text)
    if rule["matchType"] == "regex":
        return any(re.search(rule["match"], text) is not None for text in texts)
    keyword = rule["match"].lower()
    return any(keyword in text.lower() for text in texts)


def evaluate(
    rules: dict[str, Any],
    *,
    category: str | None,
    url: str,
    target: Target | str = "",
    target_url: str = "",
    page_text: str = "",
) -> Decision:
    """Decide an action of `category` on the page at `url` (target_url: where a navigation goes).

    `target` is what the action acts on; a plain string is taken as its accessible name.
    """
    if category is None:
        return Decision("allow", "")
    if isinstance(target, str):
        target = Target(name=target)
    decisions = [evaluate_domain(rules, target_url or url)]
    category_rules = [r for r in rules["actionRules"] if r["category"] == category]
    for rule in category_rules:
        if category == "navigation":
            if target_url and fnmatch.fnmatch(target_url.lower(), rule["urlPattern"]):
                decisions.append(Decision(rule["action"], f"navigation {rule['urlPattern']} ({rule['action']})"))
            continue
        if _rule_hits(rule, target, page_text):
            role = f" role {rule['role']}" if rule.get("role") else ""
            decisions.append(
                Decision(rule["action"], f"{category}{role} {rule['matchType']} {rule['match']!r} ({rule['action']})")
            )
    if not category_rules and rules["defaultAction"] != "allow":
        decisions.append(Decision(rules["defaultAction"], f"default action for {category}"))
    return _strictest(decisions)


APPROVAL_RE = re.compile(
    r"^\W*(yes|y|ok|okay|sure|approve[d]?|confirm(?:ed)?|proceed|go ahead|continue|resume|do it)\b", re.IGNORECASE
)


def categories_for(name: str, args: dict[str, Any]) -> list[str]:
    """The categories an agent tool call or manual interaction belongs to (a submit is both)."""
    category = TOOL_CATEGORIES.get(name)
    if category is None:
        return []
    submits = (name == "type_text" and bool(args.get("submit"))) or (
        name in ("press_key", "KEY_PRESS") and str(args.get("key", "")).lower() == "enter"
    )
    return [category, "form_submit"] if submits else [category]


def evaluate_action(
    rules: dict[str, Any],
    *,
    name: str,
    args: dict[str, Any],
    url: str,
    target: Target | str = "",
    target_url: str = "",
    page_text: str = "",
) -> Decision:
    """The strictest decision over every category the action belongs to."""
    categories = categories_for(name, args)
    if not categories:
        return Decision("allow", "")
    return _strictest(
        [
            evaluate(rules, category=c, url=url, target=target, target_url=target_url, page_text=page_text)
            for c in categories
        ]
    )


def action_target(name: str, args: dict[str, Any], element: dict[str, Any] | None) -> Target:
    """The target of an agent tool call: the element's role and accessible name (a click by
    visible text has that text as its name) and the value the call puts in."""
    role = str((element or {}).get("role") or "")
    label = str((element or {}).get("name") or "")
    if not label and name == "click_element":
        label = str(args.get("text") or "")
    value_arg = {"type_text": "text", "select_option": "option", "press_key": "key", "upload_file": "file"}.get(name)
    value = str(args.get(value_arg) or "") if value_arg else ""
    return Target(role=role, name=label, value=value)
