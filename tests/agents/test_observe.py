"""The page observation: which elements are kept and shown, stable refs, and what the render leaves out."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from agents.observe import MAX_ELEMENTS, REF_ATTR, Element, Observation, observe

on_chromium = pytest.mark.asyncio(loop_scope="session")

BASE = "https://shop.example.com/catalog/index.html"


def test_render_shows_only_hrefs_that_leave_the_site() -> None:
    def line(href: str, name: str = "Go") -> str:
        return Element(ref="e1", role="link", name=name, href=href).render(BASE)

    assert line("next.html") == '[e1] link "Go"'
    assert line("../a/b.html#part") == '[e1] link "Go"'
    assert line("/license.html") == '[e1] link "Go"'
    assert line("#top") == '[e1] link "Go"'
    assert line("#") == '[e1] link "Go"'
    assert line("https://shop.example.com/cart?x=1") == '[e1] link "Go"'
    assert line("https://www.shop.example.com/cart") == '[e1] link "Go"'
    assert line("javascript:void(0)") == '[e1] link "Go"'
    assert line("https://other.example.org/docs") == '[e1] link "Go" -> https://other.example.org/docs'
    assert line("//cdn.example.net/x") == '[e1] link "Go" -> //cdn.example.net/x'
    assert line("mailto:help@example.com") == '[e1] link "Go" -> mailto:help@example.com'
    # A link whose name is its own URL says it once.
    assert line("https://www.python.org/", "https://www.python.org/") == '[e1] link "https://www.python.org/"'


def test_render_lists_every_viewport_element_then_the_nearest_below() -> None:
    inside = [Element(ref=f"v{i}", role="link", name=f"In {i}", priority=i) for i in range(5)]
    below = [
        Element(ref="far", role="link", name="Far", in_viewport=False, priority=9),
        Element(ref="near", role="link", name="Near", in_viewport=False, priority=5),
        Element(ref="copy", role="clickable", name="Copy", in_viewport=False, priority=6),
        Element(ref="up", role="link", name="Up", in_viewport=False, above=True, priority=10),
    ]
    obs = Observation(url=BASE, title="t", elements=[*below[:1], *inside, *below[1:]], element_total=12)

    text = obs.render(max_elements=3)
    refs = [ln.split("]")[0].strip(" [") for ln in text.splitlines() if ln.startswith("  [")]
    assert refs == ["v0", "v1", "v2", "v3", "v4"]  # all of the viewport, even past max_elements
    assert "  ... 7 more elements above or below" in text  # counted against everything on the page

    # Then below the viewport: nearest first, script-made clickables after native controls,
    # listed in page order; never what is above.
    text = obs.render(max_elements=6)
    assert "[near]" in text and "[far]" not in text and "[copy]" not in text
    text = obs.render(max_elements=7)
    refs = [ln.split("]")[0].strip(" [") for ln in text.splitlines() if ln.startswith("  [")]
    assert refs == ["far", "v0", "v1", "v2", "v3", "v4", "near"]
    text = obs.render(max_elements=100)
    assert "[copy]" in text and "[up]" not in text


def test_visible_text_drops_lines_that_only_repeat_listed_names() -> None:
    elements = [
        Element(ref="e1", role="link", name="Python"),
        Element(ref="e2", role="link", name="3.11.2 Documentation"),
        Element(ref="e3", role="link", name="Tutorial"),
        Element(ref="e4", role="button", name="Go"),
        Element(ref="e5", role="link", name="Hidden", in_viewport=False, above=True),
    ]
    text = "\n".join(
        [
            "Python » 3.11.2 Documentation »",
            "|",
            "«",
            "Tutorial start here",
            "Tutorial",
            "Go",
            "Gone fishing",
            "Hidden",
            "★★★★☆",
            "Python and more",
        ]
    )
    obs = Observation(url=BASE, title="t", elements=elements, text=text)
    visible = obs.render().split("Visible text:\n", 1)[1]
    assert visible.splitlines() == ["Tutorial start here", "Gone fishing", "Hidden", "★★★★☆", "Python and more"]
    assert obs.text == text  # the raw text (used elsewhere) is untouched


_LATE_ELEMENTS_PAGE = """<!doctype html><html><head><title>Late</title>
<style>body{margin:0} #top{height:60px} .filler a{display:block;height:20px}
#banner{position:fixed;bottom:0;left:0;right:0;background:#eee}</style></head><body>
<div id="top"><a href="/home">Home</a></div>
<div class="filler">%s</div>
<div class="row" onclick="this.textContent='done'">Open details</div>
<span id="tab" tabindex="0" style="cursor:pointer">Settings</span>
<span id="plain" tabindex="0">Not a control</span>
<div id="wrap" onclick="void 0"><button>Inner</button></div>
<div id="banner">We use cookies <button id="accept">Accept all</button></div>
</body></html>"""


@on_chromium
async def test_on_screen_elements_late_in_the_source_are_kept_with_stable_refs(page: Page) -> None:
    links = "".join(f'<a href="/p{i}">Item {i}</a>' for i in range(MAX_ELEMENTS + 100))
    await page.set_content(_LATE_ELEMENTS_PAGE % links)

    first = await observe(page)

    assert len(first.elements) == MAX_ELEMENTS
    assert first.element_total == MAX_ELEMENTS + 100 + 5  # filler, Home, the two clickables, Accept
    by_name = {el.name: el for el in first.elements}
    accept = by_name["Accept all"]
    assert accept.in_viewport and accept.role == "button"
    assert by_name["Home"].in_viewport
    # Kept elements are in page order: Home first, the fixed banner (last in the source) last.
    assert first.elements[0].name == "Home" and first.elements[-1].name == "Accept all"
    rendered = first.render()
    assert f'[{accept.ref}] button "Accept all"' in rendered
    assert "-> /home" not in rendered and "Home" in rendered
    assert first.element(accept.ref) is accept and accept.href == ""
    assert by_name["Home"].href == "/home"  # hrefs stay in the structured data

    # Same refs next time, and they resolve to the element.
    second = await observe(page)
    assert {el.name: el.ref for el in second.elements}["Accept all"] == accept.ref
    assert await page.locator(f'[{REF_ATTR}="{accept.ref}"]').inner_text() == "Accept all"

    # Scrolled to the end: the script-made clickables are there, the wrapper and the plain
    # focusable span are not (the button inside the wrapper is).
    await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    bottom = await observe(page)
    names = {el.name: el for el in bottom.elements if el.in_viewport}
    assert names["Open details"].role == "clickable" and names["Settings"].role == "clickable"
    assert "Inner" in names and "Not a control" not in names
    assert not any(el.tag == "div" and "Inner" in el.name for el in bottom.elements)
    assert {el.name: el.ref for el in bottom.elements}["Accept all"] == accept.ref
    await page.locator(f'[{REF_ATTR}="{names["Open details"].ref}"]').click()
    assert await page.locator(".row").inner_text() == "done"


@on_chromium
async def test_symbol_only_controls_are_named_by_their_title(page: Page) -> None:
    await page.set_content('<button title="Close dialog">×</button><a href="/x" title="Next">»</a>')
    obs = await observe(page)
    assert [el.describe() for el in obs.elements] == ['button "Close dialog"', 'link "Next"']
