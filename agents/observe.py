"""Page observation: a compact, token-efficient text view of what the agent can see and use.

A DOM walk in the page finds every visible interactive element (native controls, ARIA widgets and
script-made clickables), keeps up to MAX_ELEMENTS of them choosing those in the viewport first, then
those below it, then those above (nearest first), and tags the kept ones with `data-enigma-ref`
(stable for the life of the document, so a ref seen in one observation still works in the next).
It returns their role, accessible name, value and state in page order, plus the visible text from
the top of the viewport down. `Observation.render` turns that into a few kilobytes of text for the
model; the structured elements (hrefs included) stay available to the actions and to the offline
provider.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

REF_ATTR = "data-enigma-ref"

# Chosen so that a typical page renders to roughly 1-2k tokens.
MAX_ELEMENTS = 400
RENDER_ELEMENTS = 60
# Elements in the viewport are always rendered, up to this many (above RENDER_ELEMENTS on dense pages).
RENDER_VIEWPORT_ELEMENTS = 150
# Visible elements examined in full before the walk only looks at the viewport and just below (huge pages).
SCAN_LIMIT = 5000
MAX_TEXT_CHARS = 2500
MAX_NAME_CHARS = 80

_WALK_JS = """
({refAttr, maxElements, scanLimit, maxText, maxName}) => {
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const cut = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
  const vh = window.innerHeight, vw = window.innerWidth;
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
      // Text made only of symbols ("×", "«", "☰") says less than a title or an image's alt.
      const t = norm(el.innerText);
      if (t && /[\\p{L}\\p{N}]/u.test(t)) return t;
      const img = el.querySelector('img[alt]');
      if (img && norm(img.alt)) return norm(img.alt);
      if (t) return norm(el.getAttribute('title')) || t;
    }
    return norm(el.getAttribute('placeholder')) || norm(el.getAttribute('title'));
  };
  const interactive = 'a[href], button, input:not([type=hidden]), select, textarea, summary, ' +
    '[role=button], [role=link], [role=checkbox], [role=radio], [role=tab], [role=menuitem], ' +
    '[role=menuitemcheckbox], [role=menuitemradio], [role=option], [role=switch], [role=treeitem], ' +
    '[role=slider], [role=spinbutton], [role=combobox], [role=searchbox], [role=textbox], ' +
    '[contenteditable=""], [contenteditable=true]';
  // Script-made clickables: an onclick handler, or a focusable / inline-styled element with a
  // pointer cursor (listeners added with addEventListener cannot be seen from the page).
  const scripted = '[onclick], [tabindex]:not([tabindex^="-"]), [style*="cursor"]';
  const isScriptClickable = (el) => {
    if (el === document.body || el === document.documentElement || el.matches(interactive)) return false;
    if (el.querySelector(interactive)) return false;  // a wrapper: its controls are listed already
    const up = el.parentElement;
    if (up && (up.closest(interactive) || up.closest('[onclick]'))) return false;
    if (el.hasAttribute('onclick')) return true;
    return getComputedStyle(el).cursor === 'pointer';
  };

  // Pass 1: every visible candidate with its position. Past scanLimit only the ones in the
  // viewport or just below it are kept, so a gigantic page cannot hide what is on screen.
  const candidates = [];
  const seen = new Set();
  const consider = (el, isScripted) => {
    if (seen.has(el)) return;
    seen.add(el);
    const r = el.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) return;
    const inViewport = r.bottom > 0 && r.top < vh && r.right > 0 && r.left < vw;
    if (candidates.length >= scanLimit && !(r.bottom > 0 && r.top < 3 * vh)) return;
    if (!el.checkVisibility({visibilityProperty: true})) return;
    if (isScripted && !isScriptClickable(el)) return;
    candidates.push({el, r, inViewport, above: r.bottom <= 0, isScripted});
  };
  for (const el of document.querySelectorAll(interactive)) consider(el, false);
  for (const el of document.querySelectorAll(scripted)) consider(el, true);

  // Keep maxElements: in the viewport first, then below it, then above it (nearest first), and
  // put the kept ones back in page order.
  const inView = candidates.filter((c) => c.inViewport);
  const below = candidates.filter((c) => !c.inViewport && !c.above).sort((a, b) => a.r.top - b.r.top);
  const above = candidates.filter((c) => c.above).sort((a, b) => b.r.bottom - a.r.bottom);
  const kept = inView.concat(below, above).slice(0, maxElements);
  kept.forEach((c, i) => { c.priority = i; });
  kept.sort((a, b) => (a.el.compareDocumentPosition(b.el) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1));

  let seq = window.__enigmaRefSeq || 0;
  const elements = [];
  for (const {el, inViewport, above: isAbove, isScripted, priority} of kept) {
    let ref = el.getAttribute(refAttr);
    if (!ref) { seq += 1; ref = 'e' + seq; el.setAttribute(refAttr, ref); }
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
    let role = roleOf(el);
    if (isScripted && !el.hasAttribute('role')) role = 'clickable';
    elements.push({
      ref, role, name: cut(nameOf(el), maxName), tag, type,
      attrName: el.getAttribute('name') || '',
      placeholder: el.getAttribute('placeholder') || '',
      autocomplete: el.getAttribute('autocomplete') || '',
      value: cut(norm(value), maxName), states,
      href: tag === 'a' ? (el.getAttribute('href') || '') : '',
      options: tag === 'select' ? [...el.options].slice(0, 15).map((o) => cut(norm(o.text), 40)) : [],
      inViewport, above: isAbove, priority,
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
    title: document.title, elements, total: candidates.length, text, truncated,
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
    # Rank by closeness to the viewport (0 = first in it); off-screen elements are shown by it.
    priority: int = 0

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
        href = _shown_href(self.href, base_url)
        if href and href != self.name:
            parts.append("-> " + href)
        return " ".join(parts)


def _shown_href(href: str, base_url: str) -> str:
    """Return the part of a link's href worth showing the model, or "" for none.

    Same-site links (relative, root-relative, same host) and in-page `#anchor` links are clicked by
    ref, so their target is noise; external and non-HTTP targets (mailto:, tel:) stay, as they say
    where the link leads. The full href stays in `Element.href`.
    """
    href = href.strip()
    if not href or href.startswith("#"):
        return ""
    target = urlsplit(href)
    scheme = target.scheme.lower()
    if scheme == "javascript":
        return ""
    if scheme in ("", "http", "https"):
        if not target.netloc:
            return ""  # relative or root-relative: same site
        base_host = (urlsplit(base_url).hostname or "").removeprefix("www.")
        if (target.hostname or "").removeprefix("www.") == base_host:
            return ""
    return href if len(href) <= 80 else href[:79] + "…"


def _trim_text(text: str, names: set[str]) -> str:
    """Drop the visible-text lines that add nothing to the element list.

    That is lines that only repeat listed elements' names (plus separators such as | or »), and
    bare separator lines of up to three symbols ("|", "«", ">>>").
    """
    names = {name for name in names if name and not name.endswith("…")}
    pattern = (
        re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in sorted(names, key=len, reverse=True)))
        if names
        else None
    )
    kept = []
    for line in text.split("\n"):
        if not any(ch.isalnum() for ch in line):
            if len(line.strip()) <= 3:
                continue
        elif pattern is not None:
            rest, count = pattern.subn(" ", line)
            if count and not any(ch.isalnum() for ch in rest):
                continue
        kept.append(line)
    return "\n".join(kept)


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
    # Visible interactive elements found on the page; `elements` keeps at most MAX_ELEMENTS of them.
    element_total: int = 0

    def element(self, ref: str) -> Element | None:
        """Return the element with `ref`, or None."""
        return next((el for el in self.elements if el.ref == ref), None)

    def render(self, *, max_elements: int = RENDER_ELEMENTS) -> str:
        """Return the compact text form given to the model.

        Every element in the viewport is listed (up to RENDER_VIEWPORT_ELEMENTS, even past
        `max_elements`), then those just below it up to `max_elements`, in page order; the rest are
        counted so the model knows to scroll. Text lines that only repeat a listed element's name
        are left out, and so are the targets of same-site links.
        """
        lines = [f"URL: {self.url}", f"Title: {self.title}"]
        if self.scroll_height > self.viewport_height > 0:
            pages = -(-self.scroll_height // self.viewport_height)
            current = self.scroll_y // self.viewport_height + 1
            lines.append(f"Scroll: screen {current} of {pages}")
        lines.extend(f"Note: {note}" for note in self.notes)
        visible = [el for el in self.elements if el.in_viewport]
        visible = visible[: max(max_elements, RENDER_VIEWPORT_ELEMENTS)]
        # Below the viewport: the nearest first, native controls before script-made clickables
        # (often repeated widgets such as copy buttons); page order is restored when listing.
        below = [el for el in self.elements if not el.in_viewport and not el.above]
        below.sort(key=lambda el: (el.role == "clickable", el.priority))
        shown = visible + below[: max(0, max_elements - len(visible))]
        shown_refs = {el.ref for el in shown}
        lines.append("Interactive elements (use the ref in [brackets]):")
        lines.extend("  " + el.render(self.url) for el in self.elements if el.ref in shown_refs)
        hidden = max(self.element_total, len(self.elements)) - len(shown)
        if hidden > 0:
            more = f"{hidden}+" if self.element_total >= SCAN_LIMIT else str(hidden)
            lines.append(f"  ... {more} more elements above or below (scroll to see them)")
        lines.append("Visible text:")
        lines.append(_trim_text(self.text, {el.name for el in shown}) or "(none)")
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
                    "scanLimit": SCAN_LIMIT,
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
                    priority=item.get("priority", 0),
                )
                for item in data["elements"]
            ],
            element_total=data.get("total", 0),
            text=data["text"],
            text_truncated=data["truncated"],
            scroll_y=data["scrollY"],
            scroll_height=data["scrollHeight"],
            viewport_height=data["viewportHeight"],
        )
    return Observation(url=page.url, title="", notes=[f"The page could not be read: {last_error}"])
