"""A deterministic provider with no network and no tokens: it follows a small instruction language.

The task prompt is split into sentences on "then", ";" and new lines. Each sentence is one of:

    go to|open|visit <url>            search for <text>           click <text>
    type <text> into <field>          press <key>                 scroll down|up
    wait <n> seconds                  extract|return|get the title|url|headings|links|text|tables
    log in                            ask <question>
    upload <file name> into <field>   (a file of the task, attached to a file input)

Anything else fails the task with AgentError UNSUPPORTED_INSTRUCTION before the browser is touched.
The provider speaks through the same tools as a model, choosing elements from the observation.

A prompt with context sections (`Instructions:` and/or `Conversation so far:`, then `Task:`, as the
OpenAI-compatible endpoint builds it from system messages and earlier turns) is context for a
model: the offline provider follows only its `Task:` section, whatever the context says.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agents import actions as tools
from agents.observe import Element, Observation
from agents.providers.base import (
    ModelTurn,
    Provider,
    ProviderSession,
    ToolCall,
    ToolResult,
    TurnRequest,
)
from agents.secrets import placeholder
from agents.structured import CSV, JSON, csv_columns
from agents.types import AgentError, TaskSpec

_QUOTED_RE = re.compile(r"\"([^\"]*)\"|“([^”]*)”|(?<!\w)'([^']*)'(?!\w)")
_SPLIT_RE = re.compile(r"\s*(?:[;\n]+|,?\s*\band\s+then\b|,?\s*\bthen\b)\s*", re.IGNORECASE)
_LEAD_RE = re.compile(r"^(?:and|please|first|next|finally|now|also|,)\s+", re.IGNORECASE)
_KINDS = {
    "title": "title",
    "url": "url",
    "heading": "headings",
    "headings": "headings",
    "link": "links",
    "links": "links",
    "text": "text",
    "table": "tables",
    "tables": "tables",
}
_KEYS = {
    "enter": "Enter",
    "return": "Enter",
    "tab": "Tab",
    "escape": "Escape",
    "esc": "Escape",
    "space": "Space",
    "backspace": "Backspace",
    "delete": "Delete",
    "home": "Home",
    "end": "End",
    "page down": "PageDown",
    "pagedown": "PageDown",
    "page up": "PageUp",
    "pageup": "PageUp",
    "arrow down": "ArrowDown",
    "down": "ArrowDown",
    "arrow up": "ArrowUp",
    "up": "ArrowUp",
    "arrow left": "ArrowLeft",
    "left": "ArrowLeft",
    "arrow right": "ArrowRight",
    "right": "ArrowRight",
}
_CLICKABLE_ROLES = (
    "link",
    "button",
    "tab",
    "menuitem",
    "checkbox",
    "radio",
    "option",
    "switch",
    "summary",
)
_TEXT_ROLES = ("textbox", "searchbox", "combobox")


CONTEXT_HEADINGS = ("Instructions:\n", "Conversation so far:\n")
TASK_HEADING = "Task:\n"


def task_section(prompt: str) -> str:
    """The instruction part of `prompt`: its last `Task:` section when it starts with context."""
    if not prompt.startswith(CONTEXT_HEADINGS):
        return prompt
    _, found, task = prompt.rpartition("\n\n" + TASK_HEADING)
    return task if found else prompt


@dataclass(frozen=True)
class Instruction:
    kind: str
    sentence: str
    args: dict[str, Any] = field(default_factory=dict)


def _unquote(text: str, quoted: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: quoted[int(m.group(1))], text)


def normalize_url(url: str) -> str:
    """Return `url` with a scheme: as given if it has one, http:// for local hosts, else https://."""
    url = url.strip().strip("<>")
    if re.match(r"^[a-z][a-z0-9+.-]*:", url, re.IGNORECASE) and not re.match(r"^[^/]+:\d", url):
        return url
    host = re.split(r"[/:?#]", url, maxsplit=1)[0].lower()
    local = host == "localhost" or re.fullmatch(r"[\d.]+", host) is not None
    return ("http://" if local else "https://") + url


def parse_instructions(prompt: str) -> list[Instruction]:
    """Parse `prompt` into instructions; raise AgentError UNSUPPORTED_INSTRUCTION on the first
    sentence that is not part of the language."""
    quoted: list[str] = []

    def protect(match: re.Match[str]) -> str:
        quoted.append(next(group for group in match.groups() if group is not None))
        return f"\x00{len(quoted) - 1}\x00"

    protected = _QUOTED_RE.sub(protect, prompt)
    instructions: list[Instruction] = []
    for raw in _SPLIT_RE.split(protected):
        sentence = raw.strip().rstrip(".!").strip()
        while _LEAD_RE.match(sentence):
            sentence = _LEAD_RE.sub("", sentence, count=1).strip()
        if not sentence:
            continue
        instruction = _parse_sentence(sentence, quoted)
        if instruction is None:
            text = _unquote(sentence, [f'"{q}"' for q in quoted])
            raise AgentError(
                "UNSUPPORTED_INSTRUCTION",
                f"The offline agent does not understand {text!r}",
                {"sentence": text},
            )
        instructions.append(instruction)
    if not instructions:
        raise AgentError("UNSUPPORTED_INSTRUCTION", "The task has no instructions", {"sentence": ""})
    return instructions


def _parse_sentence(sentence: str, quoted: list[str]) -> Instruction | None:
    text = _unquote(sentence, [f'"{q}"' for q in quoted])

    def arg(value: str) -> str:
        """Unquote an argument: quoted parts lose their quotes (and are taken literally)."""
        return _unquote(value, quoted).strip()

    def has_quotes(value: str) -> bool:
        return "\x00" in value

    if m := re.match(
        r"^(?:go\s+to|goto|open|visit|navigate\s+to|browse\s+to|load)\s+(?:the\s+)?(?:url\s+|page\s+)?(\S+)$",
        sentence,
        re.IGNORECASE,
    ):
        url = arg(m.group(1))
        if "." in url or ":" in url or url.lower().startswith("localhost"):
            return Instruction("goto", text, {"url": normalize_url(url)})
        return None
    if m := re.match(r"^search\s+(?:for\s+)?(.+)$", sentence, re.IGNORECASE):
        return Instruction("search", text, {"query": arg(m.group(1))})
    if m := re.match(r"^(?:log\s*in|login|sign\s*in)\b.*$", sentence, re.IGNORECASE):
        return Instruction("login", text)
    if m := re.match(r"^(?:upload|attach)\s+(.+?)\s+(?:into|in|to)\s+(?:the\s+)?(.+)$", sentence, re.IGNORECASE):
        field_text = m.group(2)
        if not has_quotes(field_text):
            field_text = re.sub(r"\s+(?:field|input|box)$", "", field_text, flags=re.IGNORECASE)
        return Instruction("upload", text, {"file": arg(m.group(1)), "field": arg(field_text)})
    if m := re.match(
        r"^(?:type|enter|fill\s+in|write)\s+(.+?)\s+(?:into|in)\s+(?:the\s+)?(.+)$",
        sentence,
        re.IGNORECASE,
    ):
        field_text = m.group(2)
        if not has_quotes(field_text):
            field_text = re.sub(
                r"\s+(?:field|box|input|textbox|text\s+box)$",
                "",
                field_text,
                flags=re.IGNORECASE,
            )
        return Instruction("type", text, {"text": arg(m.group(1)), "field": arg(field_text)})
    if m := re.match(r"^(?:click|tap)\s+(?:on\s+)?(.+)$", sentence, re.IGNORECASE):
        target = m.group(1)
        candidates = [arg(target)]
        if not has_quotes(target):
            bare = re.sub(r"^the\s+", "", target, flags=re.IGNORECASE)
            stripped = re.sub(r"\s+(?:link|button|tab)$", "", bare, flags=re.IGNORECASE)
            candidates += [arg(bare), arg(stripped)]
        else:
            first = re.search(r"\x00(\d+)\x00", target)
            candidates = [quoted[int(first.group(1))]] if first else candidates
        return Instruction("click", text, {"targets": list(dict.fromkeys(c for c in candidates if c))})
    if m := re.match(r"^press\s+(?:the\s+)?(.+?)(?:\s+key)?$", sentence, re.IGNORECASE):
        key = arg(m.group(1))
        return Instruction("press", text, {"key": _KEYS.get(key.lower(), key)})
    if m := re.match(r"^scroll\s+(up|down)\b.*$", sentence, re.IGNORECASE):
        return Instruction("scroll", text, {"direction": m.group(1).lower()})
    if m := re.match(
        r"^wait\s+(?:for\s+)?(\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?)?$",
        sentence,
        re.IGNORECASE,
    ):
        return Instruction("wait", text, {"seconds": float(m.group(1))})
    if m := re.match(r"^(?:extract|return|get|read|list)\s+(.+)$", sentence, re.IGNORECASE):
        kinds = []
        for part in re.split(r"\s*(?:,|\band\b)\s*", m.group(1)):
            words = re.sub(
                r"^(?:me\s+)?(?:all\s+)?(?:the\s+)?(?:page\s+)?",
                "",
                part.strip(),
                flags=re.IGNORECASE,
            )
            words = re.sub(
                r"\s+(?:of|on|from)\s+(?:the|this)\s+page$",
                "",
                words,
                flags=re.IGNORECASE,
            ).lower()
            if words not in _KINDS:
                return None
            kinds.append(_KINDS[words])
        return Instruction("extract", text, {"kinds": kinds})
    if m := re.match(
        r"^ask\s+(?:the\s+(?:user|human)\s*(?::|whether|if)?\s*)?(.+)$",
        sentence,
        re.IGNORECASE,
    ):
        return Instruction("ask", text, {"question": arg(m.group(1))})
    return None


def _norm(text: str) -> str:
    text = text.replace("\u2014", "-").replace("\u2013", "-").replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip().casefold()


def find_clickable(observation: Observation, target: str) -> Element | None:
    """Return the element best matching `target` by accessible name (exact, prefix, contains)."""
    wanted = _norm(target)
    best: tuple[tuple[int, int, int], Element] | None = None
    for index, element in enumerate(observation.elements):
        name = _norm(element.name or element.value)
        if not name:
            continue
        if name == wanted:
            score = 3
        elif name.startswith(wanted):
            score = 2
        elif wanted in name:
            score = 1
        else:
            continue
        rank = (score, 1 if element.role in _CLICKABLE_ROLES else 0, -index)
        if best is None or rank > best[0]:
            best = (rank, element)
    return best[1] if best else None


def find_field(observation: Observation, label: str) -> Element | None:
    """Return the text field whose label, placeholder or name matches `label`."""
    wanted = _norm(label)
    best: tuple[int, Element] | None = None
    for element in observation.elements:
        if element.role not in _TEXT_ROLES:
            continue
        keys = [_norm(k) for k in (element.name, element.placeholder, element.attr_name) if k]
        score = (
            3
            if wanted in keys
            else 2
            if any(k.startswith(wanted) for k in keys)
            else (1 if any(wanted in k for k in keys) else 0)
        )
        if score and (best is None or score > best[0]):
            best = (score, element)
    return best[1] if best else None


def find_file_input(observation: Observation, label: str) -> Element | None:
    """Return the file input whose label or name matches `label` (the only one if just one)."""
    inputs = [el for el in observation.elements if el.role == "file" or el.type == "file"]
    wanted = _norm(label)
    for element in inputs:
        keys = [_norm(k) for k in (element.name, element.attr_name, element.placeholder) if k]
        if any(wanted == k or wanted in k for k in keys):
            return element
    return inputs[0] if len(inputs) == 1 else None


def find_search_box(observation: Observation) -> Element | None:
    """Return the page's search box: a searchbox, or a text field named or labelled for search."""
    best: tuple[tuple[int, int], Element] | None = None
    for element in observation.elements:
        if element.role not in _TEXT_ROLES:
            continue
        words = _norm(f"{element.name} {element.placeholder} {element.attr_name}")
        if element.role == "searchbox" or element.type == "search":
            score = 4
        elif _norm(element.attr_name) in ("q", "query", "search", "s"):
            score = 3
        elif "search" in words:
            score = 2
        else:
            continue
        rank = (score, 1 if element.in_viewport else 0)
        if best is None or rank > best[0]:
            best = (rank, element)
    return best[1] if best else None


_Step = Generator[tuple[str, str, dict[str, Any]], None, None]


class OfflineProvider(Provider):
    """Follows the instruction language of this module; zero tokens, no network."""

    name = "offline"

    def open(self, task: TaskSpec) -> OfflineSession:
        return OfflineSession(task, parse_instructions(task_section(task.prompt)))


class OfflineSession(ProviderSession):
    def __init__(self, task: TaskSpec, instructions: list[Instruction]) -> None:
        self.task = task
        self.instructions = instructions
        self.request: TurnRequest | None = None
        self.outputs: list[str] = []
        self.extracted: dict[str, str] = {}
        self.answers: list[str] = []
        self.actions_taken = 0
        self._calls = 0
        self._script = self._run()

    async def next_turn(self, request: TurnRequest) -> ModelTurn:
        self.request = request
        thought, name, arguments = next(self._script)
        self._calls += 1
        call = ToolCall(id=f"offline_{self._calls}", name=name, input=arguments)
        content: list[dict[str, Any]] = [
            {"type": "text", "text": thought},
            {"type": "tool_use", "id": call.id, "name": name, "input": arguments},
        ]
        return ModelTurn(thought=thought, calls=[call], stop_reason="tool_use", content=content)

    # The script -----------------------------------------------------------------------------

    @property
    def observation(self) -> Observation:
        assert self.request is not None
        return self.request.observation

    def _last(self) -> ToolResult | None:
        assert self.request is not None
        return self.request.results[-1] if self.request.results else None

    def _check(self, instruction: Instruction) -> ToolResult:
        """Return the last tool result, or raise AgentError if the action failed."""
        result = self._last()
        assert result is not None
        if result.is_error and result.code != "DECLINED":
            raise AgentError(
                result.code or "ACTION_FAILED",
                f"{instruction.sentence!r} failed: {result.text}",
                {"instruction": instruction.sentence},
            )
        self.actions_taken += 1
        return result

    def _run(self) -> _Step:
        total = len(self.instructions)
        for number, instruction in enumerate(self.instructions, 1):
            prefix = f"Step {number}/{total}: {instruction.sentence}"
            yield from getattr(self, f"_do_{instruction.kind}")(instruction, prefix)
        result = self._final_result()
        # A structured result the loop rejects cannot be repaired by a script: give the same one.
        while True:
            yield "All steps are done.", tools.DONE, {"result": result}

    def _do_goto(self, ins: Instruction, prefix: str) -> _Step:
        yield prefix, tools.NAVIGATE, {"url": ins.args["url"]}
        self._check(ins)

    def _do_search(self, ins: Instruction, prefix: str) -> _Step:
        box = find_search_box(self.observation)
        if box is None:
            yield f"{prefix} (waiting for a search box)", tools.WAIT, {"seconds": 2}
            box = find_search_box(self.observation)
        if box is None:
            raise AgentError(
                "ELEMENT_NOT_FOUND",
                f"{ins.sentence!r}: no search box on {self.observation.url}",
            )
        yield (
            prefix,
            tools.TYPE,
            {"ref": box.ref, "text": ins.args["query"], "submit": True},
        )
        self._check(ins)

    def _do_click(self, ins: Instruction, prefix: str) -> _Step:
        targets: list[str] = ins.args["targets"]
        element = self._find_any(targets)
        if element is None:
            # Results rendered by scripts (a search page) may not be there yet.
            yield (
                f"{prefix} (waiting for it to appear)",
                tools.WAIT,
                {"text": targets[-1], "seconds": 10},
            )
            element = self._find_any(targets)
        if element is not None:
            yield prefix, tools.CLICK, {"ref": element.ref}
        else:
            yield prefix, tools.CLICK, {"text": targets[0]}
        self._check(ins)

    def _find_any(self, targets: list[str]) -> Element | None:
        for target in targets:
            element = find_clickable(self.observation, target)
            if element is not None:
                return element
        return None

    def _do_type(self, ins: Instruction, prefix: str) -> _Step:
        element = find_field(self.observation, ins.args["field"])
        if element is None:
            raise AgentError(
                "ELEMENT_NOT_FOUND",
                f"{ins.sentence!r}: no field {ins.args['field']!r} on {self.observation.url}",
            )
        yield prefix, tools.TYPE, {"ref": element.ref, "text": ins.args["text"]}
        self._check(ins)

    def _do_upload(self, ins: Instruction, prefix: str) -> _Step:
        element = find_file_input(self.observation, ins.args["field"])
        if element is None:
            raise AgentError(
                "ELEMENT_NOT_FOUND",
                f"{ins.sentence!r}: no file input {ins.args['field']!r} on {self.observation.url}",
            )
        yield prefix, tools.UPLOAD, {"ref": element.ref, "file": ins.args["file"]}
        self._check(ins)

    def _do_press(self, ins: Instruction, prefix: str) -> _Step:
        focused = next((el for el in self.observation.elements if "focused" in el.states), None)
        arguments: dict[str, Any] = {"key": ins.args["key"]}
        if focused is not None:
            arguments["ref"] = focused.ref
        yield prefix, tools.PRESS, arguments
        self._check(ins)

    def _do_scroll(self, ins: Instruction, prefix: str) -> _Step:
        yield prefix, tools.SCROLL, {"direction": ins.args["direction"]}
        self._check(ins)

    def _do_wait(self, ins: Instruction, prefix: str) -> _Step:
        yield prefix, tools.WAIT, {"seconds": ins.args["seconds"]}
        self._check(ins)

    def _do_extract(self, ins: Instruction, prefix: str) -> _Step:
        for kind in ins.args["kinds"]:
            yield prefix, tools.EXTRACT, {"kind": kind}
            text = self._check(ins).text
            self.extracted[kind] = text
            self.outputs.append(text)

    def _do_ask(self, ins: Instruction, prefix: str) -> _Step:
        yield prefix, tools.ASK_HUMAN, {"question": ins.args["question"]}
        self.answers.append(self._answer())

    def _answer(self) -> str:
        result = self._last()
        text = result.text if result else ""
        return text.removeprefix("The human answered: ")

    def _do_login(self, ins: Instruction, prefix: str) -> _Step:
        assert self.request is not None
        password = self._password_field()
        if password is None:
            yield f"{prefix} (waiting for the login form)", tools.WAIT, {"seconds": 2}
            password = self._password_field()
        host = urlsplit(self.observation.url).hostname or self.observation.url
        if password is None:
            raise AgentError(
                "ELEMENT_NOT_FOUND",
                f"{ins.sentence!r}: no login form on {self.observation.url}",
            )
        fields = self.request.secret_fields
        password_key = next((f for f in fields if "pass" in f.lower()), None)
        if password_key is None:
            yield (
                f"{prefix}: no credentials for {host}",
                tools.ASK_HUMAN,
                {"question": f"I need login credentials for {host}. Please log in or provide them, then resume."},
            )
            self.answers.append(self._answer())
            return
        user = self._user_field(password)
        if user is not None:
            user_key = self._user_key(user, fields)
            if user_key is not None:
                yield (
                    prefix,
                    tools.TYPE,
                    {"ref": user.ref, "text": placeholder(user_key)},
                )
                self._check(ins)
        yield (
            prefix,
            tools.TYPE,
            {"ref": password.ref, "text": placeholder(password_key), "submit": True},
        )
        self._check(ins)

    def _password_field(self) -> Element | None:
        return next((el for el in self.observation.elements if el.type == "password"), None)

    def _user_field(self, password: Element) -> Element | None:
        candidates = [el for el in self.observation.elements if el.role == "textbox" and el.type != "password"]
        if not candidates:
            return None
        hints = ("user", "email", "login", "account", "e-mail")

        def looks_like_user(el: Element) -> bool:
            words = _norm(f"{el.name} {el.placeholder} {el.attr_name} {el.autocomplete}")
            return el.type == "email" or any(h in words for h in hints)

        order = [el.ref for el in self.observation.elements]
        before = [el for el in candidates if order.index(el.ref) < order.index(password.ref)]
        return next((el for el in reversed(before) if looks_like_user(el)), None) or (
            before[-1] if before else next((el for el in candidates if looks_like_user(el)), None)
        )

    @staticmethod
    def _user_key(user: Element, fields: list[str]) -> str | None:
        words = _norm(f"{user.name} {user.placeholder} {user.attr_name} {user.autocomplete}")
        is_email = user.type == "email" or "email" in words or "e-mail" in words
        preference = ("email", "username", "login", "user") if is_email else ("username", "login", "user", "email")
        lowered = {f.lower(): f for f in fields}
        return next((lowered[key] for key in preference if key in lowered), None)

    # The result -------------------------------------------------------------------------------

    def _final_result(self) -> Any:
        if self.task.output_type == JSON:
            return self._json_result()
        if self.task.output_type == CSV:
            return self._csv_rows()
        if self.outputs:
            return "\n\n".join(self.outputs)
        summary = f"Done: {self.actions_taken} steps"
        if self.answers:
            summary += "; the human answered: " + "; ".join(self.answers)
        return summary

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for kind, text in self.extracted.items():
            if kind == "headings":
                data["headings"] = [line.split(": ", 1)[-1] for line in text.splitlines() if line.strip()]
            elif kind == "links":
                data["links"] = [
                    {"text": t, "url": u} for t, _, u in (line.rpartition(" -> ") for line in text.splitlines()) if u
                ]
            else:
                data[kind] = text
        if self.answers:
            data["answers"] = list(self.answers)
        return data

    def _json_result(self) -> Any:
        schema = self.task.output_schema if isinstance(self.task.output_schema, dict) else {}
        data = self._data()
        kind = schema.get("type")
        if kind == "array":
            return next((value for value in data.values() if isinstance(value, list)), [])
        if kind == "string":
            return "\n\n".join(self.outputs)
        properties: dict[str, Any] = schema.get("properties") or {}
        if not properties:
            return data
        result: dict[str, Any] = {}
        for key, spec in properties.items():
            value = self._lookup(data, key)
            if value is None:
                continue
            wanted = spec.get("type") if isinstance(spec, dict) else None
            if wanted == "string" and isinstance(value, list):
                value = "\n".join(v if isinstance(v, str) else str(v.get("text", v)) for v in value)
            elif wanted == "array" and isinstance(value, str):
                value = [line for line in value.splitlines() if line.strip()]
            result[key] = value
        return result

    @staticmethod
    def _lookup(data: dict[str, Any], key: str) -> Any:
        lowered = key.lower()
        for candidate in (
            lowered,
            lowered + "s",
            lowered.rstrip("s"),
            {"content": "text", "urls": "links"}.get(lowered),
        ):
            if candidate and candidate in data:
                return data[candidate]
        return None

    def _csv_rows(self) -> list[dict[str, Any]]:
        columns = csv_columns(self.task)
        items: list[dict[str, str]] = []
        for kind, text in self.extracted.items():
            for line in text.splitlines():
                if not line.strip():
                    continue
                item = {"kind": kind, "text": line}
                if kind == "headings" and ": " in line:
                    item["level"], item["text"] = line.split(": ", 1)
                elif kind == "links" and " -> " in line:
                    item["text"], _, item["url"] = line.rpartition(" -> ")
                elif kind in ("title", "url"):
                    item[kind] = line
                items.append(item)
        rows = []
        for item in items:
            row = {col: item.get(col.lower(), "") for col in columns}
            if not any(row.values()):
                row[columns[0]] = item["text"]
            rows.append(row)
        return rows
