"""Page observation: a compact, token-efficient text view of what the agent can see and use.

A DOM walk in the page tags every visible interactive element with `data-enigma-ref` (stable for
the life of the document, so a ref seen in one observation still works in the next) and returns
its role, accessible name, value and state, plus the visible text from the top of the viewport
down. `Observation.render` turns that into a few kilobytes of text for the model; the structured
elements stay available to the actions and to the offline provider.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

REF_ATTR = "data-enigma-ref"

# Chosen so that a typical page renders to roughly 1-2k tokens.
MAX_ELEMENTS = 400
RENDER_ELEMENTS = 60
MAX_TEXT_CHARS = 2500
MAX_NAME_CHARS = 80

_WALK_JS = """
({refAttr, maxElements, maxText, maxName}) => {
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const cut = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
  const vh = window.innerHeight, vw = window.innerWidth;
  const isShown = (el) => {
    if (!el.checkVisibility({visibilityProperty: true})) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const roleOf = (el) => {
    const explicit = el.getAttribute('role');
    if (explicit) return explicit.split(/\\s+/)[0];
    const tag = el.tagName.toLowerCase();
    if (tag === 'a') return 'link';
    if (tag === 'button' || tag === 'summary') return 'button';
    if (tag === 'select') return el.multiple ? 'listbox' : 'combobox';
    if (tag === 'textarea') return 'textbox';
    if (tag === 'input') {
      const t = (el.type || 'text').toLowerCase();
      if (t === 'checkbox' || t === 'radio') return t;
      if (['submit', 'button', 'reset', 'image'].includes(t)) return 'button';
      if (t === 'search') return 'searchbox';
      if (t === 'range') return 'slider';
      if (t === 'file') return 'file';
      return 'textbox';
    }
    if (el.isContentEditable) return 'textbox';
    return tag;
  };
  const nameOf = (el) => {
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const t = norm(by.split(/\\s+/).map((id) => {
        const n = document.getElementById(id);
        return n ? n.innerText || n.textContent : '';
      }).join(' '));
      if (t) return t;
    }
    const aria = norm(el.getAttribute('aria-label'));
    if (aria) return aria;
    if (el.labels && el.labels.length) {
      const t = norm([...el.labels].map((l) => l.innerText).join(' '));
      if (t) return t;
    }
    const tag = el.tagName;
    if (tag === 'INPUT') {
      const t = (el.type || '').toLowerCase();
      if (['submit', 'button', 'reset'].includes(t)) return norm(el.value) || t;
      if (t === 'image') return norm(el.alt) || 'submit';
    } else if (tag !== 'SELECT' && tag !== 'TEXTAREA') {
      const t = norm(el.innerText);
      if (t) return t;
      const img = el.querySelector('img[alt]');
      if (img && norm(img.alt)) return norm(img.alt);
    }
    return norm(el.getAttribute('placeholder')) || norm(el.getAttribute('title'));
  };
  const interactive = 'a[href], button, input:not([type=hidden]), select, textarea, summary, ' +
    '[role=button], [role=link], [role=checkbox], [role=radio], [role=tab], [role=menuitem], ' +
    '[role=option], [role=switch], [role=combobox], [role=searchbox], [role=textbox], ' +
    '[contenteditable=""], [contenteditable=true]';
  let seq = window.__enigmaRefSeq || 0;
  const elements = [];
  for (const el of document.querySelectorAll(interactive)) {
    if (elements.length >= maxElements) break;
    if (!isShown(el)) continue;
    let ref = el.getAttribute(refAttr);
    if (!ref) { seq += 1; ref = 'e' + seq; el.setAttribute(refAttr, ref); }
    const r = el.getBoundingClientRect();
    const tag = el.tagName.toLowerCase();
    const type = tag === 'input' ? (el.type || 'text').toLowerCase() : '';
    let value = '';
    if (tag === 'input' && !['checkbox', 'radio', 'submit', 'button', 'reset', 'image'].includes(type)) {
      value = type === 'password' ? (el.value ? '********' : '') : el.value;
    } else if (tag === 'textarea') {
      value = el.value;
    } else if (tag === 'select') {
      value = [...el.selectedOptions].map((o) => norm(o.text)).join(', ');
    }
    const states = [];
    if (el.checked || el.getAttribute('aria-checked') === 'true') states.push('checked');
    if (el.disabled || el.getAttribute('aria-disabled') === 'true') states.push('disabled');
    if (el.getAttribute('aria-expanded') === 'true') states.push('expanded');
    if (el.getAttribute('aria-selected') === 'true') states.push('selected');
    if (el.required) states.push('required');
    if (document.activeElement === el) states.push('focused');
    elements.push({
      ref, role: roleOf(el), name: cut(nameOf(el), maxName), tag, type,
      attrName: el.getAttribute('name') || '',
      placeholder: el.getAttribute('placeholder') || '',
      autocomplete: el.getAttribute('autocomplete') || '',
      value: cut(norm(value), maxName), states,
      href: tag === 'a' ? (el.getAttribute('href') || '') : '',
      options: tag === 'select' ? [...el.options].slice(0, 15).map((o) => cut(norm(o.text), 40)) : [],
      inViewport: r.bottom > 0 && r.top < vh && r.right > 0 && r.left < vw,
      above: r.bottom <= 0,
    });
  }
  window.__enigmaRefSeq = seq;

  // Visible text from the top of the viewport down, one line per block.
  const blockOf = new Map();
  const blockAncestor = (el) => {
    let cur = el;
    const path = [];
    while (cur && cur !== document.body) {
      if (blockOf.has(cur)) { const b = blockOf.get(cur); path.forEach((p) => blockOf.set(p, b)); return b; }
      path.push(cur);
      const d = getComputedStyle(cur).display;
      if (!d.startsWith('inline') && d !== 'contents') break;
      cur = cur.parentElement;
    }
    const b = cur || document.body;
    path.forEach((p) => blockOf.set(p, b));
    return b;
  };
  const shownCache = new Map();
  const parentShown = (el) => {
    if (!shownCache.has(el)) shownCache.set(el, el.checkVisibility({visibilityProperty: true}));
    return shownCache.get(el);
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => {
      const p = node.parentElement;
      if (!p || ['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE'].includes(p.tagName)) return NodeFilter.FILTER_REJECT;
      return node.textContent.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT;
    },
  });
  const lines = [];
  let line = '', lastBlock = null, total = 0, truncated = false;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const p = node.parentElement;
    if (!parentShown(p)) continue;
    if (p.getBoundingClientRect().bottom <= 0) continue;
    const t = norm(node.textContent);
    const block = blockAncestor(p);
    if (block !== lastBlock && line) { lines.push(line); total += line.length + 1; line = ''; }
    lastBlock = block;
    line = line ? line + ' ' + t : t;
    if (total + line.length > maxText) { truncated = true; break; }
  }
  if (line) lines.push(line);
  let text = lines.join('\\n');
  if (text.length > maxText) { text = text.slice(0, maxText); truncated = true; }
  const doc = document.scrollingElement || document.documentElement;
  return {
    title: document.title, elements, text, truncated,
    scrollY: Math.round(window.scrollY), scrollHeight: doc.scrollHeight, viewportHeight: vh,
  };
}
"""


@dataclass(frozen=True)
class Element:
    """One interactive element, addressed by `ref` (the value of its data-enigma-ref)."""

    ref: str
    role: str
    name: str
    tag: str = ""
    type: str = ""
    attr_name: str = ""
    placeholder: str = ""
    autocomplete: str = ""
    value: str = ""
    states: tuple[str, ...] = ()
    href: str = ""
    options: tuple[str, ...] = ()
    in_viewport: bool = True
    above: bool = False

    def describe(self) -> str:
        """Return a short human description, e.g. `link "Next page"` (used as action targets)."""
        label = self.name or self.placeholder or self.attr_name
        return f'{self.role} "{label}"' if label else self.role

    def render(self, base_url: str) -> str:
        parts = [f"[{self.ref}] {self.describe()}"]
        if self.type and self.type not in (
            "text",
            "submit",
            "checkbox",
            "radio",
            "search",
        ):
            parts.append(f"type={self.type}")
        if self.attr_name and self.attr_name not in self.name:
            parts.append(f"name={self.attr_name}")
        if self.placeholder and self.placeholder != self.name:
            parts.append(f'placeholder="{self.placeholder}"')
        if self.value:
            parts.append(f'value="{self.value}"')
        parts.extend(self.states)
        if self.options:
            parts.append("options=" + "|".join(self.options))
        if self.href:
            parts.append("-> " + _short_href(self.href, base_url))
        return " ".join(parts)


def _short_href(href: str, base_url: str) -> str:
    """Drop the scheme and host of same-site links; they are noise for the model."""
    if href.startswith(("http://", "https://")):
        base = urlsplit(base_url)
        target = urlsplit(href)
        if target.netloc == base.netloc:
            href = target.path + (f"?{target.query}" if target.query else "")
    return href if len(href) <= 80 else href[:79] + "…"


@dataclass
class Observation:
    """What the agent sees of the page at one moment."""

    url: str
    title: str
    elements: list[Element] = field(default_factory=list)
    text: str = ""
    text_truncated: bool = False
    scroll_y: int = 0
    scroll_height: int = 0
    viewport_height: int = 0
    notes: list[str] = field(default_factory=list)

    def element(self, ref: str) -> Element | None:
        """Return the element with `ref`, or None."""
        return next((el for el in self.elements if el.ref == ref), None)

    def render(self, *, max_elements: int = RENDER_ELEMENTS) -> str:
        """Return the compact text form given to the model.

        Elements in the viewport come first, then those just below it; the rest are counted so
        the model knows to scroll.
        """
        lines = [f"URL: {self.url}", f"Title: {self.title}"]
        if self.scroll_height > self.viewport_height > 0:
            pages = -(-self.scroll_height // self.viewport_height)
            current = self.scroll_y // self.viewport_height + 1
            lines.append(f"Scroll: screen {current} of {pages}")
        lines.extend(f"Note: {note}" for note in self.notes)
        visible = [el for el in self.elements if el.in_viewport]
        below = [el for el in self.elements if not el.in_viewport and not el.above]
        shown = (visible + below)[:max_elements]
        shown_refs = {el.ref for el in shown}
        lines.append("Interactive elements (use the ref in [brackets]):")
        lines.extend("  " + el.render(self.url) for el in self.elements if el.ref in shown_refs)
        hidden = len(self.elements) - len(shown)
        if hidden > 0:
            lines.append(f"  ... {hidden} more elements above or below (scroll to see them)")
        lines.append("Visible text:")
        lines.append(self.text or "(none)")
        if self.text_truncated:
            lines.append("... (more text below: scroll down or use extract)")
        return "\n".join(lines)


async def observe(page: Page) -> Observation:
    """Return an Observation of `page`, waiting briefly if the page is between documents."""
    last_error: PlaywrightError | None = None
    for _ in range(4):
        try:
            await page.wait_for_load_state("domcontentloaded", timeout=10_000)
            data: dict[str, Any] = await page.evaluate(
                _WALK_JS,
                {
                    "refAttr": REF_ATTR,
                    "maxElements": MAX_ELEMENTS,
                    "maxText": MAX_TEXT_CHARS,
                    "maxName": MAX_NAME_CHARS,
                },
            )
        except PlaywrightError as exc:
            # A navigation in flight destroys the execution context; the next document will do.
            last_error = exc
            await asyncio.sleep(0.2)
            continue
        return Observation(
            url=page.url,
            title=data["title"],
            elements=[
                Element(
                    ref=item["ref"],
                    role=item["role"],
                    name=item["name"],
                    tag=item["tag"],
                    type=item["type"],
                    attr_name=item["attrName"],
                    placeholder=item["placeholder"],
                    autocomplete=item["autocomplete"],
                    value=item["value"],
                    states=tuple(item["states"]),
                    href=item["href"],
                    options=tuple(item["options"]),
                    in_viewport=item["inViewport"],
                    above=item["above"],
                )
                for item in data["elements"]
            ],
            text=data["text"],
            text_truncated=data["truncated"],
            scroll_y=data["scrollY"],
            scroll_height=data["scrollHeight"],
            viewport_height=data["viewportHeight"],
        )
    return Observation(url=page.url, title="", notes=[f"The page could not be read: {last_error}"])
